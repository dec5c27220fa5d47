"""AMASS ``.npz`` reader: SMPL-H body-model parameters, kept as they are.

An AMASS take (SMPL-H ``*_poses.npz``) holds:

``poses`` ``(T, 156)``
    axis-angle rotations (radians) of the 52 SMPL-H joints: root orientation ``[:, :3]``,
    21 body joints ``[:, 3:66]``, 15 + 15 hand joints ``[:, 66:156]``.
``trans`` ``(T, 3)``
    root translation in metres (AMASS world: z up).
``betas`` ``(B,)``
    shape coefficients (16 in AMASS).
``gender``
    ``"male"``, ``"female"`` or ``"neutral"`` (stored as a 0-d string or bytes array).
``mocap_framerate``
    frames per second (``mocap_frame_rate`` in the SMPL-X releases is accepted too).
``dmpls`` ``(T, 8)``
    optional soft-tissue coefficients.

There is **no forward kinematics** here: joint positions depend on the body model (the
SMPL-H template, its joint regressor and the betas), which this module does not load. Feed
:class:`AmassMotion` to a body model to get joints or vertices.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meshpose.errors import InputFileError
from meshpose.io._util import load_npy_or_npz, require_file
from meshpose.io.atomic import atomic_write

__all__ = ["AMASS_GENDERS", "SMPLH_POSE_DIM", "AmassMotion", "read_amass", "write_amass"]

#: Width of an SMPL-H ``poses`` row: 52 joints x 3 axis-angle components.
SMPLH_POSE_DIM = 156

#: Accepted ``gender`` values.
AMASS_GENDERS = ("male", "female", "neutral")


@dataclass
class AmassMotion:
    """SMPL-H parameters of one AMASS take, unchanged from the file (float64).

    Attributes:
        poses: ``(T, 156)`` axis-angle joint rotations, radians.
        trans: ``(T, 3)`` root translation, metres, z up.
        betas: ``(B,)`` shape coefficients.
        gender: ``"male"``, ``"female"`` or ``"neutral"``.
        fps: frames per second (``mocap_framerate``).
        dmpls: ``(T, 8)`` DMPL soft-tissue coefficients, or ``None`` when absent.
        source: the file it was read from (``""`` when built in memory).
    """

    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    gender: str
    fps: float
    dmpls: np.ndarray | None = None
    source: str = ""

    @property
    def num_frames(self) -> int:
        """``T``."""
        return int(self.poses.shape[0])

    @property
    def root_orient(self) -> np.ndarray:
        """``(T, 3)`` global root orientation (axis-angle)."""
        return self.poses[:, :3]

    @property
    def pose_body(self) -> np.ndarray:
        """``(T, 63)`` the 21 body joints (axis-angle)."""
        return self.poses[:, 3:66]

    @property
    def pose_hand(self) -> np.ndarray:
        """``(T, 90)`` the 2 x 15 hand joints (axis-angle)."""
        return self.poses[:, 66:156]


def _validate(m: AmassMotion, path: str | os.PathLike | None) -> AmassMotion:
    """Check shapes, finiteness, gender and fps; raise InputFileError naming ``path``."""

    def array(name: str, value, ndim: int) -> np.ndarray:
        a = np.asarray(value)
        if a.dtype.kind not in "fiu":
            raise InputFileError(f"{name!r} must hold numbers, found dtype {a.dtype}", path)
        a = a.astype(np.float64)
        if a.ndim != ndim:
            raise InputFileError(f"{name!r} must be {ndim}-D, found shape {a.shape}", path)
        if not np.isfinite(a).all():
            raise InputFileError(f"{name!r} holds NaN or infinite values", path)
        return a

    poses = array("poses", m.poses, 2)
    if poses.shape[1] != SMPLH_POSE_DIM:
        raise InputFileError(
            f"'poses' has {poses.shape[1]} columns, expected {SMPLH_POSE_DIM} (SMPL-H: 52 joints x 3)", path
        )
    T = poses.shape[0]
    trans = array("trans", m.trans, 2)
    if trans.shape != (T, 3):
        raise InputFileError(f"'trans' has shape {trans.shape}, expected ({T}, 3) to match 'poses'", path)
    betas = array("betas", m.betas, 1)
    dmpls = None
    if m.dmpls is not None:
        dmpls = array("dmpls", m.dmpls, 2)
        if dmpls.shape[0] != T:
            raise InputFileError(f"'dmpls' has {dmpls.shape[0]} frames, 'poses' has {T}", path)
    gender = m.gender
    if isinstance(gender, np.ndarray):
        gender = gender.item() if gender.size == 1 else None
    if isinstance(gender, bytes):
        gender = gender.decode("ascii", "replace")
    if not isinstance(gender, str) or gender.strip().lower() not in AMASS_GENDERS:
        raise InputFileError(f"'gender' must be one of {', '.join(AMASS_GENDERS)}, found {gender!r}", path)
    try:
        fps = float(np.asarray(m.fps).item())
    except (TypeError, ValueError):
        raise InputFileError(f"the frame rate must be one number, found {m.fps!r}", path) from None
    if not (np.isfinite(fps) and fps > 0):
        raise InputFileError(f"the frame rate must be > 0, found {fps}", path)
    return AmassMotion(poses, trans, betas, gender.strip().lower(), fps, dmpls, m.source)


def read_amass(path: str | os.PathLike) -> AmassMotion:
    """Read an AMASS SMPL-H ``.npz`` file.

    Returns:
        An :class:`AmassMotion` with the arrays as float64 (values unchanged).

    Raises:
        InputFileError: missing or unreadable file, a missing key (``poses``, ``trans``,
            ``betas``, ``gender``, ``mocap_framerate``), wrong shapes (``poses`` not
            ``(T, 156)``, ``trans`` not ``(T, 3)``), NaN/inf values, an unknown gender or a
            frame rate that is not > 0.
    """
    p = require_file(path, "AMASS .npz file")
    data = load_npy_or_npz(p, ".npz")
    if "poses" not in data and "pose_body" in data:
        raise InputFileError("split SMPL-X parameters (pose_body, ...) are not read; expected SMPL-H 'poses'", p)
    fps_key = "mocap_framerate" if "mocap_framerate" in data else "mocap_frame_rate"
    missing = [k for k in ("poses", "trans", "betas", "gender", fps_key) if k not in data]
    if missing:
        raise InputFileError(f"not an AMASS file: missing {', '.join(repr(k) for k in missing)}", p)
    motion = AmassMotion(
        poses=data["poses"],
        trans=data["trans"],
        betas=data["betas"],
        gender=data["gender"],
        fps=data[fps_key],
        dmpls=data.get("dmpls"),
        source=os.fspath(p),
    )
    return _validate(motion, p)


def write_amass(path: str | os.PathLike, motion: AmassMotion) -> Path:
    """Write ``motion`` as an AMASS-style ``.npz`` (atomically; validated first).

    Keys: ``poses``, ``trans``, ``betas``, ``gender`` (a string array), ``mocap_framerate``
    and ``dmpls`` when present, so :func:`read_amass` (and AMASS tools) read it back.

    Raises:
        ValueError: ``motion`` has wrong shapes or values (see :func:`read_amass`).
        MeshposeError: the file cannot be written.
    """
    try:
        m = _validate(motion, None)
    except InputFileError as exc:
        raise ValueError(f"invalid AmassMotion: {exc.message}") from None
    arrays = {
        "poses": m.poses,
        "trans": m.trans,
        "betas": m.betas,
        "gender": np.array(m.gender),
        "mocap_framerate": np.array(m.fps),
    }
    if m.dmpls is not None:
        arrays["dmpls"] = m.dmpls
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
