"""2D person-keypoint detectors for images: MediaPipe's pose landmarker, and the protocol any
other detector follows.

A detector is a callable ``detector(image) -> (P, J, 3)`` with an attribute ``joint_set`` (a
name or :class:`~meshpose.joints.JointSet`): ``image`` is an (H, W, 3) uint8 RGB array, the
result holds, per person found, x and y in pixels and a confidence in [0, 1] (0 = missing); an
empty (0, J, 3) array when nobody is found. :func:`to_joint_set` converts a detector's output to
the sets the body models read (coco17, body25, ...).
"""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io.keypoints import read_keypoints, visibility_rule, visible_people
from meshpose.joints import _both_sides, _make, convert, get_joint_set

_MEDIAPIPE_NAMES = (
    "nose",
    "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

#: MediaPipe Pose's 33 landmarks, in the model's output order, named as meshpose names joints.
MEDIAPIPE33 = _make(
    "mediapipe33", _MEDIAPIPE_NAMES,
    _both_sides("nose", "{s}_eye", "{s}_ear")
    + [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")]
    + _both_sides("{s}_shoulder", "{s}_elbow", "{s}_wrist", "{s}_index")
    + _both_sides("{s}_shoulder", "{s}_hip", "{s}_knee", "{s}_ankle", "{s}_heel", "{s}_foot_index"),
    "MediaPipe Pose (BlazePose) 33 landmarks.",
)

#: Target joints a MediaPipe landmark of another name stands for: the "foot index" landmark is
#: the tip of the foot, where BODY_25 puts the big toe. BODY_25's small toes have no landmark.
_ALIASES = {"left_big_toe": "left_foot_index", "right_big_toe": "right_foot_index"}


def to_joint_set(keypoints, source, target) -> np.ndarray:
    """Convert detections ``(P, J_source, 3)`` (x, y, confidence) to ``target`` ``(P, J, 3)``.

    Joints of the same name are copied, :func:`meshpose.joints.convert`'s rules synthesise the
    rest (a neck is the mean of the shoulders, with the lower confidence), and MediaPipe's foot
    index stands for the big toe; joints no source joint gives are ``(0, 0, 0)``: missing.
    """
    source, target = get_joint_set(source), get_joint_set(target)
    points = np.asarray(keypoints, dtype=np.float32).reshape(-1, len(source), 3)
    out = convert(points, source, target, confidence_last=True)
    for joint, alias in _ALIASES.items():
        if joint in target.names and alias in source.names and joint not in source.names:
            out[:, target.index(joint)] = points[:, source.index(alias)]
    missing = ~np.isfinite(out).all(-1)
    out[missing] = 0.0
    return out


@contextlib.contextmanager
def _quiet_native_logs():
    """Silence what TensorFlow Lite and absl print on file descriptor 2 while MediaPipe loads
    and runs (C++ logging that Python's ``sys.stderr`` does not see)."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to silence
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _missing_mediapipe() -> str:
    """Why there is no MediaPipe, and what to do, in one line."""
    if sys.version_info >= (3, 13):
        return (f"the image detector needs MediaPipe 0.10.21, which has no wheel for Python "
                f"{sys.version_info[0]}.{sys.version_info[1]}: use Python 3.10-3.12 for the image "
                "extra, or pass another detector's keypoints with --keypoints FILE")
    return "the image detector needs MediaPipe: pip install 'meshpose[image]'"


class MediaPipePose:
    """MediaPipe's pose landmarker ("full" model, shipped inside the ``mediapipe`` wheel: fully
    offline). It finds one person per image: the most prominent.

    Args:
        video: track the person from frame to frame (MediaPipe's video mode) instead of
            detecting anew in every image; for consecutive frames of one video.
        min_confidence: MediaPipe's minimum detection confidence.

    Call with an (H, W, 3) uint8 RGB image; returns (P, 33, 3) pixels and visibility, P in {0, 1}.
    """

    joint_set = MEDIAPIPE33

    def __init__(self, video: bool = False, min_confidence: float = 0.5):
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            with _quiet_native_logs():
                import mediapipe as mp  # optional dependency
        except ImportError:
            raise MeshposeError(_missing_mediapipe()) from None
        with _quiet_native_logs():
            # model_complexity=1 is the "full" model in the wheel; 0 and 2 would be downloaded.
            self._pose = mp.solutions.pose.Pose(
                static_image_mode=not video, model_complexity=1, smooth_landmarks=video,
                enable_segmentation=False, min_detection_confidence=min_confidence)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        with _quiet_native_logs():
            found = self._pose.process(image)
        if found.pose_landmarks is None:
            return np.zeros((0, len(MEDIAPIPE33), 3), np.float32)
        height, width = image.shape[:2]
        landmarks = np.array([[p.x * width, p.y * height, p.visibility]
                              for p in found.pose_landmarks.landmark], np.float32)
        landmarks[:, 2] = np.clip(landmarks[:, 2], 0.0, 1.0)
        return landmarks[None]

    def close(self) -> None:
        self._pose.close()


class KeypointFileDetector:
    """Detections made by another tool, read from a keypoint file of any format
    :func:`meshpose.io.keypoints.read_keypoints` reads: the file's frames, in order of frame id,
    are handed out one per call, i.e. matched to the images (or video frames) in order.

    Args:
        path: the keypoint file. joint_set: its joint set, if the file does not say.
        sets: the joint sets accepted (None: any).

    Raises:
        InputFileError: the file is bad, or nobody in it shows enough of a body
            (:func:`~meshpose.io.keypoints.visible_people`).
    """

    def __init__(self, path, joint_set: str | None = None, sets=None):
        data = read_keypoints(path, joint_set=joint_set)
        if sets is not None and data.joint_set not in sets:
            raise InputFileError(f"holds joint set {data.joint_set!r}; this reads {', '.join(sets)}", path)
        if not visible_people(data.keypoints).any():
            raise InputFileError(f"no person has {visibility_rule()} ({len(data)} read): nothing to estimate", path)
        self.path = path
        self.joint_set = data.joint_set
        order = np.unique(data.frame_ids)
        self.frames = [np.asarray(data.keypoints[data.frame_ids == f], np.float32) for f in order]
        self._next = 0

    def __len__(self) -> int:
        """Number of frames in the file."""
        return len(self.frames)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._next >= len(self.frames):
            raise MeshposeError(f"more images than the {len(self.frames)} frames of the keypoint file", self.path)
        found = self.frames[self._next]
        self._next += 1
        return found
