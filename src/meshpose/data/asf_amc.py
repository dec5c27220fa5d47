"""Acclaim ASF skeleton + AMC motion reader with forward kinematics to world joint positions.

An ASF file describes a skeleton as bones in a rest pose: each bone has a unit ``direction``
(world axes, rest pose), a ``length``, the orientation of its local coordinate frame
(``axis ax ay az ORDER``) and the rotational degrees of freedom animated by the AMC file
(``dof rx ry rz``). Bones start where their parent bone ends; the ``root`` has no length and
carries the global translation and rotation. An AMC file lists, frame by frame, the root's
values in the root's ``order`` and every bone's values in its ``dof`` order.

Conventions (Acclaim ASF spec v1.10; the Vicon/CMU explanation "Acclaim Format - ASF line
details", which says the root ``order`` tokens give "the sequence in which root rotations are
calculated about fixed, global axes"; and the CMU mocap viewer's math, which common Python
readers follow):

* **Euler orders are fixed-axis, first token first.** Rotations listed ``rx ry rz`` (a
  bone's ``dof``, the root's ``order``) or ``XYZ`` (an ``axis`` / root ``axis`` token) are
  applied about the fixed x, then y, then z axes: ``R = Rz @ Ry @ Rx`` for column vectors.
  (This is the *reverse* of BVH's convention, where ``Xrotation Yrotation Zrotation`` means
  ``Rx @ Ry @ Rz``.) The three ``axis`` / ``orientation`` numbers are the angles about x, y
  and z; the token only says in which order they are applied.
* **Local frames.** With ``C`` the bone's axis rotation and ``M`` its motion rotation (from
  the dof values), the bone's rotation relative to its parent, in world axes, is
  ``L = C @ M @ C^-1``; ``R_world(bone) = R_world(parent) @ L`` and the bone's end point is
  ``p_end(bone) = p_end(parent) + length * R_world(bone) @ direction``. The root's rotation is
  ``C_o @ M_root @ C_o^-1`` with ``C_o`` from ``orientation`` (zero in Vicon files) and its
  position is ``position + (TX, TY, TZ)``.
* **Angles** are in the ASF's ``:units angle`` (``deg`` when absent) for ``axis`` and
  ``orientation``; AMC values are in degrees unless the AMC says ``:RADIANS`` (or says nothing
  and the ASF's unit is ``rad``).
* **Lengths.** ``:units length`` is a multiplier: file values = inches * length (the spec's
  example: "2.54 - data in cm, local units in inches"), so metres = value / length * 0.0254.
  Checked on HDM05 (``length 0.45``): femur 7.34 / 0.45 * 0.0254 = 0.41 m; the standing
  joint extent (toes to head) of the rest pose is 1.59-1.76 m for the five actors. Should
  this convention give a non-human skeleton, the unit is inferred from the height instead
  (:func:`meshpose.data.mocap.infer_unit_scale`).

Joints of the resulting :class:`~meshpose.data.mocap.MocapClip`: ``"root"`` (the root
position) and then every bone in depth-first order of the ``:hierarchy`` section (children in
the order listed), each position being the bone's *end* point. Only rotational dofs
(``rx ry rz``) are supported on bones; the root takes ``TX TY TZ RX RY RZ``.

AMC files store no frame rate: it is a parameter (default 120, the rate of Acclaim/Vicon
captures such as CMU and HDM05; the shared HDM05 subset is resampled to 30 fps).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meshpose.data.mocap import (
    HUMAN_HEIGHT_RANGE_M,
    MocapClip,
    axis_rotations,
    decode_text,
    resolve_unit_scale,
    vertical_extent,
)
from meshpose.errors import InputFileError

__all__ = [
    "AMC_DEFAULT_FPS",
    "AsfBone",
    "AsfSkeleton",
    "asf_forward_kinematics",
    "find_asf",
    "parse_amc",
    "read_amc",
    "read_asf",
    "rest_height",
]

#: Frame rate assumed for AMC files, which do not store one.
AMC_DEFAULT_FPS = 120.0

#: Metres per inch: ASF lengths are inches times the ``:units length`` multiplier.
METRES_PER_INCH = 0.0254

_ROOT_CHANNELS = ("tx", "ty", "tz", "rx", "ry", "rz")
_BONE_DOFS = ("rx", "ry", "rz")
_ALL_DOFS = ("rx", "ry", "rz", "tx", "ty", "tz", "l")


@dataclass
class AsfBone:
    """One bone of an ASF skeleton.

    Attributes:
        name: bone name.
        direction: ``(3,)`` unit vector, world axes, rest pose.
        length: bone length in file units.
        axis: ``(3,)`` angles about x, y, z of the bone's local frame, radians.
        axis_order: the order they are applied in, e.g. ``"xyz"``.
        dof: the animated rotations in AMC value order, e.g. ``("rx", "ry", "rz")``.
        line: 1-based line of the bone's ``begin``.
    """

    name: str
    direction: np.ndarray
    length: float
    axis: np.ndarray
    axis_order: str
    dof: tuple[str, ...]
    line: int


@dataclass
class AsfSkeleton:
    """A parsed ASF file.

    Attributes:
        bones: bones in depth-first hierarchy order (parents first).
        parents: ``(B,)`` index of each bone's parent bone, ``-1`` for children of the root.
        root_order: the root's AMC channels, e.g. ``("tx", "ty", "tz", "rx", "ry", "rz")``.
        root_axis_order: order of the root ``orientation`` angles, e.g. ``"xyz"``.
        root_position: ``(3,)`` root position offset, file units.
        root_orientation: ``(3,)`` root orientation offset about x, y, z, radians.
        length_unit: the ``:units length`` multiplier (file value = inches * length_unit).
        angle_unit: ``"deg"`` or ``"rad"`` (``:units angle``).
        path: the file.
    """

    bones: list[AsfBone]
    parents: np.ndarray
    root_order: tuple[str, ...]
    root_axis_order: str
    root_position: np.ndarray
    root_orientation: np.ndarray
    length_unit: float
    angle_unit: str
    path: str
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {b.name: i for i, b in enumerate(self.bones)}

    @property
    def joint_names(self) -> tuple[str, ...]:
        """``("root", *bone names)``: the joints of :func:`asf_forward_kinematics`."""
        return ("root",) + tuple(b.name for b in self.bones)

    @property
    def joint_parents(self) -> np.ndarray:
        """``(B + 1,)`` parents of :attr:`joint_names` (the root is joint 0)."""
        return np.concatenate([[-1], self.parents + 1]).astype(np.int64)

    def bone_index(self, name: str) -> int:
        """Index of bone ``name`` in :attr:`bones` (KeyError if there is none)."""
        return self._index[name]

    @property
    def inch_unit_scale(self) -> float:
        """Metres per file length unit under the ASF convention: ``0.0254 / length_unit``."""
        return METRES_PER_INCH / self.length_unit


# ----------------------------------------------------------------------------------- ASF


def _clean(line: str) -> list[str]:
    """Tokens of an ASF/AMC line: ``#`` comments dropped, commas and parentheses as spaces."""
    line = line.split("#", 1)[0]
    return line.replace(",", " ").replace("(", " ").replace(")", " ").split()


def _floats(tokens: list[str], n: int, what: str, line: int, path: Path) -> np.ndarray:
    if len(tokens) < n:
        raise InputFileError(f"line {line}: {what} needs {n} numbers, found {len(tokens)}", path)
    try:
        values = np.array([float(t) for t in tokens[:n]], dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens[:n] if not _is_number(t))
        raise InputFileError(f"line {line}: {what}: {bad!r} is not a number", path) from None
    if not np.isfinite(values).all():
        raise InputFileError(f"line {line}: {what} must be finite numbers", path)
    return values


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _order_token(token: str, line: int, path: Path) -> str:
    order = token.lower()
    if sorted(order) != ["x", "y", "z"]:
        raise InputFileError(f"line {line}: rotation order {token!r} is not a permutation of XYZ", path)
    return order


def read_asf(path: str | os.PathLike) -> AsfSkeleton:
    """Parse an ASF skeleton file.

    Raises:
        InputFileError: missing file, unknown section, malformed bone (missing name,
            direction, length; bad axis order; unknown or unsupported dof), or a hierarchy
            that names unknown bones, lists a bone twice or leaves bones unattached. The
            message names the line.
    """
    path = Path(path)
    lines = decode_text(path)
    sections: dict[str, list[tuple[int, list[str]]]] = {}
    current = None
    for i, raw in enumerate(lines):
        tokens = _clean(raw)
        if not tokens:
            continue
        if tokens[0].startswith(":"):
            current = tokens[0][1:].lower()
            if current in sections and current != "documentation":
                raise InputFileError(f"line {i + 1}: section ':{current}' appears twice", path)
            sections.setdefault(current, []).append((i + 1, tokens[1:]))
        elif current is None:
            raise InputFileError(f"line {i + 1}: expected an ASF keyword (':version', ':root', ...)", path)
        else:
            sections[current].append((i + 1, tokens))
    for required in ("root", "bonedata", "hierarchy"):
        if required not in sections:
            raise InputFileError(f"no ':{required}' section (not an ASF skeleton file)", path)

    length_unit, angle_unit = 1.0, "deg"
    for line, tokens in sections.get("units", [])[1:]:
        key = tokens[0].lower()
        if key == "length":
            length_unit = float(_floats(tokens[1:], 1, "units length", line, path)[0])
            if length_unit <= 0:
                raise InputFileError(f"line {line}: units length must be > 0", path)
        elif key == "angle":
            if len(tokens) < 2 or tokens[1].lower() not in ("deg", "rad"):
                raise InputFileError(f"line {line}: units angle must be 'deg' or 'rad'", path)
            angle_unit = tokens[1].lower()
    to_rad = np.pi / 180.0 if angle_unit == "deg" else 1.0

    root_order: tuple[str, ...] = ()
    root_axis = "xyz"
    root_position = np.zeros(3)
    root_orientation = np.zeros(3)
    for line, tokens in sections["root"][1:]:
        key = tokens[0].lower()
        if key == "order":
            root_order = tuple(t.lower() for t in tokens[1:])
            for t in root_order:
                if t not in _ROOT_CHANNELS:
                    raise InputFileError(f"line {line}: unknown root channel {t!r} (expected TX TY TZ RX RY RZ)", path)
            if len(set(root_order)) != len(root_order):
                raise InputFileError(f"line {line}: a root channel is listed twice", path)
        elif key == "axis":
            if len(tokens) < 2:
                raise InputFileError(f"line {line}: root axis needs an order such as XYZ", path)
            root_axis = _order_token(tokens[1], line, path)
        elif key == "position":
            root_position = _floats(tokens[1:], 3, "root position", line, path)
        elif key == "orientation":
            root_orientation = _floats(tokens[1:], 3, "root orientation", line, path) * to_rad

    bones = _parse_bonedata(sections["bonedata"][1:], to_rad, path)
    order, parents = _parse_hierarchy(sections["hierarchy"], bones, path)
    return AsfSkeleton(
        bones=[bones[i] for i in order],
        parents=np.array(parents, dtype=np.int64),
        root_order=root_order,
        root_axis_order=root_axis,
        root_position=root_position,
        root_orientation=root_orientation,
        length_unit=length_unit,
        angle_unit=angle_unit,
        path=os.fspath(path),
    )


def _parse_bonedata(rows: list[tuple[int, list[str]]], to_rad: float, path: Path) -> list[AsfBone]:
    bones: list[AsfBone] = []
    block: list[tuple[int, list[str]]] | None = None
    begin_line = 0
    for line, tokens in rows:
        key = tokens[0].lower()
        if key == "begin":
            if block is not None:
                raise InputFileError(f"line {line}: 'begin' inside a bone (missing 'end')", path)
            block, begin_line = [], line
        elif key == "end":
            if block is None:
                raise InputFileError(f"line {line}: 'end' without 'begin'", path)
            bones.append(_parse_bone(block, begin_line, to_rad, path))
            block = None
        elif block is None:
            raise InputFileError(f"line {line}: expected 'begin' in :bonedata, found {tokens[0]!r}", path)
        else:
            block.append((line, tokens))
    if block is not None:
        raise InputFileError(f"line {begin_line}: bone is not closed by 'end'", path)
    seen = {"root"}
    for b in bones:
        if b.name in seen:
            raise InputFileError(f"line {b.line}: bone name {b.name!r} is used twice (or is 'root')", path)
        seen.add(b.name)
    return bones


def _parse_bone(block: list[tuple[int, list[str]]], begin: int, to_rad: float, path: Path) -> AsfBone:
    name = None
    direction = length = None
    axis, axis_order = np.zeros(3), "xyz"
    dof: tuple[str, ...] = ()
    for line, tokens in block:
        key = tokens[0].lower()
        if key == "name":
            if len(tokens) < 2:
                raise InputFileError(f"line {line}: bone name is missing", path)
            name = tokens[1]
        elif key == "direction":
            direction = _floats(tokens[1:], 3, "direction", line, path)
        elif key == "length":
            length = float(_floats(tokens[1:], 1, "length", line, path)[0])
            if length < 0:
                raise InputFileError(f"line {line}: bone length is negative", path)
        elif key == "axis":
            axis = _floats(tokens[1:], 3, "axis", line, path) * to_rad
            axis_order = _order_token(tokens[4], line, path) if len(tokens) > 4 else "xyz"
        elif key == "dof":
            dof = tuple(t.lower() for t in tokens[1:])
            for t in dof:
                if t not in _ALL_DOFS:
                    raise InputFileError(f"line {line}: unknown dof {t!r}", path)
                if t not in _BONE_DOFS:
                    raise InputFileError(
                        f"line {line}: dof {t!r} (bone translation/stretch) is not supported, only rx ry rz", path
                    )
            if len(set(dof)) != len(dof):
                raise InputFileError(f"line {line}: a dof is listed twice", path)
        # id, limits (and their continuation lines), bodymass, cofmass: not needed for FK
    if name is None:
        raise InputFileError(f"line {begin}: bone has no name", path)
    if direction is None or length is None:
        raise InputFileError(f"line {begin}: bone {name!r} needs a direction and a length", path)
    norm = float(np.linalg.norm(direction))
    if norm > 0:
        direction = direction / norm
    return AsfBone(name, direction, length, axis, axis_order, dof, begin)


def _parse_hierarchy(
    rows: list[tuple[int, list[str]]], bones: list[AsfBone], path: Path
) -> tuple[list[int], list[int]]:
    """Depth-first bone order (indices into ``bones``) and parents (in that order)."""
    index = {b.name: i for i, b in enumerate(bones)}
    kids: dict[str, list[str]] = {}
    parent_of: dict[str, str] = {}
    body = [r for r in rows[1:] if r[1][0].lower() not in ("begin", "end")]
    for line, tokens in body:
        parent, children_ = tokens[0], tokens[1:]
        if parent != "root" and parent not in index:
            raise InputFileError(f"line {line}: hierarchy names unknown bone {parent!r}", path)
        for c in children_:
            if c not in index:
                raise InputFileError(f"line {line}: hierarchy names unknown bone {c!r}", path)
            if c in parent_of:
                raise InputFileError(f"line {line}: bone {c!r} has two parents in the hierarchy", path)
            parent_of[c] = parent
        kids.setdefault(parent, []).extend(children_)
    order: list[int] = []
    parents: list[int] = []
    stack = [(c, -1) for c in reversed(kids.get("root", []))]
    while stack:
        name, parent_pos = stack.pop()
        pos = len(order)
        order.append(index[name])
        parents.append(parent_pos)
        stack.extend((c, pos) for c in reversed(kids.get(name, [])))
    if len(order) != len(bones):
        missing = [b.name for i, b in enumerate(bones) if i not in set(order)]
        line = rows[0][0]
        raise InputFileError(f"line {line}: bones not connected to the root: {', '.join(missing[:5])}", path)
    return order, parents


# ----------------------------------------------------------------------------------- AMC


def find_asf(amc_path: str | os.PathLike) -> Path:
    """The ASF skeleton that goes with an AMC motion file, looked for in the same folder.

    In this order: the same name with ``.asf``; the ``.asf`` whose name is the longest prefix
    of the motion's name followed by ``_`` (CMU ``01.asf`` for ``01_02.amc``, HDM05
    ``HDM_bd.asf`` for ``HDM_bd_hop_001_120.amc``); the only ``.asf`` of the folder.

    Raises:
        InputFileError: none, or several equally good, skeleton files.
    """
    amc = Path(amc_path)
    folder = amc.parent if str(amc.parent) else Path(".")
    try:
        asfs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".asf" and p.is_file())
    except OSError:
        asfs = []
    for p in asfs:
        if p.stem == amc.stem:
            return p
    prefixed = [p for p in asfs if amc.stem.startswith(p.stem + "_")]
    if prefixed:
        return max(prefixed, key=lambda p: len(p.stem))
    if len(asfs) == 1:
        return asfs[0]
    why = "no .asf file" if not asfs else f"{len(asfs)} .asf files and none named after it"
    raise InputFileError(f"cannot find the skeleton: {why} in its folder; pass asf=", amc)


def parse_amc(path: str | os.PathLike, skeleton: AsfSkeleton) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read an AMC file's values.

    Returns:
        ``root`` ``(T, len(root_order))`` values in root-order (file length units; angles in
        radians) and a dict bone name -> ``(T, len(dof))`` angles in radians, for every bone
        with dofs.

    Raises:
        InputFileError: no frames; a bone the skeleton does not have; a line with the wrong
            number of values or a non-numeric value; a frame that leaves out a bone with dofs
            or gives one twice. The message names the line.
    """
    path = Path(path)
    lines = decode_text(path)
    degrees = skeleton.angle_unit == "deg"
    counts = {"root": len(skeleton.root_order)}
    counts.update({b.name: len(b.dof) for b in skeleton.bones if b.dof})
    frames: list[dict[str, list[float]]] = []
    frame_lines: list[int] = []
    current: dict[str, list[float]] | None = None
    for i, raw in enumerate(lines):
        tokens = _clean(raw)
        if not tokens:
            continue
        line = i + 1
        if tokens[0].startswith(":"):
            key = tokens[0].upper()
            if key == ":DEGREES":
                degrees = True
            elif key == ":RADIANS":
                degrees = False
            continue
        if len(tokens) == 1 and tokens[0].isdigit():
            current = {}
            frames.append(current)
            frame_lines.append(line)
            continue
        if current is None:
            raise InputFileError(f"line {line}: expected a frame number, found {tokens[0]!r}", path)
        name = tokens[0]
        if len(tokens) == 1 and name in skeleton._index and name not in counts:
            continue  # a bone without dofs, listed with no values
        if name not in counts:
            what = "has no dofs" if name in skeleton._index else "is not in the skeleton"
            raise InputFileError(f"line {line}: bone {name!r} {what}", path)
        if name in current:
            raise InputFileError(f"line {line}: bone {name!r} appears twice in frame {len(frames)}", path)
        if len(tokens) - 1 != counts[name]:
            raise InputFileError(
                f"line {line}: {name!r} has {len(tokens) - 1} values, expected {counts[name]}", path
            )
        try:
            values = [float(t) for t in tokens[1:]]
        except ValueError:
            bad = next(t for t in tokens[1:] if not _is_number(t))
            raise InputFileError(f"line {line}: {bad!r} is not a number", path) from None
        if not all(np.isfinite(values)):
            raise InputFileError(f"line {line}: values must be finite", path)
        current[name] = values
    if not frames:
        raise InputFileError("no frames (not an AMC motion file)", path)
    for frame, line in zip(frames, frame_lines):
        if len(frame) != len(counts):
            missing = [n for n in counts if n not in frame]
            raise InputFileError(f"line {line}: frame leaves out {', '.join(missing[:5])}", path)
    to_rad = np.pi / 180.0 if degrees else 1.0
    root = np.array([f["root"] for f in frames], dtype=np.float64).reshape(len(frames), counts["root"])
    is_rot = np.array([c.startswith("r") for c in skeleton.root_order], dtype=bool)
    root[:, is_rot] *= to_rad
    dofs = {
        n: np.array([f[n] for f in frames], dtype=np.float64) * to_rad for n in counts if n != "root"
    }
    return root, dofs


def _fixed_axis_rotation(axes: str | tuple[str, ...], angles: np.ndarray) -> np.ndarray:
    """``(T, 3, 3)``: rotations about fixed axes applied first-listed first.

    ``axes`` ``"xyz"`` (or ``("rx", "ry", "rz")``) with angles ``(T, 3)`` (radians) gives
    ``Rz @ Ry @ Rx``.
    """
    angles = np.atleast_2d(angles)
    R = np.broadcast_to(np.eye(3), (angles.shape[0], 3, 3)).copy()
    for k, a in enumerate(axes):
        R = axis_rotations(a[-1], angles[:, k]) @ R
    return R


def _axis_frame(angles_xyz: np.ndarray, order: str) -> np.ndarray:
    """``(3, 3)`` rotation of an ``axis`` / ``orientation`` line.

    Args:
        angles_xyz: ``(3,)`` angles about x, y and z (radians), as written in the file.
        order: the order they are applied in about fixed axes, e.g. ``"xyz"`` -> ``Rz Ry Rx``.
    """
    angles = np.asarray(angles_xyz, dtype=np.float64)[["xyz".index(a) for a in order]]
    return _fixed_axis_rotation(order, angles[None])[0]


def asf_forward_kinematics(skeleton: AsfSkeleton, root: np.ndarray, dofs: dict[str, np.ndarray]) -> np.ndarray:
    """World positions of the root and every bone end, ``(T, B + 1, 3)`` in file units.

    Args:
        skeleton: the ASF skeleton.
        root: ``(T, len(root_order))`` root values (lengths in file units, angles radians).
        dofs: bone name -> ``(T, len(dof))`` angles in radians (see :func:`parse_amc`).

    Returns:
        Positions in :attr:`AsfSkeleton.joint_names` order.
    """
    T = root.shape[0]
    order = skeleton.root_order
    trans = np.zeros((T, 3))
    for k, ch in enumerate(order):
        if ch.startswith("t"):
            trans[:, "xyz".index(ch[1])] = root[:, k]
    rot_channels = [ch for ch in order if ch.startswith("r")]
    rot_values = root[:, [k for k, ch in enumerate(order) if ch.startswith("r")]]
    M = _fixed_axis_rotation(rot_channels, rot_values)
    C = _axis_frame(skeleton.root_orientation, skeleton.root_axis_order)
    root_R = C @ M @ C.T
    B = len(skeleton.bones)
    pos = np.zeros((T, B + 1, 3))
    pos[:, 0] = skeleton.root_position + trans
    rot = np.empty((B, T, 3, 3))
    for b, (bone, parent) in enumerate(zip(skeleton.bones, skeleton.parents.tolist())):
        parent_R = root_R if parent < 0 else rot[parent]
        parent_p = pos[:, parent + 1]
        C = _axis_frame(bone.axis, bone.axis_order)
        if bone.dof:
            L = C @ _fixed_axis_rotation(bone.dof, dofs[bone.name]) @ C.T
            rot[b] = parent_R @ L
        else:
            rot[b] = parent_R
        pos[:, b + 1] = parent_p + bone.length * (rot[b] @ bone.direction)
    return pos


def rest_height(skeleton: AsfSkeleton, up_axis: str = "y") -> float:
    """Vertical extent of the skeleton's rest pose (every dof zero), in file units."""
    zeros = {b.name: np.zeros((1, len(b.dof))) for b in skeleton.bones if b.dof}
    world = asf_forward_kinematics(skeleton, np.zeros((1, len(skeleton.root_order))), zeros)
    return vertical_extent(world, up_axis)


def read_amc(
    path: str | os.PathLike,
    asf: str | os.PathLike | AsfSkeleton | None = None,
    unit_scale: float | None = None,
    *,
    fps: float | None = None,
    up_axis: str = "y",
) -> MocapClip:
    """Read an AMC motion (with its ASF skeleton) into world joint positions in metres.

    Args:
        path: the ``.amc`` file.
        asf: the skeleton (a path or an already parsed :class:`AsfSkeleton`); default
            :func:`find_asf`.
        unit_scale: metres per file length unit; ``None``: the ASF convention
            ``0.0254 / length`` when that makes the rest pose (or the motion's
            95th-percentile joint extent) 1.2-2.1 m tall, else
            :func:`~meshpose.data.mocap.infer_unit_scale` on those heights in file units.
        fps: the frame rate (AMC does not store it); default :data:`AMC_DEFAULT_FPS` (120).
        up_axis: the vertical axis (ASF/AMC is y-up by convention).

    Returns:
        A :class:`MocapClip`: joints ``"root"`` then the bones in depth-first hierarchy order,
        each at its end point, ``(T, B + 1, 3)`` float32 metres.
    """
    if up_axis not in ("y", "z"):
        raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
    fps = AMC_DEFAULT_FPS if fps is None else float(fps)
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    skeleton = asf if isinstance(asf, AsfSkeleton) else read_asf(find_asf(path) if asf is None else asf)
    root, dofs = parse_amc(path, skeleton)
    world = asf_forward_kinematics(skeleton, root, dofs)
    if unit_scale is None:
        heights = [rest_height(skeleton, up_axis), vertical_extent(world, up_axis)]
        lo, hi = HUMAN_HEIGHT_RANGE_M
        scale = skeleton.inch_unit_scale
        if not any(lo <= h * scale <= hi for h in heights):
            scale = resolve_unit_scale(heights, None, path)
    else:
        scale = resolve_unit_scale([], unit_scale, path)
    return MocapClip(
        joint_names=skeleton.joint_names,
        parents=skeleton.joint_parents,
        positions=(world * scale).astype(np.float32),
        fps=fps,
        up_axis=up_axis,
        source=os.fspath(path),
        unit_scale=scale,
    )
