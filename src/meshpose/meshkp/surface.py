"""Points on a mesh surface: what the mesh-keypoint model sees instead of the mesh's topology.

Sampling points uniformly by area makes the model blind to how a surface is triangulated: a
scan, a registration and a game asset of the same body give the same point distribution.
"""
from __future__ import annotations

import math

import roma
import torch

__all__ = ["normalise_points", "perturb_surface", "random_rotation", "random_tilt", "random_yaw", "sample_surface",
           "yaw_rotation"]


def sample_surface(vertices: torch.Tensor, faces: torch.Tensor, count: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw points uniformly over the surface of a batch of triangle meshes.

    Args:
        vertices: (B, V, 3) positions.
        faces: (F, 3) or (B, F, 3) vertex indices.
        count: points per mesh.
        generator: random source; its draws are made on its own device (the engine's generators
            live on the CPU) and moved to the vertices' device.

    Returns:
        points (B, count, 3) and the unit normals of their faces (B, count, 3).
    """
    batch, n_vertices = vertices.shape[:2]
    faces = faces.expand(batch, -1, -1) if faces.ndim == 2 else faces
    # one index_select on the flattened vertices, corner by corner (contiguous blocks): the same
    # numbers as a batched gather, ~1.3x faster on the CPU
    offset = torch.arange(batch, device=faces.device)[:, None, None] * n_vertices
    index = (faces.transpose(1, 2) + offset).reshape(-1)  # (B, 3, F)
    corners = vertices.reshape(-1, 3).index_select(0, index).view(batch, 3, -1, 3)
    a, b, c = corners.unbind(1)  # (B, F, 3) each
    cross = torch.linalg.cross(b - a, c - a)
    area = cross.norm(dim=-1)
    draw_on = generator.device if generator is not None else area.device
    chosen = torch.multinomial((area + 1e-12).to(draw_on), count, replacement=True,
                               generator=generator).to(area.device)  # (B, count)
    pick = chosen[..., None].expand(-1, -1, 3)
    a, b, c, cross = (torch.gather(x, 1, pick) for x in (a, b, c, cross))
    u, v = torch.rand(2, batch, count, 1, generator=generator, device=draw_on, dtype=vertices.dtype).to(vertices.device)
    root = u.sqrt()  # uniform over the triangle
    points = (1 - root) * a + root * (1 - v) * b + root * v * c
    normals = cross / cross.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return points, normals


def normalise_points(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre on the centroid and divide by the bounding-box diagonal.

    Args:
        points: (B, N, 3).

    Returns:
        normalised (B, N, 3), centre (B, 1, 3), scale (B, 1, 1): ``points = normalised * scale + centre``.
    """
    centre = points.mean(1, keepdim=True)
    scale = (points.amax(1) - points.amin(1)).norm(dim=-1)[:, None, None].clamp_min(1e-9)
    return (points - centre) / scale, centre, scale


def yaw_rotation(angle: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations by ``angle`` (B,) radians about the vertical y axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], -1).view(-1, 3, 3)


def random_yaw(batch: int, generator: torch.Generator, device) -> torch.Tensor:
    """(B, 3, 3) rotations about y by uniform random angles."""
    return yaw_rotation(torch.rand(batch, generator=generator, device=device) * 2 * math.pi)


def random_rotation(batch: int, generator: torch.Generator, device) -> torch.Tensor:
    """(B, 3, 3) rotations drawn uniformly from SO(3) (normalised Gaussian quaternions)."""
    quaternion = torch.randn(batch, 4, generator=generator, device=device)
    return roma.unitquat_to_rotmat(quaternion / quaternion.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def random_tilt(batch: int, max_degrees: float, generator: torch.Generator, device) -> torch.Tensor:
    """(B, 3, 3) rotations about a random horizontal axis (perpendicular to y) by a uniform angle
    in [0, ``max_degrees``]."""
    heading = torch.rand(batch, generator=generator, device=device) * 2 * math.pi
    angle = torch.rand(batch, generator=generator, device=device) * math.radians(max_degrees)
    axis = torch.stack([torch.cos(heading), torch.zeros_like(heading), torch.sin(heading)], -1)
    return roma.rotvec_to_rotmat(axis * angle[:, None])


def perturb_surface(points: torch.Tensor, normals: torch.Tensor, generator: torch.Generator, noise: float = 0.0,
                    hole_probability: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface points as a rough scan would give them.

    Args:
        points, normals: (B, N, 3) from :func:`sample_surface`.
        generator: random source (its device's draws are moved to the points').
        noise: each point moves along its normal by N(0, ``noise`` x the cloud's bounding-box diagonal).
        hole_probability: a cloud loses, with this probability, the points within a radius of
            5-12 % of its diagonal around one of its points; their places are taken by copies of
            the remaining points (the count stays N).

    Returns:
        points, normals (B, N, 3).
    """
    batch, count = points.shape[:2]
    draw_on = generator.device

    def draw(*shape):
        return torch.rand(*shape, generator=generator, device=draw_on).to(points.device)

    diagonal = (points.amax(1) - points.amin(1)).norm(dim=-1)  # (B,)
    if noise:
        step = torch.randn(batch, count, 1, generator=generator, device=draw_on).to(points.device)
        points = points + normals * step * (noise * diagonal)[:, None, None]
    if hole_probability:
        holed = draw(batch) < hole_probability
        centre = torch.gather(points, 1, (draw(batch) * count).long().clamp_max(count - 1)[:, None, None]
                              .expand(-1, 1, 3))
        radius = (0.05 + 0.07 * draw(batch)) * diagonal
        lost = ((points - centre).norm(dim=-1) < radius[:, None]) & holed[:, None]  # (B, N); never all points
        # each lost point takes the place of a random kept one
        keep_weights = (~lost).to(points.dtype) + 1e-12 * lost.all(1, keepdim=True)
        source = torch.multinomial(keep_weights.to(draw_on), count, replacement=True,
                                   generator=generator).to(points.device)
        index = torch.where(lost, source, torch.arange(count, device=points.device))[..., None].expand(-1, -1, 3)
        points, normals = torch.gather(points, 1, index), torch.gather(normals, 1, index)
    return points, normals
