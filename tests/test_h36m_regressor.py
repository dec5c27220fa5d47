"""Human3.6M's joints on Anny: the action split, the sparse non-negative regressor fit, the
regressor file, the shipped regressor and ``body_joints``' two h36m17 definitions."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import roma
import torch
from safetensors.numpy import save_file

from meshpose.body import POSE_JOINTS, body_joints
from meshpose.body.vertex_regressors import (
    SHIPPED_REGRESSORS,
    read_vertex_regressor,
    shipped_regressor,
    write_vertex_regressor,
)
from meshpose.cli import main
from meshpose.data.h36m import action_name, split_actions
from meshpose.data.h36m_bodies import OFFSET_FRAMES, fit_bodies, marker_points
from meshpose.data.h36m_regressor import fit_sparse_regressor
from meshpose.errors import MeshposeError
from meshpose.joints import get_joint_set

H36M = Path(os.environ.get("MESHPOSE_H36M", "/work/shared/data/h36m"))
ASSETS = Path(__file__).resolve().parents[1] / "src" / "meshpose" / "assets"


def test_split_keeps_both_takes_of_an_action_together_and_alternates():
    takes = ["Walking 1", "Eating", "Walking", "Eating 2", "Sitting 1", "SittingDown", "Sitting 2", "Photo"]
    first, second = split_actions(takes)
    assert sorted(first + second) == sorted(takes) and not set(first) & set(second)
    # Actions sorted: Eating, Photo, Sitting, SittingDown, Walking -> 1st, 3rd, 5th | 2nd, 4th.
    assert first == ["Eating", "Eating 2", "Sitting 1", "Sitting 2", "Walking", "Walking 1"]
    assert second == ["Photo", "SittingDown"]
    assert action_name("SittingDown 2") == "SittingDown" and action_name("Directions") == "Directions"


def sparse_problem(seed=0, frames=60, vertices=40, joints=3):
    """Random vertices and joints that ARE a known sparse convex combination of them."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(frames, vertices, 3))
    truth = np.zeros((joints, vertices))
    support = []
    for j in range(joints):
        columns = np.sort(rng.choice(vertices, size=8, replace=False))
        used = columns[:3]  # 3 of the 8 allowed vertices carry weight
        weights = rng.uniform(0.2, 1.0, size=3)
        truth[j, used] = weights / weights.sum()
        support.append(columns)
    return points, np.einsum("jv,nvd->njd", truth, points), truth, support


def test_sparse_fit_recovers_a_known_convex_combination():
    points, joints, truth, support = sparse_problem()
    fitted = fit_sparse_regressor(points, joints, support)
    assert np.abs(fitted - truth).max() < 1e-6
    assert (fitted >= 0).all() and np.allclose(fitted.sum(1), 1.0)
    for j, columns in enumerate(support):  # nothing outside the support
        outside = np.setdiff1d(np.arange(points.shape[1]), columns)
        assert (fitted[j, outside] == 0).all()


def test_sparse_fit_stays_convex_when_the_truth_is_not():
    points, joints, _, support = sparse_problem(seed=1)
    joints = joints + np.random.default_rng(2).normal(scale=0.5, size=joints.shape)  # not reachable
    fitted = fit_sparse_regressor(points, joints, support)
    assert (fitted >= 0).all() and np.allclose(fitted.sum(1), 1.0, atol=1e-6)


def test_regressor_file_round_trip_and_bad_files(tmp_path):
    matrix = np.zeros((17, 50), np.float32)
    matrix[np.arange(17), np.arange(17)] = 0.25
    matrix[np.arange(17), np.arange(17) + 20] = 0.75
    write_vertex_regressor(tmp_path / "r.safetensors", matrix, "h36m17", {"source": "test"})
    read, joint_set = read_vertex_regressor(tmp_path / "r.safetensors")
    assert joint_set == "h36m17" and np.array_equal(read.numpy(), matrix)

    bad = tmp_path / "negative.safetensors"
    save_file({"joint": np.array([0, 0], np.int32), "vertex": np.array([1, 2], np.int32),
               "weight": np.array([1.5, -0.5], np.float32)},
              str(bad), metadata={"format": "meshpose-vertex-regressor-1", "joint_set": "h36m17", "num_vertices": "5"})
    with pytest.raises(MeshposeError, match="negative.safetensors.*>= 0"):
        read_vertex_regressor(bad)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(MeshposeError, match="junk.safetensors"):
        read_vertex_regressor(tmp_path / "junk.safetensors")


def test_shipped_regressor_is_small_sparse_convex_and_local(anny_body):
    path = ASSETS / SHIPPED_REGRESSORS["h36m17"]
    assert path.stat().st_size < 1_000_000
    matrix = shipped_regressor("h36m17").numpy()
    assert matrix.shape == (17, anny_body.num_vertices)
    assert (matrix >= 0).all() and np.allclose(matrix.sum(1), 1.0, atol=1e-5)
    assert ((matrix > 0).sum(1) < 200).all()  # sparse
    # Each joint is local: its vertices lie in one ball (the fit allowed 15 cm around a point on
    # the subject's body, so any two are at most 30 cm apart), and the regressed joint lies
    # within 15 cm of Anny's anatomical centre of the same joint (the default shape, rest pose).
    with torch.no_grad():
        rest = anny_body(None, None)
    centres = body_joints(rest, "h36m17_anatomical")[0].numpy()
    vertices = rest.vertices[0].numpy()
    regressed = matrix @ vertices
    for j in range(17):
        used = vertices[matrix[j] > 0]
        assert np.linalg.norm(used[:, None] - used[None], axis=-1).max() < 0.3
        assert np.linalg.norm(regressed[j] - centres[j]) < 0.15


def test_body_joints_h36m17_is_the_regressor_and_anatomical_the_bone_heads(anny_body):
    generator = torch.Generator().manual_seed(3)
    pose = roma.rotvec_to_rotmat(0.3 * torch.randn(2, len(POSE_JOINTS), 3, generator=generator))
    with torch.no_grad():
        output = anny_body(pose, torch.rand(2, 6, generator=generator))
    matrix = shipped_regressor("h36m17").numpy().astype(np.float64)
    expected = np.einsum("jv,bvd->bjd", matrix, output.vertices.numpy().astype(np.float64))
    assert np.abs(body_joints(output, "h36m17").numpy() - expected).max() < 1e-5
    anatomical = body_joints(output, "h36m17_anatomical")
    assert torch.equal(anatomical, body_joints(output, "h36m17", anatomical=True))
    assert torch.equal(anatomical[:, 0], output.joint("bone:root"))
    assert torch.equal(anatomical[:, 5], output.joint("bone:lowerleg01.L"))  # left knee
    # The two definitions differ, by centimetres, not decimetres.
    gap = (body_joints(output, "h36m17") - anatomical).norm(dim=-1)
    assert 0.005 < float(gap.mean()) < 0.08
    with torch.no_grad():
        skeleton_only = anny_body(pose, None, vertices=False)
    with pytest.raises(MeshposeError, match="h36m17_anatomical"):
        body_joints(skeleton_only, "h36m17")


def test_position_fit_recovers_anny_own_joints(anny_body):
    """Joints made by Anny itself (one shape, per-frame translation) are fitted to a few mm."""
    generator = torch.Generator().manual_seed(4)
    rotvec = 0.25 * torch.randn(6, len(POSE_JOINTS), 3, generator=generator)
    rotvec[:, 0] = torch.tensor([0.0, 0.0, 1.0]) * torch.randn(6, 1, generator=generator)
    for joint in ("left_wrist", "right_wrist", "left_toes", "right_toes", "head"):
        rotvec[:, POSE_JOINTS.index(joint)] = 0.0  # not observable from h36m17's points
    shape = torch.tensor([0.3, 0.8, 0.6, 0.4, 0.7, 0.5])
    translation = torch.randn(6, 3, generator=generator) + torch.tensor([0.0, 0.0, 1.0])
    with torch.no_grad():
        output = anny_body(roma.rotvec_to_rotmat(rotvec), shape.expand(6, -1), translation, vertices=False)
        truth = body_joints(output, "h36m17_anatomical")
    fitted = fit_bodies(np.array(["a"] * 6), np.arange(6), truth, iterations=300, retarget_iterations=150,
                        body=anny_body)
    assert float(fitted.errors_mm.mean()) < 10.0
    assert torch.allclose(fitted.translation, translation, atol=0.03)
    assert float(fitted.offsets.norm(dim=-1).max()) < 0.03  # Anny's own centres need no offset


def test_marker_offsets_move_only_their_joints_by_their_length(anny_body):
    generator = torch.Generator().manual_seed(6)
    with torch.no_grad():
        output = anny_body(roma.rotvec_to_rotmat(0.3 * torch.randn(3, len(POSE_JOINTS), 3, generator=generator)),
                           None, vertices=False)
        offsets = torch.randn(17, 3, generator=generator) * 0.05
        moved = marker_points(output, offsets)
    anatomical = body_joints(output, "h36m17_anatomical")
    names = get_joint_set("h36m17").names
    for j, name in enumerate(names):
        shift = (moved[:, j] - anatomical[:, j]).norm(dim=-1)
        expected = float(offsets[j].norm()) if name in OFFSET_FRAMES else 0.0
        assert torch.allclose(shift, torch.full_like(shift, expected), atol=1e-5), name


def test_fit_command_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "h36m_S1_joints.json").write_text('{"joints_3d": ["Pelvis"]}')
    (tmp_path / "h36m_S1_3d.npz").write_bytes(b"")
    code = main(["data", "fit-h36m-regressor", "--h36m", str(tmp_path), "-o", str(tmp_path / "r.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "h36m_S1_joints.json" in err


def test_fit_command_refuses_bad_settings_before_reading(tmp_path, capsys):
    code = main(["data", "fit-h36m-regressor", "--h36m", str(tmp_path), "-o", str(tmp_path / "r.safetensors"),
                 "--stride", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "stride" in err
    code = main(["data", "fit-h36m-regressor", "--h36m", str(tmp_path), "-o", str(tmp_path / "r.npz")])
    assert code == 2 and "r.npz" in capsys.readouterr().err


@pytest.mark.skipif(not (H36M / "h36m_S1_3d.npz").is_file(), reason="Human3.6M S1 files not present")
def test_split_of_s1_is_the_documented_one():
    takes = sorted(k.split("/")[1] for k in np.load(H36M / "h36m_S1_3d.npz").files)
    first, second = split_actions(takes)
    assert sorted({action_name(t) for t in first}) == ["Directions", "Eating", "Phoning", "Posing", "Sitting",
                                                       "Smoking", "WalkDog", "Walking"]
    assert sorted({action_name(t) for t in second}) == ["Discussion", "Greeting", "Photo", "Purchases",
                                                        "SittingDown", "Waiting", "WalkTogether"]
