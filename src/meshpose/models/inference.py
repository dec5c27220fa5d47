"""The keypoint regressor at inference: loading its model file, and the estimate function that
turns keypoints into bodies with it (what ``meshpose predict`` runs for the default model)."""
from __future__ import annotations

import torch

from meshpose.body import body_joints
from meshpose.errors import MeshposeError
from meshpose.geometry.rotations import rotation_onto_ray
from meshpose.io.weights import (
    SHIPPED_MODELS,
    check_settings,
    header_object,
    load_checked,
    model_path,
    read_model_file,
)
from meshpose.models.regressor import (
    KeypointRegressor,
    root_from_weak_perspective,
    to_slots,
)

FORMAT = "meshpose-regressor-1"

__all__ = ["FORMAT", "load_regressor", "regressor_estimator"]


#: The header's ``model`` settings the regressor is built from: (type, low, high).
SETTINGS = {"hidden": (int, 1, 16384), "blocks": (int, 0, 64), "iterations": (int, 1, 16)}


def load_regressor(name_or_path: str = "default", device: str | torch.device = "cpu") -> KeypointRegressor:
    """A :class:`~meshpose.models.regressor.KeypointRegressor` with shipped or saved weights, in
    eval mode on ``device``.

    Raises:
        MeshposeError: not a regressor file, settings missing or out of :data:`SETTINGS`'
            ranges, or tensors that are not the network's (one line naming the file).
    """
    header, state = read_model_file(name_or_path, SHIPPED_MODELS, FORMAT, "regressor")
    path = model_path(name_or_path, SHIPPED_MODELS)
    settings = header_object(header, "model", path)
    missing = [name for name in SETTINGS if name not in settings]
    if missing:
        raise MeshposeError(f"the header's model settings lack {', '.join(map(repr, missing))}", path)
    check_settings(settings, SETTINGS, path, "model")
    model = KeypointRegressor(settings["hidden"], settings["blocks"], settings["iterations"])
    load_checked(model, state, path)
    return model.to(device).eval()


def regressor_estimator(regressor, body, joint_set: str, sets):
    """``estimate(batch, intrinsics) -> {key: (B, ...) tensor}`` for an in-memory regressor and
    body, with the keys of :func:`meshpose.predict.predict`'s results: ``batch`` is ``(B, J, 3)``
    keypoints of ``joint_set``, ``intrinsics`` ``(focal (B, 2), principal (B, 2))`` or None
    (then no ``cam_t``), ``sets`` the output joint sets. Vertices and joints are root-relative.

    The regressor gives the body in the axes of a camera aimed at the person (its input is
    normalised to the keypoints' box). With intrinsics, the body is turned into the real camera's
    axes (:func:`~meshpose.geometry.rotations.rotation_onto_ray` through the root's pixel): a
    person away from the image centre is seen obliquely, e.g. 6 degrees on Human3.6M."""

    def estimate_regressor(batch, intrinsics):
        device = regressor.initial_state.device  # callers may hand CPU keypoints to a GPU model
        batch = batch.to(device)
        if intrinsics is not None:
            intrinsics = tuple(part.to(device) for part in intrinsics)
        out = regressor(to_slots(batch, joint_set))
        pose = out["pose"]
        if intrinsics is not None:
            root_pixels = out["centre"] + out["size"][:, None] / 2 * out["camera"][:, 1:]
            pose = pose.clone()
            pose[:, 0] = rotation_onto_ray(root_pixels, *intrinsics).to(pose) @ pose[:, 0]
        bodies = body(pose, out["shape"])
        root = bodies.joint("bone:root")[:, None]
        values = {"vertices": bodies.vertices - root, "pose": pose, "shape": out["shape"],
                  "camera": out["camera"]}
        for name in sets:
            values[f"joints3d_{name}"] = body_joints(bodies, name) - root
        if intrinsics is not None:
            values["cam_t"] = root_from_weak_perspective(out["camera"], out["centre"], out["size"], *intrinsics)
        return values

    return estimate_regressor
