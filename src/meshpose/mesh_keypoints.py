"""``meshpose.mesh_keypoints`` and ``meshpose mesh-keypoints``: labelled joints of any human mesh.

The shipped model (``assets/mesh_keypoints_default.safetensors``, see MODEL_CARD.md) reads
points drawn uniformly over the surface, so the mesh's topology, resolution and units do not
matter; it expects the body upright along ``up`` (default y, the usual OBJ/glTF convention) and
handles any turn about that axis.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from meshpose.errors import MeshposeError, UnknownNameError
from meshpose.io.atomic import atomic_write_text
from meshpose.io.meshes import list_mesh_files, read_mesh
from meshpose.joints import get_joint_set
from meshpose.meshkp.model_file import load_mesh_keypoint_model
from meshpose.meshkp.point_task import predict_points
from meshpose.meshkp.pointnet import OUTPUT_SETS, output_names
from meshpose.meshkp.surface import sample_surface
from meshpose.viz.render import render_views, save_png

__all__ = ["UP_AXES", "mesh_keypoints", "mesh_keypoints_files", "render_keypoints", "write_keypoints_json"]

#: The up axes a mesh may have, as (axis order, signs) that turn it y-up by a proper rotation.
UP_AXES = {"x": ((1, 0, 2), (-1, 1, 1)), "y": ((0, 1, 2), (1, 1, 1)), "z": ((0, 2, 1), (1, 1, -1)),
           "-y": ((0, 1, 2), (1, -1, -1)), "-z": ((0, 2, 1), (1, -1, 1))}


def _to_y_up(vertices: np.ndarray, up: str) -> np.ndarray:
    """Reorder/flip axes so that ``up`` becomes +y (a proper rotation: no mirroring)."""
    order, signs = UP_AXES[up]
    return vertices[:, order] * np.array(signs, dtype=vertices.dtype)


def _from_y_up(points: np.ndarray, up: str) -> np.ndarray:
    order, signs = UP_AXES[up]
    out = np.empty_like(points)
    out[:, list(order)] = points * np.array(signs, dtype=points.dtype)
    return out


def _as_mesh(mesh) -> tuple[np.ndarray, np.ndarray, str]:
    """(vertices, faces, source name) from a path, a trimesh, or a (vertices, faces) pair."""
    if isinstance(mesh, (str, Path)):
        loaded = read_mesh(mesh)
        return np.asarray(loaded.vertices, np.float64), np.asarray(loaded.faces, np.int64), str(mesh)
    if hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        return np.ascontiguousarray(mesh.vertices, np.float64), np.ascontiguousarray(mesh.faces, np.int64), "mesh"
    vertices, faces = mesh
    return np.ascontiguousarray(vertices, np.float64), np.ascontiguousarray(faces, np.int64), "mesh"


@torch.no_grad()
def mesh_keypoints(mesh, joint_set: str = "seed12", model: str = "default", up: str = "y",
                   seed: int = 0, device: str = "cpu") -> dict:
    """Estimate labelled body joints on a human mesh of any topology.

    Args:
        mesh: a mesh file (OBJ/PLY/OFF/GLB/STL), a ``trimesh.Trimesh`` or ``(vertices (V, 3),
            faces (F, 3))``; any units.
        joint_set: one of ``seed12`` (the keypoint dataset's boundary joints), ``smpl24``,
            ``h36m17`` (Anny's anatomical joint centres of those joints, as the model learnt
            them: not the Human3.6M regressor of ``meshpose predict``).
        model: shipped model name or model file.
        up: the mesh's up axis: ``"y"`` (default), ``"z"``, ``"x"``, ``"-y"``, ``"-z"``.
        seed: seed of the surface-point draw (results vary by a few millimetres with it).

    Returns:
        dict with ``joint_set``, ``names`` (J,), ``keypoints`` (J, 3) in the mesh's own
        coordinates and units, ``confidence`` (J,) in [0, 1].
    """
    if joint_set not in OUTPUT_SETS:
        raise UnknownNameError(f"mesh-keypoints gives {', '.join(OUTPUT_SETS)}; got {joint_set!r}")
    if up not in UP_AXES:
        raise UnknownNameError(f"up must be one of {', '.join(UP_AXES)}; got {up!r}")
    vertices, faces, source = _as_mesh(mesh)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
        raise MeshposeError(f"vertices must be (V >= 3, 3), got {vertices.shape}", source)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise MeshposeError(f"faces must be (F >= 1, 3), got {faces.shape}", source)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshposeError("face indices out of range", source)
    if not np.isfinite(vertices).all():
        raise MeshposeError("vertices are not all finite", source)
    network = load_mesh_keypoint_model(model, device)
    upright = _to_y_up(vertices, up)
    # Sample in a unit box, so that the same body in other units or places gets the same points.
    low, high = upright.min(0), upright.max(0)
    centre, size = (low + high) / 2, float(np.linalg.norm(high - low))
    if size == 0:
        raise MeshposeError("mesh has no surface area", source)
    unit = torch.from_numpy((upright - centre) / size).float().to(device)
    generator = torch.Generator().manual_seed(seed)
    points, normals = sample_surface(unit[None], torch.from_numpy(faces).to(device), network.points, generator)
    if (points.amax(1) - points.amin(1)).norm() == 0:
        raise MeshposeError("mesh has no surface area", source)
    joints, confidence = predict_points(network, points, normals)
    joints = joints * size + torch.from_numpy(centre).to(joints)
    names = output_names()
    chosen = [i for i, n in enumerate(names) if n.split(":")[0] == joint_set]
    keypoints = _from_y_up(joints[0, chosen].double().cpu().numpy(), up)
    return {"joint_set": joint_set, "names": [names[i].split(":", 1)[1] for i in chosen],
            "keypoints": keypoints, "confidence": confidence[0, chosen].double().cpu().numpy()}


def write_keypoints_json(result: dict, path: str | Path) -> Path:
    """The mesh-keypoints JSON (``joint_set``, ``units``, ``keypoints`` and ``confidence`` by joint
    name), written atomically."""
    document = {"joint_set": result["joint_set"], "units": "same as the input mesh",
                "keypoints": {n: [round(float(v), 6) for v in p] for n, p in zip(result["names"], result["keypoints"])},
                "confidence": {n: round(float(c), 4) for n, c in zip(result["names"], result["confidence"])}}
    lines = ",\n".join(f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in document["keypoints"].items())
    text = (f'{{"joint_set": {json.dumps(document["joint_set"])}, "units": {json.dumps(document["units"])},\n'
            f' "keypoints": {{\n{lines}\n }},\n "confidence": {json.dumps(document["confidence"])}}}\n')
    return atomic_write_text(path, text)


def render_keypoints(vertices: np.ndarray, faces: np.ndarray, result: dict, up: str = "y") -> np.ndarray:
    """(H, W, 3) uint8 front and side views of the mesh with its joints and skeleton."""
    joint_set = get_joint_set(result["joint_set"])
    return render_views(_to_y_up(vertices, up), faces, views=("front", "side"), up_axis="y",
                        joints=_to_y_up(np.asarray(result["keypoints"]), up), edges=joint_set.edges)


def mesh_keypoints_files(input_path: str | Path, output: str | Path, joint_set: str = "seed12",
                         model: str = "default", up: str = "y", png: str | Path | None = None,
                         device: str = "cpu") -> list[Path]:
    """``meshpose mesh-keypoints``: the JSON (and with ``png`` a picture) of one mesh file, or of
    every mesh in a folder (then ``output`` and ``png`` are folders); the files written."""
    source = Path(input_path)
    folder = source.is_dir()
    inputs = list_mesh_files(source) if folder else [source]
    output = Path(output)
    if folder and output.suffix.lower() == ".json":
        raise MeshposeError("a folder of meshes needs an output folder, not a .json file", output)
    if not folder and output.suffix.lower() != ".json":
        raise MeshposeError("the output of one mesh must be a .json file", output)
    # Everything is computed before anything is written: a bad mesh in a folder leaves no output.
    results = []
    for path in inputs:
        vertices, faces, _ = _as_mesh(path)
        results.append((path, vertices, faces, mesh_keypoints((vertices, faces), joint_set, model, up,
                                                              device=device)))
    written = []
    for path, vertices, faces, result in results:
        target = output / f"{path.stem}.json" if folder else output
        target.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_keypoints_json(result, target))
        if png:
            picture = Path(png) / f"{path.stem}.png" if folder else Path(png)
            picture.parent.mkdir(parents=True, exist_ok=True)
            save_png(picture, render_keypoints(vertices, faces, result, up))
            written.append(picture)
    return written
