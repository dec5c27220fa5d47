"""``meshpose.mesh_keypoints`` and ``meshpose mesh-keypoints``: labelled joints of any human mesh.

The shipped model (``assets/mesh_keypoints_default.safetensors``, see MODEL_CARD.md) reads
points drawn uniformly over the surface, so the mesh's topology, resolution and units do not
matter. It was trained with meshes in any rotation and also predicts the body's up direction:
by default (``up="auto"``) a first reading of the mesh as it comes gives the up direction, the
mesh is turned so that it points along y and read again (and turned again while its own up
answer is off y). A model without an up head, or a mesh that does not read as a body after
that, falls back to the search over orientations (:mod:`meshpose.meshkp.orientation`); a known
up axis (``"y"``, ``"z"``, ...) is an optional hint that skips both. It
reads each mesh :data:`READINGS` times (other point draws, other turns) and averages; how well
the readings agree and how body-like their skeleton is gives the mesh's ``humanness``
(:mod:`meshpose.meshkp.humanness`). The function reports it; the command refuses a mesh that
scores below :data:`HUMANNESS_THRESHOLD` (0.5).
"""
from __future__ import annotations

import json
import math
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from meshpose.errors import InputFileError, MeshposeError, UnknownNameError
from meshpose.io.atomic import (
    atomic_write_text,
    check_output_file,
    check_output_folder,
    output_batch,
    staged_folder,
)
from meshpose.io.meshes import list_mesh_files, read_mesh
from meshpose.joints import get_joint_set
from meshpose.meshkp.frame import UP_AXES, axis_rotation, rotation_onto_y, unit_frame
from meshpose.meshkp.humanness import HUMANNESS_THRESHOLD, humanness
from meshpose.meshkp.model_file import load_mesh_keypoint_model
from meshpose.meshkp.orientation import search_up
from meshpose.meshkp.pointnet import OUTPUT_SETS, output_names
from meshpose.meshkp.readings import read_joints, read_joints_turned
from meshpose.viz.render import render_views, save_png

__all__ = ["HUMANNESS_THRESHOLD", "READINGS", "UP_CHOICES", "NotHumanError", "mesh_keypoints",
           "mesh_keypoints_files", "output_stems", "render_keypoints", "write_keypoints_json"]

#: Readings of each mesh, in one forward pass; each costs about one network pass. Median
#: joint-centre error on held-out Anny bodies: one reading 3.4 cm, two 2.8 cm, four 2.4 cm. Two
#: readings are the fewest that measure agreement; eight separate bodies from other shapes a
#: little better (see :mod:`meshpose.meshkp.humanness`) at four times the cost.
READINGS = 2
_MAX_READINGS = 64
#: Readings in the turn the up search settles on (more than :data:`READINGS`: the search already
#: costs 24 to 88 passes, and the final reading is the answer).
SEARCHED_READINGS = 8
#: Turns of the up search read in one forward pass: on 2 CPU cores 4 (8 point clouds) took 0.9 s
#: for the 12 coarse turns, 12 at once 1.5 s (the neighbour search's memory), one at a time 1.0 s.
_TURNS_PER_PASS = 4
#: A model with an up head (trained in any rotation) is turned upright by its own answer:
#: readings of the mesh as it comes that predict the up direction, ...
PREDICTING_READINGS = 2
#: ... the most readings in all (the first predicts, each next one reads in the turn found and
#: checks its own predicted up) ...
UP_PASSES = 3
#: ... and the angle between that check and y under which the turn is kept.
UP_SETTLED_DEG = 5.0
#: ``up`` values: ``auto`` (search, the default) or a known up axis.
UP_CHOICES = ("auto", *UP_AXES)


class NotHumanError(InputFileError):
    """``meshpose mesh-keypoints``: a mesh whose humanness is below the threshold."""


def _check_names(joint_set: str, up: str) -> None:
    if joint_set not in OUTPUT_SETS:
        raise UnknownNameError(f"mesh-keypoints gives {', '.join(OUTPUT_SETS)}; got joint set {str(joint_set)[:40]!r}")
    if up not in UP_CHOICES:
        raise UnknownNameError(f"up must be one of {', '.join(UP_CHOICES)}; got {str(up)[:40]!r}")


def _as_mesh(mesh) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(vertices (V, 3) float64, faces (F, 3) int64, the file or None) from a path, a trimesh or
    a (vertices, faces) pair, checked: every problem raises MeshposeError naming the file."""
    if isinstance(mesh, (str, os.PathLike)):
        loaded = read_mesh(mesh)
        vertices, faces, source = loaded.vertices, loaded.faces, os.fspath(mesh)
    elif hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        vertices, faces, source = mesh.vertices, mesh.faces, None
    else:
        try:
            vertices, faces = mesh
        except (TypeError, ValueError):
            raise MeshposeError("a mesh is a file, a trimesh or a (vertices, faces) pair") from None
        source = None
    try:
        vertices, faces = np.asarray(vertices), np.asarray(faces)
    except (TypeError, ValueError) as error:
        raise MeshposeError(f"vertices and faces must be arrays: {str(error)[:80]}", source) from None
    if vertices.dtype.kind not in "iuf" or vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
        raise MeshposeError(f"vertices must be (V >= 3, 3) numbers, got {vertices.shape} {vertices.dtype}", source)
    if faces.dtype.kind not in "iu" or faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise MeshposeError(f"faces must be (F >= 1, 3) integers, got {faces.shape} {faces.dtype}", source)
    vertices = np.ascontiguousarray(vertices, np.float64)
    if not np.isfinite(vertices).all():
        raise MeshposeError("vertices are not all finite", source)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshposeError(f"face indices out of range: {int(faces.min())}..{int(faces.max())} for "
                            f"{len(vertices)} vertices", source)
    return vertices, np.ascontiguousarray(faces, np.int64), source


def _unit_frame(vertices: np.ndarray, faces: np.ndarray, source: str | None):
    """:func:`~meshpose.meshkp.frame.unit_frame`, its refusals as errors naming the file."""
    try:
        return unit_frame(vertices, faces)
    except ValueError as error:
        raise MeshposeError(str(error), source) from None


def _read(network, vertices: np.ndarray, faces: np.ndarray, rotation: np.ndarray, seed: int, device: str,
          readings: int, source: str | None):
    """The readings of one checked mesh turned by ``rotation`` (3, 3) (read as ``vertices @ R.T``,
    y up): (frame, :class:`~meshpose.meshkp.readings.Readings`, humanness)."""
    frame, unit = _unit_frame(np.ascontiguousarray(vertices @ rotation.T), faces, source)
    generator = torch.Generator().manual_seed(seed)
    found = read_joints(network, torch.from_numpy(unit).to(device), torch.from_numpy(faces).to(device),
                        readings, generator)
    if not found.on_surface:
        raise MeshposeError("mesh has no surface area", source)
    return frame, found, humanness(found.joints, found.points)


def _oriented_read(network, vertices, faces, up: str, seed: int, device: str, readings: int, source: str | None):
    """(rotation (3, 3), joints (J, 3) float64 in the mesh's frame and units, confidence (J,),
    humanness) of one checked mesh, all outputs of the model: read along the given up axis; for
    ``up="auto"`` in the turn the model's up head gives (:func:`_upright_by_prediction`), or, for a
    model without one or a turn that scores below the threshold, in the turn
    :func:`~meshpose.meshkp.orientation.search_up` finds (two readings a turn, then
    ``max(readings, SEARCHED_READINGS)`` readings in that turn)."""
    if up != "auto":
        rotation = axis_rotation(up)
        frame, found, score = _read(network, vertices, faces, rotation, seed, device, readings, source)
        # float64: the centre added back exactly
        return rotation, frame.to_mesh(found.joints.mean(0).cpu().numpy()) @ rotation, found.confidence.mean(0), score
    frame, unit = _unit_frame(vertices, faces, source)
    unit, faces = torch.from_numpy(unit).to(device), torch.from_numpy(faces).to(device)

    def turned(rotations, count):
        found = []
        for start in range(0, len(rotations), _TURNS_PER_PASS):
            found += read_joints_turned(network, unit, faces, rotations[start:start + _TURNS_PER_PASS], count,
                                        torch.Generator().manual_seed(seed))
        if not found[0].on_surface:
            raise MeshposeError("mesh has no surface area", source)
        return found

    def read(rotations, count=READINGS):
        return [(humanness(f.joints, f.points), float(f.confidence.mean()), f) for f in turned(rotations, count)]

    if network.up_head is not None:
        rotation, found = _upright_by_prediction(turned, readings)
        score = humanness(found.joints, found.points)
    if network.up_head is None or score < HUMANNESS_THRESHOLD:
        rotation = search_up(read).rotation
        score, _, found = read(rotation[None], max(readings, SEARCHED_READINGS))[0]
    joints = found.joints.mean(0).double().cpu().numpy() @ rotation  # the turn undone: the unit frame
    return rotation, frame.to_mesh(joints), found.confidence.mean(0), score


def _upright_by_prediction(turned, readings: int):
    """(rotation (3, 3), its :class:`~meshpose.meshkp.readings.Readings`) of a model with an up
    head: a reading of the mesh as it comes predicts its up direction; the mesh is turned so that
    it points along y and read ``readings`` times; while that reading's own predicted up is more
    than :data:`UP_SETTLED_DEG` off y, it is turned again (at most :data:`UP_PASSES` passes).

    ``turned(rotations (T, 3, 3), count)`` reads the mesh ``count`` times in each turn."""
    rotation = np.eye(3)
    count = PREDICTING_READINGS
    for _ in range(UP_PASSES):
        found = turned(rotation[None], count)[0]
        up = found.up.mean(0).double().cpu().numpy()
        if count == readings and np.degrees(np.arccos(np.clip(up[1] / np.linalg.norm(up), -1, 1))) <= UP_SETTLED_DEG:
            return rotation, found
        rotation = rotation_onto_y(up) @ rotation
        count = readings
    return rotation, turned(rotation[None], readings)[0]


def _estimate(network, vertices, faces, joint_set: str, up: str, seed: int, device: str, readings: int,
              source: str | None) -> dict:
    """:func:`mesh_keypoints` of a checked mesh with a loaded network."""
    rotation, joints, confidence, score = _oriented_read(network, vertices, faces, up, seed, device, readings, source)
    names = output_names()
    chosen = [i for i, n in enumerate(names) if n.split(":")[0] == joint_set]
    return {"joint_set": joint_set, "names": [names[i].split(":", 1)[1] for i in chosen],
            "keypoints": joints[chosen], "confidence": confidence[chosen].double().cpu().numpy(),
            "humanness": score, "up": rotation[1].copy()}


@torch.no_grad()
def mesh_keypoints(mesh, joint_set: str = "seed12", model: str = "default", up: str = "auto",
                   seed: int = 0, device: str = "cpu", readings: int = READINGS) -> dict:
    """Estimate labelled body joints on a human mesh of any topology, and how human it looks.

    Args:
        mesh: a mesh file (OBJ/PLY/OFF/GLB/STL), a ``trimesh.Trimesh`` or ``(vertices (V, 3),
            faces (F, 3))``; any units, any place (centring and scaling are done in float64;
            vertices no face uses are ignored).
        joint_set: one of ``seed12`` (the keypoint dataset's boundary joints), ``smpl24``,
            ``h36m17`` (Anny's anatomical joint centres of those joints, as the model learnt
            them: not the Human3.6M regressor of ``meshpose predict``).
        model: shipped model name or model file.
        up: ``"auto"`` (default): any rotation; the model's own up answer turns the mesh upright
            (one pass more than ``readings``, two when it turns again), or, for a model without
            an up head or a mesh that does not read as a body, a search over orientations (64 to
            96 passes; :mod:`meshpose.meshkp.orientation`). Or a known up axis, ``"y"``, ``"z"``,
            ``"x"``, ``"-y"``, ``"-z"``, read as given.
        seed: seed of the surface-point draws (results vary by a few millimetres with it).
        readings: readings averaged (2 to 64; each costs about one network pass, ~18 ms on a CPU core).

    Returns:
        dict with ``joint_set``, ``names`` (J,), ``keypoints`` (J, 3) float64 in the mesh's own
        coordinates and units, ``confidence`` (J,) in [0, 1], ``humanness`` in [0, 1]: below
        :data:`HUMANNESS_THRESHOLD` (0.5) no human body was found (along ``up``, or in any
        orientation for ``auto``; the keypoints then mean nothing); nothing is raised for that;
        and ``up`` (3,), the unit direction in the mesh's frame the body was read upright along.

    Raises:
        UnknownNameError: unknown ``joint_set`` or ``up``.
        MeshposeError: an unreadable or malformed mesh, one without surface area; the message
            names the file.
    """
    _check_names(joint_set, up)
    if isinstance(readings, bool) or not isinstance(readings, (int, np.integer)) or not 2 <= readings <= _MAX_READINGS:
        raise MeshposeError(f"readings must be a whole number from 2 to {_MAX_READINGS}; got {str(readings)[:20]}")
    vertices, faces, source = _as_mesh(mesh)
    network = load_mesh_keypoint_model(model, device)
    return _estimate(network, vertices, faces, joint_set, up, seed, device, int(readings), source)


def _decimals(points: np.ndarray) -> int:
    """Decimals that keep 1e-6 of the points' extent (6 for a body in metres, 8 in km)."""
    extent = float(np.ptp(points, axis=0).max()) if len(points) else 0.0
    if not math.isfinite(extent) or extent == 0:
        return 6
    return int(min(15, max(0, 6 - math.floor(math.log10(extent)))))


def write_keypoints_json(result: dict, path: str | Path) -> Path:
    """The mesh-keypoints JSON (``joint_set``, ``units``, ``humanness``, ``up`` (the unit direction
    the body was read upright along, mesh axes), ``keypoints`` and ``confidence`` by joint name),
    written atomically (inside :func:`~meshpose.io.atomic.output_batch`:
    at its end). Coordinates keep 1e-6 of the skeleton's size."""
    digits = _decimals(np.asarray(result["keypoints"]))
    keypoints = {n: [round(float(v), digits) for v in p] for n, p in zip(result["names"], result["keypoints"])}
    confidence = {n: round(float(c), 4) for n, c in zip(result["names"], result["confidence"])}
    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in keypoints.items())
    text = (f'{{"joint_set": {json.dumps(result["joint_set"])}, "units": "same as the input mesh", '
            f'"humanness": {round(float(result["humanness"]), 3)}, '
            f'"up": {json.dumps([round(float(v), 4) for v in result["up"]])},\n'
            f' "keypoints": {{\n{lines}\n }},\n "confidence": {json.dumps(confidence)}}}\n')
    return atomic_write_text(path, text)


def render_keypoints(vertices: np.ndarray, faces: np.ndarray, result: dict) -> np.ndarray:
    """(H, W, 3) uint8 front and side views of the mesh with its joints and skeleton, upright
    along the result's ``up``."""
    joint_set = get_joint_set(result["joint_set"])
    rotation = rotation_onto_y(result["up"])
    return render_views(np.asarray(vertices, np.float64) @ rotation.T, faces, views=("front", "side"), up_axis="y",
                        joints=np.asarray(result["keypoints"]) @ rotation.T, edges=joint_set.edges)


def output_stems(paths: list[Path]) -> list[str]:
    """Output names (without ``.json``/``.png``) of the meshes of one folder: the file's stem
    (``scan.ply`` -> ``scan``), or its whole name (``scan.ply``) where stems collide
    (compared case-insensitively: ``scan.ply``, ``Scan.glb`` and ``scan.stl`` give
    ``scan.ply``, ``Scan.glb`` and ``scan.stl``)."""
    stems = [p.stem for p in paths]
    while True:
        counts: dict[str, int] = {}
        for stem in stems:
            counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
        clashing = [i for i, stem in enumerate(stems) if counts[stem.casefold()] > 1 and stem != paths[i].name]
        if not clashing:
            return stems
        for i in clashing:
            stems[i] = paths[i].name


def _not_human(network, path: Path, vertices, faces, up: str, score: float, threshold: float, seed: int,
               device: str, readings: int) -> NotHumanError:
    """The refusal of a mesh below the threshold, with the up axis it reads as a body along, if any."""
    if up == "auto":
        return NotHumanError(f"no human body found in any orientation (humanness {score:.2f} < {threshold:g})", path)
    others = {axis: _read(network, vertices, faces, axis_rotation(axis), seed, device, readings, str(path))[2]
              for axis in UP_AXES if axis != up}
    best = max(others, key=others.get)
    message = f"no human body found upright along {up} (humanness {score:.2f} < {threshold:g})"
    if others[best] >= threshold:
        flag = f"--up={best}" if best.startswith("-") else f"--up {best}"
        message += f"; along {best} it scores {others[best]:.2f}: try {flag}"
    return NotHumanError(message, path)


def _check_outputs(folder: bool, output: Path, png: Path | None) -> None:
    """Every output location, before anything is read or computed."""
    if folder:
        if output.suffix.lower() == ".json":
            raise MeshposeError("a folder of meshes needs an output folder, not a .json file", output)
        check_output_folder(output)
        if png is not None:
            check_output_folder(png)
    else:
        if output.suffix.lower() != ".json":
            raise MeshposeError("the output of one mesh must be a .json file", output)
        check_output_file(output)
        if png is not None:
            check_output_file(png, (".png",))


@torch.no_grad()
def mesh_keypoints_files(input_path: str | Path, output: str | Path, joint_set: str = "seed12",
                         model: str = "default", up: str = "auto", png: str | Path | None = None,
                         device: str = "cpu", min_humanness: float = HUMANNESS_THRESHOLD) -> list[Path]:
    """``meshpose mesh-keypoints``: the JSON (and with ``png`` a picture) of one mesh file, or of
    every mesh in a folder (then ``output`` and ``png`` are folders, and each mesh gives
    ``STEM.json``/``STEM.png``, or ``NAME.EXT.json`` where stems collide: :func:`output_stems`).

    All or nothing: every output location is checked, every mesh read and every result
    computed before the first file is written, and all files move into place together.

    Returns:
        The files written.

    Raises:
        NotHumanError: a mesh's humanness is below ``min_humanness`` (the message gives its
            score, and an up axis along which it reads as a body, if there is one).
        MeshposeError: a bad name, mesh or output location; the message names the file.
    """
    _check_names(joint_set, up)
    if not (isinstance(min_humanness, (int, float)) and 0 <= min_humanness <= 1):
        raise MeshposeError(f"the humanness threshold must be in [0, 1]; got {str(min_humanness)[:20]}")
    source, output = Path(input_path), Path(output)
    png = Path(png) if png else None
    folder = source.is_dir()
    inputs = list_mesh_files(source) if folder else [source]
    _check_outputs(folder, output, png)
    meshes = [_as_mesh(path)[:2] for path in inputs]
    network = load_mesh_keypoint_model(model, device)
    results = []
    for path, (vertices, faces) in zip(inputs, meshes):
        result = _estimate(network, vertices, faces, joint_set, up, 0, device, READINGS, str(path))
        if result["humanness"] < min_humanness:
            raise _not_human(network, path, vertices, faces, up, result["humanness"], min_humanness, 0, device,
                             READINGS)
        results.append(result)
    with output_batch():  # every file moves into place at the end, or none
        if folder:
            return _write_folder(inputs, meshes, results, output, png)
        written = [write_keypoints_json(results[0], output)]
        if png:
            written.append(save_png(png, render_keypoints(*meshes[0], results[0])))
        return written


def _write_folder(inputs: list[Path], meshes: list, results: list[dict], output: Path, png: Path | None,
                  ) -> list[Path]:
    """Write a folder's JSONs (and PNGs) into staging folders that move into place with the batch."""
    written = []
    with staged_folder(output) as json_dir, (staged_folder(png) if png else nullcontext()) as png_dir:
        for stem, (vertices, faces), result in zip(output_stems(inputs), meshes, results):
            write_keypoints_json(result, json_dir / f"{stem}.json")
            written.append(output / f"{stem}.json")
            if png:
                save_png(png_dir / f"{stem}.png", render_keypoints(vertices, faces, result))
                written.append(png / f"{stem}.png")
    return written
