"""Human3.6M's joints on Anny: a sparse, non-negative vertex -> joint regressor fitted on Anny
bodies fitted to S1 (:mod:`meshpose.data.h36m_bodies`), the way SMPL's ``J_regressor_h36m`` was
made from fitted bodies. What ``meshpose data fit-h36m-regressor`` runs.

* **Split**: S1's actions in two halves (:func:`~meshpose.data.h36m.split_actions`: sorted
  action names, alternating); the regressor is fitted on the first half's frames and measured on
  the second's.
* **Support**: joint j may only use the vertices within ``radius`` of its fitted point (its
  anatomical Anny joint centre, plus the fitted offset for the trunk and head joints,
  :func:`~meshpose.data.h36m_bodies.marker_points`) on the fitted subject in Anny's reference
  pose.
* **Fit** (:func:`fit_sparse_regressor`): per joint, non-negative least squares
  (``scipy.optimize.nnls``) of the truth from its support vertices, frames and x, y, z as
  equations, both centred on the true pelvis, plus one heavily weighted equation
  ``sum(w) = 1``; the row is then divided by its sum (exactly 1).
* **Measure** (:func:`regressor_errors`): on the held-out frames' fitted bodies, MPJPE (each set
  centred on its own pelvis) and PA-MPJPE of the regressed joints and of the anatomical centres
  against the truth, mm.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

from meshpose import metrics
from meshpose.body import AnnyBody, body_joints
from meshpose.body.vertex_regressors import write_vertex_regressor
from meshpose.data.h36m import action_name, split_actions
from meshpose.data.h36m_bodies import FittedBodies, fit_bodies, load_s1_frames, marker_points
from meshpose.errors import MeshposeError
from meshpose.io.atomic import check_output_file

__all__ = ["candidate_vertices", "fit_h36m_regressor", "fit_sparse_regressor", "regressor_errors"]

#: Bodies skinned per batch when collecting vertices.
_BATCH = 128


def fit_sparse_regressor(vertices: np.ndarray, joints: np.ndarray, support: list[np.ndarray],
                         sum_weight: float = 10.0) -> np.ndarray:
    """A (J, V) non-negative regressor, each row summing to 1, nonzero only on its support.

    Args:
        vertices: (N, V, 3) bodies' vertices (any length unit; centre them, e.g. on a root).
        joints: (N, J, 3) target joints in the same frame and unit.
        support: per joint, the vertex indices (K_j,) it may use.
        sum_weight: the ``sum(w) = 1`` equation's weight, times the square root of the number
            of equations (so that it dominates at any N).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    joints = np.asarray(joints, dtype=np.float64)
    matrix = np.zeros((joints.shape[1], vertices.shape[1]))
    for j, columns in enumerate(support):
        a = vertices[:, columns].transpose(0, 2, 1).reshape(-1, len(columns))  # (3N, K)
        y = joints[:, j].reshape(-1)  # (3N,), same (frame, coordinate) order
        weight = sum_weight * np.sqrt(len(y))
        a = np.vstack([a, np.full((1, len(columns)), weight)])
        y = np.append(y, weight)
        w, _ = nnls(a, y, maxiter=50 * len(columns))
        if w.sum() <= 0:
            raise ValueError(f"joint {j}: the non-negative fit found no weights")
        matrix[j, columns] = w / w.sum()
    return matrix


def candidate_vertices(body: AnnyBody, shape: torch.Tensor, offsets: torch.Tensor, radius: float) -> list[np.ndarray]:
    """Per h36m17 joint, the vertices within ``radius`` (m) of its fitted point (with the
    ``offsets`` (17, 3) of :func:`~meshpose.data.h36m_bodies.marker_points`) on the body of
    phenotypes ``shape`` (6,) in Anny's reference pose."""
    with torch.no_grad():
        rest = body(None, shape[None])
        centres = marker_points(rest, offsets)[0]
        distance = torch.cdist(centres, rest.vertices[0])  # (17, V)
    support = [torch.nonzero(row <= radius).flatten().numpy() for row in distance]
    for j, columns in enumerate(support):
        if len(columns) == 0:
            raise ValueError(f"no vertex within {radius} m of h36m17 joint {j}")
    return support


def _centred_vertices(fitted: FittedBodies, body: AnnyBody, index: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(n, K, 3) the vertices ``columns`` of the frames ``index``, minus the true pelvis."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(index), _BATCH):
            chunk = index[start : start + _BATCH]
            output = fitted.bodies(body, chunk)
            parts.append((output.vertices[:, columns] - fitted.truth[chunk, None, 0]).numpy())
    return np.concatenate(parts)


def regressor_errors(fitted: FittedBodies, body: AnnyBody, index: np.ndarray, matrix: np.ndarray) -> dict:
    """MPJPE and PA-MPJPE (mm) on the frames ``index`` of the regressed joints and of the
    anatomical centres against the truth; per-joint MPJPE of both."""
    truth = fitted.truth[index]
    regressed, anatomical = [], []
    weights = torch.as_tensor(matrix, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, len(index), _BATCH):
            output = fitted.bodies(body, index[start : start + _BATCH])
            regressed.append(torch.einsum("jv,bvd->bjd", weights, output.vertices))
            anatomical.append(body_joints(output, "h36m17", anatomical=True))
    rows = {}
    for name, joints in (("regressor", torch.cat(regressed)), ("anatomical", torch.cat(anatomical))):
        joints, centred = joints - joints[:, :1], truth - truth[:, :1]
        rows[name] = {"mpjpe_mm": float(metrics.mpjpe(joints, centred)) * 1000,
                      "pa_mpjpe_mm": float(metrics.pa_mpjpe(joints, centred)) * 1000,
                      "per_joint_mm": ((joints - centred).norm(dim=-1).mean(0) * 1000).tolist()}
    return rows


def fit_h36m_regressor(data_dir, output, stride: int = 30, iterations: int = 250, radius: float = 0.15,
                       subject: str = "S1") -> dict:
    """Fit Anny to ``subject``'s frames, fit the regressor on the first half of the actions,
    write it to ``output`` and return a report (fit error, split, held-out errors, support).

    Raises:
        MeshposeError: an output that cannot be written, a setting out of range.
        InputFileError: a missing or malformed Human3.6M file (naming it).
    """
    check_output_file(output, (".safetensors",))
    if stride < 1 or iterations < 1 or not 0 < radius <= 1:
        raise MeshposeError(f"need stride >= 1, iterations >= 1 and 0 < radius <= 1 m; got {stride}, "
                            f"{iterations}, {radius}")
    takes, frames, truth = load_s1_frames(data_dir, stride, subject)
    body = AnnyBody()
    fitted = fit_bodies(takes, frames, truth, iterations=iterations, body=body)
    fit_takes, held_takes = split_actions(sorted(set(takes.tolist())))
    fit_index = np.flatnonzero(np.isin(takes, fit_takes))
    held_index = np.flatnonzero(np.isin(takes, held_takes))
    support = candidate_vertices(body, fitted.shape, fitted.offsets, radius)
    columns = np.unique(np.concatenate(support))
    local = {j: np.searchsorted(columns, s) for j, s in enumerate(support)}
    vertices = _centred_vertices(fitted, body, fit_index, columns)
    targets = (fitted.truth[fit_index] - fitted.truth[fit_index, :1]).numpy()
    reduced = fit_sparse_regressor(vertices, targets, [local[j] for j in range(len(support))])
    matrix = np.zeros((reduced.shape[0], body.num_vertices), np.float32)
    matrix[:, columns] = reduced
    write_vertex_regressor(output, matrix, "h36m17", {
        "source": f"Anny bodies fitted to Human3.6M {subject} 3D joints (every {stride}th frame), "
                  f"fitted on the actions {', '.join(sorted({action_name(t) for t in fit_takes}))}",
        "licence": "derived from Human3.6M: research use only (Human3.6M's non-commercial terms)",
        "command": f"meshpose data fit-h36m-regressor --h36m <Human3.6M folder> -o {Path(output).name}",
    })
    errors = fitted.errors_mm
    return {
        "frames": len(takes), "stride": stride, "radius_m": radius, "subject_shape": fitted.shape.tolist(),
        "fit_error_mm": float(errors.mean()), "fit_error_per_joint_mm": errors.mean(0).tolist(),
        "anatomical_fit_error_mm": float(fitted.anatomical_errors_mm.mean()),
        "anatomical_fit_error_per_joint_mm": fitted.anatomical_errors_mm.mean(0).tolist(),
        "offsets_mm": (fitted.offsets * 1000).tolist(),
        "fit_takes": fit_takes, "held_out_takes": held_takes,
        "fit_frames": len(fit_index), "held_out_frames": len(held_index),
        "nonzero_per_joint": [int(n) for n in (matrix > 0).sum(1)],
        "support_per_joint": [len(s) for s in support],
        "fit_half": regressor_errors(fitted, body, fit_index, matrix),
        "held_out": regressor_errors(fitted, body, held_index, matrix),
    }
