"""Readers for the Human3.6M joints exported by 3d-pose-baseline, and the H36M camera model.

Layout read (see the shared data README; the data itself is never shipped with meshpose)::

    h36m_S1_3d.npz        "S1/<action>"             -> (T, 17, 3) float32 world coordinates, metres
    h36m_S1_2d_sh.npz     "S1/<action>/<camera id>" -> (T, 16, 2) float32 Stacked-Hourglass pixels
    h36m_S1_joints.json   {"joints_3d": [17 labels], "joints_2d_sh": [16 labels], ...}
    h36m_S1_cameras.json  {"S1": {"<camera id>": {"R", "T" (mm), "f", "c", "k", "p"}, ...}}

The files' joint labels are H36M / Stacked-Hourglass labels ("Pelvis", "RFoot", "Neck/Nose",
"Head", ...). They are mapped to meshpose's canonical joint names *explicitly* by
:data:`LABEL_TO_JOINT` and the arrays are reordered into :func:`meshpose.joints.get_joint_set`
order (``h36m17`` for 3D, ``mpii16`` for 2D), so a file with another column order still loads
correctly, and a file with an unknown or missing label is refused. Label decisions:

* "Pelvis" (3D) and "Hip" (SH) are the root, ``pelvis``.
* "RAnkle"/"RFoot" (and left) are the ankle joint, ``right_ankle``.
* "Head" is the top of the head in both files (``head_top``); "Neck/Nose" is ``neck_nose``.
* "Spine" is ``spine`` in both files. Note that the two *definitions* differ: the H36M spine
  marker sits about 40 px (in S1's images) away from the Stacked-Hourglass "Spine", which is
  roughly the midpoint of pelvis and thorax, so they should not be compared directly.

Camera model (Human3.6M calibration, 3d-pose-baseline export; :class:`Camera`)::

    X_cam = R @ (X_world - T)                          world and T in metres here (mm in the file)
    x, y  = X_cam[0] / X_cam[2], X_cam[1] / X_cam[2]
    (distort=True)  r2 = x^2 + y^2
                    radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3
                    tan    = p[0] y + p[1] x
                    x, y   = x (radial + tan) + p[1] r2,  y (radial + tan) + p[0] r2
    u, v  = f * (x, y) + c                             pixels

The camera frame is OpenCV's (x right, y down, z forward). The distortion formula is the one the
3d-pose-baseline camera code applies to these (k, p) values; ``p`` is stored in that code's order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from meshpose.errors import InputFileError
from meshpose.io._util import load_json, load_npy_or_npz
from meshpose.joints import get_joint_set

__all__ = [
    "LABEL_TO_JOINT",
    "action_name",
    "DEFAULT_IMAGE_SIZE",
    "Camera",
    "load_h36m_3d",
    "load_h36m_2d",
    "load_h36m_cameras",
    "world_to_camera",
    "project",
    "split_actions",
]

#: H36M / Stacked-Hourglass joint label -> canonical meshpose joint name (see module docstring).
LABEL_TO_JOINT: dict[str, str] = {
    "Pelvis": "pelvis",
    "Hip": "pelvis",
    "RHip": "right_hip",
    "RKnee": "right_knee",
    "RAnkle": "right_ankle",
    "RFoot": "right_ankle",
    "LHip": "left_hip",
    "LKnee": "left_knee",
    "LAnkle": "left_ankle",
    "LFoot": "left_ankle",
    "Spine": "spine",
    "Thorax": "thorax",
    "Neck/Nose": "neck_nose",
    "Head": "head_top",
    "LShoulder": "left_shoulder",
    "LElbow": "left_elbow",
    "LWrist": "left_wrist",
    "RShoulder": "right_shoulder",
    "RElbow": "right_elbow",
    "RWrist": "right_wrist",
}

#: (width, height) in pixels of the H36M videos, used when the camera file gives no size.
DEFAULT_IMAGE_SIZE: tuple[int, int] = (1000, 1002)


@dataclass(frozen=True)
class Camera:
    """One calibrated Human3.6M camera.

    Attributes:
        subject: e.g. ``"S1"``.
        name: the camera id, e.g. ``"54138969"``.
        R: (3, 3) float64 world-to-camera rotation.
        T: (3,) float64 camera centre in world coordinates, **metres** (the file stores mm).
        f: (2,) float64 focal lengths (fx, fy), pixels.
        c: (2,) float64 principal point (cx, cy), pixels.
        k: (3,) float64 radial distortion (k1, k2, k3).
        p: (2,) float64 tangential distortion, in the file's (3d-pose-baseline) order.
        image_size: (width, height) pixels.
    """

    subject: str
    name: str
    R: np.ndarray
    T: np.ndarray
    f: np.ndarray
    c: np.ndarray
    k: np.ndarray
    p: np.ndarray
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE


# ---------------------------------------------------------------------------------------------
# file helpers


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise InputFileError("file not found", path)
    return load_json(path)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an archive; each member's header is checked against its stored size
    before it is read (see :func:`meshpose.io._util.load_npy_or_npz`)."""
    if not path.is_file():
        raise InputFileError("file not found", path)
    return load_npy_or_npz(path, ".npz")


def _column_order(labels: object, target: str, key: str, path: Path) -> np.ndarray:
    """Column index in the file for each joint of the ``target`` joint set, from file labels."""
    js = get_joint_set(target)
    if not isinstance(labels, list) or not all(isinstance(s, str) for s in labels):
        raise InputFileError(f"{key!r} must be a list of joint labels", path)
    names = []
    for label in labels:
        if label not in LABEL_TO_JOINT:
            raise InputFileError(
                f"unknown joint label {label!r} in {key!r}; known labels: {', '.join(LABEL_TO_JOINT)}", path
            )
        names.append(LABEL_TO_JOINT[label])
    if len(set(names)) != len(names):
        raise InputFileError(f"{key!r} names the same joint twice: {labels}", path)
    missing = [n for n in js.names if n not in names]
    if missing or len(names) != len(js):
        raise InputFileError(
            f"{key!r} has {len(names)} joints but joint set {js.name!r} needs exactly "
            f"{len(js)}: {', '.join(js.names)}" + (f" (missing {', '.join(missing)})" if missing else ""),
            path,
        )
    return np.array([names.index(n) for n in js.names], dtype=np.int64)


def _labels(joints_json: str | os.PathLike, key: str) -> tuple[object, Path]:
    path = Path(joints_json)
    meta = _read_json(path)
    if not isinstance(meta, dict) or key not in meta:
        raise InputFileError(f"expected a JSON object with key {key!r}", path)
    return meta[key], path


def _check_array(arr: np.ndarray, joints: int, dims: int, key: str, path: Path) -> None:
    if arr.ndim != 3 or arr.shape[1:] != (joints, dims) or not np.issubdtype(arr.dtype, np.number):
        raise InputFileError(
            f"entry {key!r} has shape {arr.shape} ({arr.dtype}); expected (T, {joints}, {dims}) numbers", path
        )


# ---------------------------------------------------------------------------------------------
# readers


def load_h36m_3d(
    npz_path: str | os.PathLike, joints_json: str | os.PathLike
) -> dict[tuple[str, str], np.ndarray]:
    """Read 3D joints: ``{(subject, action): (T, 17, 3) float32 metres, h36m17 order}``.

    Args:
        npz_path: archive with keys ``"<subject>/<action>"`` holding (T, 17, 3) world
            coordinates in metres (columns in the JSON's ``joints_3d`` order).
        joints_json: JSON with the ``joints_3d`` label list.

    Returns:
        World coordinates (H36M world frame, z up) reordered into the ``h36m17`` joint set.

    Raises:
        InputFileError: missing/unreadable file, unknown or missing labels, bad keys or shapes.
    """
    labels, jpath = _labels(joints_json, "joints_3d")
    order = _column_order(labels, "h36m17", "joints_3d", jpath)
    path = Path(npz_path)
    out: dict[tuple[str, str], np.ndarray] = {}
    for key, arr in _read_npz(path).items():
        parts = key.split("/")
        if len(parts) != 2 or not all(parts):
            raise InputFileError(f"entry {key!r} is not named '<subject>/<action>'", path)
        _check_array(arr, len(order), 3, key, path)
        out[(parts[0], parts[1])] = np.ascontiguousarray(arr[:, order], dtype=np.float32)
    return out


def load_h36m_2d(
    npz_path: str | os.PathLike, joints_json: str | os.PathLike
) -> dict[tuple[str, str, str], np.ndarray]:
    """Read 2D detections: ``{(subject, action, camera): (T, 16, 2) float32 pixels, mpii16 order}``.

    Args:
        npz_path: archive with keys ``"<subject>/<action>/<camera id>"`` holding (T, 16, 2)
            pixel coordinates (columns in the JSON's ``joints_2d_sh`` order).
        joints_json: JSON with the ``joints_2d_sh`` label list.

    Returns:
        Pixel coordinates reordered into the ``mpii16`` joint set. Frame t matches frame t of
        the 3D entry ``(subject, action)`` where one exists.

    Raises:
        InputFileError: missing/unreadable file, unknown or missing labels, bad keys or shapes.
    """
    labels, jpath = _labels(joints_json, "joints_2d_sh")
    order = _column_order(labels, "mpii16", "joints_2d_sh", jpath)
    path = Path(npz_path)
    out: dict[tuple[str, str, str], np.ndarray] = {}
    for key, arr in _read_npz(path).items():
        parts = key.split("/")
        if len(parts) != 3 or not all(parts):
            raise InputFileError(f"entry {key!r} is not named '<subject>/<action>/<camera id>'", path)
        _check_array(arr, len(order), 2, key, path)
        out[(parts[0], parts[1], parts[2])] = np.ascontiguousarray(arr[:, order], dtype=np.float32)
    return out


def _vector(entry: Mapping, name: str, shape: tuple[int, ...], where: str, path: Path) -> np.ndarray:
    if name not in entry:
        raise InputFileError(f"camera {where} has no {name!r}", path)
    try:
        arr = np.asarray(entry[name], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputFileError(f"camera {where}: {name!r} is not numeric", path) from None
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise InputFileError(f"camera {where}: {name!r} must be {shape} finite numbers, got shape {arr.shape}", path)
    return arr


def _image_size(entry: Mapping, where: str, path: Path) -> tuple[int, int]:
    """(W, H) from ``image_size``, ``res_w``/``res_h`` or ``width``/``height``; else the default."""
    if "image_size" in entry:
        size = entry["image_size"]
    elif "res_w" in entry or "res_h" in entry:
        size = (entry.get("res_w"), entry.get("res_h"))
    elif "width" in entry or "height" in entry:
        size = (entry.get("width"), entry.get("height"))
    else:
        return DEFAULT_IMAGE_SIZE
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and float(v).is_integer() for v in size)
    ):
        raise InputFileError(f"camera {where}: image size must be two positive integers (W, H), got {size!r}", path)
    return int(size[0]), int(size[1])


def load_h36m_cameras(json_path: str | os.PathLike) -> dict[tuple[str, str], Camera]:
    """Read calibrations: ``{(subject, camera id): Camera}`` with ``T`` converted to metres.

    Args:
        json_path: ``{subject: {camera id: {"R": 3x3, "T": 3 (mm), "f": 2, "c": 2, "k": 3,
            "p": 2, optional "image_size": [W, H] or "res_w"/"res_h"}}}``.

    Raises:
        InputFileError: missing/unreadable file, missing fields, wrong sizes, a non-rotation R.
    """
    path = Path(json_path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InputFileError("expected a JSON object {subject: {camera id: calibration}}", path)
    out: dict[tuple[str, str], Camera] = {}
    for subject, cams in data.items():
        if not isinstance(cams, dict):
            raise InputFileError(f"subject {subject!r}: expected an object {{camera id: calibration}}", path)
        for cam_id, entry in cams.items():
            where = f"{subject}/{cam_id}"
            if not isinstance(entry, dict):
                raise InputFileError(f"camera {where}: expected an object", path)
            R = _vector(entry, "R", (3, 3), where, path)
            if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) <= 0:
                raise InputFileError(f"camera {where}: 'R' is not a rotation matrix", path)
            out[(subject, cam_id)] = Camera(
                subject=subject,
                name=cam_id,
                R=R,
                T=_vector(entry, "T", (3,), where, path) / 1000.0,
                f=_vector(entry, "f", (2,), where, path),
                c=_vector(entry, "c", (2,), where, path),
                k=_vector(entry, "k", (3,), where, path),
                p=_vector(entry, "p", (2,), where, path),
                image_size=_image_size(entry, where, path),
            )
    return out


# ---------------------------------------------------------------------------------------------
# geometry


def _out_dtype(points: np.ndarray) -> np.dtype:
    return points.dtype if np.issubdtype(points.dtype, np.floating) else np.dtype(np.float64)


def world_to_camera(points_world_m: np.ndarray | Sequence, camera: Camera) -> np.ndarray:
    """World points (metres) into the camera frame: ``R @ (X - T)``.

    Args:
        points_world_m: (..., 3) world coordinates, metres.
        camera: the calibration.

    Returns:
        (..., 3) camera coordinates in metres (OpenCV frame: x right, y down, z forward), in the
        input's float dtype (float64 for integer input). Computed in float64.
    """
    pts = np.asarray(points_world_m)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"expected points of shape (..., 3), got {pts.shape}")
    out = (pts.astype(np.float64) - camera.T) @ camera.R.T
    return out.astype(_out_dtype(pts), copy=False)


def project(points_cam: np.ndarray | Sequence, camera: Camera, distort: bool = False) -> np.ndarray:
    """Camera-frame points to pixels with the camera's intrinsics.

    Args:
        points_cam: (..., 3) camera coordinates (any length unit; only ratios matter).
        camera: the calibration.
        distort: apply the H36M radial + tangential distortion (module docstring) before the
            intrinsics; use it to compare with detections on the real (distorted) video frames.

    Returns:
        (..., 2) pixel coordinates ``f * (x, y) / z + c``; points with ``z <= 0`` give NaN.
    """
    pts = np.asarray(points_cam)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"expected points of shape (..., 3), got {pts.shape}")
    p64 = pts.astype(np.float64)
    z = p64[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.where(z > 0, p64[..., :2] / np.where(z > 0, z, 1.0), np.nan)
    if distort:
        k1, k2, k3 = camera.k
        p0, p1 = camera.p
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        scale = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3)) + p0 * y + p1 * x
        xy = np.stack([x * scale + p1 * r2, y * scale + p0 * r2], axis=-1)
    return (xy * camera.f + camera.c).astype(_out_dtype(pts), copy=False)


# ---------------------------------------------------------------------------------------------
# the action split


def action_name(take: str) -> str:
    """The action a take belongs to: ``"Walking 1"`` and ``"Walking"`` are both ``"Walking"``."""
    return take.rstrip("0123456789").rstrip()


def split_actions(takes) -> tuple[list[str], list[str]]:
    """Deterministic halves of Human3.6M takes by action: the distinct action names
    (:func:`action_name`) sorted, the 1st, 3rd, 5th, ... in the first half, the others in the
    second; both takes of an action fall in the same half. For S1's 15 actions: the first half is
    Directions, Eating, Phoning, Posing, Sitting, Smoking, WalkDog, Walking; the second
    Discussion, Greeting, Photo, Purchases, SittingDown, Waiting, WalkTogether.

    Returns:
        (first half, second half): the takes of each, sorted.
    """
    actions = sorted({action_name(t) for t in takes})
    first = set(actions[0::2])
    return (sorted(t for t in takes if action_name(t) in first),
            sorted(t for t in takes if action_name(t) not in first))
