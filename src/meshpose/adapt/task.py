"""Training task ``adapt``: Key2Mesh-style adversarial domain adaptation of the regressor.

The trained regressor (``model.init``) is kept frozen as the *source* network. Its feature
extractor (input layer and residual blocks) is copied into a *target* extractor, the only part
that adapts; the parameter head stays frozen and is shared. A Wasserstein critic on the hidden
features separates source features (synthetic keypoints of the target's joint set from the
sample engine, seen by the source extractor) from target features (real unlabelled detections,
``data.target``, seen by the target extractor).

The source side is a pool of ``data.source_pool`` synthetic samples drawn once with a fixed seed.
Steps alternate: ``data.critic_steps`` critic updates, then one extractor update (the schedule
is a counter buffer of the model, so it resumes exactly).

* critic: ``D(target) - D(source) + gp_weight * gradient_penalty``;
* extractor: ``adv_weight * -D(target)`` (critic weights fixed) + ``consistency_weight *
  mean((F_target(x) - F_source(x))^2)`` on the target detections (keeps the features near the
  source network's) + ``reprojection_weight *`` the confidence-weighted L1 between the target
  detections and the predicted body's joints under the predicted weak-perspective camera, in
  box units (as the key2mesh task's 2D loss) + the rotation cycle below.

Rotation cycle (Chen et al. 2019, "Unsupervised 3D pose estimation with geometric
self-supervision"; ElePose 2022), on by ``cycle_weight`` / ``cycle_2d_weight`` > 0: the target
detections are lifted to a body, its slot joints are turned by a random angle (up to
``turn_degrees``) about the camera's vertical axis and projected with the predicted camera;
that projection, a view of the same person from elsewhere, is lifted again. The second lift must
agree with the turned first one in 3D (``cycle_weight`` *  mean L1, metres) and, turned back and
projected, with the real detections in 2D (``cycle_2d_weight`` * confidence-weighted L1, box
units). Gradients flow through both lifts.

No 3D label of the target domain is used. Validation: the held-out motion protocol (source
domain) and, with ``data.val_h36m``, Human3.6M S1 from Stacked-Hourglass detections (its 3D is
only used here, to measure; ``val/loss`` is the held-out motion PA-MPJPE, so no checkpoint is
chosen by S1).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call

from meshpose.adapt.critic import WassersteinCritic, gradient_penalty
from meshpose.adapt.target import load_target_keypoints
from meshpose.data.posebank import load_training_banks
from meshpose.data.protocols import evaluate_h36m, evaluate_motion, held_out_cmu
from meshpose.data.samples import SampleConfig, SampleEngine
from meshpose.errors import MeshposeError
from meshpose.io.weights import SHIPPED_MODELS, read_model_file
from meshpose.models.export import TRAINING_DATA, read_run, save_model_file
from meshpose.models.inference import FORMAT, load_regressor, regressor_estimator
from meshpose.models.key2mesh_task import project_slots, slot_joints, weak_perspective
from meshpose.models.regressor import to_slots
from meshpose.train.config import Limit, between, positive


@dataclass
class AdaptModelConfig:
    init: str = "default"  #: the regressor to adapt (shipped name or file)
    critic_hidden: int = 512
    critic_layers: int = 2

    LIMITS: ClassVar[dict[str, Limit]] = {"critic_hidden": positive(8192), "critic_layers": positive(32)}


@dataclass
class AdaptDataConfig:
    target: str = ""  #: unlabelled 2D detections (any keypoint file, or a <name>_2d_sh.npz)
    target_joint_set: str = ""  #: for files that do not name their joint set
    target_stride: int = 1  #: every n-th target frame
    bank: str = ""  #: source pose bank .npz; "" = the CMU bank shipped in the package
    exclude_clips: list[str] = field(default_factory=lambda: ["cmu/13/", "cmu/14/"])
    source_pool: int = 32768  #: synthetic source samples drawn once (fixed seed), then sampled from
    critic_steps: int = 5  #: critic updates per extractor update
    gp_weight: float = 10.0
    adv_weight: float = 0.1
    consistency_weight: float = 1.0
    reprojection_weight: float = 1.0
    cycle_weight: float = 0.0  #: rotation cycle, 3D agreement of the two lifts (module docstring)
    cycle_2d_weight: float = 0.0  #: rotation cycle, 2D agreement with the detections
    turn_degrees: float = 180.0  #: the cycle's turns are uniform in [-turn_degrees, turn_degrees]
    val_size: int = 512  #: held-out motion samples
    val_h36m: str = ""  #: folder with the Human3.6M S1 files (evaluation only)
    val_stride: int = 50  #: every n-th S1 frame

    LIMITS: ClassVar[dict[str, Limit]] = {
        "target_stride": positive(1_000_000), "source_pool": positive(1_048_576), "critic_steps": between(0, 1000),
        "gp_weight": between(0, 1e6), "adv_weight": between(0, 1e6), "consistency_weight": between(0, 1e6),
        "reprojection_weight": between(0, 1e6), "cycle_weight": between(0, 1e6), "cycle_2d_weight": between(0, 1e6),
        "turn_degrees": between(0, 180), "val_size": positive(65_536), "val_stride": positive(1_000_000)}


class AdaptationModel(nn.Module):
    """Frozen source regressor, adapting target regressor (only its extractor trains), critic.

    ``updates`` counts loss evaluations (a buffer: saved in checkpoints).
    """

    def __init__(self, regressor, critic_hidden: int = 512, critic_layers: int = 2):
        super().__init__()
        self.target = copy.deepcopy(regressor).requires_grad_(True)
        self.target.head.requires_grad_(False)
        self.source = regressor.requires_grad_(False)
        self.critic = WassersteinCritic(regressor.head[0].normalized_shape[0], critic_hidden, critic_layers)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True):
        super().train(mode)
        self.source.eval()
        return self


class AdaptTask:
    ModelConfig = AdaptModelConfig
    DataConfig = AdaptDataConfig

    def export(self, run_dir: str | Path, out: str | Path) -> Path:
        """``meshpose export RUN_DIR -o FILE``: the adapted regressor, in the format of the one it
        started from."""
        return export_adapted_run(run_dir, out, self)

    def __init__(self):
        self._engines, self._targets, self._sources = {}, {}, {}

    def _target(self, data: AdaptDataConfig) -> tuple[torch.Tensor, str]:
        key = (data.target, data.target_joint_set, data.target_stride)
        if key not in self._targets:
            if not data.target:
                raise MeshposeError("data.target: give the unlabelled 2D detections to adapt to")
            keypoints, joint_set = load_target_keypoints(data.target, data.target_joint_set or None,
                                                         data.target_stride)
            self._targets[key] = (torch.from_numpy(keypoints), joint_set)
        return self._targets[key]

    def _engine(self, data: AdaptDataConfig, joint_set: str, device):
        key = (str(device), joint_set, data.bank, tuple(data.exclude_clips))
        if key not in self._engines:
            bank = load_training_banks(data.bank)
            bank = bank.split_clips(data.exclude_clips)[0]
            config = SampleConfig(joint_set=joint_set, vertices=False)
            self._engines[key] = SampleEngine(bank, config, device)
        return self._engines[key]

    def _source(self, data: AdaptDataConfig, joint_set: str, device) -> torch.Tensor:
        """``(source_pool, J, 3)`` synthetic keypoints of ``joint_set`` with detector noise, drawn
        once with a fixed seed: the source side needs only inputs, so a pool spares a body
        forward per step."""
        key = (str(device), joint_set, data.bank, tuple(data.exclude_clips), data.source_pool)
        if key not in self._sources:
            engine = self._engine(data, joint_set, device)
            generator = torch.Generator(device=device).manual_seed(20_240_607)
            chunks = [engine.sample(min(4096, data.source_pool - start), generator)["keypoints2d"]
                      for start in range(0, data.source_pool, 4096)]
            self._sources[key] = torch.cat(chunks)
        return self._sources[key]

    def build_model(self, model: AdaptModelConfig, data: AdaptDataConfig) -> nn.Module:
        regressor = load_regressor(model.init)
        if regressor.iterations != 1:
            raise MeshposeError(f"model.init: adaptation needs a single-pass regressor; {model.init!r} "
                                f"refines {regressor.iterations} times")
        return AdaptationModel(regressor, model.critic_hidden, model.critic_layers)

    def make_batch(self, data: AdaptDataConfig, generator: torch.Generator, batch_size: int, device,
                   rows: slice = slice(None)):
        keypoints, joint_set = self._target(data)
        pool = self._source(data, joint_set, device)
        pick = torch.randint(len(keypoints), (batch_size,), generator=generator, device=generator.device)
        pick_source = torch.randint(len(pool), (batch_size,), generator=generator, device=generator.device)
        source = pool[pick_source.to(pool.device)][rows]
        target = keypoints[pick.cpu()][rows].to(device)
        turn = (2 * torch.rand(batch_size, generator=generator, device=generator.device) - 1)
        turn = turn[rows].to(device) * math.radians(data.turn_degrees)
        return {"source": to_slots(source, joint_set), "target": to_slots(target, joint_set),
                "turn": turn, "body": self._engine(data, joint_set, device).body, "data": data}

    def loss(self, model: nn.Module, batch: dict):
        net = getattr(model, "module", model)
        data = batch["data"]
        critic_turn = int(net.updates) % (data.critic_steps + 1) < data.critic_steps
        net.updates += 1
        with torch.no_grad():
            source_features = net.source.extract(batch["source"])[0]
        nan = math.nan
        if critic_turn:
            with torch.no_grad():
                target_features = net.target.extract(batch["target"])[0]
            distance = net.critic(source_features).mean() - net.critic(target_features).mean()
            penalty = gradient_penalty(net.critic, source_features, target_features)
            total = -distance + data.gp_weight * penalty
            return total, {"critic_turn": 1.0, "wasserstein": float(distance.detach()),
                           "gradient_penalty": float(penalty.detach()), "reprojection": nan, "consistency": nan,
                           "cycle_3d": nan, "cycle_2d": nan}
        target_features, centre, size = net.target.extract(batch["target"])
        fixed = {name: p.detach() for name, p in net.critic.named_parameters()}
        adversarial = -functional_call(net.critic, fixed, (target_features,)).mean()
        with torch.no_grad():
            anchor = net.source.extract(batch["target"])[0]
            distance = net.critic(source_features).mean() - net.critic(target_features).mean()
        consistency = (target_features - anchor).square().mean()
        prediction = net.target.decode(target_features, centre, size)
        reprojection = self._reprojection(batch["body"], prediction, batch["target"])
        total = (data.adv_weight * adversarial + data.consistency_weight * consistency
                 + data.reprojection_weight * reprojection)
        logs = {"critic_turn": 0.0, "wasserstein": float(distance), "gradient_penalty": nan,
                "reprojection": float(reprojection.detach()), "consistency": float(consistency.detach()),
                "cycle_3d": nan, "cycle_2d": nan}
        if data.cycle_weight > 0 or data.cycle_2d_weight > 0:
            cycle_3d, cycle_2d = self._rotation_cycle(batch["body"], net.target, prediction, batch["target"],
                                                      batch["turn"])
            total = total + data.cycle_weight * cycle_3d + data.cycle_2d_weight * cycle_2d
            logs.update(cycle_3d=float(cycle_3d.detach()), cycle_2d=float(cycle_2d.detach()))
        return total, logs

    @staticmethod
    def _rotation_cycle(body, regressor, prediction: dict, slots: torch.Tensor, turn: torch.Tensor):
        """(3D term, 2D term) of the rotation cycle (module docstring) for the ``prediction`` of
        the (B, S, 3) ``slots``, turned by ``turn`` (B,) radians about the camera's y axis."""
        seen = (slots[..., 2] > 0).float()  # (B, S): the slots of the detections' joint set
        first = slot_joints(body, prediction)
        cos, sin, zero, one = turn.cos(), turn.sin(), torch.zeros_like(turn), torch.ones_like(turn)
        about_y = torch.stack([cos, zero, sin, zero, one, zero, -sin, zero, cos], -1).view(-1, 3, 3)
        turned = first @ about_y.transpose(1, 2)
        # The turned body's view, as slot keypoints (box units serve as pixels: the regressor
        # normalises its input to the keypoints' box anyway).
        view = weak_perspective(turned, prediction["camera"])
        second = slot_joints(body, regressor(torch.cat([view * seen[..., None], seen[..., None]], -1)))
        count = seen.sum().clamp_min(1.0)
        cycle_3d = ((second - turned).abs().sum(-1) * seen).sum() / (3 * count)
        back = weak_perspective(second @ about_y, prediction["camera"])
        observed = (slots[..., :2] - prediction["centre"][:, None]) / (prediction["size"][:, None, None] / 2)
        weight = slots[..., 2]
        cycle_2d = ((back - observed).abs().sum(-1) * weight).sum() / weight.sum().clamp_min(1e-6)
        return cycle_3d, cycle_2d

    @staticmethod
    def _reprojection(body, prediction: dict, slots: torch.Tensor) -> torch.Tensor:
        """Confidence-weighted mean L1 (box units) between the slot keypoints and the predicted
        body's slot joints under the predicted weak-perspective camera."""
        projected = project_slots(body, prediction)
        observed = (slots[..., :2] - prediction["centre"][:, None]) / (prediction["size"][:, None, None] / 2)
        weight = slots[..., 2]
        return ((projected - observed).abs().sum(-1) * weight).sum() / weight.sum().clamp_min(1e-6)

    @torch.no_grad()
    def validate(self, model: nn.Module, data: AdaptDataConfig, device) -> dict[str, float]:
        net = getattr(model, "module", model)
        body = self._engine(data, self._target(data)[1], device).body

        def estimator_for(joint_set):
            return regressor_estimator(net.target, body, joint_set, ("h36m17", "h36m17_anatomical"))

        motion = evaluate_motion("CMU subjects 13-14", held_out_cmu(), estimator_for, body, data.val_size)
        result = {"val/motion_mpjpe_mm": motion["mpjpe_mm"], "val/motion_pa_mpjpe_mm": motion["pa_mpjpe_mm"],
                  "val/loss": motion["pa_mpjpe_mm"] / 1000}
        if data.val_h36m:
            rows = evaluate_h36m(data.val_h36m, estimator_for, body, stride=data.val_stride, extra_rows=False)
            sh = rows[0]
            result.update({"val/h36m_s1_mpjpe_mm": sh["mpjpe_mm"], "val/h36m_s1_pa_mpjpe_mm": sh["pa_mpjpe_mm"]})
        return result


def export_adapted(state: dict) -> dict[str, torch.Tensor]:
    """The adapted regressor's weights from an ``adapt`` run's model state."""
    return {k.removeprefix("target."): v for k, v in state.items() if k.startswith("target.")}


def export_adapted_run(run_dir: str | Path, out: str | Path, task: AdaptTask | None = None) -> Path:
    """An ``adapt`` run's adapted regressor as a regressor model file; the header says which
    detections it learnt from (their licence applies to the weights)."""
    config, state, step = read_run(run_dir, "adapt", task or AdaptTask())
    adapted = export_adapted(state)
    if not adapted:
        raise MeshposeError("no adapted regressor weights (target.*) in this run", run_dir)
    header, _ = read_model_file(config["model"]["init"], SHIPPED_MODELS, FORMAT, "regressor")
    training_data = (f"{header.get('training_data', TRAINING_DATA)}; then adapted, without labels, to the 2D detections of "
                     f"{config['data']['target']} (their licence applies to these weights)")
    return save_model_file(run_dir, out, config, adapted, step,
                           {"format": FORMAT, "model": header["model"], "training_data": training_data})


__all__ = ["AdaptDataConfig", "AdaptModelConfig", "AdaptTask", "AdaptationModel", "export_adapted",
           "export_adapted_run"]
