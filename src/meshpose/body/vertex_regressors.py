"""Sparse vertex -> joint regressors: joints defined on a dataset's terms as fixed convex
combinations of body-mesh vertices (SMPL's ``J_regressor_h36m`` is one for SMPL).

File format (safetensors, ``format`` = ``meshpose-vertex-regressor-1``)::

    joint   (nnz,) int32    row: the joint's index in its joint set
    vertex  (nnz,) int32    column: the vertex index
    weight  (nnz,) float32  the vertex's weight; every joint's weights are >= 0 and sum to 1
    metadata: format, joint_set, num_vertices, and free-text provenance (source, licence, command)

Shipped: ``assets/h36m17_regressor.safetensors``, Human3.6M's 17 joints on Anny's mesh (see
``assets/README.md``).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from meshpose.errors import MeshposeError
from meshpose.io.atomic import atomic_write
from meshpose.joints import JOINT_SETS, get_joint_set

FORMAT = "meshpose-vertex-regressor-1"

#: Joint set -> the shipped regressor file (in ``meshpose/assets``).
SHIPPED_REGRESSORS = {"h36m17": "h36m17_regressor.safetensors"}

__all__ = ["FORMAT", "SHIPPED_REGRESSORS", "read_vertex_regressor", "regress", "shipped_regressor",
           "write_vertex_regressor"]


def write_vertex_regressor(path, matrix: np.ndarray, joint_set: str, metadata: dict[str, str] | None = None) -> None:
    """Store the nonzero entries of a ``(J, V)`` regressor of ``joint_set`` (float32)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.shape[0] != len(get_joint_set(joint_set)):
        raise ValueError(f"a {joint_set} regressor has {len(get_joint_set(joint_set))} rows, got {matrix.shape}")
    joint, vertex = np.nonzero(matrix)
    tensors = {"joint": joint.astype(np.int32), "vertex": vertex.astype(np.int32),
               "weight": matrix[joint, vertex].astype(np.float32)}
    header = {**(metadata or {}), "format": FORMAT, "joint_set": joint_set, "num_vertices": str(matrix.shape[1])}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def read_vertex_regressor(path) -> tuple[torch.Tensor, str]:
    """``((J, V) float32 dense regressor, joint set name)`` from a file, checked: the format,
    indices in range, weights >= 0 summing to 1 per joint (within 1e-4).

    Raises:
        MeshposeError: a file that is not such a regressor (one line naming it).
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
            data = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:  # safetensors raises several kinds on a corrupt or missing file
        raise MeshposeError(f"cannot read vertex-regressor file ({error})", path) from None
    if header.get("format") != FORMAT or set(data) != {"joint", "vertex", "weight"}:
        raise MeshposeError(f"not a {FORMAT} file", path)
    joint_set, count = header.get("joint_set", ""), header.get("num_vertices", "")
    if joint_set not in JOINT_SETS or not count.isdigit():
        raise MeshposeError(f"the header names no known joint set ({joint_set[:40]!r}) or vertex count", path)
    rows, columns = len(get_joint_set(joint_set)), int(count)
    joint, vertex, weight = data["joint"].astype(np.int64), data["vertex"].astype(np.int64), data["weight"]
    if (len(joint) != len(vertex) or len(joint) != len(weight) or joint.min(initial=0) < 0
            or joint.max(initial=0) >= rows or vertex.min(initial=0) < 0 or vertex.max(initial=0) >= columns):
        raise MeshposeError("joint or vertex indices out of range", path)
    matrix = np.zeros((rows, columns), np.float32)
    np.add.at(matrix, (joint, vertex), weight)
    if not np.isfinite(matrix).all() or (matrix < 0).any() or not np.allclose(matrix.sum(1), 1.0, atol=1e-4):
        raise MeshposeError("weights must be finite, >= 0 and sum to 1 for every joint", path)
    return torch.from_numpy(matrix), joint_set


@lru_cache(maxsize=4)
def shipped_regressor(joint_set: str) -> torch.Tensor:
    """The ``(J, V)`` shipped regressor of ``joint_set`` (:data:`SHIPPED_REGRESSORS`), CPU float32."""
    name = SHIPPED_REGRESSORS[joint_set]
    matrix, stored = read_vertex_regressor(Path(str(resources.files("meshpose") / "assets" / name)))
    if stored != joint_set:
        raise MeshposeError(f"the shipped {name} holds {stored}, not {joint_set}")
    return matrix


@lru_cache(maxsize=4)
def _compact(joint_set: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The shipped regressor's used vertex columns (K,), their weights (J, K), the vertex count."""
    matrix = shipped_regressor(joint_set)
    columns = torch.nonzero(matrix.sum(0)).flatten()
    return columns, matrix[:, columns].contiguous(), matrix.shape[1]


def regress(vertices: torch.Tensor, joint_set: str) -> torch.Tensor:
    """``(B, J, 3)`` joints of ``joint_set`` from ``(B, V, 3)`` mesh vertices with its shipped
    regressor (same units as the vertices).

    Raises:
        MeshposeError: a mesh with another vertex count than the regressor's.
    """
    columns, weights, count = _compact(joint_set)
    if vertices.shape[-2] != count:
        raise MeshposeError(f"the {joint_set} regressor is for meshes of {count} vertices; "
                            f"got {vertices.shape[-2]}")
    used = vertices.index_select(-2, columns.to(vertices.device))
    return torch.einsum("jk,bkd->bjd", weights.to(vertices), used)
