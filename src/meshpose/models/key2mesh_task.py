"""Training task ``key2mesh``: the keypoint regressor on synthetic samples from the pose bank."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from meshpose import metrics
from meshpose.body import body_joints
from meshpose.data.posebank import load_training_banks
from meshpose.data.samples import SampleConfig, SampleEngine
from meshpose.models.export import export_regressor
from meshpose.models.inference import load_regressor
from meshpose.models.regressor import (
    INPUT_SETS,
    SLOTS,
    KeypointRegressor,
    slot_index,
    to_slots,
)
from meshpose.train.config import Limit, between, positive


@dataclass
class Key2MeshModelConfig:
    hidden: int = 768
    blocks: int = 3
    iterations: int = 2
    dropout: float = 0.0
    init: str = ""  #: start from these weights (a shipped model name or a .safetensors file)

    LIMITS: ClassVar[dict[str, Limit]] = {"hidden": positive(4096), "blocks": positive(64),
                                          "iterations": positive(16), "dropout": between(0, 1)}


@dataclass
class Key2MeshDataConfig:
    input_sets: list[str] = field(default_factory=lambda: list(INPUT_SETS))
    bank: str = ""  #: pose bank .npz; "" = the CMU bank shipped in the package
    extra_banks: list[str] = field(default_factory=list)  #: more banks whose poses join ``bank``'s (research models)
    exclude_clips: list[str] = field(default_factory=lambda: ["cmu/13/", "cmu/14/"])  #: held out
    vertex_stride: int = 7  #: vertex loss on every n-th vertex
    val_size: int = 1024
    loss_joints: float = 1.0
    loss_vertices: float = 1.0
    loss_pose: float = 0.1
    loss_shape: float = 0.1
    loss_2d: float = 0.1
    mix_chains: float = 0.0  #: training samples: chance each body part comes from another pose (SampleConfig)
    flex_legs: float = 0.0  #: training samples: chance the legs sit or crouch (SampleConfig)
    h36m_inputs: bool = False  #: training samples: h36m17/mpii16 keypoints at Human3.6M's joints (SampleConfig; research)

    LIMITS: ClassVar[dict[str, Limit]] = {
        "mix_chains": between(0, 1), "flex_legs": between(0, 1), "vertex_stride": positive(100_000), "val_size": positive(65_536), "loss_joints": between(0, 1e6),
        "loss_vertices": between(0, 1e6), "loss_pose": between(0, 1e6), "loss_shape": between(0, 1e6),
        "loss_2d": between(0, 1e6)}
    LENGTHS: ClassVar[dict[str, tuple[int, int]]] = {"input_sets": (1, 16)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"input_sets": INPUT_SETS}


def slot_joints(body, prediction: dict) -> torch.Tensor:
    """(B, S, 3) the predicted body's slot joints, root-relative, metres, camera axes."""
    output = body(prediction["pose"].float(), prediction["shape"].float(), vertices=False)
    root = output.joint("bone:root")[:, None]
    points = output.joints.new_zeros(output.joints.shape[0], len(SLOTS), 3)
    for joint_set in ("body25", "h36m17", "mpii16", "coco17"):
        points[:, slot_index(joint_set).to(points.device)] = body_joints(output, joint_set, anatomical=True) - root
    return points


def weak_perspective(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """(B, S, 2) normalised box coordinates ``s * X_xy + t`` of (B, S, 3) root-relative points
    under (B, 3) weak-perspective cameras ``(s, tx, ty)``."""
    camera = camera.float()
    return camera[:, None, :1] * points[..., :2] + camera[:, None, 1:]


def project_slots(body, prediction: dict) -> torch.Tensor:
    """(B, S, 2) the predicted body's slot joints under the predicted weak-perspective camera."""
    return weak_perspective(slot_joints(body, prediction), prediction["camera"])


class Key2MeshTask:
    ModelConfig = Key2MeshModelConfig
    DataConfig = Key2MeshDataConfig

    def __init__(self):
        self._engines = {}

    def export(self, run_dir, out):
        """``meshpose export RUN_DIR -o FILE``: a key2mesh run as a regressor model file."""
        return export_regressor(run_dir, out, self)

    def _engine(self, data: Key2MeshDataConfig, joint_set: str, device, mix_chains: float = 0.0,
                flex_legs: float = 0.0, h36m_inputs: bool = False):
        key = (str(device), joint_set, data.bank, tuple(data.extra_banks), tuple(data.exclude_clips), mix_chains,
               flex_legs, h36m_inputs)
        if key not in self._engines:
            bank = load_training_banks(data.bank, data.extra_banks)
            bank = bank.split_clips(data.exclude_clips)[0]
            shared = next((e.body for e in self._engines.values() if str(e.device) == str(device)), None)
            config = SampleConfig(joint_set=joint_set, mix_chains=mix_chains, flex_legs=flex_legs,
                                  h36m_inputs=h36m_inputs)
            self._engines[key] = SampleEngine(bank, config, device, body=shared)
        return self._engines[key]

    def build_model(self, model: Key2MeshModelConfig, data: Key2MeshDataConfig) -> nn.Module:
        regressor = KeypointRegressor(model.hidden, model.blocks, model.iterations, model.dropout)
        if model.init:
            regressor.load_state_dict(load_regressor(model.init).state_dict())
        return regressor

    def make_batch(self, data: Key2MeshDataConfig, generator: torch.Generator, batch_size: int, device,
                   rows: slice = slice(None)):
        choice = int(torch.randint(len(data.input_sets), (1,), generator=generator))
        joint_set = data.input_sets[choice]
        engine = self._engine(data, joint_set, device, data.mix_chains, data.flex_legs, data.h36m_inputs)
        sample = engine.sample(batch_size, generator)
        sample = {k: v[rows] for k, v in sample.items()}
        pose = sample["pose"].clone()
        pose[:, 0] = sample["R"] @ pose[:, 0]  # the body's orientation in the camera's axes
        slots = to_slots(sample["keypoints2d"], joint_set)
        clean = to_slots(torch.cat([sample["keypoints2d_clean"].nan_to_num(0),
                                    sample["visible"][..., None].float()], -1), joint_set)
        return {"slots": slots, "clean": clean, "pose": pose, "shape": sample["shape"], "body": engine.body,
                "data": data}

    def _body_targets(self, body, pose, shape, stride):
        output = body(pose, shape)
        root = output.joint("bone:root")[:, None]
        joints = torch.cat([body_joints(output, "h36m17", anatomical=True), body_joints(output, "coco17")], 1) - root
        return joints, output.vertices[:, ::stride] - root

    def loss(self, model: nn.Module, batch: dict):
        data_cfg = batch["data"]
        prediction = model(batch["slots"])
        body, stride = batch["body"], data_cfg.vertex_stride
        with torch.no_grad():
            true_joints, true_vertices = self._body_targets(body, batch["pose"], batch["shape"], stride)
        joints, vertices = self._body_targets(body, prediction["pose"].float(), prediction["shape"].float(), stride)
        loss_joints = (joints - true_joints).abs().mean()
        loss_vertices = (vertices - true_vertices).abs().mean()
        loss_pose = (prediction["pose"].float() - batch["pose"]).square().mean()
        loss_shape = (prediction["shape"].float() - batch["shape"]).abs().mean()
        # Weak-perspective reprojection of the slot joints, in normalised box units.
        centre, size = prediction["centre"], prediction["size"]
        clean = (batch["clean"][..., :2] - centre[:, None]) / (size[:, None, None] / 2)
        visible = batch["clean"][..., 2]
        projected = project_slots(body, prediction)
        loss_2d = ((projected - clean).abs().sum(-1) * visible).sum() / visible.sum().clamp_min(1)
        total = (data_cfg.loss_joints * loss_joints + data_cfg.loss_vertices * loss_vertices
                 + data_cfg.loss_pose * loss_pose + data_cfg.loss_shape * loss_shape + data_cfg.loss_2d * loss_2d)
        return total, {"joints_mm": float(loss_joints.detach()) * 1000, "vertices_mm": float(loss_vertices.detach()) * 1000,
                       "loss_2d": float(loss_2d.detach())}

    @torch.no_grad()
    def validate(self, model: nn.Module, data: Key2MeshDataConfig, device) -> dict[str, float]:
        generator = torch.Generator(device=device).manual_seed(987_654_321)
        results = {}
        for joint_set in ("coco17", "mpii16"):
            engine = self._engine(data, joint_set, device)
            sample = engine.sample(data.val_size, generator)
            pose = sample["pose"].clone()
            pose[:, 0] = sample["R"] @ pose[:, 0]
            prediction = model(to_slots(sample["keypoints2d"], joint_set))
            true_joints, true_vertices = self._body_targets(engine.body, pose, sample["shape"], 1)
            joints, vertices = self._body_targets(engine.body, prediction["pose"].float(),
                                                  prediction["shape"].float(), 1)
            h36m_pred, h36m_true = joints[:, :17], true_joints[:, :17]
            results[f"val/{joint_set}/mpjpe_mm"] = float(metrics.mpjpe(h36m_pred, h36m_true)) * 1000
            results[f"val/{joint_set}/pa_mpjpe_mm"] = float(metrics.pa_mpjpe(h36m_pred, h36m_true)) * 1000
            results[f"val/{joint_set}/pve_mm"] = float(metrics.pve(vertices, true_vertices)) * 1000
        results["val/loss"] = results["val/coco17/pa_mpjpe_mm"] / 1000
        return results
