"""Anny cut into the 8 parts of the human_seg meshes, and its seed12 joint regions.

Each vertex takes the part whose bones carry most of its skinning weight (:data:`BONE_PARTS`).
An edge between two parts is labelled with the larger part number, so that the vertices on the
cut are touched by both labels, exactly as in an annotated human_seg mesh; the dataset builder
(:func:`meshpose.meshkp.segdata.extract_keypoints`) then finds the 12 joint regions on the rest
mesh. The regions are fixed vertex sets (skinning never changes the topology), so the seed12
keypoints of any posed and shaped Anny body are means of its vertices over those sets: a
``(12, V)`` averaging matrix, :func:`seed12_regressor`.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from meshpose.meshkp.segdata import PARTS, extract_keypoints, meshcnn_edges

__all__ = ["BONE_PARTS", "Y_UP", "seed12_regressor", "vertex_parts"]

#: Anny bone-name prefix -> human_seg part (1..8: head, hand, forearm, upper arm, torso, thigh,
#: shin, foot); the first matching prefix wins. The lowest neck bone and the deltoid bones go
#: with the torso: so the cuts land where human_seg's annotators drew them (neck cut at 0.22 of
#: the pelvis-neck distance above the shoulder line here, 0.21 in the median human_seg mesh), and
#: the neck and shoulder cuts stay apart.
BONE_PARTS = {
    "neck01": 5, "neck": 1, "head": 1, "eye": 1,
    "wrist": 2, "finger": 2, "metacarpal": 2,
    "lowerarm": 3,
    "upperarm": 4,
    "root": 5, "spine": 5, "clavicle": 5, "pelvis": 5, "shoulder": 5,
    "upperleg": 6,
    "lowerleg": 7,
    "foot": 8, "toe": 8,
}

#: Rotation from Anny's frame (z up, facing -y) to meshpose's mesh convention (y up, facing +z).
Y_UP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _part_of_bone(name: str) -> int:
    for prefix, part in BONE_PARTS.items():
        if name.startswith(prefix):
            return part
    raise KeyError(f"no human_seg part for Anny bone {name!r}")


def vertex_parts(body) -> np.ndarray:
    """(V,) part label 1..8 of every Anny vertex (the part with the largest skinning weight)."""
    skin = body.skin_sparse.to_dense().double().cpu().numpy()  # (V, skinned bones)
    bones = [body.bone_names[i] for i in body.skinned_bones.tolist()]
    parts = np.array([_part_of_bone(name) for name in bones])
    per_part = np.stack([skin[:, parts == p].sum(1) for p in range(1, len(PARTS) + 1)], axis=1)
    return per_part.argmax(1) + 1


def edge_labels(body) -> np.ndarray:
    """(E,) part label of every Anny edge in MeshCNN order: the larger of its two vertices' parts."""
    edges = meshcnn_edges(body.faces.cpu().numpy())
    parts = vertex_parts(body)
    return np.maximum(parts[edges[:, 0]], parts[edges[:, 1]])


@lru_cache(maxsize=2)
def _regions(body) -> torch.Tensor:
    with torch.no_grad():
        rest = body(torch.eye(3).expand(1, 22, 3, 3).clone(), torch.full((1, 6), 0.5)).vertices[0]
    rest = rest.double().cpu().numpy()
    result = extract_keypoints(rest, body.faces.cpu().numpy(), edge_labels(body))
    if not result.accepted:
        raise RuntimeError(f"Anny's part cut does not give the 12 seed joints: {result.reason}")
    matrix = torch.zeros(len(result.names), len(rest), dtype=torch.float64)
    for j, region in enumerate(result.regions):
        matrix[j, region] = 1.0 / len(region)
    return matrix.float()


def seed12_regressor(body) -> torch.Tensor:
    """(12, V) matrix: seed12 keypoints (builder definition) = matrix @ vertices, on ``body``'s device."""
    return _regions(body).to(body.faces.device)
