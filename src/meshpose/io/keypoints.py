"""Reading and writing 2D keypoints (the input of ``meshpose predict``).

:func:`read_keypoints` returns a :class:`Keypoints2D`: one row per detected person per frame,
``(N, J, 3)`` pixel coordinates ``x, y`` and a confidence in ``[0, 1]``, in the order of a
meshpose joint set (:mod:`meshpose.joints`).

Supported inputs (the format is detected from the extension, then from the content):

``.json`` – COCO annotations
    A dict with ``"annotations"``: each annotation's ``"keypoints"`` is a flat
    ``[x, y, v] * J`` list with visibility flags ``v`` in {0, 1, 2}; confidence is 0 where
    ``v == 0`` and 1 otherwise. Annotations without ``"keypoints"`` or with every ``v == 0``
    (COCO's ``num_keypoints == 0`` people) are skipped. Frame id = ``image_id``; person id =
    ``track_id`` when present (PoseTrack), else the annotation's position among the kept
    annotations of its image. ``image_size`` comes from ``"images"`` (``width``, ``height``) when every used image
    has the same size, else it is ``None``.
``.json`` – COCO results
    A list of ``{"image_id", "category_id", "keypoints", "score"}``; ``"keypoints"`` is a flat
    ``[x, y, s] * J`` list where ``s`` is a *detector score*, not a probability: heatmap models
    write values slightly outside ``[0, 1]``, so scores are **clipped** to ``[0, 1]`` (NaN/inf
    are still errors). Frame id = ``image_id``; person id = ``track_id`` if present, else the
    detection's position among those of its image. An optional per-item ``"joint_set"`` (a
    meshpose extension, written by :func:`write_keypoints`; all items must agree) declares the
    joint set.
``.json`` – MMPose
    The three layouts MMPose 1.x writes:

    * ``[{"keypoints": [[x, y], ...], "keypoint_scores": [s, ...]}, ...]`` – one image, one
      dict per person (``MMPoseInferencer(..., pred_out_dir=...)`` on an image); frame id 0.
    * ``[{"frame_id": f, "instances": [<person>, ...]}, ...]`` – a video (the inferencer on a
      video; ``frame_id`` defaults to the list position).
    * ``{"meta_info": {...}, "instance_info": <either list above>}`` – ``demo/*_demo*.py
      --save-predictions``. ``meta_info["dataset_name"]`` ``"coco"`` / ``"h36m"`` declares
      coco17 / h36m17; any other dataset name declares nothing meshpose knows, so
      ``joint_set`` must be passed.

    ``keypoint_scores`` are detector scores and are clipped to ``[0, 1]`` like COCO results;
    without them confidence is 1. Person id = ``track_id`` if present, else position in the
    frame. Without a declared set, 17 joints mean coco17.
``.json`` – OpenPose
    ``{"version", "people": [{"pose_keypoints_2d": [x, y, c] * J}, ...]}``; 18 joints mean
    openpose18, 25 mean body25. A single file is frame 0; person id = position in ``people``.
folder
    Per-frame OpenPose (or single-image MMPose) ``.json`` files; the files are sorted by name
    with digit runs compared as numbers (``f2`` before ``f10``) and the frame id is the index in
    that order. Frames with nobody in them are allowed; hidden and non-``.json`` files are
    ignored.
``.npz``
    ``keypoints`` ``(N, J, 2|3)`` (third column confidence), ``joint_set`` (a string), optional
    ``frame_ids`` / ``person_ids`` ``(N,)`` integers (default: frame ``i``, person 0),
    ``image_size`` ``(W, H)`` and ``focal_length`` (pixels).
``.npy``
    An ``(N, J, 2|3)`` array; it does not name its joint set, so ``joint_set`` is required.
``.csv``
    A header row, then one row per person per frame::

        frame,person,nose_x,nose_y,nose_c,left_eye_x,left_eye_y,left_eye_c,...

    ``frame`` and ``person`` are integers; then, for every joint of the set *in the set's
    order* and named by the set's joint names, ``<name>_x``, ``<name>_y`` and optionally
    ``<name>_c`` (either every joint has a confidence column or none has). The joint set is the
    one whose joint names the header lists.

Joint sets: a file that *declares* its set (npz ``joint_set``, CSV header, MMPose
``meta_info``, a ``joint_set`` in COCO results items) must agree with the ``joint_set``
argument when both are given. Files that do not (other COCO files, OpenPose, MMPose without
meta, npy) take ``joint_set`` when given, else the format's default for their joint count
(COCO: 17 -> coco17, 23 -> coco_wholebody23; OpenPose: 18 -> openpose18, 25 -> body25);
either way the joint count must match the set.

Every reader validates: finite numbers with ``|x|, |y| <=`` :data:`MAX_COORDINATE` pixels,
confidence in ``[0, 1]`` (except the clipped scores above), the joint count, array ranks, at
least one person ("no keypoints found"), integer ids within int64 and unique ``(frame,
person)`` pairs, ``image_size`` and ``focal_length`` within :data:`MAX_IMAGE_SIDE` and
:data:`FOCAL_RANGE`. Problems raise :class:`~meshpose.errors.InputFileError` naming the file;
an unknown ``joint_set`` *argument* raises :class:`~meshpose.errors.UnknownNameError`. Of an
``.npz`` only the arrays named above are read.

Who is visible enough for a body (:func:`visible_people`): a person needs at least
:data:`MIN_VISIBLE_JOINTS` joints with confidence ``>=`` :data:`VISIBLE_CONFIDENCE` that do not
all lie at one point. OpenPose's ``0, 0, 0`` "not detected" joints do not count. Reading does not
drop anybody; ``meshpose predict`` and ``meshpose image`` flag and skip those people.
"""
from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meshpose.errors import InputFileError, MeshposeError, UnknownNameError
from meshpose.io._util import (
    integer,
    load_json,
    load_npy_or_npz,
    natural_key,
    npz_members,
    numbers,
    one_line,
    read_text,
    short_floats,
)
from meshpose.io.atomic import atomic_write, atomic_write_text
from meshpose.joints import JOINT_SETS, JointSet, get_joint_set

__all__ = [
    "FOCAL_RANGE",
    "KEYPOINT_READ_EXTENSIONS",
    "KEYPOINT_WRITE_EXTENSIONS",
    "MAX_COORDINATE",
    "MAX_IMAGE_SIDE",
    "MIN_VISIBLE_JOINTS",
    "VISIBLE_CONFIDENCE",
    "Keypoints2D",
    "check_focal_length",
    "check_keypoint_values",
    "read_keypoints",
    "visibility_rule",
    "visible_people",
    "write_keypoints",
]

#: Largest ``|x|`` or ``|y|`` of a keypoint, pixels: 100 times a 10,000-pixel image, and far
#: inside float32 (1e39 is finite in float64 but not in float32).
MAX_COORDINATE = 1e6
#: Largest width or height of an image, pixels.
MAX_IMAGE_SIDE = 1_000_000
#: Focal lengths accepted, pixels: from a 1-pixel focal length (a fish-eye on a tiny image) to
#: 10^6 (a long telephoto on a 100-megapixel sensor); 0, negative, NaN, inf and 1e300 are not.
FOCAL_RANGE = (1.0, 1e6)
#: A joint is visible at this confidence or above.
VISIBLE_CONFIDENCE = 0.1
#: A person needs this many visible joints (not all at one point) for a body.
MIN_VISIBLE_JOINTS = 4
_INT64 = np.iinfo(np.int64)

#: Extensions :func:`read_keypoints` accepts (a folder of ``.json`` frames is accepted too).
KEYPOINT_READ_EXTENSIONS = (".json", ".npz", ".npy", ".csv")
#: Extensions :func:`write_keypoints` writes.
KEYPOINT_WRITE_EXTENSIONS = (".npz", ".json", ".csv")

# Default joint set by joint count, for formats that do not name their set.
_COCO_DEFAULTS = {17: "coco17", 23: "coco_wholebody23"}
_OPENPOSE_DEFAULTS = {18: "openpose18", 25: "body25"}
_MMPOSE_DEFAULTS = {17: "coco17"}
# MMPose ``meta_info["dataset_name"]`` -> meshpose joint set with the same order.
_MMPOSE_DATASETS = {"coco": "coco17", "h36m": "h36m17"}


@dataclass
class Keypoints2D:
    """2D keypoints of N person-detections (one row per person per frame).

    Attributes:
        keypoints: ``(N, J, 3)`` float32: ``x, y`` in pixels and a confidence in ``[0, 1]``
            (1 where the file has none; 0 marks a missing joint).
        joint_set: name of the meshpose joint set (``J == len(get_joint_set(joint_set))``).
        frame_ids: ``(N,)`` int64 frame (image) id of each row.
        person_ids: ``(N,)`` int64 person id of each row, unique within a frame.
        image_size: ``(W, H)`` in pixels when known, else ``None``.
        focal_length: focal length in pixels when known, else ``None``.
        source: the path the keypoints were read from ("" when built in memory).
    """

    keypoints: np.ndarray
    joint_set: str
    frame_ids: np.ndarray
    person_ids: np.ndarray
    image_size: tuple[int, int] | None = None
    focal_length: float | None = None
    source: str = ""

    def __len__(self) -> int:
        """Number of rows N."""
        return int(self.keypoints.shape[0])

    @property
    def num_joints(self) -> int:
        """J, the number of joints per row."""
        return int(self.keypoints.shape[1])

    @property
    def xy(self) -> np.ndarray:
        """``(N, J, 2)`` pixel coordinates (a view)."""
        return self.keypoints[..., :2]

    @property
    def confidence(self) -> np.ndarray:
        """``(N, J)`` confidences in ``[0, 1]`` (a view)."""
        return self.keypoints[..., 2]


# ---------------------------------------------------------------------------------------------
# validation shared by all formats


class _Raw:
    """What a format parser found, before validation: see :func:`_finish`."""

    def __init__(
        self,
        points: np.ndarray,
        frame_ids: Any,
        person_ids: Any,
        *,
        declared: str | None = None,
        defaults: dict[int, str] | None = None,
        clip: bool = False,
        image_size: tuple[int, int] | None = None,
        focal_length: float | None = None,
        fmt: str = "",
    ):
        self.points = points  # (N, J, 2|3) float64
        self.frame_ids = frame_ids
        self.person_ids = person_ids
        self.declared = declared  # joint set the file names itself, if any
        self.defaults = defaults or {}  # J -> joint set, when nothing is declared or requested
        self.clip = clip  # confidences are detector scores: clip to [0, 1]
        self.image_size = image_size
        self.focal_length = focal_length
        self.fmt = fmt  # format name for messages


def _resolve_joint_set(
    path: Path, num_joints: int, requested: JointSet | None, raw: _Raw, Error: Callable = InputFileError
) -> JointSet:
    """The joint set of a file: declared, requested or defaulted by joint count; J must match."""
    if raw.declared is not None:
        try:
            declared = get_joint_set(raw.declared)
        except UnknownNameError:  # the *file* names it, so the file is bad
            known = ", ".join(JOINT_SETS)
            raise Error(f"unknown joint set {raw.declared!r} (known: {known})", path) from None
        if requested is not None and requested.name != declared.name:
            raise Error(
                f"file holds joint set {declared.name!r} but joint_set {requested.name!r} was requested", path
            )
        js = declared
    elif requested is not None:
        js = requested
    elif num_joints in raw.defaults:
        js = get_joint_set(raw.defaults[num_joints])
    else:
        fmt = f"{raw.fmt} " if raw.fmt else ""
        raise Error(
            f"cannot tell the joint set of {fmt}keypoints with {num_joints} joints per person; pass joint_set", path
        )
    if num_joints != len(js):
        raise Error(
            f"wrong keypoint count: {num_joints} joints per person but joint set {js.name!r} has {len(js)}", path
        )
    return js


def _where(rows: tuple, js: JointSet, frame_ids: np.ndarray, person_ids: np.ndarray) -> str:
    """'frame F, person P, joint j (name)' for the first of ``rows`` = np.nonzero output."""
    n, j = int(rows[0][0]), int(rows[1][0])
    return f"frame {int(frame_ids[n])}, person {int(person_ids[n])}, joint {j} ({js.names[j]})"


def _ids(value: Any, n: int, what: str, path: Path, Error: Callable) -> np.ndarray:
    """An ``(n,)`` int64 id array from a list or array of integers (each within int64: larger
    ones would wrap to negative numbers)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise Error(f"{what} must be a list of integers", path) from None
    if arr.dtype.kind == "O":
        big = next((v for v in arr.reshape(-1) if isinstance(v, int) and not _INT64.min <= v <= _INT64.max), None)
        if big is not None:
            raise Error(f"{what} must lie within the int64 range, got {str(big)[:40]}", path)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        outside = (arr < _INT64.min) | (arr >= 2.0**63)
        if outside.any():
            raise Error(f"{what} must lie within the int64 range, got {arr[np.argmax(outside)]:g}", path)
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise Error(f"{what} must be integers, got dtype {arr.dtype}", path)
    if arr.shape != (n,):
        raise Error(f"{what} must have shape ({n},) (one per person), got {arr.shape}", path)
    if arr.dtype.kind == "u" and arr.size and arr.max() > _INT64.max:
        raise Error(f"{what} must lie within the int64 range, got {int(arr.max())}", path)
    return arr.astype(np.int64)


def _finish(path: Path, raw: _Raw, requested: JointSet | None, Error: Callable = InputFileError) -> Keypoints2D:
    """Validate a parsed file and build the :class:`Keypoints2D`.

    Checks, in this order: rank and channel count, at least one person, the joint set and
    joint count, finite values, confidence range (or clipping), ids, image size, focal length.
    """
    pts = raw.points
    if pts.dtype.kind not in "iuf":
        raise Error(f"keypoints must be numbers, got dtype {pts.dtype}", path)
    if pts.ndim != 3 or pts.shape[-1] not in (2, 3):
        raise Error(f"keypoints must have shape (N, J, 2) or (N, J, 3), got {pts.shape}", path)
    if pts.shape[0] == 0:
        raise Error("no keypoints found (no people in the file)", path)
    n, j = pts.shape[0], pts.shape[1]
    js = _resolve_joint_set(path, j, requested, raw, Error)
    frame_ids = _ids(raw.frame_ids, n, "frame ids", path, Error)
    person_ids = _ids(raw.person_ids, n, "person ids", path, Error)

    pts = pts.astype(np.float64)
    if pts.shape[-1] == 2:
        pts = np.concatenate([pts, np.ones(pts.shape[:2] + (1,))], axis=-1)
    bad = ~np.isfinite(pts)
    if bad.any():
        rows = np.nonzero(bad)
        channel = ("x", "y", "confidence")[int(rows[2][0])]
        value = pts[rows[0][0], rows[1][0], rows[2][0]]
        raise Error(f"non-finite keypoint {channel} ({value}) at {_where(rows, js, frame_ids, person_ids)}", path)
    huge = np.abs(pts[..., :2]) > MAX_COORDINATE
    if huge.any():
        rows = np.nonzero(huge)
        value = pts[rows[0][0], rows[1][0], rows[2][0]]
        raise Error(f"keypoint {'xy'[int(rows[2][0])]} = {value:g} pixels is beyond +-{MAX_COORDINATE:g} at "
                    f"{_where(rows, js, frame_ids, person_ids)}", path)
    conf = pts[..., 2]
    if raw.clip:
        np.clip(conf, 0.0, 1.0, out=conf)
    else:
        outside = (conf < 0.0) | (conf > 1.0)
        if outside.any():
            rows = np.nonzero(outside)
            value = float(conf[rows[0][0], rows[1][0]])
            raise Error(
                f"confidence {value:g} outside [0, 1] at {_where(rows, js, frame_ids, person_ids)}", path
            )
    pairs = np.stack([frame_ids, person_ids], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    if (counts > 1).any():
        f, p = uniq[np.argmax(counts > 1)]
        raise Error(f"duplicate keypoints for frame {int(f)}, person {int(p)}", path)
    image_size = _check_image_size(raw.image_size, path, Error)
    focal = _check_focal(raw.focal_length, path, Error)
    return Keypoints2D(
        keypoints=pts.astype(np.float32),
        joint_set=js.name,
        frame_ids=frame_ids,
        person_ids=person_ids,
        image_size=image_size,
        focal_length=focal,
        source=str(path),
    )


def _check_image_size(value: Any, path: Path, Error: Callable) -> tuple[int, int] | None:
    """``(W, H)`` as two positive ints, or None."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.shape != (2,):
        raise Error(f"image_size must be two numbers (W, H), got {one_line(value, 60)}", path)
    if (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr <= 0)
            or np.any(arr > MAX_IMAGE_SIDE)):
        raise Error(f"image_size must be two integers (W, H) from 1 to {MAX_IMAGE_SIDE:,} pixels, "
                    f"got {one_line(arr.tolist(), 60)}", path)
    return int(arr[0]), int(arr[1])


def _check_focal(value: Any, path: Path, Error: Callable) -> float | None:
    """A focal length in pixels within :data:`FOCAL_RANGE`, or None."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.size != 1:
        raise Error(f"focal_length must be one number (pixels), got {one_line(value, 60)}", path)
    return check_focal_length(float(arr.reshape(())), path, Error, "focal_length")


def check_focal_length(value: float, path: Any = None, Error: Callable = MeshposeError,
                       what: str = "focal length") -> float:
    """``value`` if it is a focal length in pixels within :data:`FOCAL_RANGE`, else ``Error``."""
    low, high = FOCAL_RANGE
    if not np.isfinite(value) or not low <= value <= high:
        raise Error(f"{what} must be from {low:g} to {high:g} pixels, got {value:g}", path)
    return float(value)


def check_keypoint_values(points: np.ndarray, path: Any = None, Error: Callable = MeshposeError) -> None:
    """Check in-memory ``(N, J, 2|3)`` keypoints: finite, ``|x|, |y| <=`` :data:`MAX_COORDINATE`,
    confidence in ``[0, 1]``; else ``Error(message, path)``."""
    points = np.asarray(points, dtype=np.float64)
    if not np.isfinite(points).all():
        raise Error("keypoints hold NaN or infinite values", path)
    if (np.abs(points[..., :2]) > MAX_COORDINATE).any():
        raise Error(f"keypoint coordinates beyond +-{MAX_COORDINATE:g} pixels", path)
    if points.shape[-1] == 3 and ((points[..., 2] < 0) | (points[..., 2] > 1)).any():
        raise Error("keypoint confidences outside [0, 1]", path)


def visible_people(keypoints: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: which of ``(N, J, 3)`` keypoints (pixels, confidence) show enough of a
    person for a body: at least :data:`MIN_VISIBLE_JOINTS` joints with confidence ``>=``
    :data:`VISIBLE_CONFIDENCE`, not all at one point (their box is at least a pixel wide or
    tall)."""
    points = np.asarray(keypoints, dtype=np.float64)
    seen = points[..., 2] >= VISIBLE_CONFIDENCE
    enough = seen.sum(-1) >= MIN_VISIBLE_JOINTS
    xy = np.where(seen[..., None], points[..., :2], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # people with no visible joint: all-NaN
        extent = np.nanmax(xy, axis=1) - np.nanmin(xy, axis=1) if len(points) else np.zeros((0, 2))
    spread = np.nan_to_num(extent, nan=0.0).max(-1) >= 1.0
    return enough & spread


def visibility_rule() -> str:
    """The rule of :func:`visible_people` in words, for messages."""
    return f"at least {MIN_VISIBLE_JOINTS} joints with confidence >= {VISIBLE_CONFIDENCE:g}, not all at one point"


# ---------------------------------------------------------------------------------------------
# JSON formats


def _stack_people(path: Path, people: list[np.ndarray], where: list[str]) -> np.ndarray:
    """Stack per-person ``(J, C)`` arrays; all must have the same J (and C)."""
    if not people:
        return np.zeros((0, 0, 3))
    first = people[0].shape
    for arr, loc in zip(people, where):
        if arr.shape != first:
            raise InputFileError(
                f"wrong keypoint count: {loc} has {arr.shape[0]} joints, the first person has {first[0]}", path
            )
    return np.stack(people)


def _flat_triples(value: Any, what: str, path: Path) -> np.ndarray:
    """A flat ``[x, y, c] * J`` JSON list as a ``(J, 3)`` array."""
    arr = numbers(value, what, path)
    if arr.ndim != 1 or arr.size % 3 != 0 or arr.size == 0:
        raise InputFileError(
            f"wrong keypoint count: {what} must be a flat list [x, y, c, ...] of 3*J numbers, "
            f"got shape {arr.shape}", path
        )
    return arr.reshape(-1, 3)


def _require_dict(value: Any, what: str, path: Path) -> dict:
    if not isinstance(value, dict):
        raise InputFileError(f"{what} must be a JSON object, got {type(value).__name__}", path)
    return value


def _require_list(value: Any, what: str, path: Path) -> list:
    if not isinstance(value, list):
        raise InputFileError(f"{what} must be a JSON list, got {type(value).__name__}", path)
    return value


class _PersonCounter:
    """Person ids: an explicit ``track_id`` when given, else the position within the frame."""

    def __init__(self) -> None:
        self.count: dict[int, int] = {}

    def next(self, frame: int, item: dict, what: str, path: Path) -> int:
        position = self.count.get(frame, 0)
        self.count[frame] = position + 1
        if "track_id" in item and item["track_id"] is not None:
            return integer(item["track_id"], f"{what} track_id", path)
        return position


def _parse_coco_annotations(doc: dict, path: Path) -> _Raw:
    anns = _require_list(doc["annotations"], '"annotations"', path)
    sizes: dict[int, tuple] = {}
    for k, img in enumerate(doc.get("images") or []):
        if isinstance(img, dict) and "id" in img and "width" in img and "height" in img:
            sizes[integer(img["id"], f"images[{k}].id", path)] = (img["width"], img["height"])
    people, where, frames, persons = [], [], [], []
    counter = _PersonCounter()
    for k, ann in enumerate(anns):
        ann = _require_dict(ann, f"annotations[{k}]", path)
        if ann.get("keypoints") is None:
            continue  # e.g. crowd or non-person annotations
        kp = _flat_triples(ann["keypoints"], f"annotations[{k}].keypoints", path)
        v = kp[:, 2]
        flags = np.isin(v, (0, 1, 2))
        if not flags.all():
            bad = int(np.argmin(flags))
            raise InputFileError(
                f"annotations[{k}]: visibility flag {v[bad]:g} at joint {bad} must be 0, 1 or 2", path
            )
        if not (v > 0).any():
            continue  # num_keypoints == 0: nothing labelled
        frame = integer(ann.get("image_id"), f"annotations[{k}].image_id", path)
        kp = kp.copy()
        kp[:, 2] = (v > 0).astype(np.float64)
        people.append(kp)
        where.append(f"annotations[{k}]")
        frames.append(frame)
        persons.append(counter.next(frame, ann, f"annotations[{k}]", path))
    used = {sizes.get(f) for f in frames}
    image_size = used.pop() if len(used) == 1 else None
    return _Raw(
        _stack_people(path, people, where), frames, persons,
        defaults=_COCO_DEFAULTS, image_size=image_size, fmt="COCO",
    )


def _parse_coco_results(doc: list, path: Path) -> _Raw:
    people, where, frames, persons = [], [], [], []
    names: set = set()  # meshpose's optional per-item "joint_set" (None where absent)
    counter = _PersonCounter()
    for k, det in enumerate(doc):
        det = _require_dict(det, f"item {k}", path)
        if "keypoints" not in det:
            raise InputFileError(f'item {k} of the COCO results has no "keypoints"', path)
        people.append(_flat_triples(det["keypoints"], f"item {k} keypoints", path))
        where.append(f"item {k}")
        frame = integer(det.get("image_id"), f"item {k} image_id", path)
        frames.append(frame)
        persons.append(counter.next(frame, det, f"item {k}", path))
        names.add(det.get("joint_set"))
    if len(names) > 1:
        listed = ", ".join(sorted(repr(n) for n in names))
        raise InputFileError(f'items disagree on "joint_set" ({listed}); all must name the same set', path)
    declared = names.pop() if names else None
    if declared is not None and not isinstance(declared, str):
        raise InputFileError(f'"joint_set" must be a string, got {declared!r}', path)
    return _Raw(
        _stack_people(path, people, where), frames, persons,
        declared=declared, defaults=_COCO_DEFAULTS, clip=True, fmt="COCO",
    )


def _mmpose_person(inst: Any, what: str, path: Path) -> np.ndarray:
    """One MMPose instance dict -> ``(J, 3)`` (x, y, score; score 1 when absent)."""
    inst = _require_dict(inst, what, path)
    if "keypoints" not in inst:
        raise InputFileError(f'{what} has no "keypoints"', path)
    xy = numbers(inst["keypoints"], f"{what} keypoints", path)
    if xy.ndim == 3 and xy.shape[0] == 1:  # some versions keep a batch axis of 1
        xy = xy[0]
    if xy.ndim != 2 or xy.shape[-1] != 2 or xy.shape[0] == 0:
        raise InputFileError(
            f"wrong keypoint count: {what} keypoints must be a list of [x, y] pairs, got shape {xy.shape}", path
        )
    if inst.get("keypoint_scores") is None:
        scores = np.ones(len(xy))
    else:
        scores = numbers(inst["keypoint_scores"], f"{what} keypoint_scores", path).reshape(-1)
        if scores.shape != (len(xy),):
            raise InputFileError(
                f"wrong keypoint count: {what} has {len(xy)} keypoints but {scores.size} keypoint_scores", path
            )
    return np.concatenate([xy, scores[:, None]], axis=1)


def _is_mmpose_instance(item: Any) -> bool:
    """A dict whose ``keypoints`` is a nested list ``[[x, y], ...]`` (MMPose), not a flat one."""
    if not isinstance(item, dict):
        return False
    kp = item.get("keypoints")
    return isinstance(kp, list) and len(kp) > 0 and isinstance(kp[0], list)


def _parse_mmpose(doc: Any, path: Path) -> _Raw:
    declared, defaults = None, _MMPOSE_DEFAULTS
    entries = doc
    if isinstance(doc, dict):
        entries = _require_list(doc["instance_info"], '"instance_info"', path)
        meta = doc.get("meta_info")
        if isinstance(meta, dict) and isinstance(meta.get("dataset_name"), str):
            name = meta["dataset_name"].strip().lower()
            declared = _MMPOSE_DATASETS.get(name)
            if declared is None:
                defaults = {}  # a dataset meshpose has no joint set for: the caller must say
    people, where, frames, persons = [], [], [], []
    counter = _PersonCounter()
    if entries and all(isinstance(e, dict) and "instances" in e for e in entries):
        for k, entry in enumerate(entries):
            frame = integer(entry.get("frame_id", k), f"frame entry {k} frame_id", path)
            instances = _require_list(entry["instances"], f"frame entry {k} instances", path)
            for m, inst in enumerate(instances):
                what = f"frame {frame} instance {m}"
                people.append(_mmpose_person(inst, what, path))
                where.append(what)
                frames.append(frame)
                persons.append(counter.next(frame, inst, what, path))
    else:
        for m, inst in enumerate(entries):
            what = f"instance {m}"
            people.append(_mmpose_person(inst, what, path))
            where.append(what)
            frames.append(0)
            persons.append(counter.next(0, inst, what, path))
    return _Raw(
        _stack_people(path, people, where), frames, persons,
        declared=declared, defaults=defaults, clip=True, fmt="MMPose",
    )


def _openpose_people(doc: dict, path: Path) -> list[np.ndarray]:
    """``(J, 3)`` per person of one OpenPose frame file."""
    people = _require_list(doc["people"], '"people"', path)
    out = []
    for k, person in enumerate(people):
        person = _require_dict(person, f"people[{k}]", path)
        if "pose_keypoints_2d" not in person:
            raise InputFileError(f'people[{k}] has no "pose_keypoints_2d"', path)
        out.append(_flat_triples(person["pose_keypoints_2d"], f"people[{k}].pose_keypoints_2d", path))
    return out


def _parse_openpose(doc: dict, path: Path, frame: int = 0) -> _Raw:
    people = _openpose_people(doc, path)
    where = [f"people[{k}]" for k in range(len(people))]
    return _Raw(
        _stack_people(path, people, where), [frame] * len(people), list(range(len(people))),
        defaults=_OPENPOSE_DEFAULTS, fmt="OpenPose",
    )


def _json_kind(doc: Any) -> str | None:
    """Which layout a parsed JSON document has: coco_annotations, coco_results, mmpose,
    openpose, empty (an empty list), or None (unrecognised)."""
    if isinstance(doc, dict):
        if "annotations" in doc:
            return "coco_annotations"
        if "people" in doc:
            return "openpose"
        if "instance_info" in doc:
            return "mmpose"
        return None
    if isinstance(doc, list):
        if not doc:
            return "empty"
        first = doc[0]
        if isinstance(first, dict):
            if "instances" in first or _is_mmpose_instance(first):
                return "mmpose"
            if "keypoints" in first and "image_id" in first:
                return "coco_results"
    return None


_UNRECOGNISED = (
    "unrecognised JSON layout: expected COCO annotations/results, OpenPose or MMPose keypoints"
)


def _parse_json(path: Path) -> _Raw:
    doc = load_json(path)
    kind = _json_kind(doc)
    if kind == "empty":
        raise InputFileError("no keypoints found (empty list)", path)
    if kind == "coco_annotations":
        return _parse_coco_annotations(doc, path)
    if kind == "coco_results":
        return _parse_coco_results(doc, path)
    if kind == "mmpose":
        return _parse_mmpose(doc, path)
    if kind == "openpose":
        return _parse_openpose(doc, path)
    raise InputFileError(_UNRECOGNISED, path)


def _frame_files(folder: Path) -> list[Path]:
    """The non-hidden ``.json`` entries of a folder in natural name order; one that is not a
    readable file (a broken link, a link loop, a folder) is an error, since skipping it would
    shift the frame ids of the frames after it."""
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.suffix.lower() == ".json"]
    except OSError as exc:
        raise InputFileError(f"cannot list folder: {exc.strerror or one_line(exc)}", folder) from None
    for entry in entries:
        try:
            entry.stat()
        except OSError as exc:
            what = "a broken symbolic link or a link loop" if entry.is_symlink() else "unreadable"
            raise InputFileError(f"frame file is {what} ({exc.strerror or one_line(exc)})", entry) from None
        if not entry.is_file():
            raise InputFileError("is not a file (a frame folder holds one .json file per frame)", entry)
    return sorted(entries, key=lambda p: natural_key(p.name))


def _read_folder(folder: Path, requested: JointSet | None) -> Keypoints2D:
    """A folder of per-frame OpenPose or single-image MMPose JSON files (frame id = index)."""
    files = _frame_files(folder)
    if not files:
        raise InputFileError("folder holds no .json keypoint files", folder)
    people: list[np.ndarray] = []
    frames: list[int] = []
    persons: list[int] = []
    first_kind: str | None = None
    first_file: Path | None = None
    first_raw: _Raw | None = None
    for index, path in enumerate(files):
        doc = load_json(path)
        kind = _json_kind(doc)
        if kind == "empty":
            continue  # an MMPose image file with nobody in it
        if kind == "openpose":
            raw = _parse_openpose(doc, path, index)
        elif kind == "mmpose" and isinstance(doc, list) and "instances" not in doc[0]:
            raw = _parse_mmpose(doc, path)
        else:
            raise InputFileError(
                "a keypoint folder must hold one OpenPose or single-image MMPose file per frame", path
            )
        if first_kind is None:
            first_kind, first_file = kind, path
        elif kind != first_kind:
            raise InputFileError(f"is a {kind} file but {first_file.name} is a {first_kind} file", path)
        if raw.points.shape[0] == 0:
            continue
        if first_raw is None:
            first_raw = raw
        elif raw.points.shape[1] != first_raw.points.shape[1]:
            raise InputFileError(
                f"wrong keypoint count: {raw.points.shape[1]} joints per person but "
                f"earlier frames have {first_raw.points.shape[1]}", path
            )
        people.extend(raw.points)
        frames.extend([index] * raw.points.shape[0])
        persons.extend(raw.person_ids)
    if first_raw is None:
        raise InputFileError(f"no keypoints found (no people in {len(files)} frame files)", folder)
    raw = _Raw(
        np.stack(people), frames, persons,
        defaults=first_raw.defaults, clip=first_raw.clip, fmt=first_raw.fmt,
    )
    return _finish(folder, raw, requested)


# ---------------------------------------------------------------------------------------------
# array formats


def _npz_string(value: np.ndarray, what: str, path: Path) -> str:
    """A string stored in an ``.npz`` (a 0-d or one-element str/bytes array)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "US" or arr.size != 1:
        raise InputFileError(f"{what} must be a single string, got dtype {arr.dtype} shape {arr.shape}", path)
    s = arr.reshape(()).item()
    return s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s)


#: The arrays of a keypoint ``.npz`` that are read (any others are not loaded).
_NPZ_MEMBERS = ("keypoints", "joint_set", "frame_ids", "person_ids", "image_size", "focal_length")


def _parse_npz(path: Path) -> _Raw:
    data = load_npy_or_npz(path, ".npz", members=_NPZ_MEMBERS)
    if "keypoints" not in data:
        found = ", ".join(sorted(npz_members(path))[:8]) or "nothing"
        raise InputFileError(f"no 'keypoints' array in the .npz (found: {found})", path)
    pts = data["keypoints"]
    n = pts.shape[0] if pts.ndim >= 1 else 0
    declared = _npz_string(data["joint_set"], "joint_set", path) if "joint_set" in data else None
    return _Raw(
        pts,
        data.get("frame_ids", np.arange(n)),
        data.get("person_ids", np.zeros(n, dtype=np.int64)),
        declared=declared,
        image_size=data.get("image_size"),
        focal_length=data.get("focal_length"),
        fmt=".npz",
    )


def _parse_npy(path: Path) -> _Raw:
    pts = load_npy_or_npz(path, ".npy")
    n = pts.shape[0] if pts.ndim >= 1 else 0
    return _Raw(pts, np.arange(n), np.zeros(n, dtype=np.int64), fmt=".npy")


def _csv_header(header: list[str], path: Path) -> tuple[list[str], bool]:
    """Joint names and whether confidence columns exist, from a CSV header row."""
    cols = [c.strip() for c in header]
    if len(cols) < 2 or [c.lower() for c in cols[:2]] != ["frame", "person"]:
        raise InputFileError("CSV header must start with the columns frame,person", path)
    rest = cols[2:]
    has_c = len(rest) >= 3 and rest[2].endswith("_c")
    step = 3 if has_c else 2
    suffixes = ("_x", "_y", "_c")[:step]
    if not rest or len(rest) % step:
        raise InputFileError(
            f"CSV header must list NAME_x,NAME_y{',NAME_c' if has_c else ''} for every joint after frame,person",
            path,
        )
    names = []
    for k in range(0, len(rest), step):
        group = rest[k: k + step]
        name = group[0][:-2]
        expected = [name + s for s in suffixes]
        if not name or group != expected:
            raise InputFileError(
                f"CSV header: expected columns {','.join(expected) if name else 'NAME_x,NAME_y'} "
                f"at column {k + 3}, got {','.join(group)}", path
            )
        names.append(name)
    return names, has_c


def _parse_csv(path: Path, requested: JointSet | None) -> _Raw:
    text = read_text(path)
    rows = [(num, row) for num, row in _csv_rows(text, path) if any(cell.strip() for cell in row)]
    if not rows:
        raise InputFileError("file is empty", path)
    names, has_c = _csv_header(rows[0][1], path)
    if requested is not None:
        if tuple(names) != requested.names:
            raise InputFileError(
                f"CSV joint columns ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) "
                f"are not the joints of joint set {requested.name!r}", path
            )
        declared = requested.name
    else:
        # Sets that share their joints (h36m17, h36m17_anatomical): the first registered.
        matches = [js.name for js in JOINT_SETS.values() if js.names == tuple(names)]
        if not matches:
            raise InputFileError(
                f"CSV joint columns ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) "
                "match no known joint set; name the columns after a joint set's joints", path
            )
        declared = matches[0]
    width = 2 + len(names) * (3 if has_c else 2)
    frames, persons, values = [], [], []
    for num, row in rows[1:]:
        if len(row) != width:
            raise InputFileError(f"line {num}: expected {width} columns, got {len(row)}", path)
        try:
            frames.append(int(row[0]))
            persons.append(int(row[1]))
        except ValueError:
            raise InputFileError(f"line {num}: frame and person must be integers, got {row[0]!r}, {row[1]!r}", path) from None
        try:
            values.append([float(cell) for cell in row[2:]])
        except ValueError:
            bad = next(c for c in row[2:] if not _is_float(c))
            raise InputFileError(f"line {num}: {bad!r} is not a number", path) from None
    pts = np.asarray(values, dtype=np.float64).reshape(len(values), len(names), 3 if has_c else 2)
    return _Raw(pts, frames, persons, declared=declared, fmt="CSV")


def _csv_rows(text: str, path: Path):
    """``(line number, cells)`` for each CSV record."""
    reader = csv.reader(io.StringIO(text))
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise InputFileError(f"malformed CSV at line {reader.line_num}: {one_line(exc, 100)}", path) from None


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# public API


def read_keypoints(path: str | os.PathLike, joint_set: str | JointSet | None = None) -> Keypoints2D:
    """Read 2D keypoints from a COCO / MMPose / OpenPose JSON file, a folder of per-frame JSON
    files, or an ``.npz`` / ``.npy`` / ``.csv`` file (see the module docstring for each layout).

    Args:
        path: the file or folder.
        joint_set: the joint set the keypoints are in. Required for ``.npy`` and for joint
            counts the format has no default for; otherwise it must agree with what the file
            declares (or at least with its joint count).

    Returns:
        :class:`Keypoints2D` with ``keypoints`` ``(N, J, 3)`` float32 (pixels, confidence in
        ``[0, 1]``), rows in file order.

    Raises:
        InputFileError: missing, empty, malformed or invalid input (one line naming the file).
        UnknownNameError: ``joint_set`` is not a known joint-set name.
    """
    requested = None if joint_set is None else get_joint_set(joint_set)
    p = Path(path)
    try:
        p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise InputFileError("broken symbolic link", p) from None
        raise InputFileError("keypoint file not found", p) from None
    except OSError as exc:  # a link loop, a name too long, no permission
        raise InputFileError(f"cannot read: {exc.strerror or one_line(exc, 80)}", p) from None
    if p.is_dir():
        return _read_folder(p, requested)
    ext = p.suffix.lower()
    if ext not in KEYPOINT_READ_EXTENSIONS:
        raise InputFileError(
            f"unsupported keypoint file extension {p.suffix or '(none)'!r}; "
            f"expected one of {', '.join(KEYPOINT_READ_EXTENSIONS)} or a folder of .json frames", p
        )
    if not p.is_file():
        raise InputFileError("is not a regular file", p)
    if p.stat().st_size == 0:
        raise InputFileError("file is empty", p)
    if ext == ".json":
        raw = _parse_json(p)
    elif ext == ".npz":
        raw = _parse_npz(p)
    elif ext == ".npy":
        raw = _parse_npy(p)
        if requested is None:
            raise InputFileError("a .npy file does not name its joint set; pass joint_set", p)
    else:
        raw = _parse_csv(p, requested)
    return _finish(p, raw, requested)


def _check_for_writing(kp: Keypoints2D) -> Keypoints2D:
    """Validate in-memory keypoints before writing; problems raise ValueError."""

    def error(message: str, _path: Any = None) -> ValueError:
        return ValueError(f"invalid Keypoints2D: {message}")

    js = get_joint_set(kp.joint_set)
    pts = np.asarray(kp.keypoints)
    raw = _Raw(pts, kp.frame_ids, kp.person_ids, declared=js.name,
               image_size=kp.image_size, focal_length=kp.focal_length)
    out = _finish(Path(kp.source or "."), raw, None, error)
    out.source = kp.source
    return out


def write_keypoints(path: str | os.PathLike, kp: Keypoints2D) -> Path:
    """Write keypoints atomically; the format follows the extension.

    * ``.npz``: ``keypoints`` ``(N, J, 3)`` float32, ``joint_set``, ``frame_ids``,
      ``person_ids`` (int64) and, when known, ``image_size`` ``(2,)`` and ``focal_length``.
      Reading it back gives the same arrays.
    * ``.json``: COCO results layout, one item per row:
      ``{"image_id": frame, "category_id": 1, "keypoints": [x, y, c, ...], "score": mean c,
      "track_id": person, "joint_set": name}`` (``"joint_set"`` is a meshpose extension that
      other COCO tools ignore; ``image_size`` / ``focal_length`` are not stored).
    * ``.csv``: the CSV layout of :func:`read_keypoints` with confidence columns.

    Numbers are written as the shortest decimal that reads back as the same float32
    (``417.18``, not ``417.17999267578125``).

    Args:
        path: output file (its folder must exist).
        kp: the keypoints.

    Returns:
        ``Path(path)``.

    Raises:
        MeshposeError: unsupported extension or the file cannot be written.
        ValueError: ``kp`` is invalid (shapes, non-finite values, confidence range, ids).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in KEYPOINT_WRITE_EXTENSIONS:
        raise MeshposeError(
            f"unsupported keypoint output extension {p.suffix or '(none)'!r}; "
            f"expected one of {', '.join(KEYPOINT_WRITE_EXTENSIONS)}", p
        )
    kp = _check_for_writing(kp)
    if ext == ".npz":
        arrays: dict[str, np.ndarray] = {
            "keypoints": kp.keypoints.astype(np.float32),
            "joint_set": np.array(kp.joint_set),
            "frame_ids": kp.frame_ids.astype(np.int64),
            "person_ids": kp.person_ids.astype(np.int64),
        }
        if kp.image_size is not None:
            arrays["image_size"] = np.array(kp.image_size, dtype=np.int64)
        if kp.focal_length is not None:
            arrays["focal_length"] = np.array(kp.focal_length, dtype=np.float64)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        return atomic_write(p, write)
    if ext == ".json":
        items = []
        for row, frame, person in zip(kp.keypoints, kp.frame_ids, kp.person_ids):
            items.append({
                "image_id": int(frame),
                "category_id": 1,
                "keypoints": short_floats(row.reshape(-1)),
                "score": short_floats(row[:, 2].mean(dtype=np.float32)),
                "track_id": int(person),
                "joint_set": kp.joint_set,
            })
        return atomic_write_text(p, json.dumps(items, allow_nan=False) + "\n")
    names = get_joint_set(kp.joint_set).names
    lines = [",".join(["frame", "person"] + [f"{n}_{c}" for n in names for c in "xyc"])]
    for row, frame, person in zip(kp.keypoints, kp.frame_ids, kp.person_ids):
        lines.append(",".join([str(int(frame)), str(int(person))] + [repr(v) for v in short_floats(row.reshape(-1))]))
    return atomic_write_text(p, "\n".join(lines) + "\n")
