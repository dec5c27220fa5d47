"""Training task ``meshkp_points``: the mesh-keypoint model on real and synthetic meshes.

Each batch mixes

* **real** meshes of the keypoint dataset (``meshpose data build-keypoints``; the train split of
  :mod:`meshpose.meshkp.split`), with their seed12 keypoints only, and
* **synthetic** Anny bodies: a pose of the pose bank (CMU subjects 13 and 14 held out), random
  phenotypes, turned y-up; seed12 from the same part cut as the real meshes
  (:mod:`meshpose.meshkp.anny_parts`), and smpl24/h36m17 joint centres from the body.

Every mesh is turned by a random angle about the vertical (and, with ``data.any_rotation``, a
share of them by a uniform random 3D rotation; ``data.tilt_deg`` tilts the rest a little), then
seen only as points drawn on its surface, so neither topology nor resolution reaches the model.
With ``model.up_head`` the model also learns the body's up direction (the turned y axis).
Synthetic poses can mix limb chains across takes and sit or crouch (``data.mix_chains``,
``data.flex_legs``, as for the 2D -> 3D regressor); surfaces can be roughened
(``data.surface_noise``) and holed (``data.holes``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import json

import numpy as np
import torch
from torch import nn

from meshpose import metrics
from meshpose.body import AnnyBody, body_joints
from meshpose.data.posebank import load_training_banks
from meshpose.data.samples import ShapeRanges, flex_legs, mix_chains
from meshpose.errors import MeshposeError
from meshpose.joints import get_joint_set
from meshpose.meshkp.anny_parts import Y_UP, seed12_regressor
from meshpose.meshkp.model_file import FORMAT, training_data
from meshpose.meshkp.pointnet import OUTPUT_SETS, MeshKeypointNet, output_names
from meshpose.meshkp.segdata import read_dataset
from meshpose.meshkp.split import COLLECTIONS, split_of
from meshpose.meshkp.surface import (
    normalise_points,
    perturb_surface,
    random_rotation,
    random_tilt,
    random_yaw,
    sample_surface,
)
from meshpose.models.export import read_run, save_model_file
from meshpose.train.config import Limit, between, positive

N_SEED = 12


@dataclass
class PointModelConfig:
    neighbours: int = 16
    width: int = 64
    up_head: bool = False  #: also predict the body's up direction (for models trained in any rotation)

    LIMITS: ClassVar[dict[str, Limit]] = {"neighbours": positive(64), "width": positive(1024)}


@dataclass
class PointDataConfig:
    dataset: str = ""  #: folder from ``meshpose data build-keypoints``; "" = synthetic only
    real_fraction: float = 0.5  #: share of real meshes in a batch
    points: int = 1024
    bank: str = ""  #: pose bank .npz; "" = the shipped CMU bank
    exclude_clips: list[str] = field(default_factory=lambda: ["cmu/13/", "cmu/14/"])
    loss_centres: float = 1.0
    loss_confidence: float = 0.02
    confident_within: float = 0.05  #: confidence target: error below this share of the bbox diagonal
    val_size: int = 256
    hold_out: str = ""  #: a human_seg collection left out whole (meshpose.meshkp.split)
    any_rotation: float = 0.0  #: share of meshes under a uniform random 3D rotation (else a turn about y)
    tilt_deg: float = 0.0  #: the others tilted off upright by up to this many degrees
    loss_up: float = 0.0  #: weight of 1 - cos(predicted up, true up) (model.up_head)
    mix_chains: float = 0.0  #: synthetic poses: probability that each limb chain comes from another take
    flex_legs: float = 0.0  #: synthetic poses: probability of sitting / crouching legs
    surface_noise: float = 0.0  #: points moved along their normal by N(0, this share of the bbox diagonal)
    holes: float = 0.0  #: probability that a mesh loses a patch of its surface (a scan's hole)

    LIMITS: ClassVar[dict[str, Limit]] = {
        "real_fraction": between(0, 1), "points": positive(4096), "loss_centres": between(0, 1e6),
        "loss_confidence": between(0, 1e6), "confident_within": positive(1), "val_size": positive(65_536),
        "any_rotation": between(0, 1), "tilt_deg": between(0, 180), "loss_up": between(0, 1e6),
        "mix_chains": between(0, 1), "flex_legs": between(0, 1), "surface_noise": between(0, 0.1),
        "holes": between(0, 1)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"hold_out": ("", *COLLECTIONS)}


class MeshKeypointTask:
    ModelConfig = PointModelConfig
    DataConfig = PointDataConfig

    def __init__(self):
        self._cache = {}

    def build_model(self, model: PointModelConfig, data: PointDataConfig) -> nn.Module:
        if model.neighbours >= data.points:
            raise MeshposeError(f"model.neighbours ({model.neighbours}) must be below data.points ({data.points})")
        if data.loss_up and not model.up_head:
            raise MeshposeError("data.loss_up needs model.up_head: true")
        return MeshKeypointNet(model.neighbours, model.width, model.up_head)

    def export(self, run_dir, out):
        """``meshpose export RUN_DIR -o FILE``: a ``meshkp_points`` run as a mesh-keypoint model file."""
        config, state, step = read_run(run_dir, "meshkp_points", self)
        data = config["data"]
        header = {"format": FORMAT, "model": json.dumps(config["model"]), "points": str(data["points"]),
                  "training_data": training_data(data.get("hold_out", ""), data.get("bank", ""))}
        return save_model_file(run_dir, out, config, state, step, header)

    # ----------------------------------------------------------------- data
    def _real(self, data: PointDataConfig, split: str, device):
        """The split's kept meshes, padded: vertices (M, V, 3), faces (M, F, 3), seed12 (M, 12, 3)
        (an unordered set where not labelled), diagonals (M,) and labelled (M,) bool."""
        key = ("real", data.dataset, data.hold_out, split, str(device))
        if key not in self._cache:
            everything = read_dataset(data.dataset)
            keep = [i for i, n in enumerate(everything["names"]) if split_of(n, data.hold_out) == split]
            if not keep:
                raise MeshposeError(f"no {split} meshes in the keypoint dataset", data.dataset)
            # Pad to one face count so that a batch samples in one call (padding faces have no area).
            n_vertices = max(len(everything["vertices"][i]) for i in keep)
            n_faces = max(len(everything["faces"][i]) for i in keep)
            vertices = torch.zeros(len(keep), n_vertices, 3)
            faces = torch.zeros(len(keep), n_faces, 3, dtype=torch.long)
            for row, i in enumerate(keep):
                vertices[row, : len(everything["vertices"][i])] = torch.from_numpy(everything["vertices"][i]).float()
                faces[row, : len(everything["faces"][i])] = torch.from_numpy(everything["faces"][i])
            diagonal = torch.tensor([float(np.linalg.norm(np.ptp(everything["vertices"][i], axis=0))) for i in keep])
            self._cache[key] = (vertices.to(device), faces.to(device),
                                torch.from_numpy(everything["keypoints"][keep]).float().to(device), diagonal.to(device),
                                torch.from_numpy(everything["labelled"][keep]).to(device))
        return self._cache[key]

    def _synthetic(self, data: PointDataConfig, device):
        key = ("synthetic", data.bank, tuple(data.exclude_clips), str(device))
        if key not in self._cache:
            bank = load_training_banks(data.bank)
            train, held_out = bank.split_clips(data.exclude_clips)
            body = AnnyBody().to(device)
            self._cache[key] = {"body": body, "train": train.rotation_matrices(device=device),
                                "held_out": held_out.rotation_matrices(device=device),
                                "seed12": seed12_regressor(body), "y_up": Y_UP.to(device)}
        return self._cache[key]

    def synthetic_meshes(self, data: PointDataConfig, generator: torch.Generator, count: int, device,
                         poses: str = "train"):
        """Random Anny bodies, y up: vertices (B, V, 3) m, faces (F, 3), seed12 (B, 12, 3), centres (B, C, 3)."""
        synthetic = self._synthetic(data, device)
        bank = synthetic[poses]
        index = torch.randint(len(bank), (count,), generator=generator, device=generator.device).to(device)
        shape = ShapeRanges().sample(count, generator).to(device)
        pose = bank[index]
        if poses == "train" and data.mix_chains:
            pose = mix_chains(bank, index, data.mix_chains, generator)
        if poses == "train" and data.flex_legs:
            pose = flex_legs(pose, data.flex_legs, generator)
        with torch.no_grad():
            output = synthetic["body"](pose, shape)
        up = synthetic["y_up"]
        vertices = output.vertices @ up.T
        centres = torch.cat([body_joints(output, s, anatomical=True) for s in OUTPUT_SETS[1:]], 1) @ up.T
        return vertices, synthetic["body"].faces, synthetic["seed12"] @ vertices, centres

    def make_batch(self, data: PointDataConfig, generator: torch.Generator, batch_size: int, device,
                   rows: slice = slice(None)):
        n_real = round(batch_size * data.real_fraction) if data.dataset else 0
        if n_real:
            vertices_all, faces_all, keypoints_all, _, labelled = self._real(data, "train", device)
            # The loss names each joint: meshes whose points carry no names do not train this model.
            named = torch.nonzero(labelled).flatten()
            if not len(named):
                raise MeshposeError("no labelled train meshes in the keypoint dataset", data.dataset)
            real_index = named[torch.randint(len(named), (n_real,), generator=generator,
                                             device=generator.device).to(device)]
        turn = self.random_turns(data, batch_size, generator).to(device)  # drawn before the surfaces
        parts = []
        if n_real:
            points, normals = sample_surface(vertices_all[real_index], faces_all[real_index], data.points, generator)
            centres = keypoints_all.new_full((n_real, len(output_names()) - N_SEED, 3), float("nan"))
            parts.append((points, normals, keypoints_all[real_index], centres))
        if batch_size - n_real:
            vertices, faces, seed12, centres = self.synthetic_meshes(data, generator, batch_size - n_real, device)
            points, normals = sample_surface(vertices, faces, data.points, generator)
            parts.append((points, normals, seed12, centres))
        points, normals, seed12, centres = (torch.cat(x)[rows] for x in zip(*parts))
        if data.surface_noise or data.holes:
            points, normals = perturb_surface(points, normals, generator, data.surface_noise, data.holes)
        turn = turn[rows]
        targets = torch.cat([seed12, centres], 1) @ turn.transpose(1, 2)
        points, normals = points @ turn.transpose(1, 2), normals @ turn.transpose(1, 2)
        points, centre, scale = normalise_points(points)
        return {"points": points, "normals": normals, "targets": (targets - centre) / scale, "up": turn[:, :, 1],
                "data": data}

    @staticmethod
    def random_turns(data: PointDataConfig, count: int, generator: torch.Generator) -> torch.Tensor:
        """(count, 3, 3) turns of the training meshes: a uniform 3D rotation with probability
        ``data.any_rotation``, else a tilt of up to ``data.tilt_deg`` after a turn about y."""
        device = generator.device
        turn = random_yaw(count, generator, device)
        if data.tilt_deg:
            turn = random_tilt(count, data.tilt_deg, generator, device) @ turn
        if data.any_rotation:
            anywhere = torch.rand(count, generator=generator, device=device) < data.any_rotation
            turn = torch.where(anywhere[:, None, None], random_rotation(count, generator, device), turn)
        return turn

    # ----------------------------------------------------------------- loss
    def loss(self, model: nn.Module, batch: dict):
        data = batch["data"]
        out = model(batch["points"], batch["normals"])
        targets = batch["targets"]
        known = ~targets.isnan().any(-1)  # (B, J)
        error = (out["joints"].float() - targets.nan_to_num(0)).norm(dim=-1)
        seed = error[:, :N_SEED].mean()
        centre_known = known[:, N_SEED:]
        centres = (error[:, N_SEED:] * centre_known).sum() / centre_known.sum().clamp_min(1)
        confident = (error.detach() < data.confident_within).float()
        bce = nn.functional.binary_cross_entropy_with_logits(out["confidence_logit"].float(), confident,
                                                             weight=known.float())
        total = seed + data.loss_centres * centres + data.loss_confidence * bce
        logs = {"seed12": float(seed.detach()), "centres": float(centres.detach()), "bce": float(bce.detach())}
        if data.loss_up:
            up = 1 - (out["up"] * batch["up"]).sum(-1).mean()
            total = total + data.loss_up * up
            logs["up"] = float(up.detach())
        return total, logs

    # ----------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, model: nn.Module, data: PointDataConfig, device) -> dict[str, float]:
        results = {}
        if data.dataset:
            for name, value in evaluate_real(model, data, "val", device, task=self).items():
                if value is not None:
                    results[f"val/real/{name}"] = value
        for name, value in evaluate_synthetic(model, data, device, task=self, count=data.val_size).items():
            results[f"val/synthetic/{name}"] = value
        results["val/loss"] = (1 - results.get("val/real/pck05_labelled", 1.0)) + results["val/synthetic/centre_median_cm"] / 100
        if getattr(model, "up_head", None) is not None:
            up = evaluate_up(model, data, device, task=self, count=data.val_size)
            results.update({f"val/synthetic/{name}": value for name, value in up.items()})
            results["val/loss"] += up["up_error_deg_p90"] / 100
        return results


def predict_points(model: nn.Module, points: torch.Tensor, normals: torch.Tensor, up: bool = False):
    """Model on raw surface points (B, N, 3): joints (B, J, 3) in the points' frame, confidence (B, J)
    and, with ``up`` (a model with an up head), the up directions (B, 3)."""
    normalised, centre, scale = normalise_points(points)
    out = model(normalised, normals)
    if up:
        return out["joints"] * scale + centre, out["confidence"], out["up"]
    return out["joints"] * scale + centre, out["confidence"]


@torch.no_grad()
def evaluate_real(model, data: PointDataConfig, split: str, device, task: MeshKeypointTask | None = None,
                  seed: int = 0) -> dict[str, float]:
    """Seed12 on real meshes of a split: Hungarian-matched PCK@0.1/0.05 and PCM (the reference's
    protocol) on every kept mesh; labelled PCK and the share of paired joints put on the right
    side on the meshes whose points are named."""
    task = task or MeshKeypointTask()
    vertices, faces, keypoints, diagonal, labelled = task._real(data, split, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    points, normals = sample_surface(vertices, faces, data.points, generator)
    joints, _ = predict_points(model, points, normals)
    pred, truth = joints[:, :N_SEED].float(), keypoints
    error = ((pred - truth).norm(dim=-1) / diagonal[:, None])[labelled]
    named = labelled.any()
    return {"pck10": float(metrics.matched_pck(pred, truth, 0.1, normalizer=diagonal)),
            "pck05": float(metrics.matched_pck(pred, truth, 0.05, normalizer=diagonal)),
            "pcm": float(metrics.matched_pcm(pred, truth, 0.1, ratio=0.9, normalizer=diagonal)),
            "pck10_labelled": float((error < 0.1).float().mean()) if named else None,
            "pck05_labelled": float((error < 0.05).float().mean()) if named else None,
            "side_correct": side_correct(pred[labelled], truth[labelled]) if named else None,
            "meshes": len(pred), "labelled_meshes": int(labelled.sum())}


def side_correct(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Share of the paired seed12 joints (shoulders ... ankles) nearer their own side's true joint
    than the other side's. pred, truth: (B, 12, 3)."""
    names = get_joint_set("seed12").names
    pairs = [(names.index(n), names.index(n.replace("left_", "right_"))) for n in names if n.startswith("left_")]
    left, right = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    own = torch.cat([(pred[:, left] - truth[:, left]).norm(dim=-1), (pred[:, right] - truth[:, right]).norm(dim=-1)], 1)
    swapped = torch.cat([(pred[:, left] - truth[:, right]).norm(dim=-1), (pred[:, right] - truth[:, left]).norm(dim=-1)], 1)
    return float((own < swapped).float().mean())


@torch.no_grad()
def evaluate_synthetic(model, data: PointDataConfig, device, task: MeshKeypointTask | None = None,
                       count: int = 256, seed: int = 0) -> dict[str, float]:
    """Held-out synthetic bodies (CMU 13-14 poses, new shapes, random turn): joint-centre errors in cm."""
    task = task or MeshKeypointTask()
    generator = torch.Generator(device=device).manual_seed(seed)
    vertices, faces, seed12, centres = task.synthetic_meshes(data, generator, count, device, poses="held_out")
    turn = random_yaw(count, generator, device)
    vertices, seed12, centres = (x @ turn.transpose(1, 2) for x in (vertices, seed12, centres))
    points, normals = sample_surface(vertices, faces, data.points, generator)
    joints, _ = predict_points(model, points, normals)
    centre_error = (joints[:, N_SEED:].float() - centres).norm(dim=-1) * 100
    seed_error = (joints[:, :N_SEED].float() - seed12).norm(dim=-1) * 100
    return {"centre_median_cm": float(centre_error.median()), "centre_mean_cm": float(centre_error.mean()),
            "seed12_median_cm": float(seed_error.median()), "side_correct": side_correct(joints[:, :N_SEED], seed12)}


@torch.no_grad()
def evaluate_up(model, data: PointDataConfig, device, task: MeshKeypointTask | None = None, count: int = 256,
                seed: int = 0) -> dict[str, float]:
    """Held-out synthetic bodies under uniform random 3D rotations: angle between the predicted
    and the true up, median and 90th percentile in degrees."""
    task = task or MeshKeypointTask()
    generator = torch.Generator(device=device).manual_seed(seed)
    vertices, faces, _, _ = task.synthetic_meshes(data, generator, count, device, poses="held_out")
    turn = random_rotation(count, generator, device)
    points, normals = sample_surface(vertices @ turn.transpose(1, 2), faces, data.points, generator)
    _, _, up = predict_points(model, points, normals, up=True)
    angle = torch.rad2deg(torch.arccos((up.float() * turn[:, :, 1]).sum(-1).clamp(-1, 1)))
    return {"up_error_deg_median": float(angle.median()), "up_error_deg_p90": float(angle.quantile(0.9))}
