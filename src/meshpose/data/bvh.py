"""Biovision hierarchy (BVH) reader with forward kinematics to world joint positions.

File layout::

    HIERARCHY
    ROOT Hips
    {
      OFFSET 0 0 0
      CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
      JOINT Chest
      {
        OFFSET 0 10 0
        CHANNELS 3 Zrotation Xrotation Yrotation
        End Site
        {
          OFFSET 0 5 0
        }
      }
    }
    MOTION
    Frames: 2
    Frame Time: 0.033333
    <one line per frame: every joint's channel values, joints in file order>

Conventions (checked against the BVH description of Meredith & Maddock, "Motion capture
file formats explained", and Blender's importer, which builds the rotation as an Euler of the
*reversed* channel order in Blender's extrinsic convention, i.e. the same matrix):

* **Rotation.** A joint's rotation channels, in the order listed, give
  ``R = R_first @ R_second @ R_third`` acting on column vectors; e.g.
  ``Zrotation Xrotation Yrotation`` is ``R = Rz(z) @ Rx(x) @ Ry(y)``. That is an *intrinsic*
  rotation in the listed order, ``scipy.spatial.transform.Rotation.from_euler("ZXY", [z, x, y],
  degrees=True)`` (upper case = intrinsic in scipy), equivalently the extrinsic (fixed-axis)
  rotation in the reverse order. Angles are degrees, right-handed.
* **Hierarchy.** ``R_world(j) = R_world(parent) @ R(j)`` and
  ``p_world(j) = p_world(parent) + R_world(parent) @ t(j)``, with ``t(j)`` the joint's
  OFFSET. The root has no parent (``R_world = R``, ``p_world = t``).
* **Position channels replace the offset.** For a joint with ``Xposition`` / ``Yposition`` /
  ``Zposition`` channels (the root, and every joint of a 6-channel file such as the
  Bandai-Namco set) ``t(j)`` is the channel values, not OFFSET + values; a joint with only
  some of the three keeps the OFFSET's other components. This is how Blender's importer and
  the Bandai-Namco data behave: there the 6-channel joints' position channels repeat the
  OFFSET exactly (bone lengths stay fixed) while the hips' OFFSET (0.8, 94.0, -452.2) is a
  rest-pose placement that the channels (~(-0.5, 93.5, -9.0)) supersede.
* **End sites** have an OFFSET and no channels. They are left out of the joints unless
  ``include_end_sites=True``; then they are named ``<parent>_end``.

Forward kinematics is vectorised over frames (one loop over joints).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meshpose.data.mocap import (
    MocapClip,
    axis_rotations,
    decode_text,
    resolve_unit_scale,
    vertical_extent,
)
from meshpose.errors import InputFileError

__all__ = ["BvhFile", "BvhNode", "parse_bvh", "read_bvh"]

_CHANNEL_RE = re.compile(r"^([xyz])(position|rotation)$", re.IGNORECASE)


@dataclass
class BvhNode:
    """One ``ROOT``, ``JOINT`` or ``End Site`` of a BVH hierarchy.

    Attributes:
        name: the joint name (``<parent>_end`` for an end site).
        parent: index of the parent node in :attr:`BvhFile.nodes`, ``-1`` for a root.
        offset: ``(3,)`` float64 OFFSET in file units.
        channels: channel names as ``("x", "position")`` / ``("z", "rotation")`` pairs, in
            file order.
        first_channel: column of the first channel in :attr:`BvhFile.motion`.
        is_end_site: whether this is an ``End Site``.
        line: 1-based line of the node's keyword, for messages.
    """

    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[tuple[str, str], ...]
    first_channel: int
    is_end_site: bool
    line: int


@dataclass
class BvhFile:
    """A parsed BVH file, before forward kinematics.

    Attributes:
        nodes: every node in depth-first file order (parents before children).
        motion: ``(T, C)`` float64 channel values, file units and degrees.
        frame_time: seconds per frame.
        path: the file.
    """

    nodes: list[BvhNode]
    motion: np.ndarray
    frame_time: float
    path: str

    @property
    def fps(self) -> float:
        """``1 / frame_time``, rounded to an integer when within 0.01 % of one.

        Files write the frame time with ~6 decimals (``0.033333``), which would otherwise
        give 30.0003 fps.
        """
        fps = 1.0 / self.frame_time
        r = round(fps)
        return float(r) if r > 0 and abs(fps - r) <= 1e-4 * fps else fps

    def forward_kinematics(self) -> np.ndarray:
        """World positions of every node, ``(T, N, 3)`` float64 in file units.

        With zero frames the result is ``(0, N, 3)``; see :meth:`rest_positions` for the
        pose with every channel at zero rotation.
        """
        return _forward_kinematics(self.nodes, self.motion)

    def rest_positions(self) -> np.ndarray:
        """``(N, 3)`` positions with identity rotations and OFFSETs (no motion data)."""
        nodes = [
            BvhNode(n.name, n.parent, n.offset, (), 0, n.is_end_site, n.line) for n in self.nodes
        ]
        return _forward_kinematics(nodes, np.zeros((1, 0)))[0]


def read_bvh(
    path: str | os.PathLike,
    unit_scale: float | None = None,
    *,
    include_end_sites: bool = False,
    up_axis: str = "y",
) -> MocapClip:
    """Read a BVH file into world joint positions in metres.

    Args:
        path: the ``.bvh`` file.
        unit_scale: metres per file unit; ``None`` infers it from the standing height
            (:func:`meshpose.data.mocap.infer_unit_scale` on the 95th-percentile vertical
            joint extent of the motion, or of the rest pose if that fits no unit; end sites
            are not counted).
        include_end_sites: also return the end sites, named ``<parent>_end``.
        up_axis: the file's vertical axis (BVH is y-up by convention).

    Returns:
        A :class:`MocapClip`: ``positions`` ``(T, J, 3)`` float32 metres, joints in
        depth-first file order.

    Raises:
        InputFileError: missing or malformed file, or a skeleton of no recognisable size when
            ``unit_scale`` is ``None``.
    """
    if up_axis not in ("y", "z"):
        raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
    bvh = parse_bvh(path)
    world = bvh.forward_kinematics()  # (T, N, 3) file units
    is_joint = np.array([not n.is_end_site for n in bvh.nodes])
    heights = []
    if unit_scale is None:  # the motion's standing height, else the rest pose's
        if world.shape[0]:
            heights.append(vertical_extent(world[:, is_joint], up_axis))
        heights.append(vertical_extent(bvh.rest_positions()[None, is_joint], up_axis))
    scale = resolve_unit_scale(heights, unit_scale, path)

    keep = np.ones(len(bvh.nodes), bool) if include_end_sites else is_joint
    new_index = np.cumsum(keep) - 1
    names, parents = [], []
    for node, k in zip(bvh.nodes, keep):
        if k:
            names.append(node.name)
            parents.append(-1 if node.parent < 0 else int(new_index[node.parent]))
    return MocapClip(
        joint_names=tuple(names),
        parents=np.array(parents, dtype=np.int64),
        positions=(world[:, keep] * scale).astype(np.float32),
        fps=bvh.fps,
        up_axis=up_axis,
        source=os.fspath(path),
        unit_scale=scale,
    )


def parse_bvh(path: str | os.PathLike) -> BvhFile:
    """Parse a BVH file's hierarchy and motion data (no forward kinematics).

    Raises:
        InputFileError: missing or empty file; a malformed hierarchy (unknown keyword,
            missing brace, bad OFFSET or CHANNELS); no ``MOTION`` section; a bad ``Frames:``
            / ``Frame Time:`` line; a frame line with the wrong number of values or a
            non-numeric / non-finite value; fewer or more frame lines than ``Frames:`` says.
            The message names the line.
    """
    path = Path(path)
    lines = decode_text(path)
    motion_line = next((i for i, s in enumerate(lines) if s.strip().upper() == "MOTION"), None)
    if motion_line is None:
        raise InputFileError("no MOTION section (not a complete BVH file)", path)
    nodes = _HierarchyParser(lines[:motion_line], path).parse()
    num_channels = sum(len(n.channels) for n in nodes)
    frames, frame_time, data = _parse_motion_header(lines, motion_line, path)
    motion = _parse_frames(lines, data, frames, num_channels, path)
    return BvhFile(nodes=nodes, motion=motion, frame_time=frame_time, path=os.fspath(path))


class _HierarchyParser:
    """Recursive-descent parser over the HIERARCHY section's tokens."""

    def __init__(self, lines: tuple[str, ...], path: Path):
        self.path = path
        self.tokens: list[tuple[str, int]] = [
            (tok, i + 1) for i, line in enumerate(lines) for tok in line.split()
        ]
        self.pos = 0
        self.nodes: list[BvhNode] = []
        self.num_channels = 0
        self.last_line = len(lines)

    def error(self, message: str, line: int | None = None) -> InputFileError:
        line = self.last_line if line is None else line
        return InputFileError(f"line {line}: {message}", self.path)

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.tokens):
            raise self.error(f"hierarchy ends early: expected {what} before MOTION", self.last_line + 1)
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, word: str) -> int:
        tok, line = self.next(repr(word))
        if tok.upper() != word.upper():
            raise self.error(f"expected {word!r}, found {tok!r}", line)
        return line

    def parse(self) -> list[BvhNode]:
        tok, line = self.next("'HIERARCHY'")
        if tok.upper() != "HIERARCHY":
            raise self.error(f"expected 'HIERARCHY' at the start of the file, found {tok!r}", line)
        while self.pos < len(self.tokens):
            tok, line = self.next("'ROOT'")
            if tok.upper() != "ROOT":
                raise self.error(f"expected 'ROOT' or 'MOTION', found {tok!r}", line)
            self.parse_joint(self.read_name(line), -1, line)
        if not self.nodes:
            raise self.error("the hierarchy has no ROOT joint")
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise self.error(f"joint name {n.name!r} is used twice", n.line)
            seen.add(n.name)
        return self.nodes

    def read_name(self, line: int) -> str:
        """The rest of the keyword's line (names may contain spaces), minus a trailing ``{``."""
        parts = []
        while self.pos < len(self.tokens) and self.tokens[self.pos][1] == line:
            tok = self.tokens[self.pos][0]
            if tok == "{":
                break
            parts.append(tok)
            self.pos += 1
        if not parts:
            raise self.error("joint has no name", line)
        return " ".join(parts)

    def read_floats(self, n: int, what: str, line: int) -> np.ndarray:
        values = []
        for _ in range(n):
            tok, tline = self.next(what)
            try:
                v = float(tok)
            except ValueError:
                raise self.error(f"{what}: {tok!r} is not a number", tline) from None
            if not np.isfinite(v):
                raise self.error(f"{what}: {tok!r} is not a finite number", tline)
            values.append(v)
        return np.array(values, dtype=np.float64)

    def parse_joint(self, name: str, parent: int, line: int) -> None:
        self.expect("{")
        index = len(self.nodes)
        node = BvhNode(name, parent, np.zeros(3), (), self.num_channels, False, line)
        self.nodes.append(node)
        seen_offset = False
        while True:
            tok, tline = self.next("'}'")
            key = tok.upper()
            if key == "OFFSET":
                node.offset = self.read_floats(3, "OFFSET needs 3 numbers", tline)
                seen_offset = True
            elif key == "CHANNELS":
                node.channels = self.read_channels(tline)
                node.first_channel = self.num_channels
                self.num_channels += len(node.channels)
            elif key == "JOINT":
                self.parse_joint(self.read_name(tline), index, tline)
            elif key == "END":
                self.expect("Site")
                self.parse_end_site(index, tline)
            elif key == "}":
                break
            else:
                raise self.error(f"unexpected {tok!r} in joint {name!r}", tline)
        if not seen_offset:
            raise self.error(f"joint {name!r} has no OFFSET", line)

    def read_channels(self, line: int) -> tuple[tuple[str, str], ...]:
        tok, tline = self.next("the channel count")
        try:
            n = int(tok)
        except ValueError:
            raise self.error(f"CHANNELS count {tok!r} is not an integer", tline) from None
        if not 0 <= n <= 6:
            raise self.error(f"CHANNELS count {n} is not between 0 and 6", tline)
        channels = []
        for _ in range(n):
            tok, tline = self.next("a channel name")
            m = _CHANNEL_RE.match(tok)
            if m is None:
                raise self.error(
                    f"unknown channel {tok!r} (expected X/Y/Z followed by position/rotation)", tline
                )
            ch = (m.group(1).lower(), m.group(2).lower())
            if ch in channels:
                raise self.error(f"channel {tok!r} is listed twice", tline)
            channels.append(ch)
        return tuple(channels)

    def parse_end_site(self, parent: int, line: int) -> None:
        self.expect("{")
        base = f"{self.nodes[parent].name}_end"
        taken = {n.name for n in self.nodes}
        name, k = base, 2
        while name in taken:
            name, k = f"{base}{k}", k + 1
        tok, tline = self.next("OFFSET")
        if tok.upper() != "OFFSET":
            raise self.error(f"End Site: expected 'OFFSET', found {tok!r}", tline)
        offset = self.read_floats(3, "OFFSET needs 3 numbers", tline)
        self.expect("}")
        self.nodes.append(BvhNode(name, parent, offset, (), self.num_channels, True, line))


def _parse_motion_header(lines: tuple[str, ...], motion_line: int, path: Path) -> tuple[int, float, int]:
    """``(frames, frame_time, index of the first data line)`` from the lines after MOTION."""
    i = motion_line + 1
    fields: dict[str, tuple[str, int]] = {}
    for key, label in (("frames", "Frames:"), ("frame time", "Frame Time:")):
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines):
            raise InputFileError(f"line {i + 1}: file ends before the '{label}' line", path)
        m = re.match(r"^\s*(frames|frame\s+time)\s*:\s*(.*?)\s*$", lines[i], re.IGNORECASE)
        if m is None or " ".join(m.group(1).lower().split()) != key:
            raise InputFileError(f"line {i + 1}: expected '{label} ...', found {lines[i].strip()[:60]!r}", path)
        fields[key] = (m.group(2), i + 1)
        i += 1
    text, line = fields["frames"]
    try:
        frames = int(text)
    except ValueError:
        raise InputFileError(f"line {line}: 'Frames:' {text!r} is not an integer", path) from None
    if frames < 0:
        raise InputFileError(f"line {line}: 'Frames:' is negative ({frames})", path)
    text, line = fields["frame time"]
    try:
        frame_time = float(text)
    except ValueError:
        raise InputFileError(f"line {line}: 'Frame Time:' {text!r} is not a number", path) from None
    if not (np.isfinite(frame_time) and frame_time > 0):
        raise InputFileError(f"line {line}: 'Frame Time:' must be > 0, got {text!r}", path)
    return frames, frame_time, i


def _parse_frames(lines: tuple[str, ...], start: int, frames: int, num_channels: int, path: Path) -> np.ndarray:
    """``(frames, num_channels)`` float64 values from the data lines (blank lines skipped)."""
    rows = [(i + 1, s) for i, s in enumerate(lines[start:], start) if s.strip()]
    if len(rows) != frames:
        where = f"line {rows[frames][0]}: " if len(rows) > frames else ""
        raise InputFileError(
            f"{where}'Frames:' says {frames} frames but the file has {len(rows)} frame lines", path
        )
    for line, s in rows:
        n = len(s.split())
        if n != num_channels:
            raise InputFileError(
                f"line {line}: frame has {n} values, expected {num_channels} (one per channel)", path
            )
    if frames == 0:
        return np.zeros((0, num_channels))
    try:
        motion = np.array(" ".join(s for _, s in rows).split(), dtype=np.float64)
    except ValueError:
        motion = None
    if motion is None or not np.isfinite(motion).all():
        for line, s in rows:  # find the culprit for the message
            for tok in s.split():
                try:
                    ok = np.isfinite(float(tok))
                except ValueError:
                    ok = False
                if not ok:
                    raise InputFileError(f"line {line}: {tok!r} is not a finite number", path)
    return motion.reshape(frames, num_channels)


def _forward_kinematics(nodes: list[BvhNode], motion: np.ndarray) -> np.ndarray:
    """World positions ``(T, N, 3)`` (file units) of every node; vectorised over frames."""
    T = motion.shape[0]
    N = len(nodes)
    pos = np.zeros((T, N, 3))
    rot = np.empty((N, T, 3, 3))
    eye = np.broadcast_to(np.eye(3), (T, 3, 3))
    for j, node in enumerate(nodes):
        local_t = np.broadcast_to(node.offset, (T, 3)).copy()
        local_r = None
        for k, (axis, kind) in enumerate(node.channels):
            col = motion[:, node.first_channel + k]
            if kind == "position":
                local_t[:, "xyz".index(axis)] = col
            else:
                r = axis_rotations(axis, np.deg2rad(col))
                local_r = r if local_r is None else local_r @ r
        if local_r is None:
            local_r = eye
        if node.parent < 0:
            rot[j] = local_r
            pos[:, j] = local_t
        else:
            parent_r = rot[node.parent]
            rot[j] = parent_r @ local_r
            pos[:, j] = pos[:, node.parent] + np.einsum("tij,tj->ti", parent_r, local_t)
    return pos
