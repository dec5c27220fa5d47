"""2D keypoints -> 3D body with a shipped or trained model, and the results file.

    results = meshpose.predict(keypoints, joint_set="coco17", output_joints=("coco17", "h36m17"))
    meshpose predict keypoints.json -o out.npz --out-dir out/

All 3D outputs are in metres, root-relative (the pelvis at the origin), in the axes of the
camera (x right, y down, z forward). ``cam_t`` (the pelvis position in the camera frame) is
given when the focal length and image size are known.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from meshpose.errors import MeshposeError, UnknownNameError
from meshpose.estimators import load_estimator
from meshpose.io.atomic import staged_folder
from meshpose.io.images import read_image
from meshpose.io.keypoints import read_keypoints
from meshpose.io.meshes import write_mesh
from meshpose.io.results import write_mesh_keypoints_json, write_results_npz
from meshpose.joints import get_joint_set
from meshpose.models.regressor import INPUT_SETS
from meshpose.viz import overlay_mesh, render_views, save_png


@torch.no_grad()
def predict(keypoints, joint_set: str = "coco17", output_joints=("coco17",), model: str = "default",
            image_size=None, focal_length: float | None = None, device: str = "cpu",
            batch_size: int = 2048, progress: bool | None = None) -> dict[str, np.ndarray]:
    """Estimate 3D bodies from 2D keypoints.

    Args:
        keypoints: (N, J, 3) pixels and confidence (or (N, J, 2): confidence 1), in ``joint_set``.
        joint_set: one of the model's input sets (coco17, openpose18, body25, h36m17, mpii16).
        output_joints: joint sets to return, any of ``meshpose joints``.
        model: a shipped model name (``default``: the Key2Mesh-style regressor; ``pose2mesh``)
            or a model file.
        image_size: (W, H) pixels; with ``focal_length``, gives ``cam_t``.
        focal_length: pixels.
        device: "cpu" or "cuda".
        batch_size: people per forward pass.
        progress: show a progress bar (default: when more than one batch).
    Returns:
        dict with ``joints3d_<S>`` (N, K, 3) float32, ``joint_names_<S>`` (K,), ``vertices``
        (N, V, 3) float32, ``faces`` (F, 3), ``pose`` (N, 22, 3, 3) rotations (the pelvis rotation
        in camera axes) and ``shape`` (N, 6), ``camera`` (N, 3) weak perspective, and ``cam_t``
        (N, 3) when the intrinsics are known. Pose2Mesh regresses vertices, not body-model
        parameters: its ``pose`` and ``shape`` are (N, 0), and it has no ``camera``; its joints
        are regressed from the mesh.
    """
    if joint_set not in INPUT_SETS:
        raise UnknownNameError(f"predict reads {', '.join(INPUT_SETS)}; got joint set {joint_set!r}")
    sets = [get_joint_set(name).name for name in output_joints]
    keypoints = torch.as_tensor(np.asarray(keypoints), dtype=torch.float32)
    if keypoints.ndim != 3 or keypoints.shape[1] != len(get_joint_set(joint_set)) or keypoints.shape[2] not in (2, 3):
        raise MeshposeError(
            f"keypoints must be (N, {len(get_joint_set(joint_set))}, 2 or 3) for {joint_set}; "
            f"got {tuple(keypoints.shape)}")
    if keypoints.shape[2] == 2:
        keypoints = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], -1)
    estimate, faces = load_estimator(model, device, joint_set, sets)
    n = keypoints.shape[0]
    chunks = range(0, n, batch_size)
    show = progress if progress is not None else len(chunks) > 1
    parts: dict[str, list] = {}
    for start in tqdm(chunks, desc="predict", unit="batch", disable=not show):
        batch = keypoints[start : start + batch_size].to(device)
        intrinsics = None
        if focal_length is not None and image_size is not None:
            w, h = image_size
            focal = torch.full((len(batch), 2), float(focal_length), device=device)
            principal = torch.tensor([[w / 2, h / 2]], device=device).expand(len(batch), -1)
            intrinsics = (focal, principal)
        for key, value in estimate(batch, intrinsics).items():
            parts.setdefault(key, []).append(value.float().cpu().numpy())
    results = {key: np.concatenate(value) for key, value in parts.items()}
    results["faces"] = faces
    for name in sets:
        results[f"joint_names_{name}"] = np.array(get_joint_set(name).names)
    return results


def predict_file(input_path, output, joint_set=None, output_joints=("coco17",), model="default",
                 out_dir=None, image=None, device="cpu", focal_length=None) -> dict:
    """Read a keypoint file, predict, write the results npz (and per-person files); atomic."""
    data = read_keypoints(input_path, joint_set=joint_set)
    focal = focal_length if focal_length is not None else data.focal_length
    size = data.image_size
    picture = None
    if image is not None:
        picture = read_image(image)
        size = size or (picture.shape[1], picture.shape[0])
        if focal is None:
            focal = 1.2 * max(size)  # a common field-of-view guess when the camera is unknown
    results = predict(data.keypoints, data.joint_set, output_joints, model, size, focal, device)
    results["frame_ids"] = data.frame_ids
    results["person_ids"] = data.person_ids
    if out_dir is not None:
        _write_people(results, Path(out_dir), output_joints[0], picture, focal, size)
    write_results_npz(output, results)
    return results


def _write_people(results, out_dir: Path, joint_set: str, picture, focal, size) -> None:
    """Per person: ``frame<F>_person<P>.obj``, ``.json`` and ``.png``, all written to a temporary
    folder first (nothing partial is left behind if one fails), then renamed into place; into an
    existing folder the files are moved one by one, and files already there are kept."""
    with staged_folder(out_dir) as staging:
        faces = results["faces"]
        names = get_joint_set(joint_set).names
        edges = get_joint_set(joint_set).edges
        for i in range(len(results["frame_ids"])):
            stem = staging / f"frame{int(results['frame_ids'][i]):06d}_person{int(results['person_ids'][i]):02d}"
            vertices = results["vertices"][i]
            joints = results[f"joints3d_{joint_set}"][i]
            write_mesh(stem.with_suffix(".obj"), vertices, faces)
            write_mesh_keypoints_json(stem.with_suffix(".json"), joint_set, names, joints, [1.0] * len(names))
            if picture is not None and "cam_t" in results:
                w, h = size
                image = overlay_mesh(picture, vertices + results["cam_t"][i], faces, float(focal), (w / 2, h / 2))
            else:
                # Camera axes (y down) to an upright picture: render with y as the up axis, flipped.
                upright = vertices * np.array([1.0, -1.0, -1.0])
                image = render_views(upright, faces, views=("front", "side"), up_axis="y",
                                     joints=joints * np.array([1.0, -1.0, -1.0]), edges=edges)
            save_png(stem.with_suffix(".png"), image)
