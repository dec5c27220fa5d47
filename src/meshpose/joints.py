"""Named, ordered joint sets and conversion between them by canonical joint name.

Every keypoint format meshpose reads or writes is a :class:`JointSet`: an ordered tuple of
*canonical joint names* plus left/right flip pairs and drawing edges. Canonical names are
lowercase snake_case and are shared between sets exactly when they denote the same anatomical
point, so converting between two sets is mostly copying columns by name
(:func:`convert`). Joints the source set lacks are synthesised by the few rules below, and
otherwise filled with NaN (confidence 0).

Sets (``JOINT_SETS``; ``meshpose joints`` prints them with :func:`describe`)::

    name               J   order taken from
    coco17            17   COCO person keypoints
    coco_wholebody23  23   COCO-WholeBody body (= coco17) + 6 foot keypoints
    openpose18        18   OpenPose COCO-18 output
    body25            25   OpenPose BODY_25 output
    h36m17            17   Human3.6M 17-joint subset (VideoPose3D / 3d-pose-baseline order)
    h36m17_anatomical 17   the same joints as Anny's anatomical joint centres (same order)
    mpii16            16   Stacked-Hourglass order of the 3d-pose-baseline H36M detections
    smpl24            24   SMPL kinematic tree
    seed12            12   joints of the mesh-keypoints dataset

``h36m17`` and ``h36m17_anatomical`` have the same joints and order (converting between them
copies every column); they differ in where a body model puts them: on Anny, ``h36m17`` is
Human3.6M's own definition, regressed from the mesh vertices by a regressor fitted to Human3.6M
S1, and ``h36m17_anatomical`` Anny's skeleton joint centres (see :mod:`meshpose.body.landmarks`).
Where a file's joint names are matched to a set, ``h36m17`` is chosen.

Naming decisions (where datasets disagree on what a label means):

* ``pelvis``: H36M "Hip"/"Pelvis" (the root), Stacked-Hourglass "Hip", OpenPose BODY_25
  "MidHip" and SMPL joint 0. All denote the centre between the two hip joints. (SMPL's root
  sits slightly higher than the exact midpoint; we accept that.)
* ``left_hip``/``right_hip`` etc.: COCO/OpenPose label hips, shoulders, knees ... on the image
  near the joint, while H36M and SMPL give joint *centres* (motion-capture / regressed). They
  denote the same joint, so they share the name; expect a systematic offset (COCO hips are
  wider than SMPL hip centres).
* ``left_ankle``: H36M "LFoot" and Stacked-Hourglass "LFoot" are the ankle joint, not the toes.
* ``neck``: OpenPose's "Neck" (defined by OpenPose as the shoulder midpoint) and SMPL joint 12
  (the lower-neck joint). SMPL's neck is a little above the shoulder midpoint; it is the joint
  that SPIN-style pipelines use for OpenPose's neck, so the name is shared.
* ``thorax``: H36M / Stacked-Hourglass "Thorax", the base of the neck between the shoulders.
  Kept distinct from ``neck`` because both appear in formats that are converted into each
  other; when absent it is synthesised from the shoulders (same point as OpenPose's neck).
* ``spine``: H36M / Stacked-Hourglass "Spine", mid-torso. SMPL's ``spine1``, ``spine2``,
  ``spine3`` are separate vertebral joints at other heights and keep their own names.
* ``neck_nose``: H36M "Neck/Nose" (index 9 of h36m17) sits between the chin and the nose; it is
  neither the COCO ``nose`` nor the ``neck``, so it has its own name and is never synthesised.
* ``head_top``: Stacked-Hourglass/MPII "Head" is the top of the head. H36M's 17-joint "Head"
  is also a marker on top of the head, and 3d-pose-baseline maps SH "Head" onto it, so both are
  ``head_top``. No other set can synthesise it.
* ``head``: SMPL joint 15, the head pivot inside the skull at about ear height; synthesised
  from the ear midpoint.
* SMPL-only joints keep SMPL's names: ``spine1``, ``spine2``, ``spine3``, ``left_collar``,
  ``right_collar``, ``left_foot``/``right_foot`` (the ball of the foot, *not* the big toe),
  ``left_hand``/``right_hand`` (the knuckles, *not* the wrist).
* ``left_big_toe``, ``left_small_toe``, ``left_heel`` (and right): BODY_25 and COCO-WholeBody
  foot keypoints, which mean the same surface points.

Synthesis rules (:func:`conversion_rules`), applied only for joints the *source set lacks*::

    joint    = mean of                       why
    neck     = left_shoulder, right_shoulder OpenPose defines its neck this way
    pelvis   = left_hip, right_hip           BODY_25 MidHip is defined this way
    thorax   = left_shoulder, right_shoulder base of the neck, between the shoulders
    spine    = pelvis, thorax                H36M spine lies about half-way (approximation)
    head     = left_ear, right_ear           the head pivot is at ear height, mid-way

Inputs may themselves be synthesised (``spine`` from a synthesised ``pelvis`` and ``thorax``).
Per sample, a rule yields a point only where *all* its inputs are available (finite
coordinates and, with ``confidence_last=True``, confidence > 0); the synthesised confidence is
the minimum of the inputs' confidences. Everywhere else the joint is NaN with confidence 0.
Joints the source set has are always copied unchanged, even where the source value is NaN.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from meshpose.errors import MeshposeError, UnknownNameError

__all__ = [
    "JointSet",
    "JOINT_SETS",
    "get_joint_set",
    "flip_permutation",
    "convert",
    "conversion_rules",
    "describe",
]


@dataclass(frozen=True)
class JointSet:
    """A named, ordered set of joints.

    Attributes:
        name: the set's name, e.g. ``"coco17"``; the key in :data:`JOINT_SETS`.
        names: canonical joint names in this set's order; ``names[i]`` is joint ``i``.
        flip_pairs: ``(left_index, right_index)`` for every ``left_x``/``right_x`` pair present.
        edges: ``(parent_index, child_index)`` skeleton edges for drawing; they connect all joints.
        description: one line saying where the order comes from.
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    edges: tuple[tuple[int, int], ...]
    description: str

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(set(self.names)) != n:
            raise ValueError(f"joint set {self.name!r} has duplicate joint names")
        for a, b in tuple(self.flip_pairs) + tuple(self.edges):
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"joint set {self.name!r}: bad index pair {(a, b)}")
        for left, right in self.flip_pairs:
            if _mirror_name(self.names[left]) != self.names[right] or not self.names[left].startswith("left_"):
                raise ValueError(f"joint set {self.name!r}: flip pair {(left, right)} is not left_x/right_x")

    def __len__(self) -> int:
        """Number of joints J."""
        return len(self.names)

    def index(self, joint_name: str) -> int:
        """Position of ``joint_name`` in this set.

        Raises:
            UnknownNameError: the set has no joint of that name (the message lists its joints).
        """
        try:
            return self.names.index(joint_name)
        except ValueError:
            raise UnknownNameError(
                f"joint set {self.name!r} has no joint {joint_name!r}; its joints are: {', '.join(self.names)}"
            ) from None


def _mirror_name(joint_name: str) -> str:
    """``left_x`` <-> ``right_x``; centre joints map to themselves."""
    if joint_name.startswith("left_"):
        return "right_" + joint_name[len("left_"):]
    if joint_name.startswith("right_"):
        return "left_" + joint_name[len("right_"):]
    return joint_name


def _make(name: str, names: Sequence[str], edges: Sequence[tuple[str, str]], description: str) -> JointSet:
    """Build a JointSet from names; edges are given by name, flip pairs are derived from names."""
    names = tuple(names)
    pos = {n: i for i, n in enumerate(names)}
    flip_pairs = tuple(
        (i, pos[_mirror_name(n)]) for i, n in enumerate(names) if n.startswith("left_") and _mirror_name(n) in pos
    )
    return JointSet(
        name=name,
        names=names,
        flip_pairs=flip_pairs,
        edges=tuple((pos[a], pos[b]) for a, b in edges),
        description=description,
    )


def _limb_chain(*names: str) -> list[tuple[str, str]]:
    """Edges along a chain: ``a-b, b-c, ...`` (parent first)."""
    return list(zip(names[:-1], names[1:]))


def _both_sides(*chain: str) -> list[tuple[str, str]]:
    """The chain for the left side and the same chain for the right side.

    Names starting with ``"{s}_"`` are formatted with the side, others are used as is.
    """
    out: list[tuple[str, str]] = []
    for side in ("left", "right"):
        out += _limb_chain(*(n.format(s=side) for n in chain))
    return out


def _h36m17_edges() -> list[tuple[str, str]]:
    """The skeleton of Human3.6M's 17 joints (shared by ``h36m17`` and ``h36m17_anatomical``)."""
    return (_both_sides("pelvis", "{s}_hip", "{s}_knee", "{s}_ankle")
            + _limb_chain("pelvis", "spine", "thorax", "neck_nose", "head_top")
            + _both_sides("thorax", "{s}_shoulder", "{s}_elbow", "{s}_wrist"))


_COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO's own skeleton without the eye-eye / eye-ear-shoulder redundancy: face fan from the nose,
# ears to shoulders (as COCO draws them), torso box, limbs.
_COCO17_EDGES = (
    _both_sides("nose", "{s}_eye", "{s}_ear", "{s}_shoulder", "{s}_elbow", "{s}_wrist")
    + [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")]
    + _both_sides("{s}_shoulder", "{s}_hip", "{s}_knee", "{s}_ankle")
)
_FOOT6 = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")

_OPENPOSE18_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
_BODY25_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "pelvis",  # OpenPose "MidHip"
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)
_H36M17_NAMES = (
    "pelvis",  # "Hip" / "Pelvis", the root
    "right_hip", "right_knee", "right_ankle",  # "RFoot" is the ankle
    "left_hip", "left_knee", "left_ankle",
    "spine", "thorax",
    "neck_nose",  # "Neck/Nose": between chin and nose, neither COCO nose nor neck
    "head_top",  # "Head": marker on top of the head
    "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist",
)
_MPII16_NAMES = (
    "right_ankle", "right_knee", "right_hip",  # "RFoot" is the ankle
    "left_hip", "left_knee", "left_ankle",
    "pelvis",  # "Hip"
    "spine", "thorax",
    "head_top",  # "Head"
    "right_wrist", "right_elbow", "right_shoulder",
    "left_shoulder", "left_elbow", "left_wrist",
)
_SMPL24_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
# SMPL's kinematic tree: parent of each joint (-1 for the root).
_SMPL24_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
_SEED12_NAMES = (
    "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "pelvis", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# Centre-rooted trees used by the OpenPose, H36M and seed sets.
_OPENPOSE_BODY_EDGES = (
    [("neck", "nose")]
    + _both_sides("nose", "{s}_eye", "{s}_ear")
    + _both_sides("neck", "{s}_shoulder", "{s}_elbow", "{s}_wrist")
)

_SETS = (
    _make(
        "coco17", _COCO17_NAMES, _COCO17_EDGES,
        "COCO person keypoints order (the 17 body keypoints of the COCO annotation files).",
    ),
    _make(
        "coco_wholebody23", _COCO17_NAMES + _FOOT6,
        _COCO17_EDGES
        + [(f"{s}_ankle", f"{s}_{f}") for s in ("left", "right") for f in ("big_toe", "small_toe", "heel")],
        "COCO-WholeBody body+foot keypoints: the 17 COCO keypoints, then big toe, small toe, heel (left, right).",
    ),
    _make(
        "openpose18", _OPENPOSE18_NAMES,
        _OPENPOSE_BODY_EDGES + _both_sides("neck", "{s}_hip", "{s}_knee", "{s}_ankle"),
        "OpenPose COCO-18 output order (COCO keypoints plus a neck, right side before left).",
    ),
    _make(
        "body25", _BODY25_NAMES,
        _OPENPOSE_BODY_EDGES
        + [("neck", "pelvis")]
        + _both_sides("pelvis", "{s}_hip", "{s}_knee", "{s}_ankle", "{s}_big_toe", "{s}_small_toe")
        + [("left_ankle", "left_heel"), ("right_ankle", "right_heel")],
        "OpenPose BODY_25 output order (COCO-18 plus MidHip as pelvis and 6 foot keypoints).",
    ),
    _make(
        "h36m17", _H36M17_NAMES, _h36m17_edges(),
        "Human3.6M 17-joint subset of the 32-joint skeleton (VideoPose3D / 3d-pose-baseline order).",
    ),
    _make(
        "h36m17_anatomical", _H36M17_NAMES, _h36m17_edges(),
        "h36m17's joints and order as the body model's anatomical joint centres (not Human3.6M's).",
    ),
    _make(
        "mpii16", _MPII16_NAMES,
        _both_sides("pelvis", "{s}_hip", "{s}_knee", "{s}_ankle")
        + _limb_chain("pelvis", "spine", "thorax", "head_top")
        + _both_sides("thorax", "{s}_shoulder", "{s}_elbow", "{s}_wrist"),
        "Stacked-Hourglass 16-joint order of the 3d-pose-baseline Human3.6M detections (MPII-style).",
    ),
    _make(
        "smpl24", _SMPL24_NAMES,
        [(_SMPL24_NAMES[p], _SMPL24_NAMES[c]) for c, p in enumerate(_SMPL24_PARENTS) if p >= 0],
        "SMPL body-model joints in kinematic-tree order (rows of the SMPL joint regressor).",
    ),
    _make(
        "seed12", _SEED12_NAMES,
        [("pelvis", "neck")]
        + _both_sides("neck", "{s}_shoulder", "{s}_elbow", "{s}_wrist")
        + _both_sides("pelvis", "{s}_knee", "{s}_ankle"),
        "The 12 joints of the mesh-keypoints dataset (no face, hips or feet; pelvis is the root).",
    ),
)

#: All joint sets by name, in the order :func:`describe` prints them.
JOINT_SETS: dict[str, JointSet] = {s.name: s for s in _SETS}

# joint -> joints it is the mean of; dict order is the documentation order.
_RULES: dict[str, tuple[str, ...]] = {
    "neck": ("left_shoulder", "right_shoulder"),
    "pelvis": ("left_hip", "right_hip"),
    "thorax": ("left_shoulder", "right_shoulder"),
    "spine": ("pelvis", "thorax"),
    "head": ("left_ear", "right_ear"),
}


def conversion_rules() -> dict[str, tuple[str, ...]]:
    """The synthesis rules of :func:`convert`: synthesised joint -> the joints it is the mean of.

    Returns a fresh dict; editing it does not change :func:`convert`.
    """
    return dict(_RULES)


def get_joint_set(name: str | JointSet) -> JointSet:
    """The joint set called ``name`` (case-insensitive); a JointSet is returned unchanged.

    Raises:
        UnknownNameError: no such set; the message lists the valid names.
    """
    if isinstance(name, JointSet):
        return name
    key = str(name).strip().lower()
    if key in JOINT_SETS:
        return JOINT_SETS[key]
    raise UnknownNameError(f"unknown joint set {name!r}; valid names: {', '.join(JOINT_SETS)}")


def flip_permutation(joint_set: str | JointSet) -> list[int]:
    """Index map that swaps left and right: ``flipped = points[..., perm, :]``.

    ``perm[i]`` is the index of the mirror joint of joint ``i`` (``left_x`` <-> ``right_x``);
    centre joints, and side joints whose mirror is not in the set, map to themselves.
    The permutation is its own inverse. (Mirroring the coordinates themselves, e.g. ``x -> W - x``,
    is the caller's job.)
    """
    js = get_joint_set(joint_set)
    perm = list(range(len(js)))
    for left, right in js.flip_pairs:
        perm[left], perm[right] = right, left
    return perm


# ---------------------------------------------------------------------------------------------
# conversion


def _plan(source: JointSet, target: JointSet) -> list[Any]:
    """How to get each target joint from the source.

    Returns one recipe per target joint: ``int`` (copy that source column), a tuple of recipes
    (mean of those; a synthesis rule), or ``None`` (impossible: NaN).
    """
    pos = {n: i for i, n in enumerate(source.names)}
    memo: dict[str, Any] = {}

    def recipe(joint: str, busy: frozenset = frozenset()) -> Any:
        if joint in pos:
            return pos[joint]
        if joint in memo:
            return memo[joint]
        result = None
        inputs = _RULES.get(joint)
        if inputs is not None and joint not in busy:
            parts = tuple(recipe(j, busy | {joint}) for j in inputs)
            if all(p is not None for p in parts):
                result = parts
        memo[joint] = result
        return result

    return [recipe(n) for n in target.names]


class _Numpy:
    """The few array operations :func:`convert` needs, for numpy arrays."""

    @staticmethod
    def stack(xs, axis):
        return np.stack(xs, axis=axis)

    @staticmethod
    def cat(xs, axis):
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def full_like(x, value):
        return np.full_like(x, value)

    @staticmethod
    def isfinite(x):
        return np.isfinite(x)

    @staticmethod
    def where(cond, a, b):
        return np.where(cond, a, b)

    @staticmethod
    def amin(x, axis):
        return np.amin(x, axis=axis)


class _Torch:
    """The same operations for torch tensors (keeps dtype, device and autograd)."""

    def __init__(self, torch):
        self.t = torch

    def stack(self, xs, axis):
        return self.t.stack(xs, dim=axis)

    def cat(self, xs, axis):
        return self.t.cat(xs, dim=axis)

    def full_like(self, x, value):
        return self.t.full_like(x, value)

    def isfinite(self, x):
        return self.t.isfinite(x)

    def where(self, cond, a, b):
        return self.t.where(cond, a, b)

    def amin(self, x, axis):
        return self.t.amin(x, dim=axis)


def _as_float_array(points):
    """``(array, ops)`` with ``array`` a floating numpy array or torch tensor."""
    torch = sys.modules.get("torch")  # a tensor implies torch is imported; never import it here
    if torch is not None and isinstance(points, torch.Tensor):
        if not points.is_floating_point():
            points = points.to(torch.get_default_dtype())
        return points, _Torch(torch)
    points = np.asarray(points)
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float64)
    return points, _Numpy()


def convert(points, source: str | JointSet, target: str | JointSet, confidence_last: bool = False):
    """Convert keypoints from one joint set to another by canonical joint name.

    Args:
        points: ``(..., J_source, D)`` numpy array or torch tensor (anything else is read with
            ``np.asarray``); integer input is converted to float.
        source: the set ``points`` are in (name or :class:`JointSet`).
        target: the set to convert to (name or :class:`JointSet`).
        confidence_last: the last channel of ``D`` is a confidence in [0, 1] rather than a
            coordinate.

    Returns:
        ``(..., J_target, D)`` of the same kind (numpy / torch; dtype and device kept for float
        input). Joints present in the source are copied unchanged; missing ones are synthesised
        by :func:`conversion_rules` where all inputs are available (finite coordinates and
        confidence > 0), with confidence = min of the inputs' confidences; all else is NaN
        (confidence 0). See the module docstring.

    Raises:
        UnknownNameError: unknown set name.
        MeshposeError: ``points`` is not ``(..., J_source, D)`` (``D >= 2`` with a confidence).
    """
    src, tgt = get_joint_set(source), get_joint_set(target)
    x, ops = _as_float_array(points)
    shape = tuple(x.shape)
    if len(shape) < 2 or shape[-2] != len(src):
        raise MeshposeError(
            f"expected points of shape (..., {len(src)}, D) for joint set {src.name!r}, got {shape}"
        )
    if confidence_last and shape[-1] < 2:
        raise MeshposeError(f"confidence_last needs at least 2 channels (coordinates + confidence), got {shape}")

    coords = x[..., :-1] if confidence_last else x  # (..., J, C)
    conf = x[..., -1] if confidence_last else None  # (..., J)

    def available(c, w):
        ok = ops.isfinite(c).all(-1)
        return ok if w is None else ok & (w > 0)

    nan_c = ops.full_like(coords[..., 0, :], float("nan"))  # (..., C)
    zero_w = None if conf is None else ops.full_like(conf[..., 0], 0.0)  # (...)

    def evaluate(rec):
        """recipe -> (coords (..., C), conf (...) or None, available (...) or None if unknown)."""
        if rec is None:
            return nan_c, zero_w, None
        if isinstance(rec, int):
            return coords[..., rec, :], (None if conf is None else conf[..., rec]), None
        parts = [evaluate(r) for r in rec]
        ok = None
        for c, w, a in parts:
            a = available(c, w) if a is None else a
            ok = a if ok is None else ok & a
        mean = ops.stack([c for c, _, _ in parts], -1).mean(-1)
        out_c = ops.where(ok[..., None], mean, nan_c)
        out_w = None
        if conf is not None:
            out_w = ops.where(ok, ops.amin(ops.stack([w for _, w, _ in parts], -1), -1), zero_w)
        return out_c, out_w, ok

    results = [evaluate(r) for r in _plan(src, tgt)]
    if not results:  # an empty target set
        return x[..., :0, :]
    out = ops.stack([c for c, _, _ in results], -2)  # (..., J_target, C)
    if conf is not None:
        out = ops.cat([out, ops.stack([w for _, w, _ in results], -1)[..., None]], -1)
    return out


# ---------------------------------------------------------------------------------------------
# description


def describe(name: str | JointSet | None = None) -> str:
    """The text ``meshpose joints`` prints.

    Args:
        name: one set (name or JointSet); ``None`` describes every set followed by the synthesis
            rules.

    Returns:
        For each set: a header ``name (J joints): description``, its order as ``index: joint``
        lines, and its flip pairs as ``(left, right)`` index pairs. No trailing newline.

    Raises:
        UnknownNameError: unknown set name.
    """
    sets = list(JOINT_SETS.values()) if name is None else [get_joint_set(name)]
    blocks = []
    for js in sets:
        lines = [f"{js.name} ({len(js)} joints): {js.description}"]
        lines += [f"  {i:2d}: {n}" for i, n in enumerate(js.names)]
        line = "  flip pairs (left, right):"
        for token in [f"({a}, {b})" for a, b in js.flip_pairs] or ["none"]:
            if len(line) + 1 + len(token) > 96:  # wrap between pairs, never inside one
                lines.append(line)
                line = "   "
            line += " " + token
        lines.append(line)
        blocks.append("\n".join(lines))
    if name is None:
        rules = ["synthesised when the source lacks them (mean of the listed joints):"]
        rules += [f"  {j} = mean({', '.join(inputs)})" for j, inputs in _RULES.items()]
        blocks.append("\n".join(rules))
    return "\n\n".join(blocks)
