"""The output files of ``meshpose predict`` (``.npz``) and ``meshpose mesh-keypoints`` (JSON).

``predict`` results (``.npz``), for N person-detections::

    key               shape       dtype    meaning
    joints3d_<S>      (N, K, 3)   float32  3D joints of joint set S, metres, root-relative
                                           (NaN marks a joint that cannot be derived)
    joint_names_<S>   (K,)        str      the joint names of S, in order
    vertices          (N, V, 3)   float32  body-mesh vertices, metres
    faces             (F, 3)      int64    triangle vertex indices into vertices
    cam_t             (N, 3)      float32  camera translation, metres (only when the intrinsics
                                           are known)
    pose              (N, ...)    float32  body-model pose parameters
    shape             (N, ...)    float32  body-model shape parameters
    frame_ids         (N,)        int64    frame of each row (as in the input keypoints)
    person_ids        (N,)        int64    person of each row
    valid             (N,)        bool     False for a person whose keypoints show too little
                                           for a body (see meshpose.io.keypoints.visible_people):
                                           every float of that row is NaN

At least one ``joints3d_<S>`` is required (S a meshpose joint-set name, K its joint count); all
other keys above are required except ``cam_t`` and ``valid`` (absent: every row valid). Extra
keys are allowed if they hold numbers or strings (no Python objects). Everything but NaN in
``joints3d_<S>`` and in the rows that are not valid must be finite.

``mesh-keypoints`` output (JSON)::

    {"joint_set": "seed12", "units": "metres",
     "keypoints": {"neck": [x, y, z], ...}, "confidence": {"neck": 0.93, ...}}
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meshpose.errors import InputFileError
from meshpose.io._util import (
    load_json,
    load_npy_or_npz,
    one_line,
    require_file,
    short_floats,
)
from meshpose.io.atomic import atomic_write, atomic_write_text
from meshpose.joints import JOINT_SETS, JointSet, get_joint_set

__all__ = [
    "MeshKeypoints",
    "read_mesh_keypoints_json",
    "read_results_npz",
    "result_joint_sets",
    "validate_results",
    "write_mesh_keypoints_json",
    "write_results_npz",
]

JOINTS_PREFIX = "joints3d_"
NAMES_PREFIX = "joint_names_"
_REQUIRED = ("frame_ids", "person_ids", "vertices", "faces", "pose", "shape")


def _value_error(message: str, path: Any = None) -> ValueError:
    return ValueError(f"invalid results: {message}")


def result_joint_sets(results: Mapping[str, Any]) -> list[str]:
    """The joint sets S that ``results`` has ``joints3d_<S>`` for, in key order."""
    return [k[len(JOINTS_PREFIX):] for k in results if k.startswith(JOINTS_PREFIX)]


def validate_results(
    results: Mapping[str, Any], path: str | os.PathLike | None = None, Error: Callable = _value_error
) -> dict[str, np.ndarray]:
    """Check ``results`` against the schema of the module docstring and normalise dtypes.

    Missing ``joint_names_<S>`` are filled in from the joint set.

    Args:
        results: key -> array-like.
        path: file the results come from, for messages.
        Error: ``Error(message, path)`` builds the exception to raise (ValueError by default;
            :func:`read_results_npz` uses InputFileError).

    Returns:
        A new dict with float32 float arrays, int64 ids / faces and str joint names.
    """
    missing = [k for k in _REQUIRED if k not in results]
    if missing:
        raise Error(f"missing {', '.join(repr(k) for k in missing)}", path)
    sets = result_joint_sets(results)
    if not sets:
        raise Error("no joints3d_<joint set> array", path)
    out: dict[str, np.ndarray] = {}

    def arr(key: str) -> np.ndarray:
        value = np.asarray(results[key])
        if value.dtype.kind == "O":
            raise Error(f"{key!r} holds Python objects", path)
        return value

    def ints(key: str, shape_text: str, ndim: int) -> np.ndarray:
        a = arr(key)
        if a.dtype.kind not in "iu" or a.ndim != ndim:
            raise Error(f"{key!r} must be an integer array {shape_text}, got {a.dtype} {a.shape}", path)
        return a.astype(np.int64)

    def floats(key: str, shape_text: str, ndim: int | None, allow_nan: bool = False) -> np.ndarray:
        a = arr(key)
        if a.dtype.kind not in "iuf" or (ndim is not None and a.ndim != ndim) or (ndim is None and a.ndim < 2):
            raise Error(f"{key!r} must be a float array {shape_text}, got {a.dtype} {a.shape}", path)
        if a.shape[0] != n:
            raise Error(f"{key!r} has {a.shape[0]} rows but frame_ids has {n}", path)
        ok = np.isfinite(a)
        if allow_nan:
            ok |= np.isnan(a)
        elif skipped is not None:
            ok |= np.isnan(a) & skipped.reshape(-1, *([1] * (a.ndim - 1)))
        if not ok.all():
            raise Error(f"{key!r} holds non-finite values", path)
        return a.astype(np.float32)

    frame_ids = ints("frame_ids", "(N,)", 1)
    n = frame_ids.shape[0]
    skipped = None  # (N,) rows that are not valid, or None when there is no "valid"
    if "valid" in results:
        valid = arr("valid")
        if valid.dtype != np.bool_ or valid.shape != (n,):
            raise Error(f"'valid' must be a ({n},) bool array, got {valid.dtype} {valid.shape}", path)
        out["valid"], skipped = valid, ~valid
    person_ids = ints("person_ids", "(N,)", 1)
    if person_ids.shape != (n,):
        raise Error(f"'person_ids' has {person_ids.shape[0]} rows but frame_ids has {n}", path)
    if n:
        pairs, counts = np.unique(np.stack([frame_ids, person_ids], 1), axis=0, return_counts=True)
        if (counts > 1).any():
            f, p = pairs[np.argmax(counts > 1)]
            raise Error(f"duplicate rows for frame {int(f)}, person {int(p)}", path)
    out["frame_ids"], out["person_ids"] = frame_ids, person_ids

    for s in sets:
        key, names_key = JOINTS_PREFIX + s, NAMES_PREFIX + s
        if s not in JOINT_SETS:
            raise Error(f"{key!r}: unknown joint set {s!r} (known: {', '.join(JOINT_SETS)})", path)
        js = JOINT_SETS[s]
        joints = floats(key, f"(N, {len(js)}, 3)", 3, allow_nan=True)
        if joints.shape[1:] != (len(js), 3):
            raise Error(f"{key!r} must have shape (N, {len(js)}, 3), got {joints.shape}", path)
        if names_key in results:
            names = arr(names_key)
            if names.dtype.kind not in "US" or names.ndim != 1:
                raise Error(f"{names_key!r} must be a (K,) string array, got {names.dtype} {names.shape}", path)
            names = names.astype(str)
            if tuple(names.tolist()) != js.names:
                raise Error(f"{names_key!r} are not the joint names of {s!r}", path)
        else:
            names = np.array(js.names)
        out[key], out[names_key] = joints, names
    stray = [k for k in results if k.startswith(NAMES_PREFIX) and JOINTS_PREFIX + k[len(NAMES_PREFIX):] not in results]
    if stray:
        raise Error(f"{stray[0]!r} has no matching {JOINTS_PREFIX}{stray[0][len(NAMES_PREFIX):]}", path)

    vertices = floats("vertices", "(N, V, 3)", 3)
    if vertices.shape[2] != 3 or vertices.shape[1] == 0:
        raise Error(f"'vertices' must have shape (N, V, 3) with V > 0, got {vertices.shape}", path)
    faces = ints("faces", "(F, 3)", 2)
    if faces.shape[1] != 3 or faces.shape[0] == 0:
        raise Error(f"'faces' must have shape (F, 3) with F > 0, got {faces.shape}", path)
    if faces.min() < 0 or faces.max() >= vertices.shape[1]:
        raise Error(
            f"'faces' indices span {int(faces.min())}..{int(faces.max())} but there are {vertices.shape[1]} vertices",
            path,
        )
    out["vertices"], out["faces"] = vertices, faces
    if "cam_t" in results:
        cam_t = floats("cam_t", "(N, 3)", 2)
        if cam_t.shape[1] != 3:
            raise Error(f"'cam_t' must have shape (N, 3), got {cam_t.shape}", path)
        out["cam_t"] = cam_t
    out["pose"] = floats("pose", "(N, ...)", None)
    out["shape"] = floats("shape", "(N, ...)", None)

    for key in results:
        if key not in out:
            if not isinstance(key, str) or not key:
                raise Error(f"result keys must be non-empty strings, got {key!r}", path)
            out[key] = arr(key)
    return out


def write_results_npz(path: str | os.PathLike, results: Mapping[str, Any]) -> Path:
    """Validate ``results`` (see :func:`validate_results`) and write them atomically as ``.npz``.

    Args:
        path: output file (``.npz``; its folder must exist).
        results: key -> array-like, as in the module docstring.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: ``results`` do not follow the schema (nothing is written).
        MeshposeError: the file cannot be written.
    """
    arrays = validate_results(results, path)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to other names
            np.savez(f, **arrays)

    return atomic_write(path, write)


def read_results_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate a results ``.npz`` written by :func:`write_results_npz`.

    Returns:
        key -> array with the dtypes of the schema.

    Raises:
        InputFileError: missing, unreadable or not following the schema.
    """
    p = require_file(path, "results file")
    data = load_npy_or_npz(p, ".npz")
    return validate_results(data, p, InputFileError)


# ---------------------------------------------------------------------------------------------
# mesh keypoints JSON


@dataclass
class MeshKeypoints:
    """3D keypoints located on one mesh (the output of ``meshpose mesh-keypoints``).

    Attributes:
        joint_set: meshpose joint-set name.
        units: unit of ``points`` (e.g. ``"metres"``).
        names: ``(K,)`` joint names, each a joint of ``joint_set``.
        points: ``(K, 3)`` float64 coordinates in ``units``.
        confidence: ``(K,)`` float64 in ``[0, 1]``.
        source: the file it was read from ("" when built in memory).
    """

    joint_set: str
    units: str
    names: tuple[str, ...]
    points: np.ndarray
    confidence: np.ndarray
    source: str = ""


def _check_mesh_keypoints(
    js: JointSet, units: Any, names: Sequence[Any], points: Any, confidence: Any, path: Any, Error: Callable
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    if not isinstance(units, str) or not units.strip():
        raise Error(f"units must be a non-empty string, got {units!r}", path)
    names = tuple(names)
    if not names:
        raise Error("no keypoints", path)
    for name in names:
        if not isinstance(name, str) or name not in js.names:
            raise Error(f"{name!r} is not a joint of joint set {js.name!r}", path)
    if len(set(names)) != len(names):
        raise Error("duplicate joint names", path)
    pts = np.asarray(points)
    if pts.dtype.kind not in "iuf" or pts.shape != (len(names), 3):
        raise Error(f"points must be a ({len(names)}, 3) array of numbers, got {pts.dtype} {pts.shape}", path)
    if not np.isfinite(pts).all():
        k = int(np.nonzero(~np.isfinite(pts).all(axis=1))[0][0])
        raise Error(f"non-finite coordinates for {names[k]!r}: {pts[k].tolist()}", path)
    conf = np.asarray(confidence)
    if conf.dtype.kind not in "iuf" or conf.shape != (len(names),):
        raise Error(f"confidence must be a ({len(names)},) array of numbers, got {conf.dtype} {conf.shape}", path)
    bad = ~np.isfinite(conf) | (conf < 0) | (conf > 1)
    if bad.any():
        k = int(np.argmax(bad))
        raise Error(f"confidence {float(conf[k]):g} for {names[k]!r} outside [0, 1]", path)
    return names, pts.astype(np.float64), conf.astype(np.float64)


def write_mesh_keypoints_json(
    path: str | os.PathLike,
    joint_set: str | JointSet,
    names: Sequence[str],
    points,
    confidence,
    units: str = "metres",
) -> Path:
    """Write the keypoints found on a mesh as JSON, atomically.

    Args:
        path: output ``.json`` file (its folder must exist).
        joint_set: the joint set ``names`` belong to.
        names: ``K`` unique joint names of that set (any subset, any order).
        points: ``(K, 3)`` coordinates in ``units``; float32 points are written with the
            shortest decimal that reads back as the same float32.
        confidence: ``(K,)`` values in ``[0, 1]``.
        units: unit of ``points``.

    Returns:
        ``Path(path)``.

    Raises:
        UnknownNameError: unknown ``joint_set``.
        ValueError: invalid names, shapes or values (nothing is written).
        MeshposeError: the file cannot be written.
    """
    js = get_joint_set(joint_set)
    names, pts, conf = _check_mesh_keypoints(
        js, units, names, points, confidence, path, lambda m, _p: ValueError(f"invalid mesh keypoints: {m}")
    )
    as32 = np.asarray(points).dtype == np.float32
    listed = short_floats(pts.astype(np.float32) if as32 else pts)
    doc = {
        "joint_set": js.name,
        "units": units,
        "keypoints": dict(zip(names, listed)),
        "confidence": dict(zip(names, short_floats(conf.astype(np.asarray(confidence).dtype)
                                                   if np.asarray(confidence).dtype == np.float32 else conf))),
    }
    return atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def read_mesh_keypoints_json(path: str | os.PathLike) -> MeshKeypoints:
    """Read a file written by :func:`write_mesh_keypoints_json`.

    Returns:
        :class:`MeshKeypoints` with joints in the file's order.

    Raises:
        InputFileError: missing, empty, malformed or invalid file (including an unknown joint
            set name inside it).
    """
    p = require_file(path, "mesh keypoint file")
    doc = load_json(p)
    if not isinstance(doc, dict):
        raise InputFileError("expected a JSON object with joint_set, units, keypoints, confidence", p)
    missing = [k for k in ("joint_set", "units", "keypoints", "confidence") if k not in doc]
    if missing:
        raise InputFileError(f"missing {', '.join(repr(k) for k in missing)}", p)
    name = doc["joint_set"]
    if not isinstance(name, str) or name not in JOINT_SETS:
        raise InputFileError(f"unknown joint set {name!r} (known: {', '.join(JOINT_SETS)})", p)
    js = JOINT_SETS[name]
    kps, confs = doc["keypoints"], doc["confidence"]
    if not isinstance(kps, dict) or not isinstance(confs, dict):
        raise InputFileError('"keypoints" and "confidence" must be JSON objects keyed by joint name', p)
    if set(kps) != set(confs):
        diff = sorted(set(kps) ^ set(confs))
        raise InputFileError(f'"keypoints" and "confidence" name different joints ({", ".join(diff[:3])})', p)
    names = tuple(kps)
    points = []
    for n in names:
        v = kps[n]
        ok = isinstance(v, list) and len(v) == 3 and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in v
        )
        if not ok:
            raise InputFileError(f"keypoint {n!r} must be [x, y, z] numbers, got {one_line(json.dumps(v), 60)}", p)
        points.append(v)
    conf = []
    for n in names:
        c = confs[n]
        if not isinstance(c, (int, float)) or isinstance(c, bool):
            raise InputFileError(f"confidence of {n!r} must be a number, got {one_line(json.dumps(c), 60)}", p)
        conf.append(c)
    names, pts, conf_arr = _check_mesh_keypoints(
        js, doc["units"], names, np.array(points, dtype=np.float64).reshape(-1, 3),
        np.array(conf, dtype=np.float64), p, InputFileError,
    )
    return MeshKeypoints(js.name, doc["units"], names, pts, conf_arr, str(p))
