"""Batched random virtual cameras around a body, in torch (CPU or GPU).

Each sampled camera looks at the subject's root from a given distance, elevation and azimuth,
rolled about its optical axis. Cameras are stored *root-relative*: a point ``X`` of a body whose
root is ``root`` has camera coordinates ::

    X_cam = R @ (X - root) + t,        t = (0, 0, distance)

so the root is always straight ahead at depth ``distance`` and projects to the principal point.
The camera frame is OpenCV's (x right, y down, z forward), metres; pixels are
``u = fx * x / z + cx``, ``v = fy * y / z + cy``, and the image covers ``[0, W) x [0, H)``
(pixel ``i`` spans ``[i, i + 1)``; the image centre is ``(W / 2, H / 2)``).

Angles, for a body in a world frame with unit ``up`` axis and a ``front`` axis (the direction the
body faces; for Anny ``up = +z``, ``front = -y``, so the body's left is ``up x front = +x``)::

    azimuth 0,  elevation 0    camera in front of the body, looking at its front
    azimuth +90                camera on the body's left side (turning from front towards left)
    elevation +30              camera above the root, looking down 30 degrees
    roll +r                    image content rotates by +r about the principal point, in the
                               image's (x right, y down) axes, i.e. clockwise as displayed

    camera centre  C = root + distance * (cos(el) * (cos(az) * front + sin(az) * left) + sin(el) * up)

Every random draw uses the caller's :class:`torch.Generator`. Draws happen on the generator's
device and are then moved to ``device``, so a CPU generator gives the same cameras whatever the
target device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import torch

from meshpose.errors import MeshposeError

__all__ = [
    "CameraRanges",
    "Cameras",
    "sample_cameras",
    "look_at_rotation",
    "to_camera",
    "project",
    "visibility",
]

_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass
class CameraRanges:
    """Ranges the camera parameters are drawn from, uniformly and independently.

    Attributes:
        focal: (low, high) focal length in pixels; ``fx = fy`` (square pixels).
        image_sizes: candidate (W, H) image sizes in pixels, one picked uniformly per camera.
        distance: (low, high) distance from the camera centre to the root, metres (> 0).
        elevation: (low, high) degrees above the root's horizontal plane, within (-90, 90).
        azimuth: (low, high) degrees about the up axis; 0 = in front of the body, +90 = its left.
        roll: (low, high) degrees about the optical axis (see the module docstring for the sign).
        principal_jitter: the principal point is the image centre plus a uniform offset in
            ``[-jitter, jitter]`` pixels on each axis (0 = exactly the centre).
    """

    focal: tuple[float, float] = (900.0, 1500.0)
    image_sizes: Sequence[tuple[int, int]] = ((1000, 1000),)
    distance: tuple[float, float] = (3.0, 7.0)
    elevation: tuple[float, float] = (-10.0, 30.0)
    azimuth: tuple[float, float] = (-180.0, 180.0)
    roll: tuple[float, float] = (-5.0, 5.0)
    principal_jitter: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in ("image_sizes", "principal_jitter"):
                continue
            value = getattr(self, f.name)
            try:
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise MeshposeError(f"camera range {f.name!r} must be two numbers (low, high), got {value!r}") from None
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise MeshposeError(f"camera range {f.name!r} needs finite low <= high, got {value!r}")
            setattr(self, f.name, (low, high))
        if self.focal[0] <= 0 or self.distance[0] <= 0:
            raise MeshposeError(f"focal and distance must be positive, got {self.focal} and {self.distance}")
        if self.elevation[0] <= -90 or self.elevation[1] >= 90:
            raise MeshposeError(f"elevation must lie strictly within (-90, 90) degrees, got {self.elevation}")
        sizes = [tuple(s) for s in self.image_sizes]
        if not sizes or not all(
            len(s) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s) for s in sizes
        ):
            raise MeshposeError(f"image_sizes must be a non-empty list of (W, H) positive integers, got {self.image_sizes!r}")
        self.image_sizes = tuple(sizes)
        if not (math.isfinite(self.principal_jitter) and self.principal_jitter >= 0):
            raise MeshposeError(f"principal_jitter must be >= 0 pixels, got {self.principal_jitter!r}")


@dataclass
class Cameras:
    """A batch of B root-relative pinhole cameras (see the module docstring).

    Attributes:
        R: (B, 3, 3) world-to-camera rotations.
        t: (B, 3) translations, metres: ``X_cam = R @ (X - root) + t``; ``(0, 0, distance)``.
        focal: (B, 2) focal lengths (fx, fy), pixels.
        principal: (B, 2) principal points (cx, cy), pixels.
        image_size: (B, 2) image (W, H), pixels, same float dtype as the others.
        distance, elevation, azimuth, roll: (B,) the sampled parameters (metres, degrees), kept
            for analysis; ``None`` for cameras built by hand.
    """

    R: torch.Tensor
    t: torch.Tensor
    focal: torch.Tensor
    principal: torch.Tensor
    image_size: torch.Tensor
    distance: torch.Tensor | None = None
    elevation: torch.Tensor | None = None
    azimuth: torch.Tensor | None = None
    roll: torch.Tensor | None = None

    def __len__(self) -> int:
        """Batch size B."""
        return self.R.shape[0]

    def to(self, *args, **kwargs) -> "Cameras":
        """A copy with every tensor moved/cast by ``Tensor.to(*args, **kwargs)``."""
        return Cameras(**{f.name: None if (v := getattr(self, f.name)) is None else v.to(*args, **kwargs) for f in fields(self)})

    def centers(self, root: torch.Tensor) -> torch.Tensor:
        """(B, 3) camera centres in world coordinates for roots ``root`` (B, 3), metres."""
        return root - (self.R.transpose(1, 2) @ self.t.unsqueeze(-1)).squeeze(-1)


def _axis(spec: str | Sequence[float] | torch.Tensor, name: str, dtype, device) -> torch.Tensor:
    """A unit world axis from ``"+z"``/``"-y"``-style strings or a 3-vector."""
    if isinstance(spec, str):
        s = spec.strip().lower()
        sign = -1.0 if s.startswith("-") else 1.0
        key = s.lstrip("+-")
        if key not in _AXES:
            raise MeshposeError(f"{name} axis must be like '+z' or '-y' or a 3-vector, got {spec!r}")
        v = torch.zeros(3, dtype=dtype, device=device)
        v[_AXES[key]] = sign
        return v
    v = torch.as_tensor(spec, dtype=dtype, device=device).reshape(-1)
    if v.numel() != 3 or not torch.isfinite(v).all() or float(v.norm()) == 0:
        raise MeshposeError(f"{name} axis must be a non-zero 3-vector, got {spec!r}")
    return v / v.norm()


def look_at_rotation(
    azimuth: torch.Tensor,
    elevation: torch.Tensor,
    roll: torch.Tensor,
    up: str | Sequence[float] = "+z",
    front: str | Sequence[float] = "-y",
) -> torch.Tensor:
    """World-to-camera rotations of cameras looking at the root (module docstring conventions).

    Args:
        azimuth, elevation, roll: (B,) angles in degrees.
        up: the world's up axis (``"+z"``, ``"-y"``, ... or a 3-vector).
        front: the direction the body faces; must be perpendicular to ``up``.

    Returns:
        (B, 3, 3) rotations whose rows are the camera's x (image right), y (image down) and
        z (optical axis, from the camera towards the root) axes in world coordinates, rolled.
    """
    dtype, device = azimuth.dtype, azimuth.device
    u = _axis(up, "up", dtype, device)
    fr = _axis(front, "front", dtype, device)
    if abs(float(u @ fr)) > 1e-6:
        raise MeshposeError(f"front axis {front!r} must be perpendicular to up axis {up!r}")
    left = torch.linalg.cross(u, fr)
    az, el, ro = (torch.deg2rad(a).unsqueeze(-1) for a in (azimuth, elevation, roll))  # (B, 1)
    horizontal = torch.cos(az) * fr + torch.sin(az) * left  # (B, 3) from root towards camera, flat
    to_camera = torch.cos(el) * horizontal + torch.sin(el) * u  # (B, 3) unit, root -> camera
    forward = -to_camera  # optical axis
    right = torch.cos(az) * left - torch.sin(az) * fr  # = forward x up, normalised; never degenerate
    down = torch.linalg.cross(forward, right, dim=-1)
    R0 = torch.stack([right, down, forward], dim=-2)  # (B, 3, 3)
    c, s = torch.cos(ro), torch.sin(ro)  # (B, 1)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    Rz = torch.stack(
        [torch.cat([c, -s, zero], -1), torch.cat([s, c, zero], -1), torch.cat([zero, zero, one], -1)], dim=-2
    )  # rotates camera-frame (x, y) by +roll
    return Rz @ R0


def _uniform(low: float, high: float, batch: int, generator: torch.Generator, dtype) -> torch.Tensor:
    u = torch.rand(batch, generator=generator, device=generator.device, dtype=dtype)
    return low + (high - low) * u


def sample_cameras(
    ranges: CameraRanges,
    batch: int,
    generator: torch.Generator,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    up: str | Sequence[float] = "+z",
    front: str | Sequence[float] = "-y",
) -> Cameras:
    """Draw ``batch`` cameras looking at the root (module docstring for the conventions).

    Args:
        ranges: the parameter ranges.
        batch: number of cameras B.
        generator: source of every random draw; draws are made on its device.
        device: where the returned tensors live (default: the generator's device).
        dtype: floating dtype of the returned tensors.
        up, front: the body's world frame (defaults: Anny, +z up, facing -y).

    Returns:
        :class:`Cameras` with ``t = (0, 0, distance)`` and the principal point at the image
        centre (plus jitter).
    """
    if batch < 0:
        raise MeshposeError(f"batch must be >= 0, got {batch}")
    device = torch.device(device) if device is not None else generator.device
    # Draw in float64 on the generator's device (reproducible), convert at the end.
    f64 = torch.float64
    focal = _uniform(*ranges.focal, batch, generator, f64)
    distance = _uniform(*ranges.distance, batch, generator, f64)
    elevation = _uniform(*ranges.elevation, batch, generator, f64)
    azimuth = _uniform(*ranges.azimuth, batch, generator, f64)
    roll = _uniform(*ranges.roll, batch, generator, f64)
    sizes = torch.tensor(ranges.image_sizes, dtype=f64, device=generator.device)  # (S, 2)
    pick = torch.randint(len(sizes), (batch,), generator=generator, device=generator.device)
    image_size = sizes[pick]  # (B, 2)
    jitter = (torch.rand(batch, 2, generator=generator, device=generator.device, dtype=f64) * 2 - 1)
    principal = image_size / 2 + ranges.principal_jitter * jitter
    R = look_at_rotation(azimuth, elevation, roll, up=up, front=front)
    t = torch.stack([torch.zeros_like(distance), torch.zeros_like(distance), distance], dim=-1)
    out = Cameras(
        R=R, t=t, focal=focal.unsqueeze(-1).expand(batch, 2).clone(), principal=principal, image_size=image_size,
        distance=distance, elevation=elevation, azimuth=azimuth, roll=roll,
    )
    return out.to(device=device, dtype=dtype)


def to_camera(points_world: torch.Tensor, cams: Cameras, root: torch.Tensor | None = None) -> torch.Tensor:
    """World points into each camera's frame: ``R @ (X - root) + t``.

    Args:
        points_world: (B, J, 3) world coordinates, metres.
        cams: B cameras.
        root: (B, 3) the roots the cameras look at, metres; ``None`` = points are root-relative.

    Returns:
        (B, J, 3) camera coordinates, metres (OpenCV frame).
    """
    rel = points_world if root is None else points_world - root.unsqueeze(-2)
    return rel @ cams.R.transpose(-1, -2) + cams.t.unsqueeze(-2)


def project(points_cam: torch.Tensor, cams: Cameras, near: float = 1e-3) -> torch.Tensor:
    """Pinhole projection to pixels.

    Args:
        points_cam: (B, J, 3) camera coordinates, metres.
        cams: B cameras.
        near: points with depth ``z <= near`` (metres) are behind or at the camera.

    Returns:
        (B, J, 2) pixels ``focal * (x, y) / z + principal``; NaN for points with ``z <= near``
        (their gradients are zero, never NaN).
    """
    z = points_cam[..., 2:3]
    in_front = z > near
    safe_z = torch.where(in_front, z, torch.ones_like(z))
    uv = points_cam[..., :2] / safe_z * cams.focal.unsqueeze(-2) + cams.principal.unsqueeze(-2)
    return torch.where(in_front, uv, torch.full_like(uv, float("nan")))


def visibility(
    pixels: torch.Tensor, cams: Cameras, depth: torch.Tensor | None = None, margin: float = 0.0, near: float = 1e-3
) -> torch.Tensor:
    """Which projected joints are inside the image and in front of the camera.

    Args:
        pixels: (B, J, 2) from :func:`project` (NaN marks points behind the camera).
        cams: B cameras.
        depth: optional (B, J) camera-frame z, metres; when given, ``depth > near`` is required
            too (useful for pixels that did not come from :func:`project`).
        margin: pixels to shrink (> 0) or grow (< 0) the image rectangle by on every side.
        near: see :func:`project`.

    Returns:
        (B, J) bool: finite and ``margin <= u < W - margin``, ``margin <= v < H - margin``
        (truncation by the image border), and in front of the camera.
    """
    size = cams.image_size.unsqueeze(-2)  # (B, 1, 2)
    inside = (pixels >= margin) & (pixels < size - margin)  # NaN compares False
    ok = inside.all(-1)
    if depth is not None:
        ok = ok & (depth > near)
    return ok
