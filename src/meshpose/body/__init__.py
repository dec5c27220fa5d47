"""Body models behind one interface: ``forward(pose, shape, translation) -> BodyOutput``.

* ``anny`` (default): meshpose's own forward of the Anny body model on the file shipped in the
  package (:class:`AnnyBody`); no anny package needed.
* ``smpl`` / ``smplx``: user-supplied SMPL or SMPL-X files through the ``smplx`` package
  (:class:`~meshpose.body.smpl_model.SMPLBody`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from meshpose.body.anny_model import POSE_JOINTS, REDUCED_POSE, SHAPE_NAMES, AnnyBody
from meshpose.body.base import BodyOutput
from meshpose.body.landmarks import body_joints
from meshpose.body.poses import PRESETS, preset_pose
from meshpose.body.smpl_model import SMPLBody
from meshpose.errors import MeshposeError, UnknownNameError

BODY_MODELS = ("anny", "smpl", "smplx")


def load_body_model(
    name: str = "anny",
    path: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    **kwargs,
) -> torch.nn.Module:
    """A body model by name.

    Args:
        name: ``"anny"``, ``"smpl"`` or ``"smplx"``.
        path: Anny: an exported body file (default: the shipped one); SMPL/SMPL-X: the model file
            or folder (required).
        device: where to run (default CPU).
        dtype: float dtype.
        kwargs: passed to the SMPL adapter (``gender``, ``num_betas``).
    """
    if name == "anny":
        model = AnnyBody(path, dtype=dtype)
    elif name in ("smpl", "smplx"):
        if path is None:
            raise MeshposeError(f"the {name} body needs its model file: pass path=...")

        model = SMPLBody(path, model_type=name, dtype=dtype, **kwargs)
    else:
        raise UnknownNameError(f"unknown body model {name!r}; choose from {', '.join(BODY_MODELS)}")
    return model.to(device) if device is not None else model


__all__ = [
    "AnnyBody",
    "BodyOutput",
    "BODY_MODELS",
    "POSE_JOINTS",
    "PRESETS",
    "REDUCED_POSE",
    "SHAPE_NAMES",
    "body_joints",
    "load_body_model",
    "preset_pose",
]
