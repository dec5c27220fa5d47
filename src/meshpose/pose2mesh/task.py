"""Training task ``pose2mesh``: Pose2Mesh's MeshNet on synthetic samples from the pose bank.

Input per joint (``data.joint_set``, h36m17 by default), MeshNet's 5-channel signal
``(x, y, X, Y, Z)``:

* ``x, y``: the detector-like noisy 2D keypoints normalised to their bounding box as Pose2Mesh
  does (centre on the box of the keypoints with confidence > 0, divide by half the box's longer
  side enlarged by ``bbox_scale`` = 1.25, so coordinates lie in about [-0.8, 0.8]), then
  standardised with the fixed constants ``INPUT_2D_MEAN`` = 0 and ``INPUT_2D_STD`` = 0.4 (about
  the spread of these coordinates; fixed, not dataset statistics). Keypoints with confidence 0
  (outside the image) are set to 0.
* ``X, Y, Z``: root-relative (pelvis, joint 0) 3D joints in the camera frame, metres. During
  training and validation these are the ground-truth joints plus isotropic Gaussian noise of
  std ``joints3d_noise_m`` (default 20 mm; the root stays exactly 0), standing in for PoseNet's
  errors: Pose2Mesh trains MeshNet on PoseNet outputs or on ground truth plus noise.

Target: root-relative (same pelvis) vertices in the camera frame, metres. Loss: weighted sum of
vertex L1, joint L1 (joints regressed from the predicted mesh by a linear regressor fitted to
``body_joints`` with :func:`~meshpose.pose2mesh.losses.fit_joint_regressor`, against the true
joints), the surface-normal loss and the edge-length loss (:mod:`meshpose.pose2mesh.losses`).
Validation on held-out poses (CMU subjects 13 and 14): MPJPE (regressed joints) and PVE in mm.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from meshpose.pose2mesh.losses import (
    edge_length_loss,
    fit_joint_regressor,
    joint_l1,
    normal_loss,
    regress_joints,
    vertex_l1,
)

INPUT_2D_MEAN = 0.0  #: fixed standardisation of the box-normalised 2D keypoints
INPUT_2D_STD = 0.4


@dataclass
class Pose2MeshModelConfig:
    levels: int = 7  #: coarsening levels of the mesh hierarchy (levels + 1 graphs)
    n_levels: int = 0  #: hierarchy levels MeshNet uses (finest first); 0 = all (levels + 1)
    widths: list[int] = field(default_factory=list)  #: width per used level, finest first; [] = default_widths
    joint_width: int = 128
    blocks: int = 1  #: residual Chebyshev blocks per graph level
    K: int = 3  #: Chebyshev polynomial order
    hierarchy_seed: int = 0
    cache_dir: str = "~/.cache/meshpose"  #: where the mesh hierarchy .npz is cached


@dataclass
class Pose2MeshDataConfig:
    joint_set: str = "h36m17"
    bank: str = ""  #: pose bank .npz; "" = the CMU bank shipped in the package
    held_out_clips: list[str] = field(default_factory=lambda: ["cmu/13/", "cmu/14/"])  #: validation only
    bbox_scale: float = 1.25  #: enlargement of the keypoints' box before normalising
    joints3d_noise_m: float = 0.02  #: std of the Gaussian noise on the input 3D joints (PoseNet stand-in)
    regressor_samples: int = 300  #: random bodies for fitting the vertex-to-joint regressor
    val_size: int = 512
    val_batch: int = 64
    loss_vertices: float = 1.0
    loss_joints: float = 1.0
    loss_normal: float = 0.1
    loss_edge: float = 1.0


def normalize_keypoints2d(keypoints: torch.Tensor, bbox_scale: float = 1.25) -> torch.Tensor:
    """``(B, J, 3)`` pixel keypoints with confidence -> ``(B, J, 2)`` box-normalised, standardised
    coordinates (see the module docstring); joints with confidence 0 become 0."""
    xy, valid = keypoints[..., :2], keypoints[..., 2:] > 0
    big = torch.finfo(xy.dtype).max
    low = torch.where(valid, xy, big).amin(1, keepdim=True)
    high = torch.where(valid, xy, -big).amax(1, keepdim=True)
    none = ~valid.any(1, keepdim=True)
    low, high = torch.where(none, 0.0, low), torch.where(none, 1.0, high)
    centre = (low + high) / 2
    half = ((high - low).amax(-1, keepdim=True) * bbox_scale / 2).clamp_min(1.0)
    normalised = ((xy - centre) / half - INPUT_2D_MEAN) / INPUT_2D_STD
    return torch.where(valid, normalised, 0.0)


class Pose2MeshTask:
    ModelConfig = Pose2MeshModelConfig
    DataConfig = Pose2MeshDataConfig

    def __init__(self):
        self._engines = {}
        self._hierarchies = {}

    # ------------------------------------------------------------------ shared resources
    def _engine(self, data: Pose2MeshDataConfig, device, held_out: bool):
        key = (str(device), data.joint_set, data.bank, tuple(data.held_out_clips), held_out)
        if key not in self._engines:
            from meshpose.data.posebank import PoseBank, load_shipped_pose_bank
            from meshpose.data.samples import SampleConfig, SampleEngine

            bank = PoseBank.load(data.bank) if data.bank else load_shipped_pose_bank()
            bank = bank.split_clips(data.held_out_clips)[1 if held_out else 0]
            shared = next((e.body for e in self._engines.values() if str(e.device) == str(device)), None)
            self._engines[key] = SampleEngine(bank, SampleConfig(joint_set=data.joint_set), device, body=shared)
        return self._engines[key]

    def _hierarchy(self, model: Pose2MeshModelConfig, faces):
        from meshpose.pose2mesh.graph import MeshHierarchy

        path = Path(model.cache_dir).expanduser() / f"pose2mesh_anny_l{model.levels}_s{model.hierarchy_seed}.npz"
        key = str(path)
        if key not in self._hierarchies:
            self._hierarchies[key] = MeshHierarchy.cached(faces, path, int(faces.max()) + 1, levels=model.levels,
                                                          seed=model.hierarchy_seed)
        return self._hierarchies[key]

    def _regressor(self, data: Pose2MeshDataConfig, body, device) -> torch.Tensor:
        return fit_joint_regressor(body, data.joint_set, samples=data.regressor_samples).to(device)

    # ------------------------------------------------------------------ task interface
    def build_model(self, model: Pose2MeshModelConfig, data: Pose2MeshDataConfig) -> nn.Module:
        from meshpose.body import AnnyBody
        from meshpose.joints import get_joint_set
        from meshpose.pose2mesh.models import MeshNet

        faces = AnnyBody().faces.cpu().numpy()
        hierarchy = self._hierarchy(model, faces)
        joints = get_joint_set(data.joint_set)
        return MeshNet(joints.edges, len(joints), hierarchy, widths=model.widths or None,
                       joint_width=model.joint_width, K=model.K, blocks=model.blocks, in_features=5,
                       n_levels=model.n_levels or None)

    def _inputs(self, data: Pose2MeshDataConfig, sample: dict, noise: torch.Tensor):
        """MeshNet input ``(B, J, 5)``, true root-relative joints and vertices (camera frame, m)."""
        from meshpose.pose2mesh.models import meshnet_input

        root = sample["joints3d"][:, :1]
        joints = sample["joints3d"] - root
        noisy = joints + noise.to(joints)
        noisy = noisy - noisy[:, :1]  # the root stays exactly at the origin
        x = meshnet_input(normalize_keypoints2d(sample["keypoints2d"], data.bbox_scale), noisy)
        return x, joints, sample["vertices"] - root

    def make_batch(self, data: Pose2MeshDataConfig, generator: torch.Generator, batch_size: int, device,
                   rows: slice = slice(None)):
        engine = self._engine(data, device, held_out=False)
        sample = engine.sample(batch_size, generator)
        noise = data.joints3d_noise_m * torch.randn(sample["joints3d"].shape, generator=generator,
                                                    device=generator.device)
        sample = {k: v[rows] for k, v in sample.items()}
        x, joints, vertices = self._inputs(data, sample, noise[rows])
        return {"x": x, "joints": joints, "vertices": vertices, "faces": engine.body.faces.to(device),
                "regressor": self._regressor(data, engine.body, device), "data": data}

    def loss(self, model: nn.Module, batch: dict):
        data = batch["data"]
        pred = model(batch["x"]).float()
        true = batch["vertices"]
        terms = {
            "vertices": vertex_l1(pred, true),
            "joints": joint_l1(pred, batch["joints"], batch["regressor"]),
            "normal": normal_loss(pred, true, batch["faces"]),
            "edge": edge_length_loss(pred, true, batch["faces"]),
        }
        total = (data.loss_vertices * terms["vertices"] + data.loss_joints * terms["joints"]
                 + data.loss_normal * terms["normal"] + data.loss_edge * terms["edge"])
        scalars = {"vertices_mm": float(terms["vertices"].detach()) * 1000,
                   "joints_mm": float(terms["joints"].detach()) * 1000,
                   "normal": float(terms["normal"].detach()), "edge_mm": float(terms["edge"].detach()) * 1000}
        return total, scalars

    @torch.no_grad()
    def validate(self, model: nn.Module, data: Pose2MeshDataConfig, device) -> dict[str, float]:
        """MPJPE (joints regressed from the predicted mesh vs the true joints, both root-relative)
        and PVE in mm on ``val_size`` held-out samples (fixed seed); ``val/loss`` = MPJPE in m."""
        engine = self._engine(data, device, held_out=True)
        regressor = self._regressor(data, engine.body, device)
        generator = torch.Generator(device=device).manual_seed(987_654_321)
        mpjpe = pve = 0.0
        done = 0
        while done < data.val_size:
            n = min(data.val_batch, data.val_size - done)
            sample = engine.sample(n, generator)
            noise = data.joints3d_noise_m * torch.randn(sample["joints3d"].shape, generator=generator,
                                                        device=generator.device)
            x, joints, vertices = self._inputs(data, sample, noise)
            pred = model(x).float()
            regressed = regress_joints(pred, regressor)
            regressed = regressed - regressed[:, :1]
            mpjpe += float((regressed - joints).norm(dim=-1).mean(1).sum())
            pve += float((pred - vertices).norm(dim=-1).mean(1).sum())
            done += n
        mpjpe, pve = mpjpe / done, pve / done
        return {"val/loss": mpjpe, "val/mpjpe_mm": mpjpe * 1000, "val/pve_mm": pve * 1000}
