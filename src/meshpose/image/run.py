"""``meshpose image``: images, folders of images and videos in; per person a mesh, a JSON and a
picture out, with a summary of every input.

A file that cannot be read, or in which nobody is found, gets one line on the error stream and
no output; the run goes on with the next file. Detections that show too little for a body
(:func:`~meshpose.io.keypoints.visible_people`) are skipped, with one warning line per file and
their count in the summary; a file where every detection is skipped counts as nobody found.
Everything is written at the end, together (:func:`~meshpose.io.atomic.output_batch`); when no
file succeeds nothing is written at all, and an output folder that cannot be written stops the
run.
"""
from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from meshpose.errors import InputFileError, MeshposeError
from meshpose.geometry.camera import project
from meshpose.image import smoothing
from meshpose.image.estimate import ImageBodyEstimator, reprojection_errors
from meshpose.image.outputs import write_person_files
from meshpose.io.atomic import atomic_write_text, output_batch, staged_folder
from meshpose.io.images import is_video, list_media, open_video, read_image
from meshpose.io.keypoints import visibility_rule

#: Frames per second assumed for a video whose container does not say.
DEFAULT_FPS = 30.0


@dataclass
class MediaReport:
    """What one input file gave: ``people`` person-detections written (over all frames),
    ``frames`` read, median re-projection error (fraction of the bounding-box diagonal), for
    videos the joints' jitter (m/s^2) before and after smoothing, ``skipped`` detections with
    too few visible joints, and the error, if any."""

    path: str
    kind: str
    frames: int = 0
    people: int = 0
    reprojection: float | None = None
    jitter_raw: float | None = None
    jitter_smoothed: float | None = None
    skipped: int = 0
    error: str | None = None
    files: list[str] = field(default_factory=list)


def _median(values) -> float | None:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return round(float(np.median(values)), 5) if values.size else None


def _stems(paths: list[Path]) -> dict[Path, str]:
    """Output name of each input: its stem, or its whole name where two inputs share a stem."""
    counts: dict[str, int] = {}
    for path in paths:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    return {p: p.stem if counts[p.stem] == 1 else p.name.replace(".", "_") for p in paths}


def process_image(path: Path, stem: str, out_dir: Path, estimator, meshes: bool = True) -> MediaReport:
    """Detect, estimate and write the people of one image (all its files or none)."""
    report = MediaReport(str(path), "image")
    image = read_image(path)
    result = estimator(image)
    report.frames = 1
    report.skipped = int(result.get("skipped", 0))
    if len(result["keypoints2d"]) == 0:
        raise InputFileError(_nobody(report.skipped), path)
    with staged_folder(out_dir) as staging:
        written = write_person_files(staging, stem, image, result, estimator.faces, path.name, None, meshes)
    report.people = len(result["keypoints2d"])
    report.reprojection = _median(result["reprojection"])
    report.files = [str(out_dir / p.name) for p in written]
    return report


def _nobody(skipped: int) -> str:
    """The error of a file in which nobody is found."""
    if not skipped:
        return "no person found"
    return f"no person with {visibility_rule()} ({skipped} detections skipped)"


def _single(result: dict | None) -> bool:
    """Whether a frame's result holds exactly one person (the frames a track is made of)."""
    return result is not None and len(result["keypoints2d"]) == 1


def smooth_frames(frames: list[dict | None], fps: float, estimator, settings: dict) -> None:
    """Smooth, in place, runs of consecutive frames with exactly one person: the regressor's
    pose (as rotations) and shape, then the body is posed again; Pose2Mesh's vertices directly;
    the root translation in both cases. Projections and errors are recomputed.

    Args:
        frames: per frame an :class:`~meshpose.image.estimate.ImageBodyEstimator` result, or
            None where nobody was found.
        settings: :class:`~meshpose.image.smoothing.OneEuroFilter` settings.
    """
    singles = [i for i, result in enumerate(frames) if _single(result)]
    # Consecutive indices share index - position: one group per run.
    for _, group in itertools.groupby(enumerate(singles), key=lambda pair: pair[1] - pair[0]):
        take = [frames[i] for _, i in group]
        if len(take) < 2:
            continue
        cam_t = smoothing.one_euro(np.concatenate([r["cam_t"] for r in take]), fps, **settings)
        pose = np.concatenate([r["pose"] for r in take])
        if pose.size:
            pose = smoothing.one_euro_rotations(pose, fps, **settings)
            shape = smoothing.one_euro(np.concatenate([r["shape"] for r in take]), fps, **settings)
            vertices, joints = estimator.pose_body(pose, shape)
        else:
            vertices = smoothing.one_euro(np.concatenate([r["vertices"] for r in take]), fps, **settings)
            joints = smoothing.one_euro(np.concatenate([r["joints3d"] for r in take]), fps, **settings)
            shape = np.concatenate([r["shape"] for r in take])
        for k, result in enumerate(take):
            f = torch.tensor(result["focal"])[None]
            c = torch.tensor(result["principal"])[None]
            projected = project(torch.tensor(joints[k : k + 1] + cam_t[k, None]), f, c).numpy()
            result.update(pose=pose[k : k + 1].astype(np.float32), shape=shape[k : k + 1].astype(np.float32),
                          vertices=vertices[k : k + 1].astype(np.float32),
                          joints3d=joints[k : k + 1].astype(np.float32),
                          cam_t=cam_t[k : k + 1].astype(np.float32), projected=projected.astype(np.float32))
            result["reprojection_px"], result["reprojection"] = reprojection_errors(projected, result["keypoints2d"])


def _track_jitter(frames: list[dict | None], fps: float) -> float | None:
    """Jitter of the single-person frames' joints in the camera frame (root translation added)."""
    joints = [r["joints3d"][0] + r["cam_t"][0] for r in frames if _single(r)]
    return round(smoothing.jitter(np.stack(joints), fps), 4) if len(joints) >= 3 else None


def process_video(path: Path, stem: str, out_dir: Path, estimator, meshes: bool = True,
                  smooth: dict | None = None, progress: bool = True) -> MediaReport:
    """Estimate every frame of a video, smooth (``smooth``: :class:`OneEuroFilter` settings, or
    None), then write ``<out_dir>/<stem>/frame<F>_person<P>.*`` (all or none)."""
    video = open_video(path)
    fps = video.fps or DEFAULT_FPS
    frames: list[dict | None] = []
    skipped = 0
    for image in tqdm(video, total=video.frames or None, desc=f"{path.name}: estimate", unit="frame",
                      disable=not progress, leave=False):
        result = estimator(image)
        skipped += int(result.get("skipped", 0))
        frames.append(result if len(result["keypoints2d"]) else None)
    report = MediaReport(str(path), "video", frames=len(frames), skipped=skipped)
    if not any(r is not None for r in frames):
        raise InputFileError(f"{_nobody(skipped)} in any of its {len(frames)} frames", path)
    report.jitter_raw = _track_jitter(frames, fps)
    if smooth is not None:
        smooth_frames(frames, fps, estimator, smooth)
        report.jitter_smoothed = _track_jitter(frames, fps)
    folder = out_dir / stem
    with staged_folder(folder) as staging:
        for index, image in enumerate(tqdm(video, total=len(frames), desc=f"{path.name}: write", unit="frame",
                                           disable=not progress, leave=False)):
            if index >= len(frames):
                break
            if frames[index] is not None:
                written = write_person_files(staging, f"frame{index:06d}", image, frames[index],
                                             estimator.faces, path.name, index, meshes)
                report.files += [str(folder / p.name) for p in written]
    report.people = sum(len(r["keypoints2d"]) for r in frames if r is not None)
    report.reprojection = _median(np.concatenate([r["reprojection"] for r in frames if r is not None]))
    return report


def process(inputs, out_dir, estimator=None, meshes: bool = True, smooth: dict | None = None,
            progress: bool | None = None, errors=None) -> list[MediaReport]:
    """Run images, folders of images and videos; write per-person files and ``summary.json``.

    Args:
        inputs: a path (image, video or folder) or a list of them.
        out_dir: output folder (created).
        estimator: an :class:`~meshpose.image.estimate.ImageBodyEstimator` (default: MediaPipe
            and the shipped regressor).
        meshes: write the OBJ files.
        smooth: One Euro settings for videos (``{}`` for the defaults), None for none.
        progress: progress bars (default: on when there are several files or a video).
        errors: where the one-line message of a failed file goes (default ``sys.stderr``).
    Returns:
        one :class:`MediaReport` per file, failed ones with ``error`` set. When every file
        failed, nothing is written (no ``summary.json`` either).
    Raises:
        InputFileError: an input path is missing, or a folder holds no image or video.
    """
    paths = [p for item in ([inputs] if isinstance(inputs, (str, Path)) else inputs) for p in list_media(item)]
    out_dir = Path(out_dir)
    errors = sys.stderr if errors is None else errors
    show = progress if progress is not None else (len(paths) > 1 or any(is_video(p) for p in paths))
    if estimator is None:
        estimator = ImageBodyEstimator(video=len(paths) == 1 and is_video(paths[0]))
    stems = _stems(paths)
    reports = []
    with output_batch():
        for path in tqdm(paths, desc="images", unit="file", disable=not show or len(paths) == 1):
            try:
                if is_video(path):
                    report = process_video(path, stems[path], out_dir, estimator, meshes, smooth, show)
                else:
                    report = process_image(path, stems[path], out_dir, estimator, meshes)
            except MeshposeError as error:
                if _about(error, out_dir):
                    raise  # the output cannot be written: no use going on (and nothing is written)
                report = MediaReport(str(path), "video" if is_video(path) else "image", error=error.message)
                tqdm.write(str(error), file=errors)
            else:
                if report.skipped:
                    tqdm.write(f"meshpose: warning: {path}: skipped {report.skipped} detections without "
                               f"{visibility_rule()}", file=errors)
            reports.append(report)
        if any(r.error is None for r in reports):
            summary = {"inputs": [vars(r) | {"files": len(r.files)} for r in reports]}
            with staged_folder(out_dir) as staging:
                atomic_write_text(staging / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return reports


def _about(error: MeshposeError, out_dir: Path) -> bool:
    """Whether ``error`` is about ``out_dir`` or a path inside it (not about an input)."""
    if error.path is None:
        return False
    path = Path(error.path)
    return path == out_dir or out_dir in path.parents
