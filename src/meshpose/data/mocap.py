"""Motion-capture clips: world joint positions in metres from BVH, ASF/AMC and AMASS files.

:func:`meshpose.data.mocap_files.read_mocap` picks the reader from the extension:

``.bvh``
    Biovision hierarchy (:mod:`meshpose.data.bvh`): any skeleton, forward kinematics over all
    frames.
``.amc``
    Acclaim motion with its ``.asf`` skeleton (:mod:`meshpose.data.asf_amc`); the skeleton is
    passed as ``asf=`` or found next to the motion (see :func:`meshpose.data.asf_amc.find_asf`).
``.npz``
    An AMASS SMPL-H parameter file (:mod:`meshpose.data.amass`). It holds body-model
    parameters, not a skeleton, so it comes back as an
    :class:`~meshpose.data.amass.AmassMotion` (no forward kinematics: that needs a body model).

BVH and AMC come back as a :class:`MocapClip`: ``(T, J, 3)`` float32 world joint positions in
**metres**, in the file's own axes (both formats are y-up by convention), joints in depth-first
file order, and the parent index of every joint.

Units. Neither format says reliably what its length unit is, so by default the scale is worked
out from the skeleton: the standing height in file units (the 95th percentile over frames of
the vertical extent of the joints, as :func:`standing_height`; if that fits no unit, the rest
pose's extent) is matched against a human of 1.2-2.1 m by :func:`infer_unit_scale` (metres,
centimetres, inches or millimetres; the four ranges do not overlap). ASF/AMC first checks its
own convention (``length`` multiplier, inches) on the rest pose. Pass ``unit_scale`` to
override. Measured on the development data (``/work/shared/data/mocap``):

* CMU cgspeed BVH (Daz-friendly release): **centimetres** (0.01). Every take is retargeted
  onto the same Daz gen3/gen4 skeleton (Daz Studio works in cm): in the rest pose the eyes are
  69.7 units above the hip joint and the ankles 79.3 below it, a 149-unit joint extent, i.e. a
  1.49 m extent (~1.7 m stature) in cm, but an impossible 3.8 m in inches. Over the takes the
  standing height is 1.45 m (median; 1.29-1.85 m, low for crouching takes, high with raised
  arms). The offsets only *look* like inches because the original CMU ASF files are in inches.
* HDM05 ASF/AMC: ``length 0.45``, so metres = value / 0.45 * 0.0254 (0.05644 m per unit).
  The rest poses of the five actors are 1.59-1.76 m tall (toe tip to top of the head);
  standing height over the takes 1.67 m (median; 1.46-2.16 m, high when throwing with the
  fingertips overhead).
* Bandai-Namco BVH: centimetres (0.01). Standing height 1.40 m (median; 1.24-1.82 m): the
  top joint ``Head`` is the base of the skull (its end site has a zero offset), and
  ``joint_Root`` is the hips projected onto the floor (y = 0).

The joint extent is the distance between the highest joint (the head joint, not the top of the
skull) and the lowest one (toes / end of foot), so it is ~5-10 % below the person's stature.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meshpose.errors import InputFileError
from meshpose.io._util import read_bytes, require_file

__all__ = [
    "HUMAN_HEIGHT_RANGE_M",
    "UNIT_SCALES",
    "MocapClip",
    "children",
    "infer_unit_scale",
    "standing_height",
]

#: Candidate length units, file units -> metres, tried in this order by :func:`infer_unit_scale`.
UNIT_SCALES: dict[str, float] = {"m": 1.0, "cm": 0.01, "inch": 0.0254, "mm": 0.001}

#: The joint extent of a standing human, metres, that :func:`infer_unit_scale` accepts.
HUMAN_HEIGHT_RANGE_M: tuple[float, float] = (1.2, 2.1)

_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass
class MocapClip:
    """A motion-capture take as world joint positions.

    Attributes:
        joint_names: ``J`` names in depth-first file order (BVH: the ``ROOT``/``JOINT`` names,
            plus ``<parent>_end`` for end sites when they were kept; ASF/AMC: ``"root"`` and
            then the bone names, each position being the *end* point of that bone).
        parents: ``(J,)`` int64 index of each joint's parent, ``-1`` for a root. Parents come
            before their children.
        positions: ``(T, J, 3)`` float32 world joint positions in **metres**, in the source's
            own axes (not rotated to a common frame).
        fps: frames per second.
        up_axis: the source's vertical axis, ``"y"`` or ``"z"``.
        source: the file the clip was read from.
        unit_scale: metres per file length unit that was applied to the file's lengths.
    """

    joint_names: tuple[str, ...]
    parents: np.ndarray
    positions: np.ndarray
    fps: float
    up_axis: str
    source: str
    unit_scale: float

    def __post_init__(self) -> None:
        self.joint_names = tuple(self.joint_names)
        self.parents = np.asarray(self.parents, dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.float32)
        J = len(self.joint_names)
        if self.parents.shape != (J,):
            raise ValueError(f"parents has shape {self.parents.shape}, expected ({J},)")
        if self.positions.ndim != 3 or self.positions.shape[1:] != (J, 3):
            raise ValueError(f"positions has shape {self.positions.shape}, expected (T, {J}, 3)")
        if any(not (-1 <= p < j) for j, p in enumerate(self.parents.tolist())):
            raise ValueError("every parent index must be -1 or a joint listed before its child")
        if self.up_axis not in ("y", "z"):
            raise ValueError(f"up_axis must be 'y' or 'z', got {self.up_axis!r}")

    @property
    def num_frames(self) -> int:
        """``T``, the number of frames."""
        return int(self.positions.shape[0])

    @property
    def num_joints(self) -> int:
        """``J``, the number of joints."""
        return len(self.joint_names)

    @property
    def duration(self) -> float:
        """Length of the take in seconds (``T / fps``)."""
        return self.num_frames / self.fps

    def joint_index(self, name: str) -> int:
        """Index of the joint called ``name`` (KeyError if there is none)."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"no joint {name!r} in this clip") from None


def children(parents: np.ndarray | list[int]) -> list[list[int]]:
    """The children of every joint.

    Args:
        parents: ``(J,)`` parent indices, ``-1`` for roots.

    Returns:
        ``J`` lists of child indices, in increasing order.
    """
    parents = np.asarray(parents, dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(len(parents))]
    for j, p in enumerate(parents.tolist()):
        if p >= 0:
            out[p].append(j)
    return out


def vertical_extent(positions: np.ndarray, up_axis: str = "y", percentile: float = 95.0) -> float:
    """Robust standing height of ``(T, J, 3)`` joint positions, in their own length unit.

    The per-frame extent ``max_j - min_j`` of the ``up_axis`` coordinate, and its
    ``percentile``-th percentile over frames (so a crouching or lying part of the take, or a
    few glitched frames, do not change the answer). ``nan`` when there are no frames.
    """
    positions = np.asarray(positions)
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must be (T, J, 3), got {positions.shape}")
    if positions.shape[0] == 0 or positions.shape[1] == 0:
        return float("nan")
    up = positions[..., _AXES[up_axis]]
    extent = up.max(axis=1) - up.min(axis=1)
    return float(np.percentile(extent, percentile))


def standing_height(clip: MocapClip, percentile: float = 95.0) -> float:
    """Robust standing height of a clip in metres.

    The ``percentile``-th percentile over frames of the vertical extent (``max - min`` along
    ``clip.up_axis``) of the joint positions. It measures lowest joint to highest joint, so it
    is somewhat below the person's stature (the head joint is not the top of the head).
    """
    return vertical_extent(clip.positions, clip.up_axis, percentile)


def infer_unit_scale(height: float) -> float:
    """Metres per file unit for a skeleton whose standing joint extent is ``height`` file units.

    The candidates of :data:`UNIT_SCALES` (metres, centimetres, inches, millimetres) are tried
    in turn and the first that makes the height human (:data:`HUMAN_HEIGHT_RANGE_M`,
    1.2-2.1 m) wins. The four accepted ranges (1.2-2.1, 120-210, 47-83, 1200-2100 file units)
    do not overlap, so the answer is unambiguous. Example: ``infer_unit_scale(67.0)`` is
    ``0.0254`` (67 inches = 1.70 m).

    Raises:
        ValueError: the height is not finite and positive or fits none of the units; pass an
            explicit scale instead.
    """
    height = float(height)
    if not np.isfinite(height) or height <= 0:
        raise ValueError(f"cannot infer the length unit from a skeleton height of {height}")
    lo, hi = HUMAN_HEIGHT_RANGE_M
    for scale in UNIT_SCALES.values():
        if lo <= height * scale <= hi:
            return scale
    raise ValueError(
        f"a skeleton {height:.4g} units tall is not a human of {lo}-{hi} m in metres, "
        "centimetres, inches or millimetres; pass unit_scale"
    )


def resolve_unit_scale(
    heights: float | list[float], unit_scale: float | None, path: str | os.PathLike
) -> float:
    """``unit_scale`` if given (checked to be finite and > 0), else the inferred scale.

    Args:
        heights: one or more estimates of the skeleton's standing height in file units (e.g.
            the 95th-percentile joint extent of the motion, then the rest pose's extent); the
            first one :func:`infer_unit_scale` accepts decides. Taking several makes the
            inference survive takes where the person never stands upright or holds the arms
            overhead throughout.
        unit_scale: an explicit scale, or ``None``.
        path: the file, for the error message.

    Raises:
        ValueError: ``unit_scale`` is not a finite number > 0.
        InputFileError: no estimate fits a human (names ``path``).
    """
    if unit_scale is not None:
        unit_scale = float(unit_scale)
        if not np.isfinite(unit_scale) or unit_scale <= 0:
            raise ValueError(f"unit_scale must be a finite number > 0, got {unit_scale}")
        return unit_scale
    heights = [heights] if np.isscalar(heights) else list(heights)
    first_error = None
    for h in heights:
        try:
            return infer_unit_scale(h)
        except ValueError as exc:
            first_error = first_error or exc
    raise InputFileError(str(first_error), path) from None


def axis_rotations(axis: str, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices about one coordinate axis (right-handed, column vectors).

    Args:
        axis: ``"x"``, ``"y"`` or ``"z"``.
        angles: ``(...)`` angles in radians.

    Returns:
        ``(..., 3, 3)`` float64 matrices ``R`` such that ``R @ v`` rotates ``v``
        counter-clockwise by the angle when looking down the axis towards the origin; e.g.
        ``Rz(90 deg) @ (1, 0, 0) = (0, 1, 0)``.
    """
    angles = np.asarray(angles, dtype=np.float64)
    c, s = np.cos(angles), np.sin(angles)
    R = np.zeros(angles.shape + (3, 3))
    i = _AXES[axis]
    j, k = (i + 1) % 3, (i + 2) % 3
    R[..., i, i] = 1.0
    R[..., j, j] = c
    R[..., k, k] = c
    R[..., j, k] = -s
    R[..., k, j] = s
    return R


def decode_text(path: Path) -> tuple[str, ...]:
    """The lines of a text file; UTF-8 (with optional BOM), falling back to Latin-1.

    Mocap files are ASCII, but comments often hold Latin-1 text (HDM05's AMC headers do), so
    undecodable bytes are not an error. Missing, empty or folder paths are InputFileError.
    """
    data = read_bytes(require_file(path, "motion-capture file"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return tuple(text.splitlines())
