"""2D keypoints -> 3D body with a shipped or trained model, and the results file.

    results = meshpose.predict(keypoints, joint_set="coco17", output_joints=("coco17", "h36m17"))
    meshpose predict keypoints.json -o out.npz --out-dir out/

All 3D outputs are in metres, root-relative (the pelvis at the origin), in the axes of the
camera (x right, y down, z forward). ``cam_t`` (the pelvis position in the camera frame) is
given when the focal length and image size are known.

People whose keypoints show too little for a body (fewer than
:data:`~meshpose.io.keypoints.MIN_VISIBLE_JOINTS` joints with confidence ``>=``
:data:`~meshpose.io.keypoints.VISIBLE_CONFIDENCE`, or all at one point: OpenPose writes
``0, 0, 0`` for a joint it did not find) get no body: ``valid`` is False for their row and all
their numbers are NaN; they get no per-person files. A file in which nobody qualifies is refused.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from meshpose.errors import InputFileError, MeshposeError, UnknownNameError
from meshpose.estimators import load_estimator
from meshpose.io.atomic import (
    check_output_file,
    check_output_folder,
    output_batch,
    staged_folder,
)
from meshpose.io.images import read_image
from meshpose.io.keypoints import (
    MAX_IMAGE_SIDE,
    check_focal_length,
    check_keypoint_values,
    read_keypoints,
    visibility_rule,
    visible_people,
)
from meshpose.io.meshes import write_mesh
from meshpose.io.results import write_mesh_keypoints_json, write_results_npz
from meshpose.joints import convert, get_joint_set
from meshpose.models.regressor import INPUT_SETS
from meshpose.viz import overlay_mesh, render_views, save_png

__all__ = ["predict", "predict_file"]


def _check_image_size(image_size) -> tuple[int, int] | None:
    """``(W, H)`` as two ints from 1 to MAX_IMAGE_SIDE pixels, or None."""
    if image_size is None:
        return None
    size = np.asarray(image_size, dtype=np.float64).reshape(-1)
    if size.shape != (2,) or not np.isfinite(size).all() or (size < 1).any() or (size > MAX_IMAGE_SIDE).any():
        raise MeshposeError(f"image_size must be two numbers (W, H) from 1 to {MAX_IMAGE_SIDE:,} pixels")
    return int(size[0]), int(size[1])


def predict(keypoints, joint_set: str = "coco17", output_joints=("coco17",), model: str = "default",
            image_size=None, focal_length: float | None = None, device: str = "cpu",
            batch_size: int = 2048, progress: bool | None = None) -> dict[str, np.ndarray]:
    """Estimate 3D bodies from 2D keypoints.

    Args:
        keypoints: (N, J, 3) pixels and confidence (or (N, J, 2): confidence 1), in ``joint_set``.
        joint_set: one of the model's input sets (coco17, openpose18, body25, h36m17, mpii16).
        output_joints: joint sets to return, any of ``meshpose joints``; ``h36m17`` is Human3.6M's
            definition, regressed from the mesh (:mod:`meshpose.body.vertex_regressors`),
            ``h36m17_anatomical`` Anny's joint centres of the same joints.
        model: a shipped model name (``default``: the Key2Mesh-style regressor; ``pose2mesh``)
            or a model file.
        image_size: (W, H) pixels; with ``focal_length``, gives ``cam_t``.
        focal_length: pixels, within :data:`~meshpose.io.keypoints.FOCAL_RANGE`.
        device: "cpu" or "cuda".
        batch_size: people per forward pass.
        progress: show a progress bar (default: when more than one batch).
    Returns:
        dict with ``joints3d_<S>`` (N, K, 3) float32, ``joint_names_<S>`` (K,), ``vertices``
        (N, V, 3) float32, ``faces`` (F, 3), ``pose`` (N, 22, 3, 3) rotations (the pelvis rotation
        in camera axes) and ``shape`` (N, 6), ``camera`` (N, 3) weak perspective, ``cam_t``
        (N, 3) when the intrinsics are known, and ``valid`` (N,) bool: False for a person whose
        keypoints show too little for a body (:func:`~meshpose.io.keypoints.visible_people`),
        whose numbers are all NaN. Pose2Mesh regresses vertices, not body-model parameters: its
        ``pose`` and ``shape`` are (N, 0), and it has no ``camera``; its joints are regressed
        from the mesh.
    Raises:
        MeshposeError: wrong shapes, non-finite or absurd values (coordinates beyond
            :data:`~meshpose.io.keypoints.MAX_COORDINATE`), a focal length out of range, or
            nobody with enough visible joints.
    """
    if joint_set not in INPUT_SETS:
        raise UnknownNameError(f"predict reads {', '.join(INPUT_SETS)}; got joint set {joint_set!r}")
    sets = [get_joint_set(name).name for name in output_joints]
    points = _as_keypoints(keypoints, joint_set)
    if focal_length is not None:
        focal_length = check_focal_length(float(focal_length))
    image_size = _check_image_size(image_size)
    valid = visible_people(points)
    if not valid.any():
        raise MeshposeError(f"no person has {visibility_rule()}: nothing to estimate")
    estimate, faces = load_estimator(model, device, joint_set, sets)
    return _estimate_all(estimate, faces, points, valid, sets, image_size, focal_length, device, batch_size,
                         progress)


def _as_keypoints(keypoints, joint_set: str) -> np.ndarray:
    """``(N, J, 3)`` float32 keypoints (confidence 1 added to (N, J, 2)), checked."""
    points = np.asarray(keypoints)
    count = len(get_joint_set(joint_set))
    if points.dtype.kind not in "iuf" or points.ndim != 3 or points.shape[1] != count or points.shape[2] not in (2, 3):
        raise MeshposeError(f"keypoints must be (N, {count}, 2 or 3) numbers for {joint_set}; got "
                            f"{points.dtype} {tuple(points.shape)}")
    check_keypoint_values(points)
    points = points.astype(np.float32)
    if points.shape[2] == 2:
        points = np.concatenate([points, np.ones_like(points[..., :1])], -1)
    return points


@torch.no_grad()
def _estimate_all(estimate, faces, points: np.ndarray, valid: np.ndarray, sets, image_size, focal_length,
                  device, batch_size: int = 2048, progress: bool | None = None) -> dict[str, np.ndarray]:
    """Run ``estimate`` on the valid rows in chunks; rows that are not valid are NaN."""
    chosen = torch.from_numpy(points[valid])
    chunks = range(0, len(chosen), batch_size)
    show = progress if progress is not None else len(chunks) > 1
    # Each chunk's results go straight into the full arrays (made at the first chunk; invalid rows
    # stay NaN): the peak is one copy of the output, not the chunks, their concatenation and a copy.
    results: dict[str, np.ndarray] = {}
    rows = np.flatnonzero(valid)
    for start in tqdm(chunks, desc="predict", unit="batch", disable=not show):
        batch = chosen[start : start + batch_size].to(device)
        intrinsics = None
        if focal_length is not None and image_size is not None:
            w, h = image_size
            focal = torch.full((len(batch), 2), float(focal_length), device=device)
            principal = torch.tensor([[w / 2, h / 2]], device=device).expand(len(batch), -1)
            intrinsics = (focal, principal)
        for key, value in estimate(batch, intrinsics).items():
            value = value.float().cpu().numpy()
            if key not in results:
                results[key] = np.full((len(points), *value.shape[1:]), np.nan, dtype=value.dtype)
            results[key][rows[start : start + len(value)]] = value
    results["faces"] = faces
    results["valid"] = valid.copy()
    for name in sets:
        results[f"joint_names_{name}"] = np.array(get_joint_set(name).names)
    return results


def predict_file(input_path, output, joint_set=None, output_joints=("coco17",), model="default",
                 out_dir=None, image=None, device="cpu", focal_length=None) -> dict:
    """Read a keypoint file, predict, write the results npz (and per-person files).

    Every argument, the input and the model are checked before anything is written; the npz
    and the per-person files are moved into place together at the end (all or nothing).
    People with too few visible joints get ``valid`` False (see the module docstring).

    Raises:
        MeshposeError / InputFileError: bad arguments, outputs that cannot be written, bad
            input (naming the file), nobody with enough visible joints.
    """
    check_output_file(output, (".npz",))
    if out_dir is not None:
        check_output_folder(out_dir)
    sets = [get_joint_set(name).name for name in output_joints]
    if focal_length is not None:
        focal_length = check_focal_length(float(focal_length), None, MeshposeError, "--focal-length")
    data = read_keypoints(input_path, joint_set=joint_set)
    if data.joint_set not in INPUT_SETS:
        raise InputFileError(f"holds joint set {data.joint_set!r}; predict reads {', '.join(INPUT_SETS)}",
                             input_path)
    valid = visible_people(data.keypoints)
    if not valid.any():
        raise InputFileError(f"no person has {visibility_rule()} ({len(valid)} read): nothing to estimate",
                             input_path)
    focal = focal_length if focal_length is not None else data.focal_length
    size = data.image_size
    picture = None
    if image is not None:
        picture = read_image(image)
        size = size or (picture.shape[1], picture.shape[0])
        if focal is None:
            focal = 1.2 * max(size)  # a common field-of-view guess when the camera is unknown
    estimate, faces = load_estimator(model, device, data.joint_set, sets)
    with output_batch(), contextlib.ExitStack() as stack:
        staging = stack.enter_context(staged_folder(out_dir)) if out_dir is not None else None
        results = _estimate_all(estimate, faces, data.keypoints, valid, sets, size, focal, device)
        results["frame_ids"] = data.frame_ids
        results["person_ids"] = data.person_ids
        if staging is not None:
            confidence = _output_confidence(data.keypoints, data.joint_set, sets[0])
            _write_people(results, staging, sets[0], confidence, picture, focal, size)
        write_results_npz(output, results)
    return results


def _output_confidence(keypoints: np.ndarray, input_set: str, output_set: str) -> np.ndarray:
    """``(N, K)`` the input's confidence of each joint of ``output_set``: copied where the input
    set has the joint, the lowest of the joints it is made from where it is derived (a pelvis
    from the hips), 0 where the input has nothing for it."""
    converted = convert(keypoints, input_set, output_set, confidence_last=True)[..., 2]
    return np.nan_to_num(converted, nan=0.0).astype(np.float32)


def _write_people(results, folder: Path, joint_set: str, confidence: np.ndarray, picture, focal, size) -> None:
    """Per valid person: ``frame<F>_person<P>.obj``, ``.json`` and ``.png`` in ``folder``.

    The JSON's ``confidence`` of each joint is the input keypoints' confidence of it (see
    :func:`_output_confidence`; 0: the input did not show that joint, its 3D position is the
    model's guess), not a confidence of the 3D estimate.
    """
    faces = results["faces"]
    names = get_joint_set(joint_set).names
    edges = get_joint_set(joint_set).edges
    for i in np.flatnonzero(results["valid"]):
        stem = folder / f"frame{int(results['frame_ids'][i]):06d}_person{int(results['person_ids'][i]):02d}"
        vertices = results["vertices"][i]
        joints = results[f"joints3d_{joint_set}"][i]
        write_mesh(stem.with_suffix(".obj"), vertices, faces)
        write_mesh_keypoints_json(stem.with_suffix(".json"), joint_set, names, joints, confidence[i])
        if picture is not None and "cam_t" in results:
            w, h = size
            image = overlay_mesh(picture, vertices + results["cam_t"][i], faces, float(focal), (w / 2, h / 2))
        else:
            # Camera axes (y down) to an upright picture: render with y as the up axis, flipped.
            upright = vertices * np.array([1.0, -1.0, -1.0])
            image = render_views(upright, faces, views=("front", "side"), up_axis="y",
                                 joints=joints * np.array([1.0, -1.0, -1.0]), edges=edges)
        save_png(stem.with_suffix(".png"), image)
