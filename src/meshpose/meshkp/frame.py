"""The frame a mesh is read in: turned y-up, centred and scaled to a unit box, in float64.

The network sees float32 coordinates of about unit size. Centring, scaling and the surface-point
draw happen in float64 *before* the conversion, and the centre is added back in float64 after it, so a body far from
the origin (translated by 1e8, georeferenced scans) keeps millimetre precision; float32 alone
resolves 1e8 only to 8 units. The box is that of the vertices the faces use: an unreferenced
vertex (a stray point, a leftover of an edit) moves nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["UP_AXES", "UnitFrame", "axis_rotation", "from_y_up", "rotation_onto_y", "to_y_up", "unit_frame"]

#: The up axes a mesh may have, as (axis order, signs) that turn it y-up by a proper rotation.
UP_AXES = {"x": ((1, 0, 2), (-1, 1, 1)), "y": ((0, 1, 2), (1, 1, 1)), "z": ((0, 2, 1), (1, 1, -1)),
           "-y": ((0, 1, 2), (1, -1, -1)), "-z": ((0, 2, 1), (1, -1, 1))}


def to_y_up(points: np.ndarray, up: str) -> np.ndarray:
    """(N, 3) points of a mesh whose up axis is ``up`` -> the same points y-up (axes reordered
    and flipped: a proper rotation, no mirroring; exact in any float type)."""
    order, signs = UP_AXES[up]
    # C order: numpy gives the fancy-indexed copy in Fortran order, which makes gathering rows slow
    return np.ascontiguousarray(points[:, order] * np.array(signs, dtype=points.dtype))


def from_y_up(points: np.ndarray, up: str) -> np.ndarray:
    """The inverse of :func:`to_y_up`: (N, 3) y-up points -> the mesh's own axes."""
    order, signs = UP_AXES[up]
    out = np.empty_like(points)
    out[:, list(order)] = points * np.array(signs, dtype=points.dtype)
    return out


@dataclass(frozen=True)
class UnitFrame:
    """``unit = (y_up - centre) / size``: centre (3,) and size (the box diagonal), float64, mesh units."""

    centre: np.ndarray
    size: float

    def to_mesh(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) unit-frame points (any float type) -> float64 y-up points in mesh units."""
        return np.asarray(points, np.float64) * self.size + self.centre


def unit_frame(vertices: np.ndarray, faces: np.ndarray) -> tuple[UnitFrame, np.ndarray]:
    """The unit frame of a y-up mesh and its vertices in it.

    Args:
        vertices: (V, 3) float64, y up, finite.
        faces: (F, 3) int64 indices into ``vertices``, all in range.

    Returns:
        the frame; (V, 3) float64 vertices in it (the used ones within [-0.5, 0.5], unused ones 0).
        Sample them in float64 too: float32 vertices would move the area weights of a far-off
        mesh's faces enough to change which faces a point draw picks.

    Raises:
        ValueError: the used vertices are all one point, or span a box too large for float64.
    """
    used = np.zeros(len(vertices), bool)
    used[faces.reshape(-1)] = True
    everything = bool(used.all())
    corners = vertices if everything else vertices[used]
    # column by column: numpy's axis-0 reduction of an (N, 3) array is ~20x slower
    low = np.array([corners[:, i].min() for i in range(3)])
    high = np.array([corners[:, i].max() for i in range(3)])
    centre = low / 2 + high / 2  # (low + high) / 2 could overflow
    with np.errstate(over="ignore", invalid="ignore"):
        size = float(np.linalg.norm(high - low))
    if not np.isfinite(size):
        raise ValueError("the mesh spans more than float64 can hold")
    if size == 0:
        raise ValueError("mesh has no surface area")
    with np.errstate(over="ignore", invalid="ignore"):  # unused far vertices may overflow: zeroed below
        unit = (vertices - centre) / size
    if not everything:
        unit[~used] = 0.0
    return UnitFrame(centre, size), np.ascontiguousarray(unit)


def axis_rotation(up: str) -> np.ndarray:
    """(3, 3) float64 rotation ``R`` of :func:`to_y_up` for ``up``: ``to_y_up(p, up) == p @ R.T``
    (entries 0 and +-1, so products with it are exact)."""
    order, signs = UP_AXES[up]
    rotation = np.zeros((3, 3))
    rotation[np.arange(3), list(order)] = signs
    return rotation


def rotation_onto_y(direction: np.ndarray) -> np.ndarray:
    """(3, 3) float64 rotation ``R`` that turns ``direction`` (3,) onto +y by the smallest angle
    (about ``direction x y``); a half turn about x for -y. ``p @ R.T`` turns points with it."""
    up = np.asarray(direction, np.float64) / np.linalg.norm(direction)
    axis = np.array([-up[2], 0.0, up[0]])  # up x (0, 1, 0)
    sine, cosine = float(np.linalg.norm(axis)), float(up[1])
    if sine < 1e-12:
        return np.eye(3) if cosine > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sine
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + sine * cross + (1 - cosine) * cross @ cross  # Rodrigues
