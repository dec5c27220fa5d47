"""The files ``meshpose image`` writes per person: ``<stem>_person<P>.obj`` (the mesh in the
camera frame, metres), ``.json`` (2D keypoints, 3D joints, parameters, camera, re-projection
error) and ``.png`` (the mesh over the image, with the detected keypoints in green and the
estimated body's keypoints re-projected in red)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from meshpose.body import POSE_JOINTS, SHAPE_NAMES
from meshpose.image.estimate import CONFIDENT
from meshpose.io.atomic import atomic_write_text
from meshpose.io.meshes import write_mesh
from meshpose.joints import get_joint_set
from meshpose.viz import draw_keypoints, overlay_mesh, save_png

#: Colours of the overlay's keypoints: detected, and the estimate re-projected.
DETECTED_COLOR = (60, 220, 90)
PROJECTED_COLOR = (235, 60, 60)


def overlay_picture(image: np.ndarray, result: dict, person: int, faces: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: ``image`` with person ``person`` of ``result`` (from
    :class:`~meshpose.image.estimate.ImageBodyEstimator`) drawn over it."""
    joint_set = get_joint_set(result["joint_set"])
    vertices = result["vertices"][person] + result["cam_t"][person]
    picture = overlay_mesh(image, vertices, faces, result["focal"], result["principal"])
    detected = result["keypoints2d"][person].astype(np.float64)
    detected[detected[:, 2] < CONFIDENT, :2] = np.nan
    radius = max(2.0, max(image.shape[:2]) / 250)
    picture = draw_keypoints(picture, detected[:, :2], joint_set.edges, DETECTED_COLOR, radius,
                             max(1, int(radius / 1.5)))
    return draw_keypoints(picture, result["projected"][person], (), PROJECTED_COLOR, radius * 0.8)


def person_document(result: dict, person: int, source: str, frame: int | None = None) -> dict:
    """The JSON document of one person (see the module docstring)."""
    joint_set = get_joint_set(result["joint_set"])

    def listed(values, digits=5):
        return np.round(np.asarray(values, np.float64), digits).tolist()

    pose, shape = result["pose"][person], result["shape"][person]
    return {
        "source": source,
        "frame": frame,
        "person": int(result["people"][person]) if "people" in result else person,
        "units": "pixels in 2D; metres in 3D, camera frame (x right, y down, z forward)",
        "image_size": [int(v) for v in result["image_size"]],
        "camera": {
            "focal_length": listed(result["focal"], 3),
            "principal_point": listed(result["principal"], 3),
            "root_translation": listed(result["cam_t"][person]),
            "source": result["camera_source"],
        },
        "keypoints2d": {"joint_set": joint_set.name, "names": list(joint_set.names),
                        "points": listed(result["keypoints2d"][person], 3)},
        "joints3d": {"joint_set": joint_set.name, "names": list(joint_set.names),
                     "root_relative": listed(result["joints3d"][person]),
                     "projected": listed(result["projected"][person], 3)},
        "parameters": None if pose.size == 0 else {
            "body_model": "anny",
            "pose_joints": list(POSE_JOINTS),
            "pose_rotation_matrices": listed(pose, 6),
            "shape": dict(zip(SHAPE_NAMES, listed(shape, 6))),
        },
        "reprojection_error": {
            "median_pixels": _number(result["reprojection_px"][person]),
            "median_fraction_of_bbox_diagonal": _number(result["reprojection"][person]),
        },
    }


def _number(value) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 5)


def write_person_files(folder: Path, stem: str, image: np.ndarray, result: dict, faces: np.ndarray,
                       source: str, frame: int | None = None, meshes: bool = True) -> list[Path]:
    """Write every person's files of one image into ``folder``; returns the paths written."""
    written = []
    numbers = result.get("people", range(len(result["keypoints2d"])))
    for person, number in enumerate(numbers):
        base = Path(folder) / f"{stem}_person{int(number):02d}"
        if meshes:
            write_mesh(base.with_suffix(".obj"), result["vertices"][person] + result["cam_t"][person], faces)
            written.append(base.with_suffix(".obj"))
        document = person_document(result, person, source, frame)
        atomic_write_text(base.with_suffix(".json"), json.dumps(document, indent=1, allow_nan=False) + "\n")
        save_png(base.with_suffix(".png"), overlay_picture(image, result, person, faces))
        written += [base.with_suffix(".json"), base.with_suffix(".png")]
    return written
