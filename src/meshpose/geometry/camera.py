"""Pinhole cameras: projection, a focal-length guess, and fitting the root translation.

Camera frame: OpenCV axes (x right, y down, z forward), metres. Pixels: the centre of pixel
``(row i, column j)`` is ``(u, v) = (j, i)``.
"""
from __future__ import annotations

import math

import torch

#: Field of view assumed across the longer image side when the intrinsics are unknown (degrees).
#: 55 degrees is a common phone / consumer-camera horizontal field of view.
DEFAULT_FIELD_OF_VIEW = 55.0


def focal_from_field_of_view(image_size, field_of_view: float = DEFAULT_FIELD_OF_VIEW) -> float:
    """Focal length in pixels that gives ``field_of_view`` degrees across the longer side of
    ``image_size`` (W, H) pixels: ``f = max(W, H) / 2 / tan(fov / 2)``."""
    return max(image_size) / 2.0 / math.tan(math.radians(field_of_view) / 2.0)


def project(points: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """Pinhole projection.

    Args:
        points: (B, J, 3) camera frame, metres, in front of the camera (z > 0).
        focal: (B, 2) pixels. principal: (B, 2) pixels.
    Returns:
        (B, J, 2) pixels.
    """
    return points[..., :2] / points[..., 2:].clamp_min(1e-6) * focal[:, None] + principal[:, None]


def translation_from_2d_3d(joints3d: torch.Tensor, pixels: torch.Tensor, focal: torch.Tensor,
                           principal: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Camera translation ``t`` (B, 3), metres, that best projects root-relative 3D joints onto
    2D keypoints: least squares over ``f (X + t_x) - (u - c_x)(Z + t_z) = 0`` (and the same in y),
    linear in ``t`` (an algebraic error: pixel errors weighted by depth).

    Args:
        joints3d: (B, J, 3) camera axes, metres, root-relative.
        pixels: (B, J, 2) image positions.
        focal: (B, 2) pixels. principal: (B, 2) pixels.
        weights: (B, J) per-joint weights (default 1).
    """
    b, j, _ = joints3d.shape
    offset = pixels - principal[:, None]  # (B, J, 2)
    f = focal[:, None].expand(b, j, 2)
    w = torch.ones(b, j, dtype=joints3d.dtype, device=joints3d.device) if weights is None else weights
    a = joints3d.new_zeros(b, j, 2, 3)
    a[..., 0, 0] = f[..., 0]
    a[..., 1, 1] = f[..., 1]
    a[..., :, 2] = -offset
    rhs = offset * joints3d[..., 2:] - f * joints3d[..., :2]  # (B, J, 2)
    a = (a * w[..., None, None]).reshape(b, 2 * j, 3).double()
    rhs = (rhs * w[..., None]).reshape(b, 2 * j, 1).double()
    return torch.linalg.lstsq(a, rhs).solution[..., 0].to(joints3d.dtype)


def fit_translation(joints3d: torch.Tensor, pixels: torch.Tensor, focal: torch.Tensor,
                    principal: torch.Tensor, weights: torch.Tensor | None = None,
                    init: torch.Tensor | None = None, iterations: int = 10) -> torch.Tensor:
    """Root translation (B, 3), metres, minimising the weighted squared *pixel* error of the
    projected joints: Gauss-Newton on ``sum_j w_j |project(X_j + t) - u_j|^2``, started from
    ``init`` (default: :func:`translation_from_2d_3d`).

    Args: as :func:`translation_from_2d_3d`; ``iterations`` Gauss-Newton steps (each a 3x3 solve).
    """
    b, j, _ = joints3d.shape
    x3 = joints3d.double()
    uv = pixels.double()
    f, c = focal.double(), principal.double()
    w = torch.ones(b, j, dtype=torch.float64, device=joints3d.device) if weights is None else weights.double()
    t = translation_from_2d_3d(x3, uv, f, c, w) if init is None else init.double().clone()
    for _ in range(iterations):
        p = x3 + t[:, None]
        z = p[..., 2].clamp_min(1e-3)  # (B, J)
        residual = (p[..., :2] / z[..., None]) * f[:, None] + c[:, None] - uv  # (B, J, 2)
        jac = p.new_zeros(b, j, 2, 3)  # d residual / d t
        jac[..., 0, 0] = f[:, None, 0] / z
        jac[..., 1, 1] = f[:, None, 1] / z
        jac[..., :, 2] = -(p[..., :2] * f[:, None]) / (z * z)[..., None]
        jw = jac * w[..., None, None]
        normal = torch.einsum("bjki,bjkl->bil", jw, jac) + 1e-9 * torch.eye(3, dtype=torch.float64, device=t.device)
        gradient = torch.einsum("bjki,bjk->bi", jw, residual)
        t = t - torch.linalg.solve(normal, gradient)
        t[:, 2] = t[:, 2].clamp_min(0.1)  # keep the body in front of the camera
    return t.to(joints3d.dtype)
