"""Anny bodies fitted to Human3.6M's 3D joints (positions): the bodies a Human3.6M vertex ->
joint regressor is fitted on, as SMPL's was fitted on bodies fitted to Human3.6M.

Two stages, all frames batched:

1. **retarget** (:class:`~meshpose.data.retarget.Retargeter`) with the retarget points h36m17
   has (:data:`H36M_RETARGET_POINTS`: no toes; H36M's spine marker is not Anny's chest bone, so
   no chest): bone directions plus a scale-aligned position term give the pose and a first shape;
2. **positions**: per-frame pose, *one* shape for the subject, per-frame translation and one
   offset per trunk and head joint minimise the mean squared distance (m^2) between Anny's
   points and the truth, with a weak pull of every joint rotation towards the stage-1 solution
   (rad^2) and of the offsets towards 0 (m^2). Anny's point for a limb joint is its anatomical
   centre (``h36m17_anatomical``; both are joint centres); for a joint of
   :data:`OFFSET_FRAMES` (Human3.6M's spine, thorax, shoulders and head points are not where
   Anny's bones start: its thorax, for one, sits about 9 cm below Anny's neck bone) it is that
   centre plus a constant vector in a frame of the trunk or head, as marker offsets are fitted
   in MoSh. Without the offsets the fit bends the body to bring Anny's centres onto those
   points, and a regressor fitted on such bodies learns Anny's definition back.

World frame: the Human3.6M world, z up, metres (checked: the pelvis stands about 0.93 m above
the floor).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch

from meshpose.body import AnnyBody, body_joints
from meshpose.data.h36m import load_h36m_3d
from meshpose.data.retarget import RetargetOptions, Retargeter
from meshpose.joints import get_joint_set

__all__ = ["FRAMES", "H36M_RETARGET_POINTS", "OFFSET_FRAMES", "FittedBodies", "fit_bodies", "load_s1_frames",
           "marker_points"]

#: Retarget point -> the h36m17 joint standing for it (the anatomical definitions agree:
#: Anny's neck01 bone head is its thorax, its head bone head its Neck/Nose).
H36M_RETARGET_POINTS: dict[str, str] = {
    "pelvis": "pelvis", "left_hip": "left_hip", "right_hip": "right_hip", "left_knee": "left_knee",
    "right_knee": "right_knee", "left_ankle": "left_ankle", "right_ankle": "right_ankle",
    "neck": "thorax", "head": "neck_nose", "left_shoulder": "left_shoulder",
    "right_shoulder": "right_shoulder", "left_elbow": "left_elbow", "right_elbow": "right_elbow",
    "left_wrist": "left_wrist", "right_wrist": "right_wrist",
}

#: h36m17 joints placed at their anatomical centre plus a fitted constant offset, and the frame
#: the offset is constant in.
OFFSET_FRAMES = {"spine": "lower_trunk", "thorax": "upper_trunk", "left_shoulder": "upper_trunk",
                 "right_shoulder": "upper_trunk", "neck_nose": "head", "head_top": "head"}

#: Frame -> landmarks (up from, up to, right, left): z along the up line, x to the body's left.
FRAMES = {"lower_trunk": ("bone:root", "bone:spine02", "bone:upperleg01.R", "bone:upperleg01.L"),
          "upper_trunk": ("bone:spine02", "bone:neck01", "bone:upperarm01.R", "bone:upperarm01.L"),
          "head": ("bone:head", "head_top", "right_ear", "left_ear")}


def _frame(output, name: str) -> torch.Tensor:
    """(B, 3, 3) rotation, columns (left, up x left, up), of one of :data:`FRAMES` on bodies."""
    low, high, right, left = (output.joint(landmark) for landmark in FRAMES[name])
    axes = roma.special_gramschmidt(torch.stack([high - low, left - right], dim=-1))  # (up, left, up x left)
    return axes[..., [1, 2, 0]]


def marker_points(output, offsets: torch.Tensor) -> torch.Tensor:
    """(B, 17, 3) Anny's h36m17 points with the fitted ``offsets`` (17, 3) (metres, in each
    joint's :data:`OFFSET_FRAMES` frame; rows of other joints are ignored)."""
    points = body_joints(output, "h36m17", anatomical=True)
    names = get_joint_set("h36m17").names
    moved = [points[:, j] for j in range(len(names))]
    frames = {name: _frame(output, name) for name in FRAMES}
    for joint, frame in OFFSET_FRAMES.items():
        j = names.index(joint)
        moved[j] = points[:, j] + frames[frame] @ offsets[j]
    return torch.stack(moved, dim=1)


@dataclass
class FittedBodies:
    """Anny fitted to frames of one subject.

    Attributes:
        takes: (N,) the take (action) of each frame.
        frames: (N,) frame number within its take.
        truth: (N, 17, 3) h36m17 joints, world, metres.
        rotations: (N, 22, 3, 3) reduced pose (``POSE_JOINTS``), the pelvis rotation in world axes.
        shape: (6,) the subject's phenotypes.
        translation: (N, 3) pelvis positions, metres.
        offsets: (17, 3) the subject's offsets of the :data:`OFFSET_FRAMES` joints, metres.
        errors_mm: (N, 17) distance of the fitted points (:func:`marker_points`) to the truth, mm.
        anatomical_errors_mm: (N, 17) the same for the anatomical centres (no offsets), mm.
    """

    takes: np.ndarray
    frames: np.ndarray
    truth: torch.Tensor
    rotations: torch.Tensor
    shape: torch.Tensor
    translation: torch.Tensor
    offsets: torch.Tensor
    errors_mm: torch.Tensor
    anatomical_errors_mm: torch.Tensor

    def bodies(self, body: AnnyBody, index, vertices: bool = True):
        """The :class:`~meshpose.body.BodyOutput` of the frames ``index``."""
        index = torch.as_tensor(index, dtype=torch.long)
        shape = self.shape[None].expand(len(index), -1)
        return body(self.rotations[index], shape, self.translation[index], vertices=vertices)


def load_s1_frames(data_dir, stride: int, subject: str = "S1") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``stride``-th frame of every take of ``subject``: (takes (N,), frame numbers (N,),
    h36m17 joints (N, 17, 3) world metres)."""
    data_dir = Path(data_dir)
    joints = load_h36m_3d(data_dir / f"h36m_{subject}_3d.npz", data_dir / f"h36m_{subject}_joints.json")
    takes, frames, points = [], [], []
    for (who, take), world in sorted(joints.items()):
        if who != subject:
            continue
        picked = np.arange(0, len(world), stride)
        takes += [take] * len(picked)
        frames.append(picked)
        points.append(world[picked])
    return np.array(takes), np.concatenate(frames), np.concatenate(points).astype(np.float32)


def _retarget(truth: torch.Tensor, iterations: int, body: AnnyBody):
    """Stage 1: (N, 22, 3, 3) rotations and the (6,) shape of one clip."""
    names = get_joint_set("h36m17").names
    columns = [names.index(joint) for joint in H36M_RETARGET_POINTS.values()]
    options = RetargetOptions(iterations=iterations, warm_iterations=iterations // 3,
                              points=tuple(H36M_RETARGET_POINTS))
    result = Retargeter(options, body).fit(truth[:, columns])
    return result.rotations, result.shape[0]


def fit_bodies(takes, frames, truth, iterations: int = 250, retarget_iterations: int = 150,
               lr: float = 0.02, pose_prior: float = 1e-5, offset_prior: float = 1e-3,
               body: AnnyBody | None = None) -> FittedBodies:
    """Fit Anny to h36m17 joints (see the module docstring).

    Args:
        takes, frames: (N,) the take and frame number of each row (kept in the result).
        truth: (N, 17, 3) h36m17 joints, world (z up), metres.
        iterations: Adam steps of the position stage (all frames together).
        retarget_iterations: Adam steps of the retarget stage (plus a third as many warm-start steps).
        lr: the position stage's step size.
        pose_prior: weight of the squared rotation change from the retarget solution (per rad^2).
        offset_prior: weight of the squared offsets (per m^2).
    """
    body = body or AnnyBody()
    truth = torch.as_tensor(truth, dtype=torch.float32)
    rotations, shape = _retarget(truth, retarget_iterations, body)
    start = roma.rotmat_to_rotvec(rotations)
    rotvec = start.clone().requires_grad_(True)
    subject = shape.clone()[None].requires_grad_(True)
    translation = truth[:, 0].clone().requires_grad_(True)
    offsets = torch.zeros(truth.shape[1], 3, requires_grad=True)
    optimizer = torch.optim.Adam([rotvec, subject, translation, offsets], lr=lr)
    for _ in range(iterations):
        optimizer.zero_grad(set_to_none=True)
        output = body(roma.rotvec_to_rotmat(rotvec), subject.expand(len(truth), -1), translation, vertices=False)
        distance = (marker_points(output, offsets) - truth).square().sum(-1).mean(-1)
        prior = pose_prior * (rotvec - start).square().sum((-1, -2))
        (distance.sum() + prior.sum() + offset_prior * len(truth) * offsets.square().sum()).backward()
        optimizer.step()
        with torch.no_grad():  # the phenotypes' range (an adult: age from young to old)
            subject.clamp_(0.0, 1.0)
            subject[:, 1].clamp_(0.55, 1.0)
    with torch.no_grad():
        rotations = roma.rotvec_to_rotmat(rotvec)
        output = body(rotations, subject.expand(len(truth), -1), translation, vertices=False)
        errors = (marker_points(output, offsets) - truth).norm(dim=-1) * 1000.0
        anatomical = (body_joints(output, "h36m17", anatomical=True) - truth).norm(dim=-1) * 1000.0
    return FittedBodies(np.asarray(takes), np.asarray(frames), truth, rotations.detach(), subject[0].detach(),
                        translation.detach(), offsets.detach(), errors, anatomical)
