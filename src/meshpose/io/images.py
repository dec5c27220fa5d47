"""Reading photos and video frames as RGB arrays.

Images are read with Pillow (EXIF orientation applied, so a phone photo is upright); videos with
OpenCV, which the ``image`` extra installs (``pip install 'meshpose[image]'``).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io._util import one_line

#: File suffixes read as images and as videos (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


#: Largest image read, in pixels (about 89 megapixels: Pillow's own decompression-bomb limit).
MAX_IMAGE_PIXELS = 89_478_485


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file, upright (EXIF orientation applied).

    The size the header declares is checked before any pixel is decoded: images over
    :data:`MAX_IMAGE_PIXELS` are refused (a PNG header may claim 20000 x 20000 pixels).

    Raises:
        InputFileError: missing, unreadable or too large file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError("image not found", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise InputFileError(f"image of {width} x {height} pixels is larger than "
                                         f"{MAX_IMAGE_PIXELS:,} pixels", path)
                return np.asarray(ImageOps.exif_transpose(image).convert("RGB")).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputFileError(f"image too large: its header declares more than {MAX_IMAGE_PIXELS:,} pixels",
                             path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        raise InputFileError(f"cannot read image ({one_line(error, 100)})", path) from None
    except MemoryError:
        raise InputFileError("image too large to decode in memory", path) from None


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
            suffix, a folder with no image or video in it, or one of whose media entries is
            not a readable file (hidden files are ignored).
    """
    path = Path(path)
    media = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    if path.is_dir():
        try:
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in media and not p.name.startswith("."))
        except OSError as error:
            raise InputFileError(f"cannot list folder: {error.strerror or one_line(error)}", path) from None
        for item in files:
            if not item.is_file():  # a broken link or a link loop: skipping it would shift --keypoints frames
                raise InputFileError("is not a readable file (a broken link, a link loop or a folder)", item)
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
