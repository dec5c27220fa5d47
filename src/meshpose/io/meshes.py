"""Reading and writing triangle meshes (the input of ``meshpose mesh-keypoints``).

Meshes are read with :mod:`trimesh` using ``process=False`` (and, for OBJ,
``maintain_order=True``) so the vertex order of the file is kept: vertex ``i`` of the returned
mesh is vertex ``i`` of the file. Exceptions: OBJ files whose faces reference texture
coordinates or normals with different indices per corner must split vertices, STL files store
no shared vertices (three per face), and polygons with more than three corners are
triangulated. GLB scenes are flattened into one mesh: every mesh node's geometry with its
node transform applied, concatenated in scene order.

Units are whatever the file uses (meshpose treats body meshes as metres).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io._util import one_line, read_bytes, require_file, sorted_files
from meshpose.io.atomic import atomic_write

__all__ = ["MESH_READ_EXTENSIONS", "MESH_WRITE_EXTENSIONS", "list_mesh_files", "read_mesh", "write_mesh"]

#: Extensions :func:`read_mesh` accepts (lower case).
MESH_READ_EXTENSIONS = (".obj", ".ply", ".off", ".glb", ".stl")
#: Extensions :func:`write_mesh` writes (lower case).
MESH_WRITE_EXTENSIONS = (".obj", ".ply", ".off", ".glb")


def _check_extension(path: Path, allowed: tuple[str, ...], Error=InputFileError) -> str:
    ext = path.suffix.lower()
    if ext not in allowed:
        raise Error(f"unsupported mesh extension {path.suffix or '(none)'!r}; expected one of {', '.join(allowed)}", path)
    return ext


def read_mesh(path: str | os.PathLike):
    """Read a triangle mesh from an OBJ, PLY, OFF, GLB or STL file.

    Args:
        path: the mesh file.

    Returns:
        ``trimesh.Trimesh`` with ``vertices`` ``(V, 3)`` float64 (file units) and ``faces``
        ``(F, 3)`` int64 vertex indices, in file order (see the module docstring).

    Raises:
        InputFileError: missing file, a folder, unsupported extension, empty or unreadable
            file, no vertices, no faces (e.g. a point cloud), face indices out of range, or
            non-finite vertex coordinates. The message is one line naming the file.
    """
    import trimesh  # lazy: trimesh (with scipy.spatial) is 0.9 s of `meshpose --help`

    p = require_file(path, "mesh file")
    ext = _check_extension(p, MESH_READ_EXTENSIONS)
    read_bytes(p)  # "file is empty" / unreadable, before trimesh guesses
    kwargs = {"maintain_order": True} if ext == ".obj" else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = trimesh.load(str(p), file_type=ext[1:], process=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many kinds (ValueError, KeyError, ...)
        raise InputFileError(f"cannot read {ext[1:].upper()} mesh: {one_line(exc, 120) or type(exc).__name__}", p) from None

    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if not meshes:
            has_points = any(len(getattr(g, "vertices", ())) for g in loaded.geometry.values())
            raise InputFileError("mesh has no faces" if has_points else "mesh has no vertices", p)
        mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    elif isinstance(loaded, trimesh.Trimesh):
        mesh = loaded
    elif len(getattr(loaded, "vertices", ())):  # PointCloud, Path3D, ...
        raise InputFileError("mesh has no faces", p)
    else:
        raise InputFileError("mesh has no vertices", p)

    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    if vertices.shape[0] == 0:
        raise InputFileError("mesh has no vertices", p)
    if faces.size == 0:
        raise InputFileError("mesh has no faces", p)
    bad = ~np.isfinite(vertices)
    if bad.any():
        v = int(np.nonzero(bad.any(axis=1))[0][0])
        raise InputFileError(f"non-finite vertex coordinates at vertex {v}: {vertices[v].tolist()}", p)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputFileError(
            f"face index out of range: indices span {int(faces.min())}..{int(faces.max())} "
            f"but the mesh has {len(vertices)} vertices", p
        )
    return mesh


def _validate_mesh_arrays(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """``(V, 3)`` finite float vertices and ``(F, 3)`` in-range int faces, else ValueError."""
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.dtype.kind not in "iuf" or v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise ValueError(f"vertices must be a non-empty (V, 3) array of numbers, got shape {v.shape} dtype {v.dtype}")
    if not np.isfinite(v).all():
        raise ValueError("vertices hold non-finite values")
    if f.dtype.kind not in "iu" or f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise ValueError(f"faces must be a non-empty (F, 3) integer array, got shape {f.shape} dtype {f.dtype}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"face indices must be in [0, {len(v) - 1}], got {int(f.min())}..{int(f.max())}")
    return v.astype(np.float64), f.astype(np.int64)


def write_mesh(path: str | os.PathLike, vertices, faces) -> Path:
    """Write a triangle mesh atomically; the format follows the extension (obj, ply, off, glb).

    The vertex order is kept, so :func:`read_mesh` gives back the same ``(V, 3)`` vertices
    and ``(F, 3)`` faces (OBJ/OFF are text with ~10 significant decimals; PLY and GLB are
    binary float32: a far-off mesh keeps float32's precision, 8 units at 1e8).

    Args:
        path: output file (its folder must exist).
        vertices: ``(V, 3)`` coordinates (file units, metres for body meshes).
        faces: ``(F, 3)`` integer vertex indices.

    Returns:
        ``Path(path)``.

    Raises:
        MeshposeError: unsupported extension, or the file cannot be written.
        ValueError: invalid ``vertices`` / ``faces``.
    """
    import trimesh  # lazy: trimesh (with scipy.spatial) is 0.9 s of `meshpose --help`

    p = Path(path)
    ext = _check_extension(p, MESH_WRITE_EXTENSIONS, MeshposeError)
    v, f = _validate_mesh_arrays(vertices, faces)
    mesh = trimesh.Trimesh(vertices=v, faces=f, process=False)

    def write(tmp: str) -> None:
        if ext == ".obj":
            text = trimesh.exchange.obj.export_obj(
                mesh, include_normals=False, include_color=False, include_texture=False, digits=10, header=None
            )
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            mesh.export(tmp, file_type=ext[1:])

    return atomic_write(p, write)


def list_mesh_files(folder: str | os.PathLike) -> list[Path]:
    """The mesh files directly in ``folder`` (not recursive), in natural name order.

    Hidden files and files with other extensions are ignored.

    Args:
        folder: the folder.

    Returns:
        Paths of files with an extension in :data:`MESH_READ_EXTENSIONS` (case-insensitive).

    Raises:
        InputFileError: ``folder`` is missing, not a folder, or holds no mesh files.
    """
    p = Path(folder)
    if not p.exists():
        raise InputFileError("folder not found", p)
    if not p.is_dir():
        raise InputFileError("is not a folder", p)
    files = sorted_files(p, MESH_READ_EXTENSIONS)
    if not files:
        raise InputFileError(f"folder holds no mesh files ({', '.join(MESH_READ_EXTENSIONS)})", p)
    return files
