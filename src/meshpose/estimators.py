"""The shipped 2D-keypoints-to-body models by name, as estimate functions.

:func:`load_estimator` turns a model name (:data:`~meshpose.io.weights.SHIPPED_MODELS`) or a
model file of either family (the Key2Mesh-style regressor, Pose2Mesh) into one function that
``meshpose predict``, ``meshpose image`` and ``meshpose eval`` call the same way.
"""
from __future__ import annotations

import numpy as np
import torch

from meshpose.body import AnnyBody
from meshpose.io.weights import SHIPPED_MODELS, model_file_format
from meshpose.models.inference import load_regressor, regressor_estimator
from meshpose.pose2mesh.inference import FORMAT as POSE2MESH_FORMAT
from meshpose.pose2mesh.inference import (
    check_pose2mesh_file,
    load_pose2mesh,
    pose2mesh_estimator,
)

__all__ = ["check_model", "load_estimator", "load_estimator_and_body"]


def load_estimator(model: str, device: str | torch.device, joint_set: str, sets,
                   body: AnnyBody | None = None) -> tuple:
    """``(estimate(batch, intrinsics) -> {key: (B, ...) tensor}, faces (F, 3) int array)`` for a
    model name or file: ``batch`` is ``(B, J, 3)`` keypoints of ``joint_set`` (pixels and
    confidence), ``intrinsics`` is ``(focal (B, 2), principal (B, 2))`` or None; the keys are
    those of :func:`meshpose.predict.predict`'s results for the output joint sets ``sets``.

    Raises:
        UnknownNameError: neither a shipped name nor a file.
        MeshposeError: a model file that cannot be used (one line naming it).
    """
    estimate, faces, _ = load_estimator_and_body(model, device, joint_set, sets, body)
    return estimate, faces


def check_model(model: str) -> None:
    """Read and check a model name or file without building the body (fast: for checking
    every input of a command before it starts)."""
    if model_file_format(model, SHIPPED_MODELS) == POSE2MESH_FORMAT:
        check_pose2mesh_file(model, SHIPPED_MODELS)
    else:
        load_regressor(model)


def load_estimator_and_body(model: str, device: str | torch.device, joint_set: str, sets,
                            body: AnnyBody | None = None) -> tuple:
    """:func:`load_estimator` and the body model it uses (``body``, or one made here)."""
    # The model file is read and checked before the body model is built (a bad file fails fast).
    if model_file_format(model, SHIPPED_MODELS) == POSE2MESH_FORMAT:
        check_pose2mesh_file(model, SHIPPED_MODELS)
        body = (body or AnnyBody()).to(device)
        predictor = load_pose2mesh(model, device, SHIPPED_MODELS, body)
        return pose2mesh_estimator(predictor, joint_set, sets), body.faces.cpu().numpy(), body
    regressor = load_regressor(model, device)
    body = (body or AnnyBody()).to(device)
    faces: np.ndarray = body.faces.cpu().numpy()
    return regressor_estimator(regressor, body, joint_set, sets), faces, body
