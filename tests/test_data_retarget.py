"""Retargeting, pose banks and the shipped CMU bank."""
from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from meshpose.body import POSE_JOINTS
from meshpose.data.posebank import (
    PoseBank,
    load_shipped_pose_bank,
    load_training_banks,
    shipped_pose_bank_path,
)
from meshpose.data.retarget import (RETARGET_POINTS, SEGMENTS, SOURCE_MAPS, RetargetOptions, Retargeter,
                                    detect_source, retarget_clips, to_z_up)


@pytest.fixture(scope="module")
def retargeter():
    return Retargeter(RetargetOptions(iterations=150, warm_iterations=40))


def anny_points(retargeter, rotvec, shape, scale=1.0):
    with torch.no_grad():
        return retargeter._points(rotvec, shape) * scale


def test_recovers_anny_own_motion(retargeter):
    """Points made by Anny itself (scaled by 1.1, another shape) are fitted to within a few mm."""
    generator = torch.Generator().manual_seed(0)
    rotvec = 0.3 * torch.randn(12, len(POSE_JOINTS), 3, generator=generator)
    rotvec[:, 0] = torch.randn(12, 3, generator=generator)
    for joint in ("left_wrist", "right_wrist", "left_toes", "right_toes", "head"):
        rotvec[:, POSE_JOINTS.index(joint)] = 0.0  # not observable from the retarget points
    shape = torch.tensor([[0.3, 0.8, 0.6, 0.4, 0.7, 0.5]])
    points = anny_points(retargeter, rotvec, shape, scale=1.1)
    result = retargeter.fit(points)
    assert result.errors_mm[:, 1:].median() < 10.0
    assert bool(result.kept.all())
    # Bone directions are recovered: compare the thigh direction to the truth.
    fitted = anny_points(retargeter, roma.rotmat_to_rotvec(result.rotations), result.shape)
    names = list(RETARGET_POINTS)
    hip, knee = names.index("left_hip"), names.index("left_knee")
    truth = torch.nn.functional.normalize(points[:, knee] - points[:, hip], dim=-1)
    ours = torch.nn.functional.normalize(fitted[:, knee] - fitted[:, hip], dim=-1)
    assert torch.rad2deg(torch.acos((truth * ours).sum(-1).clamp(-1, 1))).max() < 5.0


def test_bad_frames_are_dropped_and_counted(retargeter):
    generator = torch.Generator().manual_seed(1)
    rotvec = 0.2 * torch.randn(6, len(POSE_JOINTS), 3, generator=generator)
    points = anny_points(retargeter, rotvec, torch.full((1, 6), 0.5))
    points[3] = torch.randn(len(RETARGET_POINTS), 3, generator=generator)  # garbage frame
    clips = [{"name": "synthetic/a", "source": "cmu", "frames": np.arange(6), "points": points.numpy()}]
    bank, report, errors = retarget_clips(clips, RetargetOptions(iterations=120, warm_iterations=20))
    assert report[0]["dropped"] == 1 and report[0]["kept"] == 5
    assert list(bank[0]["frames"]) == [0, 1, 2, 4, 5]


def test_y_up_to_z_up_is_a_proper_rotation():
    up = to_z_up(np.array([[0.0, 1.0, 0.0]]), "y")
    assert np.allclose(up, [[0.0, 0.0, 1.0]])  # up stays up
    basis = to_z_up(np.eye(3), "y")
    assert np.isclose(np.linalg.det(basis), 1.0)


def test_source_detection_by_joint_names():
    for source, table in SOURCE_MAPS.items():
        names = [part for name in table.values() for part in name.split("+")]
        assert detect_source(names + ["extra"]) == source
    with pytest.raises(ValueError, match="unknown skeleton"):
        detect_source(["a", "b"])


def test_pose_bank_round_trip(tmp_path):
    rotations = roma.random_rotmat((7, len(POSE_JOINTS)), generator=torch.Generator().manual_seed(2))
    bank = PoseBank.from_clips([
        {"name": "cmu/01/01_01", "source": "cmu", "rotations": rotations[:4], "frames": [0, 3, 6, 9],
         "shape": np.full(6, 0.4)},
        {"name": "cmu/02/02_01", "source": "cmu", "rotations": rotations[4:], "frames": [1, 2, 5],
         "shape": np.full(6, 0.6)},
    ])
    bank.save(tmp_path / "bank.npz")
    again = PoseBank.load(tmp_path / "bank.npz")
    assert len(again) == 7 and list(again.clip) == [0, 0, 0, 0, 1, 1, 1]
    assert list(again.frame) == [0, 3, 6, 9, 1, 2, 5]
    # float16 6D storage keeps rotations within a fraction of a degree
    error = roma.rotmat_geodesic_distance(again.rotation_matrices(), rotations)
    assert torch.rad2deg(error).max() < 0.2
    assert "free for any use" in str(again.clip_licences[0])


def test_concatenated_banks_keep_each_pose_with_its_clip(tmp_path):
    rotations = roma.random_rotmat((5, len(POSE_JOINTS)), generator=torch.Generator().manual_seed(3))
    first = PoseBank.from_clips([
        {"name": "cmu/01/a", "source": "cmu", "rotations": rotations[:2], "frames": [0, 1], "shape": np.full(6, 0.1)},
        {"name": "cmu/01/b", "source": "cmu", "rotations": rotations[2:3], "frames": [7], "shape": np.full(6, 0.2)}])
    second = PoseBank.from_clips([
        {"name": "bandai/x", "source": "bandai", "rotations": rotations[3:], "frames": [4, 5], "shape": np.full(6, 0.3)}])
    both = PoseBank.concatenate([first, second])
    assert len(both) == 5 and list(both.clip) == [0, 0, 1, 2, 2]
    # every pose still points at its own clip's name, source, licence and shape
    names = [str(both.clip_names[c]) for c in both.clip]
    assert names == ["cmu/01/a", "cmu/01/a", "cmu/01/b", "bandai/x", "bandai/x"]
    assert "CC BY-NC" in str(both.clip_licences[both.clip[4]])
    assert np.allclose(both.clip_shapes[both.clip][:, 0], [0.1, 0.1, 0.2, 0.3, 0.3])
    assert torch.allclose(both.rotation_matrices(), torch.cat([first.rotation_matrices(), second.rotation_matrices()]))
    # the training loader joins the banks the same way, and the split by clip still works
    first.save(tmp_path / "a.npz")
    second.save(tmp_path / "b.npz")
    loaded = load_training_banks(str(tmp_path / "a.npz"), [str(tmp_path / "b.npz")])
    assert np.array_equal(loaded.rotations, both.rotations)
    kept, held_out = loaded.split_clips(["bandai/"])
    assert len(kept) == 3 and len(held_out) == 2


def test_shipped_bank_is_cmu_only_small_and_valid():
    path = shipped_pose_bank_path()
    assert path.stat().st_size <= 15 * 1024 * 1024
    bank = load_shipped_pose_bank()
    assert set(str(s) for s in bank.clip_sources) == {"cmu"}
    assert len(bank) > 30_000
    rotations = bank.rotation_matrices(np.arange(0, len(bank), 97))
    determinant = torch.det(rotations)
    assert torch.allclose(determinant, torch.ones_like(determinant), atol=1e-2)


def test_a_subset_of_points_drops_the_segments_it_lacks():
    points = tuple(n for n in RETARGET_POINTS if not n.endswith("_toe"))
    retargeter = Retargeter(RetargetOptions(points=points))
    assert retargeter.point_names == list(points)
    pairs = {(retargeter.point_names[a], retargeter.point_names[b]) for a, b in retargeter.segments.tolist()}
    assert pairs == {s for s in SEGMENTS if "left_toe" not in s and "right_toe" not in s}
    with pytest.raises(ValueError, match="pelvis first"):
        Retargeter(RetargetOptions(points=("left_hip",) + points))
