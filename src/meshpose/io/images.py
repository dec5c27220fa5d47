"""Reading photos and video frames as RGB arrays.

Images are read with Pillow (EXIF orientation applied, so a phone photo is upright); videos with
OpenCV, which the ``image`` extra installs (``pip install 'meshpose[image]'``).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meshpose.errors import InputFileError, MeshposeError

#: File suffixes read as images and as videos (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file, upright (EXIF orientation applied).

    Raises:
        InputFileError: missing or unreadable file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputFileError("image not found", path)
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB")).copy()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputFileError(f"cannot read image ({error})", path) from None


@dataclass
class Video:
    """An open video file: ``fps`` (frames per second, 0 when unknown), ``frames`` (the count
    the container declares; may be 0 or approximate), ``size`` (W, H) pixels."""

    path: Path
    fps: float
    frames: int
    size: tuple[int, int]

    def __iter__(self) -> Iterator[np.ndarray]:
        """The frames in order, each (H, W, 3) uint8 RGB."""
        cv2 = _cv2()
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


def _cv2():
    try:
        import cv2  # optional dependency
    except ImportError:
        raise MeshposeError("reading videos needs OpenCV: pip install 'meshpose[image]'") from None
    return cv2


def open_video(path: str | os.PathLike) -> Video:
    """Open a video file and read its properties (frames are decoded when iterated).

    Raises:
        InputFileError: missing file, or one OpenCV cannot decode (no frame can be read).
        MeshposeError: OpenCV is not installed.
    """
    cv2 = _cv2()
    path = Path(path)
    if not path.is_file():
        raise InputFileError("video not found", path)
    capture = cv2.VideoCapture(str(path))
    try:
        ok = capture.isOpened() and capture.read()[0]
        if not ok:
            raise InputFileError("cannot read video (no decodable frame)", path)
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()
    return Video(path, fps if np.isfinite(fps) and fps > 0 else 0.0, max(frames, 0), size)


def list_media(path: str | os.PathLike) -> list[Path]:
    """The image and video files ``path`` names: itself, or a folder's media files sorted by name.

    Raises:
        InputFileError: missing path, a file that is neither an image nor a video by its
            suffix, or a folder with no image or video in it.
    """
    path = Path(path)
    media = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in media)
        if not files:
            raise InputFileError(f"no image or video files ({', '.join(media)}) in this folder", path)
        return files
    if not path.exists():
        raise InputFileError("no such file or folder", path)
    if path.suffix.lower() not in media:
        raise InputFileError(f"not an image or video file by its suffix (expected one of {', '.join(media)})", path)
    return [path]


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a video by its suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
