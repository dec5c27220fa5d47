"""Rotation conversions used across meshpose.

Matrices are the internal form. Networks predict the continuous 6D form of Zhou et al. (2019):
the first two *columns* of the rotation matrix, flattened row by row,
``[R00, R01, R10, R11, R20, R21]``. Axis-angle vectors are in radians.
"""
from __future__ import annotations

import roma
import torch


def sixd_to_rotmat(sixd: torch.Tensor) -> torch.Tensor:
    """6D rotation representation ``(..., 6)`` to rotation matrices ``(..., 3, 3)``.

    Gram-Schmidt on the two columns; any non-degenerate input maps to a proper rotation.
    """
    return roma.special_gramschmidt(sixd.reshape(*sixd.shape[:-1], 3, 2))


def rotmat_to_sixd(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` to the 6D representation ``(..., 6)``."""
    return rotmat[..., :, :2].reshape(*rotmat.shape[:-2], 6)


def axis_angle_to_rotmat(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors ``(..., 3)`` (radians) to rotation matrices ``(..., 3, 3)``."""
    return roma.rotvec_to_rotmat(rotvec)


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` to axis-angle vectors ``(..., 3)`` (radians)."""
    return roma.rotmat_to_rotvec(rotmat)


def as_rotmat(rotations: torch.Tensor) -> torch.Tensor:
    """Rotations given as matrices ``(..., 3, 3)``, 6D ``(..., 6)`` or axis-angle ``(..., 3)``
    to matrices ``(..., 3, 3)``. The form is told by the trailing shape."""
    if rotations.shape[-2:] == (3, 3):
        return rotations
    if rotations.shape[-1] == 6:
        return sixd_to_rotmat(rotations)
    if rotations.shape[-1] == 3:
        return axis_angle_to_rotmat(rotations)
    raise ValueError(
        f"rotations must end in (3, 3), 6 or 3, got shape {tuple(rotations.shape)}"
    )


def polar_rotation(matrices: torch.Tensor) -> torch.Tensor:
    """The rotation nearest to each matrix ``(..., 3, 3)`` in Frobenius norm (special Procrustes).

    ``U diag(1, 1, det(U V^T)) V^T`` from the SVD ``M = U S V^T``.
    """
    return roma.special_procrustes(matrices)


def rotation_onto_ray(pixels: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` the smallest rotation taking the optical axis ``(0, 0, 1)`` onto the viewing
    ray through ``pixels``.

    A model that reads keypoints normalised to their bounding box sees every person as a camera
    aimed at them sees them; this rotation takes its camera-axes estimate into the axes of the
    real camera, in which a person away from the image centre is seen obliquely.

    Args:
        pixels: (B, 2) image points (e.g. the person's root), pixels.
        focal: (B, 2) focal lengths (fx, fy), pixels.
        principal: (B, 2) principal points, pixels.
    """
    ray = torch.cat([(pixels - principal) / focal, torch.ones_like(pixels[:, :1])], dim=-1)
    ray = ray / ray.norm(dim=-1, keepdim=True)
    axis = torch.stack([-ray[:, 1], ray[:, 0], torch.zeros_like(ray[:, 0])], dim=-1)  # z x ray
    angle = torch.atan2(axis.norm(dim=-1), ray[:, 2])
    unit = axis / axis.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(axis.dtype).tiny)
    return roma.rotvec_to_rotmat(unit * angle[:, None])
