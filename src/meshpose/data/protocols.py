"""The evaluation protocols of 2D keypoints -> body models (the regressor, Pose2Mesh): held-out
motion seen by virtual cameras, and Human3.6M S1. ``meshpose eval`` prints them; the ``adapt``
task validates with them. A model enters as a ``joint_set -> estimate`` function (the
``estimate`` of :func:`meshpose.estimators.load_estimator`).

Protocols:

* **held-out motion**: poses of a bank's held-out clips (CMU subjects 13 and 14 of the shipped
  bank; any other bank given with ``--bank``, e.g. HDM05's test folder or Bandai), random
  shapes, virtual cameras and detector noise from the sample engine, coco17 input; MPJPE and
  PA-MPJPE on Anny's anatomical h36m17 joint centres (``h36m17_anatomical``, pelvis-aligned),
  PVE on all vertices (pelvis-aligned).
* **Human3.6M S1**: mpii16 input, (a) the real Stacked-Hourglass detections, (b) the ground
  truth projected by the real cameras; h36m17 joints in the camera frame, pelvis-aligned. The
  model's h36m17 joints are Human3.6M's, regressed from its mesh by the shipped regressor
  (fitted on bodies fitted to the first half of S1's actions,
  :func:`~meshpose.data.h36m.split_actions`); the "held-out actions" rows keep only the other
  half's frames (the honest number), the "anatomical" rows use Anny's joint centres
  (``h36m17_anatomical``). No Human3.6M 3D label is used to train the models; the "with S1
  joint map" rows use a linear map from every 10th mesh vertex to h36m17 fitted on all of S1's
  frames of the run itself (ridge least squares), an optimistic bound; the last row fits it on
  the first half of the actions and measures it on the other half.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from meshpose import metrics
from meshpose.body import AnnyBody, body_joints
from meshpose.data.h36m import (
    load_h36m_2d,
    split_actions,
    load_h36m_3d,
    load_h36m_cameras,
    project,
    world_to_camera,
)
from meshpose.data.posebank import load_shipped_pose_bank
from meshpose.data.samples import SampleConfig, SampleEngine
from meshpose.joints import convert

__all__ = ["EVAL_BATCH", "MAP_VERTEX_STRIDE", "evaluate_h36m", "evaluate_motion", "fit_joint_map",
           "held_out_cmu", "load_s1_protocol"]

#: Every n-th mesh vertex feeds the "with S1 joint map" rows' linear map.
MAP_VERTEX_STRIDE = 10


#: People per forward pass: small batches are fastest per person for Pose2Mesh on a CPU (its
#: full-mesh activations leave the caches at larger batches); the regressor barely minds.
EVAL_BATCH = 8


@torch.no_grad()
def _estimate(estimate, keypoints, keep_vertices: bool = False, progress: str = "",
              intrinsics: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Root-relative ``joints3d_h36m17`` (N, 17, 3) (and ``joints3d_h36m17_anatomical`` where the
    function gives it), ``features`` (every ``MAP_VERTEX_STRIDE``-th vertex) and, with
    ``keep_vertices``, ``vertices`` (N, V, 3) estimated from keypoints (N, J, 3) by a
    ``estimate`` function (:func:`meshpose.estimators.load_estimator`), ``EVAL_BATCH`` people at a
    time, with the cameras' ``intrinsics`` (focal (N, 2), principal (N, 2)) when known. (The full
    meshes of a whole Human3.6M pass would not fit in memory.)"""
    parts: dict[str, list] = {"joints3d_h36m17": [], "joints3d_h36m17_anatomical": [], "vertices": [],
                              "features": []}
    for start in tqdm(range(0, len(keypoints), EVAL_BATCH), desc=progress, unit="batch",
                      disable=not progress, leave=False):
        rows = slice(start, start + EVAL_BATCH)
        known = None if intrinsics is None else (intrinsics[0][rows], intrinsics[1][rows])
        out = estimate(torch.as_tensor(keypoints[rows], dtype=torch.float32), known)
        for key in ("joints3d_h36m17", "joints3d_h36m17_anatomical"):
            if key in out:
                parts[key].append(out[key])
        parts["features"].append(out["vertices"][:, ::MAP_VERTEX_STRIDE])
        if keep_vertices:
            parts["vertices"].append(out["vertices"])
    return {k: torch.cat(v) for k, v in parts.items() if v}


def fit_joint_map(landmarks: torch.Tensor, truth: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """(17, L) weights W minimising sum ||W landmarks - truth||^2 + ridge ||W||^2, coordinates as
    samples (one map for x, y and z)."""
    L = landmarks.permute(0, 2, 1).reshape(-1, landmarks.shape[1]).double()  # (3N, L)
    G = truth.permute(0, 2, 1).reshape(-1, truth.shape[1]).double()  # (3N, 17)
    gram = L.T @ L + ridge * len(L) * torch.eye(L.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, L.T @ G).T.float()


def _label(estimator) -> str:
    return getattr(estimator, "label", "model")


@lru_cache(maxsize=4)
def load_s1_protocol(data_dir: str, stride: int):
    """Human3.6M S1, every ``stride``-th frame of every sequence with 3D: (Stacked-Hourglass
    detections (N, 16, 2), the ground truth projected to mpii16 (N, 16, 2), root-relative h36m17
    truth in the camera frame (N, 17, 3) metres, the take of each sample (N,), the cameras'
    intrinsics (focal (N, 2), principal point (N, 2)) pixels). The first two are lists of
    per-sequence arrays. Read once per folder and stride."""
    data_dir = Path(data_dir)
    joints3d = load_h36m_3d(data_dir / "h36m_S1_3d.npz", data_dir / "h36m_S1_joints.json")
    joints2d = load_h36m_2d(data_dir / "h36m_S1_2d_sh.npz", data_dir / "h36m_S1_joints.json")
    cameras = load_h36m_cameras(data_dir / "h36m_S1_cameras.json")
    detections, projected, truth, takes, focal, principal = [], [], [], [], [], []
    for (subject, action, camera), sh in sorted(joints2d.items()):
        world = joints3d.get((subject, action))
        if world is None:
            continue
        count = min(len(world), len(sh))
        frames = np.arange(0, count, stride)
        cam = cameras[(subject, camera)]
        in_camera = world_to_camera(world[frames], cam)
        truth.append(in_camera - in_camera[:, :1])
        detections.append(sh[frames])
        projected.append(convert(project(in_camera, cam), "h36m17", "mpii16"))
        takes += [action] * len(frames)
        focal.append(np.broadcast_to(cam.f, (len(frames), 2)))
        principal.append(np.broadcast_to(cam.c, (len(frames), 2)))
    intrinsics = tuple(torch.from_numpy(np.concatenate(part)).float() for part in (focal, principal))
    return detections, projected, torch.from_numpy(np.concatenate(truth)).float(), np.array(takes), intrinsics


def _row(protocol: str, joints: torch.Tensor, truth: torch.Tensor) -> dict:
    return {"protocol": protocol, "samples": len(truth), "mpjpe_mm": float(metrics.mpjpe(joints, truth)) * 1000,
            "pa_mpjpe_mm": float(metrics.pa_mpjpe(joints, truth)) * 1000}


def evaluate_h36m(data_dir: str | Path, estimator, body: AnnyBody, stride: int = 5,
                  extra_rows: bool = True) -> list[dict]:
    """Rows of the Human3.6M S1 protocols (see the module docstring) for a ``joint_set ->
    estimate`` function; ``extra_rows=False`` gives the Stacked-Hourglass row only."""
    detections, projected, truth, takes, intrinsics = load_s1_protocol(str(data_dir), stride)
    held_out = torch.from_numpy(np.isin(takes, split_actions(sorted(set(takes.tolist())))[1]))
    estimate = estimator("mpii16")
    inputs = (("Stacked-Hourglass detections", detections), ("projected ground truth", projected))
    rows = []
    for name, points in inputs if extra_rows else inputs[:1]:
        keypoints = np.concatenate(points)
        keypoints = np.concatenate([keypoints, np.ones_like(keypoints[..., :1])], -1)
        out = _estimate(estimate, keypoints, progress=f"{_label(estimator)}: H36M S1 {name}",
                        intrinsics=intrinsics)
        rows.append(_row(f"H36M S1, {name}", out["joints3d_h36m17"], truth))
        if not extra_rows:
            continue
        rows.append(_row(f"H36M S1, {name}, held-out actions", out["joints3d_h36m17"][held_out], truth[held_out]))
        if "joints3d_h36m17_anatomical" in out:
            anatomical = out["joints3d_h36m17_anatomical"]
            rows.append(_row(f"H36M S1, {name}, Anny's anatomical joints", anatomical, truth))
            rows.append(_row(f"H36M S1, {name}, Anny's anatomical joints, held-out actions",
                             anatomical[held_out], truth[held_out]))
        features = out["features"]
        joint_map = fit_joint_map(features, truth)
        mapped = torch.einsum("jl,nld->njd", joint_map, features)
        rows.append(_row(f"H36M S1, {name}, with S1 joint map", mapped - mapped[:, :1], truth))
        joint_map = fit_joint_map(features[~held_out], truth[~held_out])
        mapped = torch.einsum("jl,nld->njd", joint_map, features[held_out])
        rows.append(_row(f"H36M S1, {name}, held-out actions, with a joint map fitted on the other actions",
                         mapped - mapped[:, :1], truth[held_out]))
    return rows


@torch.no_grad()
def evaluate_motion(name: str, bank, estimator, body: AnnyBody, samples: int = 1024, seed: int = 0) -> dict:
    """The held-out motion row (see the module docstring) of a bank for a ``joint_set ->
    estimate`` function whose estimates include ``joints3d_h36m17_anatomical``."""
    estimate = estimator("coco17")
    engine = SampleEngine(bank, SampleConfig(joint_set="coco17"), device=body.device, body=body)
    generator = torch.Generator().manual_seed(seed)
    mpjpe, pa, pve, count = 0.0, 0.0, 0.0, 0
    for start in range(0, samples, 256):
        n = min(256, samples - start)
        sample = engine.sample(n, generator)
        world_pose = sample["pose"].clone()
        world_pose[:, 0] = sample["R"] @ world_pose[:, 0]
        true_bodies = body(world_pose, sample["shape"])
        true_root = true_bodies.joint("bone:root")[:, None]
        out = _estimate(estimate, sample["keypoints2d"], keep_vertices=True,
                        progress=f"{_label(estimator)}: {name}, {start}/{samples}")
        # Synthetic bodies: their exact joints are Anny's anatomical centres (the training targets).
        h36m = out["joints3d_h36m17_anatomical"]
        true_h36m = body_joints(true_bodies, "h36m17", anatomical=True) - true_root
        mpjpe += float(metrics.mpjpe(h36m, true_h36m)) * n
        pa += float(metrics.pa_mpjpe(h36m, true_h36m)) * n
        pve += float(metrics.pve(out["vertices"], true_bodies.vertices - true_root)) * n
        count += n
    return {"protocol": f"held-out motion: {name}", "samples": count, "mpjpe_mm": mpjpe / count * 1000,
            "pa_mpjpe_mm": pa / count * 1000, "pve_mm": pve / count * 1000}


def held_out_cmu():
    """The shipped bank's held-out clips (CMU subjects 13 and 14)."""
    return load_shipped_pose_bank().split_clips(["cmu/13/", "cmu/14/"])[1]
