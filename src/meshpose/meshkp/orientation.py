"""Which way is up: a test-time search for the turn under which a mesh reads as an upright body.

The point model learnt upright bodies (y up) at every turn about the vertical, not tilted ones,
so a mesh must be read with its up axis along y. When the caller does not know the axis,
:func:`search_up` finds it with the model itself as the judge:

1. **coarse**: read the mesh with each of the 12 icosahedron vertex directions as up (every
   direction is within 37 degrees of one) and keep the one that reads most like a body (highest
   humanness, :mod:`meshpose.meshkp.humanness`; ties by confidence);
2. **fine**: tilt the up direction by 16 degrees towards four sides and move to the tilt whose
   reading has the highest mean joint confidence, while it rises; then 8, 4 and 2 degrees.

Humanness tells an upright body from a lying or upside-down one, but it saturates at 1 within
about 20 degrees of upright. The confidence head (trained to say whether each joint is within
reach of the truth) does not: on a walking Anny body its mean is 0.977 upright, 0.95 at 10
degrees of tilt, 0.88 at 20 and 0.75 at 30, so it is what the fine stage climbs.

Each turn is read twice (two network passes); the search reads 12 + 16 to 32 turns, four turns
per forward pass.
``benchmarks/bench_mesh_orientation.py`` measures the result on human_seg meshes and Anny bodies
under random rotations.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from meshpose.meshkp.frame import rotation_onto_y

__all__ = ["ICOSAHEDRON", "Oriented", "search_up"]

_GOLDEN = (1 + 5 ** 0.5) / 2
#: The 12 vertex directions of a regular icosahedron, unit length.
ICOSAHEDRON = np.array([v for a in (-1, 1) for b in (-_GOLDEN, _GOLDEN)
                        for v in ((0, a, b), (a, b, 0), (b, 0, a))]) / np.hypot(1, _GOLDEN)
_TILTS_DEG = (16.0, 8.0, 4.0, 2.0)
_MOVES_PER_TILT = 2


@dataclass
class Oriented:
    """One reading of a mesh with one direction as up.

    Attributes:
        up: (3,) unit direction in the mesh's frame that was turned onto +y.
        rotation: (3, 3) float64 ``R`` that did it; the mesh was read as ``vertices @ R.T``.
        score: the reading's humanness in [0, 1].
        confidence: its mean joint confidence in [0, 1].
        reading: whatever the ``read`` callable returned for it.
    """

    up: np.ndarray
    rotation: np.ndarray
    score: float
    confidence: float
    reading: object


def _tilted(up: np.ndarray, degrees: float) -> list[np.ndarray]:
    """Four unit directions ``degrees`` away from ``up`` (3,), a quarter turn apart around it."""
    side = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    other = np.cross(up, side)
    angle = np.radians(degrees)
    return [np.cos(angle) * up + np.sin(angle) * d for d in (side, other, -side, -other)]


def search_up(read: Callable[[np.ndarray], list[tuple[float, float, object]]]) -> Oriented:
    """The up direction of a mesh under which it reads most like an upright body (module doc).

    Args:
        read: ``read(R)`` reads the mesh turned by each of the (T, 3, 3) rotations ``R`` (points
            ``p @ R[t].T``; one call per stage, so that a caller can batch them) and returns T
            ``(humanness, mean confidence, reading)``.

    Returns:
        the best :class:`Oriented` reading.
    """
    def attempt(directions):
        ups = [np.asarray(up, np.float64) / np.linalg.norm(up) for up in directions]
        rotations = np.stack([rotation_onto_y(up) for up in ups])
        return [Oriented(up, rotation, float(score), float(confidence), reading)
                for up, rotation, (score, confidence, reading) in zip(ups, rotations, read(rotations))]

    best = max(attempt(ICOSAHEDRON), key=lambda o: (o.score, o.confidence))
    for degrees in _TILTS_DEG:
        for _ in range(_MOVES_PER_TILT):
            step = max(attempt(_tilted(best.up, degrees)), key=lambda o: o.confidence)
            if step.confidence <= best.confidence:
                break
            best = step
    return best
