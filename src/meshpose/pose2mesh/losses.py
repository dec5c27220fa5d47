"""Pose2Mesh's training losses (Choi et al., ECCV 2020, Sec. 3.3) and a vertex-to-joint regressor.

All meshes are ``(B, V, 3)`` float tensors in metres (any common frame: the losses are
invariant to a translation shared by prediction and target except :func:`vertex_l1` and
:func:`joint_l1`, which compare positions). ``faces`` is ``(F, 3)`` long vertex indices. Every
loss returns a scalar tensor, a mean over the batch and the mesh elements, so that its size
does not depend on the batch size or the mesh resolution.

* :func:`vertex_l1`: mean absolute coordinate error of the vertices (metres).
* :func:`joint_l1`: the same on joints regressed from the mesh by a linear ``(J, V)`` regressor.
* :func:`normal_loss`: for each face, ``|cos|`` between each predicted edge and the true face
  normal (unitless, 0 when every predicted face is parallel to its true face).
* :func:`edge_length_loss`: mean absolute difference of the edge lengths (metres).

:func:`fit_joint_regressor` fits the ``(J, V)`` regressor for an Anny body and a joint set, in
the way SMPL's H36M regressor maps SMPL vertices to H36M joint centres.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls

from meshpose.body import body_joints
from meshpose.data.posebank import load_shipped_pose_bank

__all__ = ["edge_length_loss", "fit_joint_regressor", "joint_l1", "normal_loss", "regress_joints",
           "vertex_l1"]


def vertex_l1(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean absolute coordinate difference (metres) of ``(B, V, 3)`` vertices (or any points)."""
    return (pred - true).abs().mean()


def regress_joints(vertices: torch.Tensor, regressor: torch.Tensor) -> torch.Tensor:
    """``(B, V, 3)`` vertices, ``(J, V)`` regressor -> ``(B, J, 3)`` joints (``J = R V``)."""
    return torch.einsum("jv,bvc->bjc", regressor.to(vertices), vertices)


def joint_l1(pred_vertices: torch.Tensor, true_joints: torch.Tensor, regressor: torch.Tensor) -> torch.Tensor:
    """Mean absolute coordinate difference (metres) between the joints regressed from
    ``(B, V, 3)`` predicted vertices by the ``(J, V)`` ``regressor`` and ``(B, J, 3)`` true
    joints (given in the same frame as the vertices)."""
    return (regress_joints(pred_vertices, regressor) - true_joints).abs().mean()


def _face_edges(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``(B, F, 3, 3)``: the three edge vectors ``v1 - v0, v2 - v1, v0 - v2`` of each face."""
    faces = faces.to(vertices.device).long()
    v0, v1, v2 = (vertices[:, faces[:, k]] for k in range(3))
    return torch.stack([v1 - v0, v2 - v1, v0 - v2], dim=2)


def normal_loss(pred_vertices: torch.Tensor, true_vertices: torch.Tensor, faces: torch.Tensor,
                eps: float = 1e-8) -> torch.Tensor:
    """Pose2Mesh's surface-normal loss: the mean over faces and their three edges of
    ``|cos(angle(predicted edge, true face normal))|``.

    Unitless, in ``[0, 1]``. Zero when every predicted face lies in the plane of its true face
    (so it ignores in-plane stretch and shear, which :func:`edge_length_loss` penalises); it
    penalises bending. Degenerate faces or edges (length < ``sqrt(eps)``) contribute ~0.
    """
    true_edges = _face_edges(true_vertices, faces)
    normal = torch.cross(true_edges[:, :, 0], -true_edges[:, :, 2], dim=-1)  # (v1 - v0) x (v2 - v0)
    normal = normal / (normal.norm(dim=-1, keepdim=True) + eps)
    pred_edges = _face_edges(pred_vertices, faces)
    pred_edges = pred_edges / (pred_edges.norm(dim=-1, keepdim=True) + eps)
    return (pred_edges * normal[:, :, None]).sum(-1).abs().mean()


def edge_length_loss(pred_vertices: torch.Tensor, true_vertices: torch.Tensor,
                     faces: torch.Tensor) -> torch.Tensor:
    """Mean over faces and their three edges of ``|predicted length - true length|`` (metres).

    Edges shared by two faces count twice, as in Pose2Mesh's per-face formulation.
    """
    pred = _face_edges(pred_vertices, faces).norm(dim=-1)
    true = _face_edges(true_vertices, faces).norm(dim=-1)
    return (pred - true).abs().mean()


# --------------------------------------------------------------------------- joint regressor
_REGRESSORS: dict[tuple, torch.Tensor] = {}


def _random_bodies(body, samples: int, generator: torch.Generator, bank=None):
    """Vertices ``(N, V, 3)`` and the pose rotations of ``samples`` random bodies: poses drawn
    from the (shipped CMU) pose bank, phenotypes uniform in ``[0, 1]^6``."""
    bank = bank or load_shipped_pose_bank()
    index = torch.randint(len(bank), (samples,), generator=generator)
    rotations = bank.rotation_matrices(index.numpy())
    shape = torch.rand(samples, 6, generator=generator)
    return rotations.float(), shape


def fit_joint_regressor(body, joint_set: str = "h36m17", samples: int = 300, seed: int = 0,
                        neighbours: int = 500, ridge: float = 1e-4, nonnegative: bool = False,
                        cache: bool = True) -> torch.Tensor:
    """Fit a ``(J, V)`` linear regressor from a body's vertices to ``body_joints(joint_set)``
    (Anny's anatomical joint centres: ``anatomical=True``; MeshNet's skeleton is trained on them).

    ``samples`` random bodies (poses from the shipped CMU pose bank, phenotypes uniform; ``seed``
    fixes them) are skinned; for each joint, only its ``neighbours`` nearest vertices (in the
    mean over the samples) get a weight, fitted by least squares over all samples and the three
    coordinates, with a ridge penalty (``ridge`` times the mean diagonal of the normal matrix)
    and the weights of a row summing exactly to 1 (so that the regressor commutes with
    translations and, being the same for x, y and z, with rotations). The weights are signed by
    default (``nonnegative=False``): Anny's joints are skeleton bone heads, and a convex
    combination of surface vertices misses the knees and hips of bent legs by ~25 mm, while the
    signed fit reproduces ``body_joints`` to ~2 mm mean (~5 mm at the knees) on held-out bodies.
    With ``nonnegative`` the weights are >= 0 (non-negative least squares, the sum enforced by a
    heavily weighted extra equation, then renormalised), like SMPL's regressors (~8 mm mean).

    Cached in memory per (body class, vertex count, arguments) when ``cache``. Takes ~1-3 s on
    CPU for the defaults. Returns a float32 CPU tensor.
    """
    key = (type(body).__name__, int(body.faces.max()) + 1, joint_set, samples, seed, neighbours,
           ridge, nonnegative)
    if cache and key in _REGRESSORS:
        return _REGRESSORS[key]
    generator = torch.Generator().manual_seed(seed)
    pose, shape = _random_bodies(body, samples, generator)
    device = body.faces.device
    vertices, joints = [], []
    with torch.no_grad():
        for start in range(0, samples, 100):
            output = body(pose[start:start + 100].to(device), shape[start:start + 100].to(device))
            vertices.append(output.vertices.double().cpu())
            joints.append(body_joints(output, joint_set, anatomical=True).double().cpu())
    vertices, joints = torch.cat(vertices).numpy(), torch.cat(joints).numpy()  # (N, V, 3), (N, J, 3)
    n_vertices = vertices.shape[1]
    mean_vertices, mean_joints = vertices.mean(0), joints.mean(0)
    regressor = np.zeros((joints.shape[1], n_vertices))
    for j in range(joints.shape[1]):
        near = np.argsort(np.linalg.norm(mean_vertices - mean_joints[j], axis=-1))[:neighbours]
        local = vertices[:, near]  # (N, K, 3)
        centre = local.mean(1, keepdims=True)  # per-sample centring: exact under sum(w) = 1
        a = (local - centre).transpose(0, 2, 1).reshape(-1, len(near))  # (3N, K)
        y = (joints[:, j] - centre[:, 0]).reshape(-1)  # (3N,)
        gram = a.T @ a
        lam = ridge * np.trace(gram) / len(near)
        if nonnegative:
            big = 1e3 * np.sqrt(np.trace(gram))
            a_aug = np.concatenate([a, np.sqrt(lam) * np.eye(len(near)), big * np.ones((1, len(near)))])
            y_aug = np.concatenate([y, np.zeros(len(near)), [big]])
            w, _ = nnls(a_aug, y_aug, maxiter=50 * len(near))
            w = w / w.sum()
        else:  # equality-constrained ridge via its KKT system
            k = len(near)
            kkt = np.zeros((k + 1, k + 1))
            kkt[:k, :k] = gram + lam * np.eye(k)
            kkt[:k, k] = kkt[k, :k] = 1.0
            w = np.linalg.solve(kkt, np.concatenate([a.T @ y, [1.0]]))[:k]
        regressor[j, near] = w
    result = torch.as_tensor(regressor, dtype=torch.float32)
    if cache:
        _REGRESSORS[key] = result
    return result
