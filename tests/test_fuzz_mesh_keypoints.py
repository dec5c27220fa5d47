"""Malformed input to ``meshpose mesh-keypoints``, and the answers it must get right.

Every refusal is checked with :func:`fuzzing.assert_refused`: exit code 2, one stderr line naming
the bad file (or flag), no traceback, and the output locations (hidden temporaries included)
unchanged. The inputs are generated here, one problem class per test function: shapes that are
not human bodies, malformed mesh files (alone and in a folder of good ones), outputs that cannot
be written, bad flags. Then what must work: a body far from the origin or with a stray vertex
gives the same joints, the humanness score, the ``--up`` suggestion, colliding stems.
"""
from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from fuzzing import assert_refused, locked_folder, run_cli, snapshot

import meshpose
from meshpose.io.meshes import read_mesh
from meshpose.mesh_keypoints import HUMANNESS_THRESHOLD

HUMAN_SEG = Path(__file__).parents[2] / "shared" / "data" / "human_seg" / "meshes"
needs_human_seg = pytest.mark.skipif(not HUMAN_SEG.is_dir(), reason="../shared/data/human_seg is absent")


# ---------------------------------------------------------------------------------------------
# meshes and files


@pytest.fixture(scope="module")
def body(anny_body):
    """An Anny body in the walking pose, y up, metres: (vertices (V, 3) float64, faces (F, 3))."""
    from meshpose.body.poses import preset_rotations
    from meshpose.meshkp.anny_parts import Y_UP

    with torch.no_grad():
        out = anny_body(preset_rotations("walk"), torch.full((1, 6), 0.5))
    return (out.vertices[0] @ Y_UP.T).double().numpy(), anny_body.faces.numpy().astype(np.int64)


def _export(vertices, faces, kind: str) -> bytes:
    """A mesh file's bytes (trimesh's PLY, STL and GLB hold float32 coordinates)."""
    data = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces), process=False).export(file_type=kind)
    return data.encode() if isinstance(data, str) else data


def _ply64(vertices, faces) -> bytes:
    """A binary PLY with float64 coordinates (trimesh writes float32)."""
    vertices, faces = np.asarray(vertices, "<f8"), np.asarray(faces, "<i4")
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\nproperty double x\n"
              f"property double y\nproperty double z\nelement face {len(faces)}\n"
              "property list uchar int vertex_indices\nend_header\n").encode()
    rows = np.zeros(len(faces), [("n", "u1"), ("i", "<i4", (3,))])
    rows["n"], rows["i"] = 3, faces
    return header + vertices.tobytes() + rows.tobytes()


def _obj(vertices, faces) -> bytes:
    lines = [f"v {x!r} {y!r} {z!r}" for x, y, z in np.asarray(vertices, np.float64).tolist()]
    lines += ["f " + " ".join(str(int(i) + 1) for i in face) for face in faces]
    return ("\n".join(lines) + "\n").encode()


def _write(folder: Path, name: str, content: bytes | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if content is not None:
        path.write_bytes(content)
    return path


def _trimesh(mesh, order=(0, 1, 2)):
    """(vertices, faces) of a trimesh, its axes reordered (a mirror: the faces are flipped too)."""
    if list(order) == [0, 1, 2]:
        return mesh.vertices, mesh.faces
    return mesh.vertices[:, order], mesh.faces[:, ::-1]


#: Shapes that are not human bodies: name -> (vertices, faces) maker.
NOT_HUMAN = {
    "cube": lambda: _trimesh(trimesh.creation.box((1, 1, 1))),
    "sphere": lambda: _trimesh(trimesh.creation.icosphere(3)),
    "plane": lambda: (np.array([[0.0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]]), np.array([[0, 1, 2], [0, 2, 3]])),
    "upright plane": lambda: (np.array([[0.0, 0, 0], [1, 0, 0], [1, 1.7, 0], [0, 1.7, 0]]),
                              np.array([[0, 1, 2], [0, 2, 3]])),
    "single triangle": lambda: (np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), np.array([[0, 1, 2]])),
    "tetrahedron": lambda: (np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]),
                            np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])),
    "cylinder": lambda: _trimesh(trimesh.creation.cylinder(0.3, 1.7), order=[0, 2, 1]),  # standing along y
    "tall box": lambda: _trimesh(trimesh.creation.box((0.5, 1.7, 0.3))),
    "triangle soup": lambda: (np.random.default_rng(0).normal(size=(300, 3)),
                              np.random.default_rng(1).integers(0, 300, (500, 3))),
}


def _spiked(body):
    """The body with one vertex that faces use moved to 1e39 (finite in float64, not in float32)."""
    vertices, faces = body
    vertices = vertices.copy()
    vertices[faces[0, 0]] = [1e39, 0, 0]
    return _ply64(vertices, faces)


def _nan_vertex(body, value=np.nan):
    vertices, faces = body
    vertices = vertices.copy()
    vertices[5, 1] = value
    return _export(vertices, faces, "ply")


def _huge_span(body):
    vertices, faces = body
    vertices = vertices.copy()
    vertices[faces[0, 0]], vertices[faces[0, 1]] = [-1.5e308, 0, 0], [1.5e308, 0, 0]
    return _ply64(vertices, faces)


def _ply_header(count: int, binary: bool = True) -> bytes:
    kind = "binary_little_endian" if binary else "ascii"
    return (f"ply\nformat {kind} 1.0\nelement vertex {count}\nproperty float x\nproperty float y\n"
            f"property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n").encode()


def _binary_stl(triangles: int, claimed: int | None = None) -> bytes:
    data = bytearray(b"\0" * 80 + struct.pack("<I", triangles if claimed is None else claimed))
    rng = np.random.default_rng(0)
    for _ in range(triangles):
        data += struct.pack("<12fH", *rng.normal(size=12).tolist(), 0)
    return bytes(data)


#: name -> (file name, content maker (body -> bytes) or bytes or None for a missing file).
#: Every one is refused; the ones with a mesh extension are also refused inside a folder.
MALFORMED = {
    "empty obj": ("m.obj", b""),
    "whitespace obj": ("m.obj", b" \n\t\n"),
    "empty ply": ("m.ply", b""),
    "empty stl": ("m.stl", b""),
    "empty glb": ("m.glb", b""),
    "empty off": ("m.off", b""),
    "comments only obj": ("m.obj", b"# nothing here\n# really\n"),
    "vertices only obj": ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n"),
    "faces only obj": ("m.obj", b"f 1 2 3\n"),
    "index 0 in obj": ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n"),
    "index out of range obj": ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99\n"),
    "negative index out of range obj": ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -99\n"),
    "index out of range ply": ("m.ply", _ply_header(3, binary=False).replace(b"uchar int", b"uchar uint")
                               + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 99\n"),
    "nan vertex obj": ("m.obj", b"v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n"),
    "inf vertex obj": ("m.obj", b"v 0 0 0\nv inf 0 0\nv 0 1 0\nf 1 2 3\n"),
    "1e400 vertex obj": ("m.obj", b"v 0 0 0\nv 1e400 0 0\nv 0 1 0\nf 1 2 3\n"),
    "nan vertex in a body ply": ("m.ply", _nan_vertex),
    "inf vertex in a body ply": ("m.ply", lambda body: _nan_vertex(body, np.inf)),
    "one vertex at 1e39 in a body ply": ("m.ply", _spiked),
    "body spanning 3e308 ply": ("m.ply", _huge_span),
    "all vertices at one point obj": ("m.obj", b"v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\nf 3 2 1\n"),
    "collinear triangles obj": ("m.obj", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nf 1 2 3\nf 2 3 4\n"),
    "degenerate faces obj": ("m.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 1 1\nf 2 2 3\n"),
    "text garbage obj": ("m.obj", b"this is not a mesh at all\njust words\n"),
    "binary garbage obj": ("m.obj", bytes(range(256)) * 8),
    "binary garbage ply": ("m.ply", b"ply\n" + bytes(range(256)) * 8),
    "binary garbage stl": ("m.stl", bytes(range(256)) * 8),
    "binary garbage glb": ("m.glb", b"glTF" + bytes(range(256)) * 8),
    "binary garbage off": ("m.off", b"OFF\n" + bytes(range(256)) * 8),
    "truncated binary ply": ("m.ply", lambda body: _export(*body, "ply")[:4000]),
    "truncated obj": ("m.obj", lambda body: _obj(*body)[:50000]),  # within the vertices: no faces
    "truncated glb": ("m.glb", lambda body: _export(*body, "glb")[:5000]),
    "truncated binary stl": ("m.stl", lambda body: _export(*body, "stl")[:30000]),
    "ply claiming 10**11 vertices": ("m.ply", _ply_header(10**11) + bytes(64)),
    "ascii ply claiming 10**9 vertices": ("m.ply", _ply_header(10**9, binary=False) + b"0 0 0\n"),
    "stl claiming 10**9 triangles": ("m.stl", _binary_stl(3, claimed=10**9)),
    "off with wrong counts": ("m.off", b"OFF\n5 3 0\n0 0 0\n1 0 0\n"),
    "utf16 obj": ("m.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n".encode("utf-16")),
    "wrong extension txt": ("m.txt", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"),
    "wrong extension fbx": ("m.fbx", b"Kaydara FBX Binary  \x00"),
    "no extension": ("mesh", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"),
    "missing file": ("m.obj", None),
}
#: Cases a folder listing skips (not mesh files, or not there): refused only as a single input.
SINGLE_ONLY = {"wrong extension txt", "wrong extension fbx", "no extension", "missing file"}


def _content(case: str, body):
    name, content = MALFORMED[case]
    return name, content(body) if callable(content) else content


def _out(tmp: Path) -> Path:
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    (out / "kept.json").write_text("{}")  # an earlier result: must survive every refusal untouched
    return out


# ---------------------------------------------------------------------------------------------
# 1. shapes that are not human bodies: refused, whatever the file format


@pytest.mark.parametrize("shape, kind", [(shape, "obj") for shape in sorted(NOT_HUMAN)]
                         + [(shape, kind) for shape in ("cube", "sphere", "plane") for kind in ("ply", "stl", "glb")])
def test_shapes_that_are_not_bodies_are_refused(tmp_path, shape, kind):
    path = _write(tmp_path / "in", f"shape.{kind}", _export(*NOT_HUMAN[shape](), kind))
    out = _out(tmp_path)
    outcome = assert_refused(["mesh-keypoints", path, "-o", out / "shape.json", "--png", out / "shape.png"], path,
                             watch=[tmp_path], contains="no human body found")
    assert f"< {HUMANNESS_THRESHOLD:g}" in outcome.stderr


def test_a_shape_among_bodies_refuses_the_whole_folder(tmp_path, body):
    folder = tmp_path / "in"
    _write(folder, "a_body.ply", _export(*body, "ply"))
    bad = _write(folder, "b_cube.obj", _export(*NOT_HUMAN["cube"](), "obj"))
    _write(folder, "c_body.obj", _obj(*body))
    out = _out(tmp_path)
    assert_refused(["mesh-keypoints", folder, "-o", out / "joints", "--png", out / "pictures"], bad, watch=[tmp_path],
                   contains="no human body found")


# ---------------------------------------------------------------------------------------------
# 2. malformed mesh files: refused alone and inside a folder of good meshes


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_mesh_files_are_refused(tmp_path, case, body):
    name, content = _content(case, body)
    bad = _write(tmp_path / "in", name, content)
    out = _out(tmp_path)
    assert_refused(["mesh-keypoints", bad, "-o", out / "m.json"], bad, watch=[tmp_path])


@pytest.mark.parametrize("case", sorted(set(MALFORMED) - SINGLE_ONLY))
def test_one_malformed_mesh_in_a_folder_refuses_the_folder(tmp_path, case, body):
    folder = tmp_path / "in"
    _write(folder, "a_good.ply", _export(*body, "ply"))
    name, content = _content(case, body)
    bad = _write(folder, f"b_{name}", content)
    _write(folder, "c_good.obj", _obj(*body))
    out = _out(tmp_path)
    assert_refused(["mesh-keypoints", folder, "-o", out / "joints", "--png", out / "pictures"], bad, watch=[tmp_path])


@pytest.mark.parametrize("case", ["folder without meshes", "symlink loop", "broken symlink", "a folder named .obj",
                                  "unreadable file"])
def test_inputs_that_are_not_mesh_files_are_refused(tmp_path, case):
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "m.obj"
    if case == "folder without meshes":
        (folder / "notes.txt").write_text("hello")
        bad = folder
    elif case == "symlink loop":
        os.symlink("m.obj", bad)
    elif case == "broken symlink":
        os.symlink("gone.obj", bad)
    elif case == "a folder named .obj":
        bad.mkdir()
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        bad.write_text("v 0 0 0\n")
        bad.chmod(0)
    out = _out(tmp_path)
    assert_refused(["mesh-keypoints", bad, "-o", out / ("joints" if bad.is_dir() else "m.json")], bad,
                   watch=[out])


# ---------------------------------------------------------------------------------------------
# 3. outputs that cannot be written: refused before anything is read or written


def _places(tmp: Path) -> dict[str, Path]:
    a_file = tmp / "a_file"
    a_file.write_text("x")
    (tmp / "a_folder.json").mkdir(exist_ok=True)
    (tmp / "a_folder.png").mkdir(exist_ok=True)
    return {"is a file": a_file, "under a file": a_file / "sub", "under /proc": Path("/proc/meshpose-fuzz/x"),
            "in /proc": Path("/proc/meshpose-fuzz"), "folder is a file": a_file}


ONE_MESH_OUTPUTS = {  # -o / --png of one mesh: (path relative to tmp, what the error says)
    "-o wrong suffix": ("-o", "m.txt", "must be a .json"),
    "-o missing folder": ("-o", "missing/m.json", "does not exist"),
    "-o is a folder": ("-o", "a_folder.json", "is a folder"),
    "-o under a file": ("-o", "a_file/m.json", "not a folder"),
    "-o under /proc": ("-o", "/proc/meshpose-fuzz/m.json", "cannot write"),
    "--png wrong suffix": ("--png", "m.jpg", "must end in .png"),
    "--png missing folder": ("--png", "missing/m.png", "does not exist"),
    "--png is a folder": ("--png", "a_folder.png", "is a folder"),
    "--png under a file": ("--png", "a_file/m.png", "not a folder"),
    "--png under /proc": ("--png", "/proc/meshpose-fuzz/m.png", "cannot write"),
}


@pytest.mark.parametrize("case", sorted(ONE_MESH_OUTPUTS))
def test_unwritable_outputs_of_one_mesh_are_refused(tmp_path, case, body):
    good = _write(tmp_path / "in", "body.ply", _export(*body, "ply"))
    _places(tmp_path)
    flag, name, message = ONE_MESH_OUTPUTS[case]
    target = tmp_path / name
    argv = ["mesh-keypoints", good, "-o", tmp_path / "ok.json", "--png", tmp_path / "ok.png"]
    argv[argv.index(flag) + 1] = target
    assert_refused(argv, target, watch=[tmp_path], contains=message)


@pytest.mark.parametrize("flag", ["-o", "--png"])
@pytest.mark.parametrize("case", ["is a file", "under a file", "under /proc", "in /proc"])
def test_unwritable_output_folders_are_refused(tmp_path, case, flag, body):
    folder = tmp_path / "in"
    _write(folder, "body.ply", _export(*body, "ply"))
    target = _places(tmp_path)[case]
    argv = ["mesh-keypoints", folder, "-o", tmp_path / "joints", "--png", tmp_path / "pictures"]
    argv[argv.index(flag) + 1] = target
    assert_refused(argv, target, watch=[tmp_path])


@pytest.mark.parametrize("flag", ["-o", "--png"])
@pytest.mark.parametrize("single", [True, False], ids=["one mesh", "folder"])
def test_read_only_outputs_are_refused(tmp_path, monkeypatch, flag, single, body):
    inputs = tmp_path / "in"
    good = _write(inputs, "body.ply", _export(*body, "ply"))
    locked = locked_folder(tmp_path / "locked", monkeypatch)
    try:
        names = {"-o": "body.json", "--png": "body.png"} if single else {"-o": "joints", "--png": "pictures"}
        argv = ["mesh-keypoints", good if single else inputs, "-o", tmp_path / names["-o"],
                "--png", tmp_path / names["--png"]]
        argv[argv.index(flag) + 1] = locked / names[flag]
        assert_refused(argv, locked / names[flag], watch=[tmp_path])
    finally:
        locked.chmod(0o755)


def test_a_folder_of_meshes_needs_an_output_folder(tmp_path, body):
    folder = tmp_path / "in"
    _write(folder, "body.ply", _export(*body, "ply"))
    assert_refused(["mesh-keypoints", folder, "-o", tmp_path / "joints.json"], tmp_path / "joints.json",
                   watch=[tmp_path], contains="output folder")


# ---------------------------------------------------------------------------------------------
# 4. bad flags


FLAGS = {
    "--up w": (["--up", "w"], "--up"),
    "--up empty": (["--up", ""], "--up"),
    "--up -y without =": (["--up", "-y"], "--up"),
    "--joint-set coco17": (["--joint-set", "coco17"], "--joint-set"),
    "--joint-set empty": (["--joint-set", ""], "--joint-set"),
    "--device foo": (["--device", "foo"], "--device"),
    "--device cuda:99": (["--device", "cuda:99"], "--device"),
    "--device empty": (["--device", ""], "--device"),
    "--min-humanness nan": (["--min-humanness", "nan"], "--min-humanness"),
    "--min-humanness 2": (["--min-humanness", "2"], "--min-humanness"),
    "--min-humanness -0.1": (["--min-humanness=-0.1"], "--min-humanness"),
    "--min-humanness abc": (["--min-humanness", "abc"], "--min-humanness"),
    "--model missing": (["--model", "missing.safetensors"], "missing.safetensors"),
    "--model garbage": (["--model", "{garbage}"], "garbage.safetensors"),
}


@pytest.mark.parametrize("case", sorted(FLAGS))
def test_bad_flags_are_refused(tmp_path, case, body):
    good = _write(tmp_path / "in", "body.ply", _export(*body, "ply"))
    extra, names = FLAGS[case]
    if "{garbage}" in extra:
        garbage = _write(tmp_path / "in", "garbage.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}" + bytes(100))
        extra = [str(garbage) if item == "{garbage}" else item for item in extra]
    if "missing.safetensors" in extra:
        extra = [str(tmp_path / item) if item == "missing.safetensors" else item for item in extra]
    out = _out(tmp_path)
    assert_refused(["mesh-keypoints", good, "-o", out / "body.json", *extra], names, watch=[tmp_path])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(tmp_path, body):
    good = _write(tmp_path / "in", "body.ply", _export(*body, "ply"))
    out = _out(tmp_path)
    assert_refused(["mesh-keypoints", good, "-o", out / "body.json", "--device", "cuda"], "--device",
                   watch=[tmp_path], contains="CUDA is not available")


def test_api_refuses_bad_arrays_and_names_the_file(tmp_path):
    with pytest.raises(meshpose.MeshposeError, match="no surface area"):
        meshpose.mesh_keypoints((np.zeros((3, 3)), np.array([[0, 1, 2]])))
    with pytest.raises(meshpose.MeshposeError, match="faces must be"):
        meshpose.mesh_keypoints((np.eye(3), np.array([[0.0, 1.5, 2.0]])))
    with pytest.raises(meshpose.MeshposeError, match="vertices must be"):
        meshpose.mesh_keypoints((np.array([["a", "b", "c"]] * 3), np.array([[0, 1, 2]])))
    with pytest.raises(meshpose.MeshposeError, match="readings"):
        meshpose.mesh_keypoints((np.eye(3), np.array([[0, 1, 2]])), readings=1)
    with pytest.raises(meshpose.MeshposeError, match="a mesh is"):
        meshpose.mesh_keypoints(42)
    flat = _write(tmp_path, "flat.obj", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    with pytest.raises(meshpose.MeshposeError, match="no surface area") as error:
        meshpose.mesh_keypoints(flat)
    assert str(error.value).startswith(f"{flat}: ")


# ---------------------------------------------------------------------------------------------
# 5. what must work: float64 frame, humanness, the --up suggestion, colliding stems


def test_a_far_body_and_a_stray_vertex_give_the_same_joints(tmp_path, body):
    vertices, faces = body
    clean = meshpose.mesh_keypoints((vertices, faces), joint_set="smpl24")
    far = meshpose.mesh_keypoints((vertices + [1e8, -1e8, 1e8], faces), joint_set="smpl24")
    np.testing.assert_allclose(far["keypoints"] - [1e8, -1e8, 1e8], clean["keypoints"], atol=1e-3, rtol=0)  # 1 mm
    stray = meshpose.mesh_keypoints((np.vstack([vertices, [[40.0, -3e5, 7e6]]]), faces), joint_set="smpl24")
    np.testing.assert_allclose(stray["keypoints"], clean["keypoints"], atol=1e-3, rtol=0)
    assert min(clean["humanness"], far["humanness"], stray["humanness"]) >= HUMANNESS_THRESHOLD

    # the same through files (float64 PLY) and the command
    paths = {}
    for name, (v, f) in {"clean": (vertices, faces), "far": (vertices + 1e8, faces),
                         "stray": (np.vstack([vertices, [[1e30, 0, 0]]]), faces)}.items():
        paths[name] = _write(tmp_path / name, "body.ply", _ply64(v, f))
        outcome = run_cli("mesh-keypoints", paths[name], "-o", tmp_path / f"{name}.json", "--joint-set", "h36m17")
        assert outcome.code == 0, outcome.stderr
    read = {name: np.array(list(json.loads((tmp_path / f"{name}.json").read_text())["keypoints"].values()))
            for name in paths}
    np.testing.assert_allclose(read["far"] - 1e8, read["clean"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(read["stray"], read["clean"], atol=1e-3, rtol=0)


def test_humanness_of_bodies_and_shapes(body):
    assert meshpose.mesh_keypoints(body)["humanness"] >= HUMANNESS_THRESHOLD
    for shape in ("cube", "sphere", "plane"):
        result = meshpose.mesh_keypoints(NOT_HUMAN[shape]())  # the API reports, it does not refuse
        assert 0 <= result["humanness"] < HUMANNESS_THRESHOLD, (shape, result["humanness"])
        assert np.isfinite(result["keypoints"]).all()


@needs_human_seg
@pytest.mark.parametrize("name", ["faust__tr_reg_000.obj", "MIT_animation__meshes_crane__meshes__mesh_0050.obj",
                                  "adobe__MaleScan003_tri_fixed.obj"])
def test_humanness_of_human_seg_meshes(name):
    path = HUMAN_SEG / name
    if not path.is_file():
        pytest.skip(f"{name} is not in human_seg")
    assert meshpose.mesh_keypoints(path)["humanness"] >= HUMANNESS_THRESHOLD


def test_a_z_up_body_needs_no_option_and_a_wrong_hint_is_refused_with_the_right_one(tmp_path, anny_body):
    """Anny's own frame is z-up (as ``meshpose body`` writes it): with no option the up direction
    is found (+z) and its joints are as near the body's true joint centres as those of ``--up z``;
    the wrong hint ``--up y`` reads it lying down and is refused with ``--up z`` suggested."""
    from meshpose.body import body_joints
    from meshpose.body.poses import preset_rotations

    with torch.no_grad():
        out = anny_body(preset_rotations("walk"), torch.full((1, 6), 0.5))
    vertices, faces = out.vertices[0].double().numpy(), anny_body.faces.numpy()
    path = _write(tmp_path / "in", "z_up.ply", _export(vertices, faces, "ply"))
    truth = body_joints(out, "smpl24", anatomical=True)[0].double().numpy()
    outcome = run_cli("mesh-keypoints", path, "-o", tmp_path / "auto.json", "--joint-set", "smpl24")
    assert outcome.code == 0, outcome.stderr
    found = json.loads((tmp_path / "auto.json").read_text())
    assert found["humanness"] >= HUMANNESS_THRESHOLD and found["up"][2] > np.cos(np.radians(8))
    assert run_cli("mesh-keypoints", path, "-o", tmp_path / "z.json", "--up", "z", "--joint-set", "smpl24").code == 0
    hinted = json.loads((tmp_path / "z.json").read_text())
    assert hinted["up"] == [0.0, 0.0, 1.0] and hinted["humanness"] >= HUMANNESS_THRESHOLD
    def median_error(result):  # metres
        return np.median(np.linalg.norm(np.array(list(result["keypoints"].values())) - truth, axis=1))

    assert median_error(found) < 0.06 and median_error(found) < median_error(hinted) + 0.01

    outcome = assert_refused(["mesh-keypoints", path, "-o", tmp_path / "j.json", "--up", "y"], path,
                             watch=[tmp_path], contains="no human body found")
    assert "try --up z" in outcome.stderr


@needs_human_seg
def test_a_y_up_scan_read_along_z_suggests_y(tmp_path):
    path = HUMAN_SEG / "faust__tr_reg_000.obj"
    if not path.is_file():
        pytest.skip("faust__tr_reg_000.obj is not in human_seg")
    outcome = assert_refused(["mesh-keypoints", path, "-o", tmp_path / "j.json", "--up", "z"], path, watch=[tmp_path])
    assert "try --up y" in outcome.stderr


def test_min_humanness_zero_accepts_any_shape_and_the_json_says_how_human(tmp_path):
    path = _write(tmp_path, "cube.obj", _export(*NOT_HUMAN["cube"](), "obj"))
    outcome = run_cli("mesh-keypoints", path, "-o", tmp_path / "cube.json", "--min-humanness", "0")
    assert outcome.code == 0, outcome.stderr
    assert json.loads((tmp_path / "cube.json").read_text())["humanness"] < HUMANNESS_THRESHOLD


def test_colliding_stems_each_get_their_own_file(tmp_path, body):
    folder = tmp_path / "in"
    for name in ("scan.ply", "Scan.glb", "scan.stl", "other.obj"):
        _write(folder, name, _export(*body, name.rsplit(".", 1)[1]))
    outcome = run_cli("mesh-keypoints", folder, "-o", tmp_path / "joints", "--png", tmp_path / "pictures")
    assert outcome.code == 0, outcome.stderr
    assert sorted(p.name for p in (tmp_path / "joints").iterdir()) == [
        "Scan.glb.json", "other.json", "scan.ply.json", "scan.stl.json"]
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == [
        "Scan.glb.png", "other.png", "scan.ply.png", "scan.stl.png"]
    assert len(outcome.stdout.split()) == 8
    first = json.loads((tmp_path / "joints" / "scan.ply.json").read_text())
    assert first["humanness"] >= HUMANNESS_THRESHOLD and len(first["keypoints"]) == 12


def test_a_failing_png_leaves_no_json(tmp_path, body, monkeypatch):
    """Rendering fails for the second mesh after the first JSON was staged: nothing appears
    (only the folders' times change: the staging folders were made and removed in them)."""
    module = sys.modules["meshpose.mesh_keypoints"]  # meshpose.mesh_keypoints is also the function
    folder = tmp_path / "in"
    for name in ("a.ply", "b.ply"):
        _write(folder, name, _export(*body, "ply"))
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise meshpose.MeshposeError("cannot render", folder / "b.ply")
        return np.zeros((4, 4, 3), np.uint8)

    monkeypatch.setattr(module, "render_keypoints", failing)
    out = _out(tmp_path)
    before = {path: data for path, data in snapshot(tmp_path).items() if not Path(path).is_dir()}
    outcome = run_cli("mesh-keypoints", folder, "-o", out / "joints", "--png", out / "pictures")
    assert outcome.code == 2 and "b.ply: cannot render" in outcome.stderr and len(calls) == 2
    assert {path: data for path, data in snapshot(tmp_path).items() if not Path(path).is_dir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["kept.json"]


def test_read_mesh_keeps_float64(tmp_path, body):
    path = _write(tmp_path, "far.ply", _ply64(body[0] + 1e8, body[1]))
    assert np.array_equal(np.asarray(read_mesh(path).vertices), body[0] + 1e8)
