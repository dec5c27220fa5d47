"""Tests for meshpose.io.meshes: round trips keep vertex order, bad meshes raise InputFileError."""
from __future__ import annotations

import os

import numpy as np
import pytest
import trimesh

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io import list_mesh_files, read_mesh, write_mesh


def _random_mesh(seed: int = 0, v: int = 60, f: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 vertices and faces that reference every vertex, in a shuffled order
    (so any reordering or dropping of vertices by a reader shows up)."""
    rng = np.random.default_rng(seed)
    vertices = rng.normal(scale=0.5, size=(v, 3)).astype(np.float32)
    idx = np.concatenate([rng.permutation(v), rng.integers(0, v, size=3 * f - v)])
    faces = idx.reshape(f, 3)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    assert len(np.unique(faces)) == v  # every vertex used
    return vertices, faces


def _assert_error(exc_info, path, *fragments):
    msg = str(exc_info.value)
    assert os.path.basename(str(path)) in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("ext, atol", [(".obj", 1e-7), (".ply", 0.0), (".off", 1e-7), (".glb", 0.0)])
def test_round_trip_keeps_vertex_order(tmp_path, ext, atol):
    vertices, faces = _random_mesh()
    path = tmp_path / f"body{ext}"
    assert write_mesh(path, vertices, faces) == path
    mesh = read_mesh(path)
    assert isinstance(mesh, trimesh.Trimesh)
    assert mesh.vertices.shape == vertices.shape
    np.testing.assert_allclose(mesh.vertices, vertices, rtol=0, atol=atol)
    np.testing.assert_array_equal(mesh.faces, faces)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_obj_with_unreferenced_vertex_keeps_it(tmp_path):
    path = tmp_path / "loose.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 5 5 5\nv 0 1 0\nf 1 2 4\n")
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [5, 5, 5], [0, 1, 0]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 3]])


def test_off_quad_is_triangulated(tmp_path):
    path = tmp_path / "quad.off"
    path.write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    mesh = read_mesh(path)
    assert mesh.vertices.shape == (4, 3) and mesh.faces.shape == (2, 3)


def test_stl_is_read(tmp_path):
    vertices, faces = _random_mesh(1)
    path = tmp_path / "m.stl"
    trimesh.Trimesh(vertices, faces, process=False).export(path)
    mesh = read_mesh(path)
    assert mesh.faces.shape == faces.shape
    np.testing.assert_allclose(mesh.vertices[mesh.faces], vertices[faces], atol=1e-6)  # STL: 3 vertices per face


def test_glb_scene_is_concatenated_with_transforms(tmp_path):
    a_vertices, a_faces = _random_mesh(2, v=10, f=12)
    b_vertices, b_faces = _random_mesh(3, v=20, f=30)
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(a_vertices, a_faces, process=False), node_name="a", geom_name="a")
    scene.add_geometry(
        trimesh.Trimesh(b_vertices, b_faces, process=False), node_name="b", geom_name="b",
        transform=trimesh.transformations.translation_matrix([10.0, 0.0, 0.0]),
    )
    path = tmp_path / "scene.glb"
    scene.export(path)
    mesh = read_mesh(path)
    assert mesh.vertices.shape == (30, 3) and mesh.faces.shape == (len(a_faces) + len(b_faces), 3)
    # both parts are there, the second one moved by its node transform
    assert np.sum(mesh.vertices[:, 0] > 5) == 20
    np.testing.assert_allclose(np.sort(mesh.vertices[mesh.vertices[:, 0] > 5][:, 1]), np.sort(b_vertices[:, 1]),
                               atol=1e-6)


# --------------------------------------------------------------------------------------------
# bad input


def _nan_obj() -> str:
    return "v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def _points_ply() -> str:
    return (
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        "end_header\n0 0 0\n1 0 0\n0 1 0\n"
    )


BAD_MESHES = {
    "no_faces_obj": ("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", ["mesh has no faces"]),
    "no_faces_ply": ("points.ply", _points_ply(), ["mesh has no faces"]),
    "no_vertices_obj": ("comments.obj", "# only a comment\n", ["no vertices"]),
    "empty_obj": ("empty.obj", "", ["file is empty"]),
    "empty_glb": ("empty.glb", b"", ["file is empty"]),
    "garbage_ply": ("garbage.ply", "this is not a ply file\n", ["cannot read PLY mesh"]),
    "garbage_glb": ("garbage.glb", b"glTF\x02\x00\x00\x00garbage", ["cannot read GLB mesh"]),
    "nan_vertex": ("nan.obj", _nan_obj(), ["non-finite vertex", "vertex 0"]),
    "bad_face_index": ("bad.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n1 1 0\n3 0 1 7\n", ["cannot read OFF mesh"]),
    "unsupported_extension": ("body.fbx", "whatever", ["unsupported mesh extension '.fbx'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MESHES))
def test_bad_mesh_raises_input_file_error(tmp_path, case):
    name, content, fragments = BAD_MESHES[case]
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputFileError) as exc:
        read_mesh(path)
    _assert_error(exc, path, *fragments)


def test_missing_mesh(tmp_path):
    path = tmp_path / "missing.obj"
    with pytest.raises(InputFileError) as exc:
        read_mesh(path)
    _assert_error(exc, path, "not found")


def test_folder_is_not_a_mesh(tmp_path):
    with pytest.raises(InputFileError) as exc:
        read_mesh(tmp_path)
    _assert_error(exc, tmp_path, "is a folder")


# --------------------------------------------------------------------------------------------
# writing


@pytest.mark.parametrize(
    "vertices, faces, match",
    [
        (np.zeros((3, 2)), np.array([[0, 1, 2]]), "vertices"),
        (np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]]), np.array([[0, 1, 2]]), "non-finite"),
        (np.eye(3), np.zeros((0, 3), dtype=int), "faces"),
        (np.eye(3), np.array([[0, 1, 3]]), "face indices"),
        (np.eye(3), np.array([[0.0, 1.0, 2.0]]), "integer"),
    ],
)
def test_write_mesh_rejects_invalid(tmp_path, vertices, faces, match):
    with pytest.raises(ValueError, match=match):
        write_mesh(tmp_path / "m.obj", vertices, faces)
    assert list(tmp_path.iterdir()) == []


def test_write_mesh_unsupported_extension(tmp_path):
    with pytest.raises(MeshposeError, match="unsupported mesh extension"):
        write_mesh(tmp_path / "m.stl", np.eye(3), np.array([[0, 1, 2]]))


@pytest.mark.parametrize("ext", [".ply", ".glb", ".off"])
def test_failing_mesh_writer_leaves_nothing(tmp_path, monkeypatch, ext):
    def broken_export(self, file_obj=None, file_type=None, **kwargs):
        with open(file_obj, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("crash mid-write")

    monkeypatch.setattr(trimesh.Trimesh, "export", broken_export)
    path = tmp_path / f"m{ext}"
    with pytest.raises(RuntimeError, match="crash mid-write"):
        write_mesh(path, *_random_mesh())
    assert list(tmp_path.iterdir()) == []


def test_failing_obj_writer_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.obj"
    path.write_text("old")

    def broken_export_obj(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(trimesh.exchange.obj, "export_obj", broken_export_obj)
    with pytest.raises(MemoryError):
        write_mesh(path, *_random_mesh())
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.obj"]


# --------------------------------------------------------------------------------------------
# folders


def test_list_mesh_files(tmp_path):
    for name in ("b10.obj", "b2.PLY", "a.glb", ".hidden.obj", "notes.txt", "c.off", "d.stl"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub.obj").mkdir()  # a folder, even with a mesh-like name, is not a mesh
    assert [p.name for p in list_mesh_files(tmp_path)] == ["a.glb", "b2.PLY", "b10.obj", "c.off", "d.stl"]


def test_list_mesh_files_errors(tmp_path):
    with pytest.raises(InputFileError) as exc:
        list_mesh_files(tmp_path)
    _assert_error(exc, tmp_path, "no mesh files")
    with pytest.raises(InputFileError) as exc:
        list_mesh_files(tmp_path / "missing")
    _assert_error(exc, tmp_path / "missing", "not found")
    (tmp_path / "f.obj").write_text("x")
    with pytest.raises(InputFileError) as exc:
        list_mesh_files(tmp_path / "f.obj")
    _assert_error(exc, tmp_path / "f.obj", "not a folder")
