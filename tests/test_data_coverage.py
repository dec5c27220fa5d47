"""The coverage measures of meshpose.data.coverage against independent computations: a brute-force
nearest pose with a NumPy Umeyama alignment, hand-built bone lengths, rigid cameras."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from meshpose.data.coverage import (PARENTS, SKELETON, _views, from_h36m17, lifter_probe, nearest_pose_distance,
                                    rebuild, skeleton_bone_lengths)
from meshpose.joints import get_joint_set


def random_poses(n: int, seed: int) -> np.ndarray:
    """(n, 15, 3) skeleton-shaped poses: random bone directions with bones of 0.1-0.5 m."""
    rng = np.random.default_rng(seed)
    poses = np.zeros((n, len(SKELETON), 3))
    for j, parent in enumerate(PARENTS):
        if parent >= 0:
            direction = rng.normal(size=(n, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            poses[:, j] = poses[:, parent] + rng.uniform(0.1, 0.5, size=(n, 1)) * direction
    return poses


def umeyama_error(source: np.ndarray, target: np.ndarray) -> float:
    """Mean joint distance after the best similarity transform of ``source`` onto ``target``
    (Umeyama 1991, written out in NumPy)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(t.T @ s)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    rotation = u @ fix @ vt
    scale = np.trace(np.diag(sigma) @ fix) / (s ** 2).sum()
    aligned = scale * s @ rotation.T + mu_t
    return float(np.linalg.norm(aligned - target, axis=1).mean())


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_rebuild_sets_every_bone_length_and_keeps_its_direction():
    poses = random_poses(20, seed=1)
    lengths = np.linspace(0.0, 0.42, len(SKELETON))
    rebuilt = rebuild(poses, lengths)
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            assert np.allclose(rebuilt[:, j], 0.0)
            continue
        old, new = poses[:, j] - poses[:, parent], rebuilt[:, j] - rebuilt[:, parent]
        assert np.allclose(np.linalg.norm(new, axis=1), lengths[j])
        cosine = (old * new).sum(1) / np.linalg.norm(old, axis=1) / np.linalg.norm(new, axis=1)
        assert np.allclose(cosine, 1.0)


def test_bone_lengths_are_the_median_over_poses():
    poses = random_poses(7, seed=2)
    lengths = skeleton_bone_lengths(poses)
    knee = SKELETON.index("left_knee")
    by_hand = sorted(np.linalg.norm(poses[:, knee] - poses[:, PARENTS[knee]], axis=1))[3]
    assert lengths[0] == 0.0 and lengths[knee] == pytest.approx(by_hand)


def test_from_h36m17_picks_the_named_joints():
    names = get_joint_set("h36m17").names
    joints = np.arange(17 * 3, dtype=float).reshape(17, 3)
    skeleton = from_h36m17(joints)
    assert np.array_equal(skeleton[SKELETON.index("head")], joints[names.index("head_top")])
    assert np.array_equal(skeleton[SKELETON.index("right_wrist")], joints[names.index("right_wrist")])


def test_nearest_pose_distance_equals_brute_force():
    queries, collection = random_poses(6, seed=3), random_poses(40, seed=4)
    exact = nearest_pose_distance(queries, collection, candidates=len(collection))
    brute = [min(umeyama_error(c, q) for c in collection) for q in queries]
    assert np.allclose(exact, brute, atol=1e-9)
    # Fewer candidates can only miss the best pose: an upper bound.
    assert (nearest_pose_distance(queries, collection, candidates=3) >= exact - 1e-12).all()


def test_a_moved_turned_and_scaled_copy_is_at_distance_zero():
    rng = np.random.default_rng(5)
    collection = random_poses(30, seed=6)
    copy = 1.7 * collection[11] @ random_rotation(rng).T + np.array([3.0, -1.0, 0.5])
    distance = nearest_pose_distance(copy[None], collection, candidates=len(collection))
    assert distance[0] < 1e-9
    # Without that pose in the collection the distance is that of the nearest other pose.
    others = np.delete(collection, 11, axis=0)
    expected = min(umeyama_error(c, copy) for c in others)
    assert nearest_pose_distance(copy[None], others, candidates=len(others))[0] == pytest.approx(expected)


def test_virtual_views_are_rigid_and_normalised():
    poses = torch.as_tensor(random_poses(50, seed=7))
    flat_2d, camera = _views(poses, torch.Generator().manual_seed(0))
    offsets_world = (poses - poses[:, :1]).norm(dim=-1)
    offsets_camera = camera.norm(dim=-1)
    assert torch.allclose(offsets_world, offsets_camera, atol=1e-9)  # a rotation: distances kept
    pixels = flat_2d.view(50, 15, 2)
    assert torch.allclose(pixels[:, 0], torch.zeros(50, 2, dtype=poses.dtype), atol=1e-9)
    assert torch.allclose(flat_2d.std(dim=1), torch.ones(50, dtype=poses.dtype))


def test_lifter_probe_learns_its_training_poses():
    poses = rebuild(random_poses(64, seed=8), np.full(len(SKELETON), 0.3))
    untrained = lifter_probe(poses, poses, steps=1, batch=64, width=64)
    trained = lifter_probe(poses, poses, steps=300, batch=64, width=64)
    assert trained["pa_mpjpe_mm"] < 0.7 * untrained["pa_mpjpe_mm"]
    assert trained["mpjpe_mm"] >= trained["pa_mpjpe_mm"]
