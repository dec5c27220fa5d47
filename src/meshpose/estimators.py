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
from meshpose.pose2mesh.inference import load_pose2mesh, pose2mesh_estimator

__all__ = ["load_estimator"]


def load_estimator(model: str, device: str | torch.device, joint_set: str, sets,
                   body: AnnyBody | None = None) -> tuple:
    """``(estimate(batch, intrinsics) -> {key: (B, ...) tensor}, faces (F, 3) int array)`` for a
    model name or file: ``batch`` is ``(B, J, 3)`` keypoints of ``joint_set`` (pixels and
    confidence), ``intrinsics`` is ``(focal (B, 2), principal (B, 2))`` or None; the keys are
    those of :func:`meshpose.predict.predict`'s results for the output joint sets ``sets``."""
    body = (body or AnnyBody()).to(device)
    faces: np.ndarray = body.faces.cpu().numpy()
    if model_file_format(model, SHIPPED_MODELS) == POSE2MESH_FORMAT:
        predictor = load_pose2mesh(model, device, SHIPPED_MODELS, body)
        return pose2mesh_estimator(predictor, joint_set, sets), faces
    return regressor_estimator(load_regressor(model, device), body, joint_set, sets), faces
