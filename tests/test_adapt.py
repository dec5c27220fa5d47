"""meshpose adapt: the critic's gradient penalty against hand-derived values, the alternating
schedule, and a short adaptation run on synthetic data with a simulated detector shift."""
from __future__ import annotations

import numpy as np
import pytest
import roma
import torch
from torch import nn

from meshpose.adapt.critic import WassersteinCritic, gradient_penalty


class QuadraticCritic(nn.Module):
    """D(x) = 0.5 * a * ||x||^2: its gradient at x is a * x."""

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, x):
        return 0.5 * self.a * x.square().sum(-1)


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared():
    critic = nn.Linear(5, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0, 0.0]]))  # norm 5
    source, target = torch.randn(7, 5), torch.randn(7, 5)
    penalty = gradient_penalty(lambda x: critic(x).squeeze(-1), source, target)
    torch.testing.assert_close(penalty, torch.tensor(16.0))
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the penalty trains the critic.
    penalty.backward()
    torch.testing.assert_close(critic.weight.grad, 2 * 4 * critic.weight.detach() / 5)


def test_gradient_penalty_at_the_random_interpolates():
    a = 0.7
    critic = QuadraticCritic(a)
    source, target = torch.randn(6, 3), torch.randn(6, 3) + 2
    penalty = gradient_penalty(critic, source, target, torch.Generator().manual_seed(4))
    u = torch.rand(6, 1, generator=torch.Generator().manual_seed(4))  # the same draws
    mixed = u * source + (1 - u) * target
    expected = ((a * mixed).norm(dim=-1) - 1).square().mean()
    torch.testing.assert_close(penalty, expected)


def test_critic_has_no_batch_coupling():
    critic = WassersteinCritic(8, hidden=16)
    x = torch.randn(5, 8)
    torch.testing.assert_close(critic(x)[2:3], critic(x[2:3]))  # per-sample scores (needed by the penalty)


def _shifted_detections(path, n: int, shift: float, seed: int):
    """Synthetic mpii16 detections whose hips sit ``shift`` x the body height higher and whose
    shoulders are pulled in: another detector's joint definitions (a domain shift)."""
    from meshpose.data.samples import SampleConfig, SampleEngine
    from meshpose.joints import get_joint_set

    engine = SampleEngine(config=SampleConfig(joint_set="mpii16", vertices=False))
    sample = engine.sample(n, torch.Generator().manual_seed(seed))
    keypoints = sample["keypoints2d"].clone()
    names = get_joint_set("mpii16").names
    height = (keypoints[..., 1].amax(1) - keypoints[..., 1].amin(1))[:, None]
    hips = [names.index(j) for j in names if "hip" in j or j == "pelvis"]
    keypoints[:, hips, 1] -= shift * height
    shoulders = [names.index(j) for j in names if "shoulder" in j]
    centre = keypoints[:, shoulders, 0].mean(1, keepdim=True)
    keypoints[:, shoulders, 0] = centre + 0.6 * (keypoints[:, shoulders, 0] - centre)
    np.savez(path, keypoints=keypoints.numpy(), joint_set="mpii16")
    return keypoints


def _feature_gap(extractor, source_slots, target_slots) -> float:
    """Distance between the mean feature of the target and of the source (a linear-kernel MMD)."""
    with torch.no_grad():
        fs, ft = extractor[0].extract(source_slots)[0], extractor[1].extract(target_slots)[0]
    return float((fs.mean(0) - ft.mean(0)).norm())


@pytest.mark.slow  # a 240-step adaptation run: 15-35 s on 2 CPU cores
def test_short_adaptation_run_reduces_a_simulated_domain_shift(tmp_path):
    from pathlib import Path

    from meshpose.models.regressor import to_slots
    from meshpose.tasks import load_config
    from meshpose.tasks import train
    from meshpose.tasks import TASKS

    torch.set_num_threads(2)
    target_file = tmp_path / "shifted.npz"
    _shifted_detections(target_file, 512, shift=0.08, seed=1)
    held_out = _shifted_detections(tmp_path / "held_out.npz", 256, shift=0.08, seed=2)
    config_path = Path(__file__).resolve().parents[1] / "configs" / "adapt_h36m.yaml"
    config = load_config(config_path, [
        f"data.target={target_file}", "data.target_stride=1", "data.source_pool=2048", "data.val_size=32",
        "train.epochs=1", "train.steps_per_epoch=240", "train.batch_size=64", "optim.lr=0.0005",
        # The adversarial alignment under test (the shipped config keeps the critic as a gauge only).
        "data.adv_weight=0.1", "data.critic_steps=5", "data.consistency_weight=3.0", "data.reprojection_weight=3.0",
        "checkpoint.every_steps=1000"])
    task = TASKS["adapt"]
    pool = task._source(config.data, "mpii16", "cpu")
    source_slots, target_slots = to_slots(pool[:256], "mpii16"), to_slots(held_out, "mpii16")
    model = task.build_model(config.model, config.data)
    before = _feature_gap((model.source, model.source), source_slots, target_slots)

    run = train(config, run_dir=tmp_path / "run")
    state = torch.load(run / "model.pt")
    model.load_state_dict(state)
    assert int(model.updates) == 240  # 240 steps: 200 critic updates and 40 extractor updates
    after = _feature_gap((model.source, model.target), source_slots, target_slots)
    assert after < 0.8 * before
    # Only the extractor adapted: the head and the source network are the shipped ones.
    from meshpose.models.inference import load_regressor

    shipped = load_regressor("default").state_dict()
    for key, value in shipped.items():
        torch.testing.assert_close(state[f"source.{key}"], value, rtol=0, atol=0)
        if key.startswith("head."):
            torch.testing.assert_close(state[f"target.{key}"], value, rtol=0, atol=0)
    assert not torch.equal(state["target.encoder.weight"], shipped["encoder.weight"])

    # The run's picture: four panels of the right size, with the adapted features drawn in green.
    from PIL import Image

    from meshpose.adapt.plots import plot_run

    image = np.asarray(Image.open(plot_run(run, tmp_path / "adaptation.png")).convert("RGB")).astype(int)
    assert image.shape == (450, 1980, 3)
    green = (np.abs(image - [44, 160, 44]).sum(-1) < 60) | (np.abs(image - [171, 217, 171]).sum(-1) < 40)
    assert green[:, 1485:].sum() > 50 and green[:, :1485].sum() < green[:, 1485:].sum()


@pytest.mark.slow  # a 120/200-step adaptation run: 15-35 s on 2 CPU cores
def test_the_configured_run_fits_the_target_detections_and_the_critic_only_measures(tmp_path):
    """The shipped config (adversarial weight 0, the critic trained as a gauge): the adapted
    regressor reprojects better onto held-out detections of the shifted domain, the critic
    trains, and the extractor's loss is the consistency and reprojection terms alone."""
    from pathlib import Path

    from meshpose.models.regressor import to_slots
    from meshpose.tasks import load_config
    from meshpose.tasks import train
    from meshpose.tasks import TASKS

    torch.set_num_threads(2)
    target_file = tmp_path / "shifted.npz"
    _shifted_detections(target_file, 512, shift=0.08, seed=1)
    held_out = to_slots(_shifted_detections(tmp_path / "held_out.npz", 256, shift=0.08, seed=2), "mpii16")
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "adapt_h36m.yaml", [
        f"data.target={target_file}", "data.target_stride=1", "data.source_pool=2048", "data.val_size=32",
        "train.epochs=1", "train.steps_per_epoch=200", "train.batch_size=64", "optim.lr=0.0001",
        "checkpoint.every_steps=1000"])
    assert config.data.adv_weight == 0.0 and config.data.critic_steps == 1
    task = TASKS["adapt"]
    model = task.build_model(config.model, config.data)
    critic_before = {k: v.clone() for k, v in model.critic.state_dict().items()}

    def reprojection(regressor):
        with torch.no_grad():
            features, centre, size = regressor.extract(held_out)
            return float(task._reprojection(task._engine(config.data, "mpii16", "cpu").body,
                                            regressor.decode(features, centre, size), held_out))

    before = reprojection(model.source)
    run = train(config, run_dir=tmp_path / "run")
    model.load_state_dict(torch.load(run / "model.pt"))
    # Small (most of this shift is a change of joint definitions no body can follow) but real:
    # 0.1013 against 0.1061 with the stage-2 default as the source (at lr 3e-4 it was 0.1055, too
    # fast a step for a source that already fits better; at 1e-3 the run overshoots to 0.128).
    assert reprojection(model.target) < 0.98 * before
    assert any(not torch.equal(v, critic_before[k]) for k, v in model.critic.state_dict().items())

    # An extractor step: the loss is the sum of its logged parts, and the critic gets no gradient.
    batch = task.make_batch(config.data, torch.Generator().manual_seed(0), 32, "cpu")
    model.updates.fill_(1)  # odd: an extractor turn (one critic update per extractor update)
    model.zero_grad()
    total, parts = task.loss(model, batch)
    assert parts["critic_turn"] == 0.0
    expected = config.data.consistency_weight * parts["consistency"] + config.data.reprojection_weight * parts["reprojection"]
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.critic.parameters())


class ConstantRegressor(nn.Module):
    """Gives the same body whatever it reads: the rotation cycle's terms become hand-computable."""

    def __init__(self, prediction: dict):
        super().__init__()
        self.prediction = prediction

    def forward(self, slots):
        return {k: v.expand(len(slots), *v.shape[1:]) for k, v in self.prediction.items()}


@pytest.mark.parametrize("turn", [0.0, np.pi, np.pi / 2])
def test_rotation_cycle_terms_by_hand(anny_body, turn):
    """With a regressor that ignores its input, the second lift is the first body: the 3D term is
    the mean |X - R X| over the seen joints and the 2D term compares the detections with the body
    turned backwards (R^-1 X), projected; both written out here with sines and cosines."""
    from meshpose.adapt.task import AdaptTask
    from meshpose.body import POSE_JOINTS
    from meshpose.models.key2mesh_task import slot_joints
    from meshpose.models.regressor import slot_index, to_slots

    generator = torch.Generator().manual_seed(2)
    rotvec = 0.3 * torch.randn(1, len(POSE_JOINTS), 3, generator=generator)
    prediction = {"pose": roma.rotvec_to_rotmat(rotvec), "shape": torch.full((1, 6), 0.5),
                  "camera": torch.tensor([[1.1, 0.05, -0.1]]), "centre": torch.tensor([[500.0, 400.0]]),
                  "size": torch.tensor([300.0])}
    keypoints = torch.cat([400 + 200 * torch.rand(1, 16, 2, generator=generator),
                           torch.rand(1, 16, 1, generator=generator).clamp_min(0.1)], -1)
    slots = to_slots(keypoints, "mpii16")
    cycle_3d, cycle_2d = AdaptTask._rotation_cycle(anny_body, ConstantRegressor(prediction), prediction, slots,
                                                   torch.tensor([turn]))
    joints = slot_joints(anny_body, prediction)[0, slot_index("mpii16")].double()  # (16, 3)
    x, y, z = joints.unbind(-1)
    c, s = np.cos(turn), np.sin(turn)
    turned = torch.stack([c * x + s * z, y, -s * x + c * z], -1)  # about +y
    expected_3d = (joints - turned).abs().sum(-1).mean() / 3
    back = torch.stack([c * x - s * z, y, s * x + c * z], -1)  # about -y
    scale, tx, ty = 1.1, 0.05, -0.1
    projected = torch.stack([scale * back[:, 0] + tx, scale * back[:, 1] + ty], -1)
    observed = (keypoints[0, :, :2].double() - torch.tensor([500.0, 400.0])) / 150.0
    confidence = keypoints[0, :, 2].double()
    expected_2d = ((projected - observed).abs().sum(-1) * confidence).sum() / confidence.sum()
    torch.testing.assert_close(cycle_3d.double(), expected_3d, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cycle_2d.double(), expected_2d, atol=1e-5, rtol=1e-4)
    if turn == 0.0:
        assert cycle_3d < 1e-7
