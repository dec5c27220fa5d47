"""Unlabelled target-domain 2D detections for adaptation: any keypoint file ``read_keypoints``
reads, or a Human3.6M-style ``<name>_2d_sh.npz`` archive with its ``<name>_joints.json``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from meshpose.data.h36m import load_h36m_2d
from meshpose.errors import InputFileError
from meshpose.io.keypoints import read_keypoints


def load_target_keypoints(path, joint_set: str | None = None, stride: int = 1) -> tuple[np.ndarray, str]:
    """``(keypoints (N, J, 3) float32 pixels + confidence, joint set name)`` from ``path``.

    A ``<name>_2d_sh.npz`` archive of Stacked-Hourglass detections (``<name>_joints.json``
    beside it names the columns) gives every ``stride``-th frame of every sequence in mpii16,
    confidence 1; any other file or folder goes to :func:`~meshpose.io.keypoints.read_keypoints`.
    """
    path = Path(path)
    if path.name.endswith("_2d_sh.npz"):
        labels = path.with_name(path.name.replace("_2d_sh.npz", "_joints.json"))
        if not labels.exists():
            raise InputFileError(f"no {labels.name} beside it for the joint labels", path)
        frames = [sequence[::stride] for _, sequence in sorted(load_h36m_2d(path, labels).items())]
        xy = np.concatenate(frames)
        return np.concatenate([xy, np.ones_like(xy[..., :1])], -1).astype(np.float32), "mpii16"
    data = read_keypoints(path, joint_set)
    return data.keypoints[::stride].astype(np.float32), data.joint_set
