"""2D keypoints -> 3D body: the regressor, the Anny body, and the results of DESIGN.md.

    results = meshpose.predict(keypoints, joint_set="coco17", output_joints=("coco17", "h36m17"))
    meshpose predict keypoints.json -o out.npz --out-dir out/

All 3D outputs are in metres, root-relative (the pelvis at the origin), in the axes of the
camera (x right, y down, z forward). ``cam_t`` (the pelvis position in the camera frame) is
given when the focal length and image size are known.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from meshpose.errors import MeshposeError, UnknownNameError

#: Shipped 2D-keypoints-to-body models, by name.
MODELS = {"default": "regressor_default.safetensors", "pose2mesh": "pose2mesh_default.safetensors"}


def load_regressor(name_or_path: str = "default", device: str | torch.device = "cpu"):
    """A :class:`~meshpose.models.regressor.KeypointRegressor` with shipped or saved weights."""
    from meshpose.io.weights import read_model_file
    from meshpose.models.regressor import KeypointRegressor

    header, state = read_model_file(name_or_path, MODELS, "meshpose-regressor-1", "regressor")
    settings = json.loads(header["model"])
    model = KeypointRegressor(settings["hidden"], settings["blocks"], settings["iterations"])
    model.load_state_dict(state)
    return model.to(device).eval()


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
    from tqdm import tqdm

    from meshpose.joints import get_joint_set
    from meshpose.models.regressor import INPUT_SETS

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


def load_estimator(model: str, device, joint_set: str, sets, body=None):
    """``(estimate(batch, intrinsics) -> {key: (B, ...) tensor}, faces (F, 3))`` for a model name
    or file (either family): ``batch`` is ``(B, J, 3)`` keypoints of ``joint_set``,
    ``intrinsics`` is ``(focal (B, 2), principal (B, 2))`` or None; the keys are those of
    :func:`predict`'s results for the output joint sets ``sets``."""
    from meshpose.body import AnnyBody
    from meshpose.io.weights import model_file_format

    body = (body or AnnyBody()).to(device)
    if model_file_format(model, MODELS) == "meshpose-pose2mesh-1":
        from meshpose.geometry.camera import translation_from_2d_3d
        from meshpose.pose2mesh.inference import load_pose2mesh

        predictor = load_pose2mesh(model, device, MODELS, body)

        def estimate_pose2mesh(batch, intrinsics):
            out = predictor(batch, joint_set)
            vertices = out["vertices"]
            values = {"vertices": vertices, "pose": vertices.new_zeros(len(batch), 0),
                      "shape": vertices.new_zeros(len(batch), 0)}
            for name in sets:
                values[f"joints3d_{name}"] = predictor.joints(vertices, name)
            if intrinsics is not None:
                skeleton = predictor.joints(vertices, predictor.joint_set)
                values["cam_t"] = translation_from_2d_3d(skeleton, out["joints2d"], *intrinsics)
            return values

        return estimate_pose2mesh, body.faces.cpu().numpy()

    return regressor_estimator(load_regressor(model, device), body, joint_set, sets), body.faces.cpu().numpy()


def regressor_estimator(regressor, body, joint_set: str, sets):
    """:func:`load_estimator`'s ``estimate`` function for an in-memory regressor and body."""
    from meshpose.body import body_joints
    from meshpose.models.regressor import root_from_weak_perspective, to_slots

    def estimate_regressor(batch, intrinsics):
        out = regressor(to_slots(batch, joint_set))
        bodies = body(out["pose"], out["shape"])
        root = bodies.joint("bone:root")[:, None]
        values = {"vertices": bodies.vertices - root, "pose": out["pose"], "shape": out["shape"],
                  "camera": out["camera"]}
        for name in sets:
            values[f"joints3d_{name}"] = body_joints(bodies, name) - root
        if intrinsics is not None:
            values["cam_t"] = root_from_weak_perspective(out["camera"], out["centre"], out["size"], *intrinsics)
        return values

    return estimate_regressor


def predict_file(input_path, output, joint_set=None, output_joints=("coco17",), model="default",
                 out_dir=None, image=None, device="cpu", focal_length=None) -> dict:
    """Read a keypoint file, predict, write the results npz (and per-person files); atomic."""
    from meshpose.io.images import read_image
    from meshpose.io.keypoints import read_keypoints
    from meshpose.io.results import write_results_npz

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
    from meshpose.io.atomic import staged_folder
    from meshpose.io.meshes import write_mesh
    from meshpose.io.results import write_mesh_keypoints_json
    from meshpose.joints import get_joint_set
    from meshpose.viz import overlay_mesh, render_views, save_png

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
