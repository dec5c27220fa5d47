"""The synthetic sample engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from meshpose.data.detector_noise import NoiseConfig
from meshpose.data.samples import SampleConfig, SampleEngine


@pytest.fixture(scope="module")
def engine(anny_body):
    return SampleEngine(config=SampleConfig(joint_set="h36m17"), body=anny_body)


def test_clean_keypoints_are_the_projection_of_the_3d_joints(engine):
    batch = engine.sample(16, torch.Generator().manual_seed(0))
    joints, focal, principal = batch["joints3d"], batch["focal"], batch["principal"]
    by_hand = focal[:, None] * joints[..., :2] / joints[..., 2:] + principal[:, None]
    assert torch.allclose(batch["keypoints2d_clean"], by_hand, atol=1e-3)
    # The pelvis (h36m17 joint 0) sits at the camera's root position, in front of the camera.
    assert torch.allclose(joints[:, 0], batch["root"], atol=1e-5)
    assert (joints[..., 2] > 0).all()
    # Vertices are in the same camera frame: the body's vertices surround its joints.
    vertices = batch["vertices"]
    assert vertices.shape == (16, engine.body.num_vertices, 3)
    centre_gap = (vertices.mean(1) - joints.mean(1)).norm(dim=-1)
    assert (centre_gap < 0.3).all()


def test_visibility_and_confidence(engine):
    batch = engine.sample(64, torch.Generator().manual_seed(1))
    x, y = batch["keypoints2d_clean"].unbind(-1)
    width, height = batch["image_size"].unbind(-1)
    inside = (x >= 0) & (y >= 0) & (x < width[:, None]) & (y < height[:, None])
    assert torch.equal(batch["visible"], inside)
    confidence = batch["keypoints2d"][..., 2]
    assert ((confidence >= 0) & (confidence <= 1)).all()
    assert (confidence[~batch["visible"]] == 0).all()


def test_no_noise_gives_clean_keypoints(anny_body):
    engine = SampleEngine(config=SampleConfig(noise=NoiseConfig.none(), vertices=False), body=anny_body)
    batch = engine.sample(8, torch.Generator().manual_seed(2))
    assert "vertices" not in batch
    visible = batch["visible"]
    assert torch.allclose(batch["keypoints2d"][..., :2][visible], batch["keypoints2d_clean"][visible])


def test_same_seed_same_batch(engine):
    a = engine.sample(8, torch.Generator().manual_seed(3))
    b = engine.sample(8, torch.Generator().manual_seed(3))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_shapes_cover_children_to_elderly(engine):
    batch = engine.sample(512, torch.Generator().manual_seed(4))
    age = batch["shape"][:, 1]
    assert age.min() < 0.4 and age.max() > 0.95 and age.min() >= 1 / 3 - 1e-6


def test_samples_command_draws_a_grid(tmp_path, meshpose_cli):
    out = tmp_path / "samples.png"
    result = meshpose_cli("data", "samples", "--n", "4", "--out", out)
    assert result.returncode == 0, result.stderr
    from PIL import Image

    picture = np.asarray(Image.open(out))
    assert picture.shape[0] >= 256 and picture.shape[1] >= 4 * 256
    assert (np.abs(picture.astype(int) - [220, 40, 40]).sum(-1) < 30).any()  # keypoints drawn


def test_mixed_chains_come_from_the_bank_part_by_part():
    """Every body part of a mixed pose is the same part of some bank pose (rotations relative to
    the parent kept), the parts of one pose come from different bank poses, and probability 0
    gives the bank poses themselves."""
    from meshpose.data.samples import CHAINS, mix_chains

    generator = torch.Generator().manual_seed(3)
    bank = torch.linalg.qr(torch.randn(50, 22, 3, 3, generator=generator)).Q  # distinct rotations
    index = torch.randint(50, (40,), generator=generator)
    assert torch.equal(mix_chains(bank, index, 0.0, generator), bank[index])
    mixed = mix_chains(bank, index, 1.0, generator)
    assert torch.equal(mixed[:, 0], bank[index][:, 0])  # the pelvis (global orientation) is kept
    sources = []
    for chain in CHAINS.values():
        part = mixed[:, list(chain)]  # (40, n, 3, 3)
        match = (part[:, None] - bank[None, :, list(chain)]).abs().flatten(2).amax(-1) < 1e-7  # (40, 50)
        assert match.any(dim=1).all()  # a whole part of one bank pose
        sources.append(match.float().argmax(dim=1))
    sources = torch.stack(sources, 1)  # (40, chains)
    assert (sources != sources[:, :1]).any(dim=1).float().mean() > 0.9  # parts from different poses


def test_flexed_legs_sit_within_their_ranges():
    """Hips and knees of a flexed pose are rotations about x by angles inside the documented
    ranges (read back with a hand-written angle formula), the rest of the pose is untouched, and
    probability 0 changes nothing."""
    from meshpose.body import POSE_JOINTS
    from meshpose.data.samples import FLEXED_HIP, FLEXED_KNEE, flex_legs

    generator = torch.Generator().manual_seed(4)
    pose = torch.linalg.qr(torch.randn(200, 22, 3, 3, generator=generator)).Q
    pose = pose * torch.linalg.det(pose)[..., None, None]  # proper rotations
    assert torch.equal(flex_legs(pose, 0.0, generator), pose)
    flexed = flex_legs(pose, 1.0, generator, spread=0.0)
    legs = [POSE_JOINTS.index(n) for n in ("left_hip", "right_hip", "left_knee", "right_knee")]
    others = [i for i in range(22) if i not in legs]
    assert torch.equal(flexed[:, others], pose[:, others])
    for joint, (low, high), sign in ((legs[0], FLEXED_HIP, -1), (legs[2], FLEXED_KNEE, 1)):
        rotation = flexed[:, joint]
        assert torch.allclose(rotation[:, :, 0], torch.tensor([1.0, 0.0, 0.0]).expand(200, 3), atol=1e-6)
        angle = torch.rad2deg(torch.atan2(rotation[:, 2, 1], rotation[:, 1, 1])) * sign  # about +x
        assert (angle >= low - 1e-3).all() and (angle <= high + 1e-3).all()
        assert angle.max() - angle.min() > 0.5 * (high - low)  # spread over the range
    # With spread 0 both legs get the same flexion.
    assert torch.allclose(flexed[:, legs[0]], flexed[:, legs[1]], atol=1e-6)


def test_h36m_inputs_draw_human36m_joints_from_the_mesh(anny_body):
    """With ``h36m_inputs`` the mpii16 keypoints are the projection of Human3.6M's joints,
    regressed from the sample's own vertices with the shipped regressor matrix (computed here by
    hand), not of Anny's joint centres."""
    from meshpose.body.vertex_regressors import shipped_regressor
    from meshpose.joints import get_joint_set

    config = SampleConfig(joint_set="mpii16", noise=NoiseConfig.none(), h36m_inputs=True)
    batch = SampleEngine(config=config, body=anny_body).sample(6, torch.Generator().manual_seed(5))
    matrix = shipped_regressor("h36m17")  # (17, V), read from the file
    by_hand = torch.einsum("jv,bvc->bjc", matrix, batch["vertices"])
    h36m_names = get_joint_set("h36m17").names
    order = [h36m_names.index(name) for name in get_joint_set("mpii16").names]
    assert torch.allclose(batch["joints3d"], by_hand[:, order], atol=1e-4)
    # Anny's centres differ from Human3.6M's by centimetres (the thorax most of all)
    anatomical = SampleEngine(config=SampleConfig(joint_set="mpii16", noise=NoiseConfig.none()),
                              body=anny_body).sample(6, torch.Generator().manual_seed(5))
    gap = (anatomical["joints3d"] - batch["joints3d"]).norm(dim=-1)
    assert gap.max() > 0.03
    # sets with joints Human3.6M lacks stay at Anny's definitions
    coco = SampleEngine(config=SampleConfig(joint_set="coco17", h36m_inputs=True), body=anny_body)
    plain = SampleEngine(config=SampleConfig(joint_set="coco17"), body=anny_body)
    assert torch.equal(coco.sample(4, torch.Generator().manual_seed(6))["joints3d"],
                       plain.sample(4, torch.Generator().manual_seed(6))["joints3d"])
