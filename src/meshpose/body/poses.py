"""Named example poses of the reduced Anny pose, for demos and tests.

Rotations are axis-angle vectors in degrees about the world axes of Anny's reference pose
(+x the body's left, -y forward, +z up), composed from the root outwards; joints not listed
stay at identity (Anny's reference pose: standing, arms about 45 degrees down).
"""
from __future__ import annotations

import math

import torch

from meshpose.body.anny_model import POSE_JOINTS
from meshpose.errors import UnknownNameError
from meshpose.geometry.rotations import axis_angle_to_rotmat

PRESETS: dict[str, dict[str, tuple[float, float, float]]] = {
    "reference": {},
    "t_pose": {"left_shoulder": (0.0, -48.0, 0.0), "right_shoulder": (0.0, 48.0, 0.0)},
    "walk": {
        "left_hip": (-25.0, 0.0, 0.0),
        "right_hip": (18.0, 0.0, 0.0),
        "left_knee": (35.0, 0.0, 0.0),
        "right_knee": (10.0, 0.0, 0.0),
        "left_shoulder": (20.0, 0.0, 0.0),
        "right_shoulder": (-20.0, 0.0, 0.0),
        "left_elbow": (-15.0, 0.0, 0.0),
        "right_elbow": (-15.0, 0.0, 0.0),
    },
    "sit": {
        "left_hip": (-90.0, 0.0, 0.0),
        "right_hip": (-90.0, 0.0, 0.0),
        "left_knee": (90.0, 0.0, 0.0),
        "right_knee": (90.0, 0.0, 0.0),
        "left_elbow": (-40.0, 0.0, 0.0),
        "right_elbow": (-40.0, 0.0, 0.0),
    },
    "wave": {
        "right_shoulder": (0.0, 100.0, 0.0),
        "right_elbow": (0.0, 40.0, 0.0),
        "left_shoulder": (0.0, -10.0, 0.0),
        "head": (0.0, 0.0, -15.0),
    },
}


def preset_pose(name: str) -> torch.Tensor:
    """(1, 22, 3) axis-angle (radians) of a named preset, in ``POSE_JOINTS`` order."""
    if name not in PRESETS:
        raise UnknownNameError(f"unknown pose {name!r}; presets: {', '.join(PRESETS)}")
    pose = torch.zeros(1, len(POSE_JOINTS), 3)
    for joint, degrees in PRESETS[name].items():
        pose[0, POSE_JOINTS.index(joint)] = torch.tensor(degrees) * math.pi / 180.0
    return pose


def preset_rotations(name: str) -> torch.Tensor:
    """(1, 22, 3, 3) rotation matrices of a named preset."""
    return axis_angle_to_rotmat(preset_pose(name))
