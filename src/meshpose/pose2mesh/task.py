"""Training task ``pose2mesh``: PoseNet, then MeshNet, on synthetic samples from the pose bank.

Trained in Pose2Mesh's two stages, picked by ``data.stage``:

1. ``posenet``: PoseNet alone. Input: the keypoints of a random detector joint set
   (``data.input_sets``, with the sample engine's detector-like errors and zero confidence
   outside the image), in the regressor's slots, box-normalised (:func:`~meshpose.models.
   regressor.normalise`). Targets: MeshNet's skeleton joints (``data.joint_set``, h36m17) as
   root-relative 3D joints in the camera frame (metres, L1) and as clean 2D positions in the same
   box units (L1, weight ``loss_joints2d``).
2. ``meshnet``: PoseNet loaded from the first stage (``model.posenet_init``) and frozen; MeshNet
   reads its 2D + 3D joints and regresses the root-relative mesh vertices (camera frame, metres).
   Loss: weighted vertex L1, joint L1 (joints regressed from the predicted mesh by a linear
   regressor fitted with :func:`~meshpose.pose2mesh.losses.fit_joint_regressor`), the
   surface-normal and the edge-length loss (:mod:`meshpose.pose2mesh.losses`).

The root is the pelvis (joint 0 of h36m17). Validation on held-out poses (CMU subjects 13 and 14)
with coco17 input, as ``meshpose eval``'s held-out motion protocol: MPJPE and PA-MPJPE of
PoseNet's joints (stage 1) or of the joints regressed from the mesh, and PVE (stage 2), in mm;
``val/loss`` is the MPJPE in metres.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from meshpose import metrics
from meshpose.body import AnnyBody
from meshpose.data.posebank import load_training_banks
from meshpose.data.samples import SampleConfig, SampleEngine
from meshpose.errors import MeshposeError
from meshpose.io.weights import read_model_file
from meshpose.models.export import TRAINING_DATA, read_run, save_model_file
from meshpose.models.regressor import to_slots
from meshpose.pose2mesh.build import (
    STAGES,
    Pose2MeshDataConfig,
    Pose2MeshModelConfig,
    build_pose2mesh,
)
from meshpose.pose2mesh.inference import FORMAT, pose2mesh_file_extras
from meshpose.pose2mesh.losses import (
    edge_length_loss,
    fit_joint_regressor,
    joint_l1,
    normal_loss,
    regress_joints,
    vertex_l1,
)
from meshpose.train.checkpoint import load_model_weights, read_run_weights
from meshpose.train.config import read_run_config


def project_pixels(points: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """``(B, J, 3)`` camera-frame points (metres) -> ``(B, J, 2)`` pinhole pixels; depths are
    clamped to >= 1 cm so points behind the camera stay finite."""
    return focal[:, None] * points[..., :2] / points[..., 2:].clamp_min(0.01) + principal[:, None]


def to_box_units(pixels: torch.Tensor, centre: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """``(B, J, 2)`` pixels -> the normalised box units of :func:`~meshpose.models.regressor.normalise`."""
    return (pixels - centre[:, None]) / (size[:, None, None] / 2)


def read_posenet_run(run_dir: str, task: Pose2MeshTask) -> tuple[dict[str, torch.Tensor], Path]:
    """``model.posenet_init``: the PoseNet weights of a pose2mesh run folder (its ``model.pt`` or
    last checkpoint, read safely) and the folder, checked before anything is built.

    Raises:
        MeshposeError: naming the folder: not a pose2mesh run folder, a damaged config, damaged
            or unsafe files, or no PoseNet weights in them.
    """
    folder = Path(run_dir).expanduser()
    read_run_config(folder, {"pose2mesh": task})
    state, _ = read_run_weights(folder)
    posenet = {k.removeprefix("posenet."): v for k, v in state.items() if k.startswith("posenet.")}
    if not posenet:
        raise MeshposeError("model.posenet_init: no PoseNet weights in this run (a pose2mesh run of "
                            "stage posenet is needed)", folder)
    return posenet, folder


class Pose2MeshTask:
    ModelConfig = Pose2MeshModelConfig
    DataConfig = Pose2MeshDataConfig

    def export(self, run_dir: str | Path, out: str | Path) -> Path:
        """``meshpose export RUN_DIR -o FILE``: a second-stage run as a Pose2Mesh model file."""
        return export_pose2mesh(run_dir, out, self)

    def __init__(self):
        self._engines, self._regressors = {}, {}

    # ------------------------------------------------------------------ shared resources
    def _engine(self, data: Pose2MeshDataConfig, input_set: str, device, held_out: bool):
        with_vertices = data.stage == "meshnet"
        key = (str(device), input_set, data.joint_set, data.bank, tuple(data.held_out_clips), held_out,
               with_vertices)
        if key not in self._engines:
            bank = load_training_banks(data.bank)
            bank = bank.split_clips(data.held_out_clips)[1 if held_out else 0]
            shared = next((e.body for e in self._engines.values() if str(e.device) == str(device)), None)
            config = SampleConfig(joint_set=input_set, vertices=with_vertices, extra_joint_sets=(data.joint_set,))
            self._engines[key] = SampleEngine(bank, config, device, body=shared)
        return self._engines[key]

    def _regressor(self, data: Pose2MeshDataConfig, body, device) -> torch.Tensor:
        """The fitted ``(J, V)`` vertex-to-joint regressor, on ``device`` once (not copied per step)."""
        key = (str(device), data.joint_set, data.regressor_samples)
        if key not in self._regressors:
            self._regressors[key] = fit_joint_regressor(body, data.joint_set, samples=data.regressor_samples).to(device)
        return self._regressors[key]

    @staticmethod
    def _check_stage(data: Pose2MeshDataConfig) -> None:
        if data.stage not in STAGES:
            raise MeshposeError(f"data.stage must be one of {', '.join(STAGES)}; got {data.stage!r}")

    # ------------------------------------------------------------------ task interface
    def build_model(self, model: Pose2MeshModelConfig, data: Pose2MeshDataConfig) -> nn.Module:
        self._check_stage(data)
        if data.stage == "posenet":
            return build_pose2mesh(model, data, None, posenet_only=True)
        posenet = read_posenet_run(model.posenet_init, self) if model.posenet_init else None
        net = build_pose2mesh(model, data, AnnyBody().faces.cpu().numpy(), freeze_posenet=True)
        if posenet is not None:
            load_model_weights(net.posenet, *posenet)
        if model.init:
            _, state = read_model_file(model.init, {}, FORMAT, "Pose2Mesh model")
            net.load_state_dict({k: v for k, v in state.items() if k.startswith(("posenet.", "meshnet."))})
        return net

    def _batch(self, data: Pose2MeshDataConfig, input_set: str, sample: dict) -> dict:
        """Model input and root-relative targets of an engine sample."""
        joints = sample[f"joints3d_{data.joint_set}"]
        root = joints[:, :1]
        batch = {"slots": to_slots(sample["keypoints2d"], input_set), "joints": joints - root,
                 "joints_px": project_pixels(joints, sample["focal"], sample["principal"]), "data": data}
        if "vertices" in sample:
            batch["vertices"] = sample["vertices"] - root
        return batch

    def make_batch(self, data: Pose2MeshDataConfig, generator: torch.Generator, batch_size: int, device,
                   rows: slice = slice(None)):
        self._check_stage(data)
        input_set = data.input_sets[int(torch.randint(len(data.input_sets), (1,), generator=generator))]
        engine = self._engine(data, input_set, device, held_out=False)
        sample = {k: v[rows] for k, v in engine.sample(batch_size, generator).items()}
        batch = self._batch(data, input_set, sample)
        if data.stage == "meshnet":
            batch["faces"] = engine.body.faces.to(device)
            batch["regressor"] = self._regressor(data, engine.body, device)
        return batch

    def loss(self, model: nn.Module, batch: dict):
        data = batch["data"]
        out = model(batch["slots"])
        if data.stage == "posenet":
            joints3d = (out["joints3d"].float() - batch["joints"]).abs().mean()
            target2d = to_box_units(batch["joints_px"], out["centre"], out["size"])
            joints2d = (out["joints2d"].float() - target2d).abs().mean()
            total = data.loss_joints3d * joints3d + data.loss_joints2d * joints2d
            return total, {"joints3d_mm": float(joints3d.detach()) * 1000, "joints2d": float(joints2d.detach())}
        pred, true = out["vertices"].float(), batch["vertices"]
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
        """Held-out poses, coco17 input, ``val_size`` samples with a fixed seed (see the module
        docstring)."""
        engine = self._engine(data, "coco17", device, held_out=True)
        regressor = None
        if data.stage == "meshnet":
            regressor = self._regressor(data, engine.body, device)
        generator = torch.Generator(device=device).manual_seed(987_654_321)
        sums = {"mpjpe": 0.0, "pa_mpjpe": 0.0, "pve": 0.0}
        done = 0
        while done < data.val_size:
            n = min(data.val_batch, data.val_size - done)
            batch = self._batch(data, "coco17", engine.sample(n, generator))
            out = model(batch["slots"])
            joints = out["joints3d"].float()
            if regressor is not None:
                vertices = out["vertices"].float()
                joints = regress_joints(vertices, regressor)
                root = joints[:, :1]
                joints = joints - root
                sums["pve"] += float(metrics.pve(vertices - root, batch["vertices"])) * n
            sums["mpjpe"] += float(metrics.mpjpe(joints, batch["joints"])) * n
            sums["pa_mpjpe"] += float(metrics.pa_mpjpe(joints, batch["joints"])) * n
            done += n
        result = {f"val/{k}_mm": v / done * 1000 for k, v in sums.items()
                  if k != "pve" or regressor is not None}
        result["val/loss"] = result["val/mpjpe_mm"] / 1000
        return result


def export_pose2mesh(run_dir: str | Path, out: str | Path, task: Pose2MeshTask | None = None) -> Path:
    """A ``pose2mesh`` (second stage) run as a Pose2Mesh model file (``meshpose-pose2mesh-1``):
    the weights plus the fitted vertex-to-joint regressor and the mesh hierarchy's clusters."""
    config, state, step = read_run(run_dir, "pose2mesh", task or Pose2MeshTask())
    if config["data"]["stage"] != "meshnet":
        raise MeshposeError("a pose2mesh run of stage posenet has no model file: export the stage meshnet run",
                            run_dir)
    extra_header, extra_state = pose2mesh_file_extras(config)
    header = {"model": json.dumps(config["model"]), "training_data": TRAINING_DATA, **extra_header}
    return save_model_file(run_dir, out, config, {**state, **extra_state}, step, header)
