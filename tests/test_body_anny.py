"""meshpose's Anny forward: against anny itself, and against properties any correct forward has."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import roma
import torch
from scipy.spatial import cKDTree

from meshpose.body import POSE_JOINTS, REDUCED_POSE, SHAPE_NAMES, body_joints
from meshpose.body.anny_model import default_body_file, newton_polar, svd_polar
from meshpose.errors import MeshposeError

MM = 1e-3


def random_inputs(batch: int, seed: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    pose = roma.rotvec_to_rotmat(0.5 * torch.randn(batch, len(POSE_JOINTS), 3, generator=generator))
    shape = torch.rand(batch, len(SHAPE_NAMES), generator=generator)
    shape[:, 1] = shape[:, 1] * 4 / 3 - 1 / 3  # age spans newborn (-1/3) to old (1)
    translation = torch.randn(batch, 3, generator=generator)
    return pose.to(dtype), shape.to(dtype), translation.to(dtype)


def anny_forward(model, pose, shape, translation):
    """anny's output for the reduced pose: each reduced joint's rotation on its bones."""
    batch = pose.shape[0]
    deltas = torch.eye(4, dtype=torch.float64).repeat(batch, len(model.bone_labels), 1, 1)
    index = {name: i for i, name in enumerate(model.bone_labels)}
    for p, bones in enumerate(REDUCED_POSE.values()):
        for bone in bones:
            deltas[:, index[bone], :3, :3] = pose[:, p]
    deltas[:, 0, :3, 3] = translation
    return model(pose_parameters=deltas, phenotype_kwargs=shape)


@pytest.mark.parametrize("batch", [5, 24])  # small-batch and large-batch code paths
def test_matches_anny(anny_body, anny_reference, batch):
    pose, shape, translation = random_inputs(batch, seed=batch)
    expected = anny_forward(anny_reference, pose, shape, translation)
    output = anny_body(pose.float(), shape.float(), translation.float())

    vertex_error = (output.vertices.double() - expected["vertices"]).norm(dim=-1)
    assert vertex_error.max() < 0.1 * MM
    heads = expected["bone_poses"][:, :, :3, 3]
    n_bones = heads.shape[1]
    assert (output.joints[:, :n_bones].double() - heads).norm(dim=-1).max() < 0.1 * MM

    import anny

    keypoints = anny.KeypointsRegressor.coco(anny_reference)(expected)
    ours = torch.stack([output.joint(name) for name in keypoints_labels(anny)], dim=1)
    assert (ours.double() - keypoints).norm(dim=-1).max() < 0.1 * MM


def keypoints_labels(anny):
    import torch as _torch

    path = anny.paths.get_anny_root_dir() / "data" / "keypoints" / "coco.pth"
    return list(_torch.load(path, weights_only=True).keys())


def test_rest_vertices_match_anny(anny_body, anny_reference):
    _, shape, _ = random_inputs(4, seed=3)
    empty = torch.zeros(4, 0, dtype=torch.float64)
    coefficients = anny_reference._get_phenotype_blendshape_coefficients(shape, empty, empty)
    expected = anny_reference.get_rest_vertices(coefficients)
    error = (anny_body.rest_vertices(shape.float()).double() - expected).norm(dim=-1)
    assert error.max() < 0.1 * MM


def test_large_and_small_batch_paths_agree(anny_body64):
    """One sparse skinning product (small batches) against segmented dense products (large)."""
    pose, shape, translation = random_inputs(6, seed=11)
    body = anny_body64
    saved = body.segment_skinning_min_batch
    try:
        body.segment_skinning_min_batch = 10**9
        small = body(pose, shape, translation)
        body.segment_skinning_min_batch = 1
        large = body(pose, shape, translation)
    finally:
        body.segment_skinning_min_batch = saved
    assert torch.allclose(small.vertices, large.vertices, atol=1e-9)
    assert torch.allclose(small.joints, large.joints, atol=1e-9)


def test_gradients_agree_between_batch_paths(anny_body64):
    """Both skinning paths are differentiable and give the same gradients."""
    pose, shape, translation = random_inputs(16, seed=19)
    grads = []
    saved = anny_body64.segment_skinning_min_batch
    try:
        for threshold in (10**9, 1):
            anny_body64.segment_skinning_min_batch = threshold
            p = pose.clone().requires_grad_(True)
            s = shape.clone().requires_grad_(True)
            anny_body64(p, s, translation).vertices[:, ::50].square().sum().backward()
            grads.append((p.grad, s.grad))
    finally:
        anny_body64.segment_skinning_min_batch = saved
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-8)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-8)


def test_newton_polar_equals_svd_polar():
    generator = torch.Generator().manual_seed(0)
    rotations = roma.random_rotmat(500, generator=generator, dtype=torch.float64)
    # Singular values spread up to 1:80, as in Anny's rest orientation matrices.
    singular = torch.exp(torch.rand(500, 3, generator=generator, dtype=torch.float64) * math.log(80))
    other = roma.random_rotmat(500, generator=generator, dtype=torch.float64)
    matrices = rotations @ torch.diag_embed(singular) @ other
    expected = rotations @ other  # the polar factor, by construction
    assert torch.allclose(newton_polar(matrices), expected, atol=1e-9)
    assert torch.allclose(svd_polar(matrices), expected, atol=1e-9)
    # A reflection-containing matrix: the nearest *rotation* flips the weakest axis.
    flipped = matrices @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    assert torch.allclose(torch.det(svd_polar(flipped)), torch.ones(500, dtype=torch.float64))


def test_corner_weights_by_hand(anny_body64):
    # gender=1 (anchor 1 of 2), age=2/3 (anchor 3 of 5), muscle=0.5 (1 of 3), weight=0.5 (1 of 3),
    # height=0 (0 of 2), proportions=1 (1 of 2); the last phenotype varies fastest.
    shape = torch.tensor([[1.0, 2 / 3, 0.5, 0.5, 0.0, 1.0]], dtype=torch.float64)
    weights = anny_body64.corner_weights(shape)[0]
    index = ((((1 * 5 + 3) * 3 + 1) * 3 + 1) * 2 + 0) * 2 + 1
    assert weights[index] == pytest.approx(1.0)
    assert weights.sum() == pytest.approx(1.0)
    assert int((weights.abs() > 1e-12).sum()) == 1
    # Half-way between the baby (0) and child (1/3) anchors: two corners, half each.
    shape[0, 1] = 1 / 6
    weights = anny_body64.corner_weights(shape)[0]
    baby = ((((1 * 5 + 1) * 3 + 1) * 3 + 1) * 2 + 0) * 2 + 1
    child = ((((1 * 5 + 2) * 3 + 1) * 3 + 1) * 2 + 0) * 2 + 1
    assert weights[baby] == pytest.approx(0.5) and weights[child] == pytest.approx(0.5)
    # Out-of-range values are clamped, as in anny.
    assert torch.equal(
        anny_body64.corner_weights(torch.tensor([[3.0, 5.0, 0.5, 0.5, -2.0, 1.0]], dtype=torch.float64)),
        anny_body64.corner_weights(torch.tensor([[1.0, 1.0, 0.5, 0.5, 0.0, 1.0]], dtype=torch.float64)),
    )


def test_reference_pose_puts_pelvis_at_translation(anny_body64):
    pose, shape, _ = random_inputs(3, seed=5)
    translation = torch.tensor([[0.1, -2.0, 3.0]], dtype=torch.float64).expand(3, 3)
    moved = anny_body64(pose, shape, translation)
    still = anny_body64(pose, shape)
    assert torch.allclose(moved.joint("bone:root"), translation, atol=1e-12)
    assert torch.allclose(moved.vertices - still.vertices, translation[:, None].expand_as(still.vertices), atol=1e-9)
    assert torch.allclose(moved.joints - still.joints, translation[:, None].expand_as(still.joints), atol=1e-9)


def test_pelvis_rotation_turns_the_whole_body_about_the_pelvis(anny_body64):
    _, shape, _ = random_inputs(2, seed=7)
    rotation = roma.rotvec_to_rotmat(torch.tensor([[0.3, -1.2, 0.7], [2.0, 0.1, -0.4]], dtype=torch.float64))
    pose = torch.eye(3, dtype=torch.float64).repeat(2, len(POSE_JOINTS), 1, 1)
    pose[:, 0] = rotation
    turned = anny_body64(pose, shape)
    upright = anny_body64(None, shape)
    expected = upright.vertices @ rotation.transpose(-1, -2)
    assert torch.allclose(turned.vertices, expected, atol=1e-9)


def test_elbow_moves_only_the_forearm_and_hand(anny_body64):
    from safetensors import safe_open

    with safe_open(str(default_body_file()), framework="pt") as f:
        names = json.loads(f.metadata()["bone_names"])
        parents = f.get_tensor("bone_parents").tolist()
        indices, weights = f.get_tensor("skin_indices"), f.get_tensor("skin_weights")
    start = names.index("lowerarm01.L")
    subtree = {start}
    for bone, parent in enumerate(parents):  # parents come before children
        if parent in subtree:
            subtree.add(bone)
    moved_weight = ((weights > 0) & torch.isin(indices, torch.tensor(sorted(subtree)))).any(1)

    pose = torch.eye(3, dtype=torch.float64).repeat(1, len(POSE_JOINTS), 1, 1)
    pose[0, POSE_JOINTS.index("left_elbow")] = roma.rotvec_to_rotmat(
        torch.tensor([0.0, 0.0, 1.2], dtype=torch.float64)
    )
    bent, straight = anny_body64(pose), anny_body64()
    displacement = (bent.vertices - straight.vertices)[0].norm(dim=-1)
    assert displacement[~moved_weight].max() < 1e-9
    assert displacement[moved_weight].max() > 0.05
    # The wrist turns about the elbow: its distance to the elbow is kept.
    span = [
        (o.joint("bone:wrist.L") - o.joint("bone:lowerarm01.L")).norm() for o in (bent, straight)
    ]
    assert span[0] == pytest.approx(float(span[1]), abs=1e-9)
    assert not torch.allclose(bent.joint("bone:wrist.L"), straight.joint("bone:wrist.L"))


def test_reference_pose_is_left_right_symmetric(anny_body):
    output = anny_body()
    vertices = output.vertices[0].numpy()
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    distance, _ = cKDTree(vertices).query(mirrored)
    assert np.percentile(distance, 99) < 1 * MM
    for left, right in [("left_wrist", "right_wrist"), ("left_ankle", "right_ankle")]:
        a = body_joints(output, "coco17")[0, 9 if left == "left_wrist" else 15].numpy()
        b = body_joints(output, "coco17")[0, 10 if right == "right_wrist" else 16].numpy()
        assert np.allclose(a * [-1, 1, 1], b, atol=1 * MM)


def test_keypoints_without_skinning_equal_regressed_vertices(anny_body64):
    """Keypoints come from precomputed linear maps; check them against the regressor applied
    to the skinned vertices, read straight from the body file."""
    from safetensors import safe_open

    pose, shape, translation = random_inputs(3, seed=13)
    full = anny_body64(pose, shape, translation)
    fast = anny_body64(pose, shape, translation, vertices=False)
    assert fast.vertices is None
    assert torch.allclose(full.joints, fast.joints, atol=1e-10)
    with safe_open(str(default_body_file()), framework="pt") as f:
        rows, cols = f.get_tensor("keypoint_rows").long(), f.get_tensor("keypoint_vertices").long()
        values = f.get_tensor("keypoint_weights").double()
        names = json.loads(f.metadata()["keypoint_names"])
    regressor = torch.zeros(len(names), full.vertices.shape[1], dtype=torch.float64)
    regressor[rows, cols] = values
    expected = regressor @ full.vertices
    ours = torch.stack([full.joint(name) for name in names], dim=1)
    assert torch.allclose(ours, expected, atol=1e-9)


def test_gradients_match_finite_differences(anny_body64):
    knee = POSE_JOINTS.index("left_knee")

    def energy(rotvec, shape):
        pose = torch.eye(3, dtype=torch.float64).repeat(1, len(POSE_JOINTS), 1, 1)
        pose = torch.cat([pose[:, :knee], roma.rotvec_to_rotmat(rotvec)[None, None], pose[:, knee + 1 :]], 1)
        output = anny_body64(pose, shape[None])
        return output.vertices[0, ::997].sum() + output.joints[0, -5:].square().sum()

    rotvec = torch.tensor([0.4, 0.1, -0.2], dtype=torch.float64, requires_grad=True)
    shape = torch.tensor([0.3, 0.55, 0.4, 0.7, 0.6, 0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(energy, (rotvec, shape), eps=1e-6, atol=1e-5)


def test_bad_inputs_raise_one_clear_error(anny_body):
    with pytest.raises(MeshposeError, match="pose must be"):
        anny_body(torch.zeros(2, 24, 3))
    with pytest.raises(MeshposeError, match="shape must be"):
        anny_body(None, torch.zeros(2, 10))
    with pytest.raises(MeshposeError, match="batch size"):
        anny_body(torch.zeros(2, len(POSE_JOINTS), 3), torch.full((3, 6), 0.5))


def test_missing_or_wrong_body_file(tmp_path):
    from meshpose.body import AnnyBody

    with pytest.raises(MeshposeError, match="not found"):
        AnnyBody(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(MeshposeError, match="junk.safetensors"):
        AnnyBody(junk)


def test_shipped_file_is_small_and_carries_the_licence():
    from safetensors import safe_open

    path = default_body_file()
    assert path.stat().st_size <= 20 * 1024 * 1024
    with safe_open(str(path), framework="pt") as f:
        licence = f.metadata()["licence"]
    assert "Apache" in licence and "CC0" in licence


def test_joint_set_definitions(anny_body64):
    pose, shape, translation = random_inputs(2, seed=17)
    output = anny_body64(pose, shape, translation)
    h36m = body_joints(output, "h36m17_anatomical")  # h36m17 itself: tests/test_h36m_regressor.py
    assert torch.allclose(h36m[:, 0], output.joint("bone:root"))
    assert torch.allclose(h36m[:, 3], output.joint("bone:foot.R"))
    openpose = body_joints(output, "openpose18")
    midpoint = (output.joint("left_shoulder") + output.joint("right_shoulder")) / 2
    assert torch.allclose(openpose[:, 1], midpoint)
    coco = body_joints(output, "coco17")
    assert torch.allclose(coco[:, 0], output.joint("nose"))
    for name in ("coco17", "coco_wholebody23", "openpose18", "body25", "h36m17", "h36m17_anatomical", "mpii16",
                 "smpl24", "seed12"):
        assert torch.isfinite(body_joints(output, name)).all()
