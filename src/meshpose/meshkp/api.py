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
from meshpose.meshkp.pointnet import OUTPUT_SETS, MeshKeypointNet, output_names
from meshpose.meshkp.surface import sample_surface

__all__ = ["export_mesh_keypoint_model", "load_mesh_keypoint_model", "mesh_keypoints", "write_keypoints_json"]

MODELS = {"default": "mesh_keypoints_default.safetensors"}
FORMAT = "meshpose-meshkp-1"
TRAINING_DATA = ("human_seg meshes (MIT animation, FAUST, Adobe Fuse; research use), train split of "
                 "meshpose.meshkp.split; Anny bodies (Apache-2.0/CC0) in CMU motion-capture poses "
                 "(free for any use), CMU subjects 13 and 14 held out")
_UP = {"x": ((1, 0, 2), (-1, 1, 1)), "y": ((0, 1, 2), (1, 1, 1)), "z": ((0, 2, 1), (1, 1, -1)),
       "-y": ((0, 1, 2), (1, -1, -1)), "-z": ((0, 2, 1), (1, -1, 1))}
_models: dict = {}


def export_mesh_keypoint_model(state: dict, model_config: dict, out: str | Path, metrics: dict | None = None,
                               points: int = 1024) -> Path:
    """Write a trained model's weights (float16) and settings as a shipped-style safetensors file."""
    from safetensors.torch import save_file

    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    header = {"format": FORMAT, "model": json.dumps(model_config), "points": str(points),
              "training_data": TRAINING_DATA, "metrics": json.dumps(metrics or {})}
    save_file(tensors, str(out), metadata=header)
    return Path(out)


def load_mesh_keypoint_model(name_or_path: str = "default", device: str = "cpu") -> MeshKeypointNet:
    """The shipped model (``"default"``) or a file written by :func:`export_mesh_keypoint_model`."""
    from meshpose.io.weights import read_model_file

    key = (name_or_path, str(device))
    if key in _models:
        return _models[key]
    header, state = read_model_file(name_or_path, MODELS, FORMAT, "mesh-keypoint model")
    settings = json.loads(header["model"])
    model = MeshKeypointNet(settings["neighbours"], settings["width"])
    model.load_state_dict(state)
    model.points = int(header.get("points", 1024))
    _models[key] = model.to(device).eval()
    return _models[key]


def _to_y_up(vertices: np.ndarray, up: str) -> np.ndarray:
    """Reorder/flip axes so that ``up`` becomes +y (a proper rotation: no mirroring)."""
    order, signs = _UP[up]
    return vertices[:, order] * np.array(signs, dtype=vertices.dtype)


def _from_y_up(points: np.ndarray, up: str) -> np.ndarray:
    order, signs = _UP[up]
    out = np.empty_like(points)
    out[:, list(order)] = points * np.array(signs, dtype=points.dtype)
    return out


def _as_mesh(mesh) -> tuple[np.ndarray, np.ndarray, str]:
    """(vertices, faces, source name) from a path, a trimesh, or a (vertices, faces) pair."""
    if isinstance(mesh, (str, Path)):
        from meshpose.io.meshes import read_mesh

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
            ``h36m17`` (joint centres).
        model: shipped model name or model file.
        up: the mesh's up axis: ``"y"`` (default), ``"z"``, ``"x"``, ``"-y"``, ``"-z"``.
        seed: seed of the surface-point draw (results vary by a few millimetres with it).

    Returns:
        dict with ``joint_set``, ``names`` (J,), ``keypoints`` (J, 3) in the mesh's own
        coordinates and units, ``confidence`` (J,) in [0, 1].
    """
    if joint_set not in OUTPUT_SETS:
        raise UnknownNameError(f"mesh-keypoints gives {', '.join(OUTPUT_SETS)}; got {joint_set!r}")
    if up not in _UP:
        raise UnknownNameError(f"up must be one of {', '.join(_UP)}; got {up!r}")
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
    from meshpose.meshkp.point_task import predict_points

    joints, confidence = predict_points(network, points, normals)
    joints = joints * size + torch.from_numpy(centre).to(joints)
    names = output_names()
    chosen = [i for i, n in enumerate(names) if n.split(":")[0] == joint_set]
    keypoints = _from_y_up(joints[0, chosen].double().cpu().numpy(), up)
    return {"joint_set": joint_set, "names": [names[i].split(":", 1)[1] for i in chosen],
            "keypoints": keypoints, "confidence": confidence[0, chosen].double().cpu().numpy()}


def write_keypoints_json(result: dict, path: str | Path) -> Path:
    """DESIGN.md's mesh-keypoints JSON, written atomically."""
    from meshpose.io.atomic import atomic_write_text

    document = {"joint_set": result["joint_set"], "units": "same as the input mesh",
                "keypoints": {n: [round(float(v), 6) for v in p] for n, p in zip(result["names"], result["keypoints"])},
                "confidence": {n: round(float(c), 4) for n, c in zip(result["names"], result["confidence"])}}
    lines = ",\n".join(f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in document["keypoints"].items())
    text = (f'{{"joint_set": {json.dumps(document["joint_set"])}, "units": {json.dumps(document["units"])},\n'
            f' "keypoints": {{\n{lines}\n }},\n "confidence": {json.dumps(document["confidence"])}}}\n')
    return atomic_write_text(path, text)


def render_keypoints(vertices: np.ndarray, faces: np.ndarray, result: dict, up: str = "y") -> np.ndarray:
    """(H, W, 3) uint8 front and side views of the mesh with its joints and skeleton."""
    from meshpose.joints import get_joint_set
    from meshpose.viz.render import render_views

    joint_set = get_joint_set(result["joint_set"])
    return render_views(_to_y_up(vertices, up), faces, views=("front", "side"), up_axis="y",
                        joints=_to_y_up(np.asarray(result["keypoints"]), up), edges=joint_set.edges)


def cmd_mesh_keypoints(args) -> int:
    from meshpose.io.meshes import list_mesh_files
    from meshpose.viz.render import save_png

    source = Path(args.input)
    folder = source.is_dir()
    inputs = list_mesh_files(source) if folder else [source]
    output = Path(args.output)
    if folder and output.suffix.lower() == ".json":
        raise MeshposeError("a folder of meshes needs an output folder, not a .json file", output)
    if not folder and output.suffix.lower() != ".json":
        raise MeshposeError("the output of one mesh must be a .json file", output)
    # Everything is computed before anything is written: a bad mesh in a folder leaves no output.
    results = []
    for path in inputs:
        vertices, faces, _ = _as_mesh(path)
        results.append((path, vertices, faces, mesh_keypoints((vertices, faces), args.joint_set, args.model,
                                                              args.up, device=args.device or "cpu")))
    for path, vertices, faces, result in results:
        target = output / f"{path.stem}.json" if folder else output
        target.parent.mkdir(parents=True, exist_ok=True)
        print(write_keypoints_json(result, target))
        if args.png:
            picture = Path(args.png) / f"{path.stem}.png" if folder else Path(args.png)
            picture.parent.mkdir(parents=True, exist_ok=True)
            save_png(picture, render_keypoints(vertices, faces, result, args.up))
            print(picture)
    return 0


def add_mesh_keypoints_command(commands) -> None:
    parser = commands.add_parser(
        "mesh-keypoints", help="3D human mesh -> labelled body joints",
        description="Estimate body joints on human meshes of any topology (OBJ/PLY/OFF/GLB/STL) with "
                    "the shipped point model; keypoints in the mesh's own coordinates and units.")
    parser.add_argument("input", help="a mesh file or a folder of them")
    parser.add_argument("-o", "--output", required=True, help="JSON file (one mesh) or folder (a folder)")
    parser.add_argument("--joint-set", default="seed12", choices=OUTPUT_SETS)
    parser.add_argument("--up", default="y", choices=tuple(_UP), help="the meshes' up axis (default y)")
    parser.add_argument("--png", default=None, help="picture of mesh and joints (a folder for a folder)")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    parser.add_argument("--device", default=None, help="cpu or cuda")
    parser.set_defaults(run=cmd_mesh_keypoints)
