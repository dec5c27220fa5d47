"""Two small tasks for the training engine: ``toy_regression`` (a fixed smooth function, seconds on
a CPU: the engine's own tests train it) and ``lift_anny_toy`` (2D -> 3D lifting on Anny bodies
generated on the training device: the engine's throughput benchmark trains it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import roma
import torch
from torch import nn

from meshpose.body import POSE_JOINTS, AnnyBody, body_joints
from meshpose.joints import JOINT_SETS, get_joint_set
from meshpose.train.config import Limit, between, positive

__all__ = ["LiftAnnyToy", "ToyRegression"]


@dataclass
class ToyModelConfig:
    hidden: int = 64
    depth: int = 2

    LIMITS: ClassVar[dict[str, Limit]] = {"hidden": positive(4096), "depth": between(0, 64)}


@dataclass
class ToyDataConfig:
    in_dim: int = 8
    out_dim: int = 4
    noise: float = 0.0
    val_size: int = 512

    LIMITS: ClassVar[dict[str, Limit]] = {"in_dim": positive(4096), "out_dim": positive(4096),
                                          "noise": between(0, 1e6), "val_size": positive(65_536)}


class ToyRegression:
    """Regress a fixed smooth function ``y = sin(x A) B`` of Gaussian inputs with an MLP.

    Small and fast on CPU: the engine's tests (exact resume, DDP equivalence) train it.
    """

    ModelConfig = ToyModelConfig
    DataConfig = ToyDataConfig

    @staticmethod
    def _target(x: torch.Tensor, data: ToyDataConfig) -> torch.Tensor:
        generator = torch.Generator().manual_seed(1234)  # the function is fixed, not the data
        a = torch.randn(data.in_dim, 16, generator=generator) / data.in_dim**0.5
        b = torch.randn(16, data.out_dim, generator=generator) / 4
        return torch.sin(x @ a.to(x)) @ b.to(x)

    def build_model(self, model: ToyModelConfig, data: ToyDataConfig) -> nn.Module:
        layers, width = [], data.in_dim
        for _ in range(model.depth):
            layers += [nn.Linear(width, model.hidden), nn.ReLU()]
            width = model.hidden
        layers.append(nn.Linear(width, data.out_dim))
        return nn.Sequential(*layers)

    def make_batch(self, data: ToyDataConfig, generator: torch.Generator, batch_size: int, device,
                   rows: slice = slice(None)):
        x = torch.randn(batch_size, data.in_dim, generator=generator)
        noise = data.noise * torch.randn(batch_size, data.out_dim, generator=generator)
        x, noise = x[rows], noise[rows]
        return {"x": x.to(device), "y": (self._target(x, data) + noise).to(device)}

    def loss(self, model: nn.Module, batch: dict):
        error = (model(batch["x"]) - batch["y"]).square().mean()
        return error, {"mse": float(error.detach())}

    @torch.no_grad()
    def validate(self, model: nn.Module, data: ToyDataConfig, device) -> dict[str, float]:
        generator = torch.Generator().manual_seed(987_654_321)
        batch = self.make_batch(data, generator, data.val_size, device)
        error = (model(batch["x"]) - batch["y"]).square().mean()
        return {"val/loss": float(error), "val/rmse": float(error.sqrt())}


@dataclass
class LiftModelConfig:
    hidden: int = 1024
    blocks: int = 2
    dropout: float = 0.0

    LIMITS: ClassVar[dict[str, Limit]] = {"hidden": positive(4096), "blocks": between(0, 32),
                                          "dropout": between(0, 1)}


@dataclass
class LiftDataConfig:
    joint_set: str = "h36m17"
    pose_std_deg: float = 25.0  #: std of each joint's random rotation (no pose bank yet)
    distance_m: list[float] = field(default_factory=lambda: [3.0, 7.0])
    focal_px: float = 1000.0
    val_size: int = 2048

    LIMITS: ClassVar[dict[str, Limit]] = {"pose_std_deg": between(0, 180), "distance_m": positive(1000),
                                          "focal_px": positive(1e6), "val_size": positive(65_536)}
    LENGTHS: ClassVar[dict[str, tuple[int, int]]] = {"distance_m": (2, 2)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"joint_set": tuple(JOINT_SETS)}


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
        )

    def forward(self, x):
        return x + self.layers(x)


class LiftAnnyToy:
    """Lift 2D joints to root-relative 3D joints, on bodies generated on the fly on the training
    device: random reduced poses and phenotypes through meshpose's Anny (joints only), seen by a
    random pinhole camera. A demonstration of on-device sample generation for the engine; the
    real pose supply (a mocap pose bank) and the real lifter come with later work.
    """

    ModelConfig = LiftModelConfig
    DataConfig = LiftDataConfig

    def __init__(self):
        self._bodies = {}

    def _body(self, device):
        key = str(device)
        if key not in self._bodies:
            self._bodies[key] = AnnyBody().to(device)
        return self._bodies[key]

    def build_model(self, model: LiftModelConfig, data: LiftDataConfig) -> nn.Module:
        joints = len(get_joint_set(data.joint_set))
        return nn.Sequential(
            nn.Linear(2 * joints, model.hidden),
            *[_ResidualBlock(model.hidden, model.dropout) for _ in range(model.blocks)],
            nn.Linear(model.hidden, 3 * joints),
        )

    def make_batch(self, data: LiftDataConfig, generator: torch.Generator, batch_size: int, device,
                   rows: slice = slice(None)):
        body = self._body(device)
        rotvec = torch.randn(batch_size, len(POSE_JOINTS), 3, generator=generator)
        rotvec = rotvec * math.radians(data.pose_std_deg)
        rotvec[:, 0] = 0.0  # the camera turn below gives the global orientation
        shape = torch.rand(batch_size, 6, generator=generator)
        yaw = (torch.rand(batch_size, generator=generator) * 2 - 1) * math.pi
        distance = data.distance_m[0] + torch.rand(batch_size, generator=generator) * (
            data.distance_m[1] - data.distance_m[0])
        rotvec, shape, yaw, distance = rotvec[rows], shape[rows], yaw[rows], distance[rows]
        with torch.no_grad():
            output = body(rotvec.to(device), shape.to(device), vertices=False)
            joints = body_joints(output, data.joint_set, anatomical=True)  # (B, J, 3), Anny frame, z up
            # Anny (x left, -y forward, z up) -> camera facing the body (x right, y down, z ahead),
            # turned by a random yaw about the vertical and pushed to the given distance.
            turn = roma.rotvec_to_rotmat(torch.stack([torch.zeros_like(yaw), torch.zeros_like(yaw), yaw], -1)).to(device)
            to_camera = torch.tensor([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]], device=device)
            camera = (joints - joints[:, :1]) @ turn.transpose(1, 2) @ to_camera.T
            camera = camera + torch.stack([torch.zeros_like(distance), torch.zeros_like(distance), distance], -1).to(device)[:, None]
            pixels = data.focal_px * camera[..., :2] / camera[..., 2:]
            pixels = pixels - pixels[:, :1]
            scale = pixels.flatten(1).std(dim=1, keepdim=True)[..., None].clamp_min(1e-6)
            target = camera - camera[:, :1]
        return {"x": (pixels / scale).flatten(1), "y": target.flatten(1)}

    def loss(self, model: nn.Module, batch: dict):
        error = (model(batch["x"]).float() - batch["y"]).view(batch["y"].shape[0], -1, 3).norm(dim=-1).mean()
        return error, {"mpjpe_mm": float(error.detach()) * 1000}

    @torch.no_grad()
    def validate(self, model: nn.Module, data: LiftDataConfig, device) -> dict[str, float]:
        batch = self.make_batch(data, torch.Generator().manual_seed(987_654_321), data.val_size, device)
        error = (model(batch["x"]).float() - batch["y"]).view(data.val_size, -1, 3).norm(dim=-1).mean()
        return {"val/loss": float(error), "val/mpjpe_mm": float(error) * 1000}
