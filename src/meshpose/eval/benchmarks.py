"""``meshpose eval``: 2D keypoints -> body models (the regressor, Pose2Mesh) on held-out motion
seen by virtual cameras and on Human3.6M, and the mesh -> keypoints models.

Protocols:

* **held-out motion**: poses of a bank's held-out clips (CMU subjects 13 and 14 of the shipped
  bank; any other bank given with ``--bank``, e.g. HDM05's test folder or Bandai), random
  shapes, virtual cameras and detector noise from the sample engine, coco17 input; MPJPE and
  PA-MPJPE on h36m17 joint centres (pelvis-aligned), PVE on all vertices (pelvis-aligned).
* **Human3.6M S1**: mpii16 input, (a) the real Stacked-Hourglass detections, (b) the ground
  truth projected by the real cameras; h36m17 joints in the camera frame, pelvis-aligned. No
  Human3.6M 3D label is used for training; the "with S1 joint map" rows use a linear map from
  every 10th mesh vertex to h36m17 fitted on S1 itself (ridge least squares), as SMPL-based
  methods use a Human3.6M joint regressor on their mesh.
"""
from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch

from meshpose import metrics
from meshpose.body import AnnyBody, body_joints
from meshpose.errors import MeshposeError
from meshpose.joints import convert

#: Every n-th mesh vertex feeds the "with S1 joint map" rows' linear map.
MAP_VERTEX_STRIDE = 10


#: People per forward pass: small batches are fastest per person for Pose2Mesh on a CPU (its
#: full-mesh activations leave the caches at larger batches); the regressor barely minds.
EVAL_BATCH = 8


@torch.no_grad()
def _estimate(estimate, keypoints, keep_vertices: bool = False, progress: str = "") -> dict[str, torch.Tensor]:
    """Root-relative ``joints3d_h36m17`` (N, 17, 3), ``features`` (every ``MAP_VERTEX_STRIDE``-th
    vertex) and, with ``keep_vertices``, ``vertices`` (N, V, 3) estimated from keypoints
    (N, J, 3) by a :func:`~meshpose.predict.load_estimator` function, ``EVAL_BATCH`` people at a
    time. (The full meshes of a whole Human3.6M pass would not fit in memory.)"""
    from tqdm import tqdm

    parts: dict[str, list] = {"joints3d_h36m17": [], "vertices": [], "features": []}
    for start in tqdm(range(0, len(keypoints), EVAL_BATCH), desc=progress, unit="batch",
                      disable=not progress, leave=False):
        out = estimate(torch.as_tensor(keypoints[start : start + EVAL_BATCH], dtype=torch.float32), None)
        parts["joints3d_h36m17"].append(out["joints3d_h36m17"])
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


def estimator_for(model, body):
    """``joint_set -> estimate`` for a model name or file, loading the model once per joint set
    (a function of that kind is returned as is)."""
    if callable(model):
        return model
    from meshpose.predict import load_estimator

    @cache
    def for_joint_set(joint_set):
        return load_estimator(model, "cpu", joint_set, ("h36m17",), body)[0]

    for_joint_set.label = model
    return for_joint_set


def _label(estimator) -> str:
    return getattr(estimator, "label", "model")


@lru_cache(maxsize=4)
def load_s1_protocol(data_dir: str, stride: int):
    """Human3.6M S1, every ``stride``-th frame of every sequence with 3D: (Stacked-Hourglass
    detections (N, 16, 2), the ground truth projected to mpii16 (N, 16, 2), root-relative h36m17
    truth in the camera frame (N, 17, 3) metres). Read once per folder and stride."""
    from meshpose.data.h36m import (
        load_h36m_2d,
        load_h36m_3d,
        load_h36m_cameras,
        project,
        world_to_camera,
    )

    data_dir = Path(data_dir)
    joints3d = load_h36m_3d(data_dir / "h36m_S1_3d.npz", data_dir / "h36m_S1_joints.json")
    joints2d = load_h36m_2d(data_dir / "h36m_S1_2d_sh.npz", data_dir / "h36m_S1_joints.json")
    cameras = load_h36m_cameras(data_dir / "h36m_S1_cameras.json")
    detections, projected, truth = [], [], []
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
    return detections, projected, torch.from_numpy(np.concatenate(truth)).float()


def evaluate_h36m(data_dir: str | Path, model, body: AnnyBody, stride: int = 5, extra_rows: bool = True) -> list[dict]:
    """Rows of the Human3.6M S1 protocols (see the module docstring) for a model name or file, or
    a ``joint_set -> estimate`` function; ``extra_rows=False`` gives the Stacked-Hourglass row only."""
    detections, projected, truth = load_s1_protocol(str(data_dir), stride)
    estimator = estimator_for(model, body)
    estimate = estimator("mpii16")
    inputs = (("Stacked-Hourglass detections", detections), ("projected ground truth", projected))
    rows = []
    for name, points in inputs if extra_rows else inputs[:1]:
        keypoints = np.concatenate(points)
        keypoints = np.concatenate([keypoints, np.ones_like(keypoints[..., :1])], -1)
        out = _estimate(estimate, keypoints, progress=f"{_label(estimator)}: H36M S1 {name}")
        h36m, features = out["joints3d_h36m17"], out["features"]
        rows.append({"protocol": f"H36M S1, {name}", "samples": len(truth),
                     "mpjpe_mm": float(metrics.mpjpe(h36m, truth)) * 1000,
                     "pa_mpjpe_mm": float(metrics.pa_mpjpe(h36m, truth)) * 1000})
        if not extra_rows:
            continue
        joint_map = fit_joint_map(features, truth)
        mapped = torch.einsum("jl,nld->njd", joint_map, features)
        mapped = mapped - mapped[:, :1]
        rows.append({"protocol": f"H36M S1, {name}, with S1 joint map", "samples": len(truth),
                     "mpjpe_mm": float(metrics.mpjpe(mapped, truth)) * 1000,
                     "pa_mpjpe_mm": float(metrics.pa_mpjpe(mapped, truth)) * 1000})
    return rows


@torch.no_grad()
def evaluate_motion(name: str, bank, model, body: AnnyBody, samples: int = 1024, seed: int = 0) -> dict:
    """The held-out motion row (see the module docstring) of a bank for a model name or file, or a
    ``joint_set -> estimate`` function."""
    from meshpose.data.samples import SampleConfig, SampleEngine

    estimator = estimator_for(model, body)
    estimate = estimator("coco17")
    engine = SampleEngine(bank, SampleConfig(joint_set="coco17"), body=body)
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
        h36m, true_h36m = out["joints3d_h36m17"], body_joints(true_bodies, "h36m17") - true_root
        mpjpe += float(metrics.mpjpe(h36m, true_h36m)) * n
        pa += float(metrics.pa_mpjpe(h36m, true_h36m)) * n
        pve += float(metrics.pve(out["vertices"], true_bodies.vertices - true_root)) * n
        count += n
    return {"protocol": f"held-out motion: {name}", "samples": count, "mpjpe_mm": mpjpe / count * 1000,
            "pa_mpjpe_mm": pa / count * 1000, "pve_mm": pve / count * 1000}


def held_out_cmu():
    """The shipped bank's held-out clips (CMU subjects 13 and 14)."""
    from meshpose.data.posebank import load_shipped_pose_bank

    return load_shipped_pose_bank().split_clips(["cmu/13/", "cmu/14/"])[1]


def cmd_eval(args) -> int:
    tasks = set(args.tasks)
    if "predict" in tasks:
        _eval_predict(args)
    if "mesh-keypoints" in tasks:
        from meshpose.meshkp.evaluate import point_model_rows, print_keypoint_table

        if not args.keypoint_dataset:
            raise MeshposeError("the mesh-keypoints rows need --keypoint-dataset (a folder from "
                                "meshpose data build-keypoints)")
        rows = []
        if args.reference_model:
            from meshpose.meshkp.seed_task import reference_rows

            rows += reference_rows(args.reference_model, args.keypoint_dataset)
        rows += point_model_rows(args.keypoint_dataset)
        print()
        print_keypoint_table(rows)
    return 0


def _eval_predict(args) -> None:
    from meshpose.data.posebank import PoseBank

    body = AnnyBody()
    banks = [("CMU subjects 13-14", held_out_cmu())]
    for spec in args.bank or []:
        name, _, path = spec.partition("=")
        banks.append((name, PoseBank.load(path)))
    rows = []
    for model in args.model:
        estimator = estimator_for(model, body)  # each model loaded once, not once per protocol
        found = [evaluate_motion(name, bank, estimator, body, args.samples) for name, bank in banks]
        if args.h36m:
            found += evaluate_h36m(args.h36m, estimator, body, stride=args.stride)
        rows += [{"model": model, **row} for row in found]
    print("| model | protocol | samples | MPJPE mm | PA-MPJPE mm | PVE mm |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        pve = f"{row['pve_mm']:.1f}" if "pve_mm" in row else "-"
        print(f"| {row['model']} | {row['protocol']} | {row['samples']} | {row['mpjpe_mm']:.1f} "
              f"| {row['pa_mpjpe_mm']:.1f} | {pve} |")


def add_eval_command(commands) -> None:
    parser = commands.add_parser("eval", help="accuracy tables: 2D keypoints -> body (held-out motion, "
                                              "Human3.6M S1) and mesh -> keypoints (held-out meshes)")
    parser.add_argument("--tasks", nargs="+", choices=("predict", "mesh-keypoints"), default=["predict"],
                        help="which tables (default: predict)")
    parser.add_argument("--model", nargs="+", default=["default"],
                        help="models of the predict table: shipped names (default, pose2mesh) or files")
    parser.add_argument("--h36m", default=None, help="folder with the Human3.6M S1 files")
    parser.add_argument("--bank", action="append", metavar="NAME=PATH",
                        help="another held-out pose bank, e.g. hdm05_test=bank_hdm05_test.npz")
    parser.add_argument("--samples", type=int, default=1024, help="per held-out motion protocol")
    parser.add_argument("--stride", type=int, default=5, help="Human3.6M: every n-th frame")
    parser.add_argument("--keypoint-dataset", default=None,
                        help="mesh-keypoints: folder from meshpose data build-keypoints (human_seg)")
    parser.add_argument("--reference-model", default=None,
                        help="mesh-keypoints: also evaluate this trained reference edge-CNN run folder")
    parser.set_defaults(run=cmd_eval)
