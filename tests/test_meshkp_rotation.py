"""Mesh -> keypoints in any rotation: the leave-one-collection-out split, the training turns and
surface roughening, the up head's readings and the turn it leads to, the exported model file."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.transform import Rotation
from torch import nn

from meshpose.meshkp.point_task import MeshKeypointTask, PointDataConfig
from meshpose.meshkp.pointnet import output_names
from meshpose.meshkp.split import collection_of, split_of
from meshpose.meshkp.surface import perturb_surface, random_rotation, random_tilt

NAMES = {  # name: (collection, fixed split)
    "adobe__FemaleFitA": ("adobe", "test"),
    "faust__tr_reg_012": ("faust", "train"),
    "faust__tr_reg_071": ("faust", "val"),
    "faust__tr_reg_095": ("faust", "test"),
    "MIT_animation__meshes_crane__mesh_0010": ("mit", "test"),
    "MIT_animation__meshes_jumping__mesh_0003": ("mit", "val"),
    "MIT_animation__meshes_march1__mesh_0120": ("mit", "train"),
}


def test_leave_one_collection_out_holds_out_the_whole_collection_and_keeps_the_others_val():
    for name, (collection, fixed) in NAMES.items():
        assert collection_of(name) == collection and split_of(name) == fixed
        for held in ("adobe", "faust", "mit"):
            expected = "test" if collection == held else ("val" if fixed == "val" else "train")
            assert split_of(name, held) == expected, (name, held)
    with pytest.raises(ValueError, match="hold_out"):
        split_of("faust__tr_reg_000", "scape")


def test_random_rotations_are_uniform_and_tilts_stay_within_their_angle_about_a_level_axis():
    generator = torch.Generator().manual_seed(0)
    turns = random_rotation(4000, generator, "cpu").double()
    torch.testing.assert_close(turns @ turns.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(4000, 3, 3),
                               atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(turns), torch.ones(4000, dtype=torch.float64), atol=1e-5)
    # Uniform on SO(3): a fixed axis goes to a uniform point of the sphere, so each coordinate of
    # the turned y is uniform in [-1, 1] (Archimedes), and the angle has density (1 - cos t) / pi.
    for column in turns[:, :, 1].T:
        assert stats.kstest(column.numpy(), stats.uniform(-1, 2).cdf).pvalue > 1e-3
    angle = np.arccos(np.clip((turns.diagonal(dim1=1, dim2=2).sum(-1).numpy() - 1) / 2, -1, 1))
    assert stats.kstest(angle, lambda t: (t - np.sin(t)) / np.pi).pvalue > 1e-3

    tilts = random_tilt(2000, 10.0, generator, "cpu").double()
    tilted_up = tilts[:, :, 1]
    off = np.degrees(np.arccos(tilted_up[:, 1].clamp(-1, 1).numpy()))
    assert off.max() <= 10.0 + 1e-3 and off.max() > 9.5 and np.median(off) > 4
    # about a level axis: the axis (the rotation vector) has no y part
    axes = Rotation.from_matrix(tilts.numpy()).as_rotvec()
    assert np.abs(axes[:, 1]).max() < 1e-6


def test_roughened_points_move_along_their_normals_by_the_asked_share_of_the_diagonal():
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(2, 5000, 3)
    normals = nn.functional.normalize(torch.randn(2, 5000, 3), dim=-1)
    moved, same_normals = perturb_surface(points, normals, generator, noise=0.01)
    step = moved - points
    along = (step * normals).sum(-1)
    torch.testing.assert_close(step, along[..., None] * normals, atol=1e-6, rtol=0)  # only along the normal
    diagonal = (points.amax(1) - points.amin(1)).norm(dim=-1)
    assert torch.allclose(along.std(1) / diagonal, torch.full((2,), 0.01), rtol=0.05)
    assert torch.equal(same_normals, normals)


def test_a_hole_removes_the_points_of_one_ball_and_refills_with_kept_points():
    generator = torch.Generator().manual_seed(2)
    grid = torch.stack(torch.meshgrid(torch.linspace(0, 1, 60), torch.linspace(0, 1, 60), indexing="ij"), -1)
    points = torch.cat([grid.reshape(-1, 2), torch.zeros(3600, 1)], -1)[None].repeat(3, 1, 1)
    normals = torch.tensor([0.0, 0, 1]).expand_as(points)
    holed, _ = perturb_surface(points, normals, generator, hole_probability=1.0)
    diagonal = math.sqrt(2)
    for before, after in zip(points, holed):
        kept = torch.unique(after, dim=0)
        assert all(bool((before == p).all(-1).any()) for p in kept[:50])  # copies of input points
        lost_mask = ~(before[:, None] == kept[None]).all(-1).any(1)
        lost = before[lost_mask]
        assert 0.005 * len(before) < len(lost) < 0.2 * len(before)
        # one ball: every lost point is nearer the lost points' middle than every kept one
        middle = lost.mean(0)
        radius = (lost - middle).norm(dim=-1).max()
        inside = (before[~lost_mask] - middle).norm(dim=-1)
        if radius < 0.2 * diagonal and (middle - 0.5).abs().max() < 0.3:  # away from the square's edge
            assert inside.min() >= radius - 1.5 / 59, (inside.min(), radius)


def test_training_turns_follow_the_rotation_settings():
    generator = torch.Generator().manual_seed(3)
    upright = MeshKeypointTask.random_turns(PointDataConfig(), 500, generator)
    torch.testing.assert_close(upright[:, :, 1], torch.tensor([0.0, 1, 0]).expand(500, 3), atol=1e-6, rtol=0)
    tilted = MeshKeypointTask.random_turns(PointDataConfig(tilt_deg=10.0), 500, generator)
    off = torch.rad2deg(torch.arccos(tilted[:, 1, 1].clamp(-1, 1)))
    assert off.max() <= 10.0 + 1e-3 and off.max() > 9
    mixed = MeshKeypointTask.random_turns(PointDataConfig(any_rotation=0.5, tilt_deg=10.0), 4000, generator)
    far = torch.rad2deg(torch.arccos(mixed[:, 1, 1].clamp(-1, 1))) > 10.0 + 1e-3
    # uniform turns land more than 10 degrees off upright with probability (1 + cos 10) / 2
    expected = 0.5 * (1 + math.cos(math.radians(10))) / 2
    assert abs(far.float().mean().item() - expected) < 0.03


def test_synthetic_batches_in_any_rotation_carry_the_up_of_their_bodies():
    """The batch's up label, independently checked: turning each body so that its label points
    along y puts its head above its ankles (CMU poses stand, walk and bend)."""
    task = MeshKeypointTask()
    data = PointDataConfig(any_rotation=1.0, points=256)
    batch = task.make_batch(data, torch.Generator().manual_seed(4), 48, "cpu")
    up = batch["up"]
    assert torch.allclose(up.norm(dim=-1), torch.ones(48), atol=1e-5)
    assert (up[:, 1].abs() < 0.9).float().mean() > 0.5  # most bodies are not near upright
    names = output_names()
    head, ankles = names.index("smpl24:head"), [names.index("smpl24:left_ankle"), names.index("smpl24:right_ankle")]
    height = ((batch["targets"][:, head] - batch["targets"][:, ankles].mean(1)) * up).sum(-1)
    assert (height > 0.25).float().mean() > 0.9  # in bounding-box diagonals


class _NormalsUp(nn.Module):
    """Stand-in model with an up head: the up is the mean of the points' normals."""

    points = 256

    def __init__(self):
        super().__init__()
        self.up_head = nn.Identity()

    def forward(self, points, normals):
        joints = torch.zeros(len(points), len(output_names()), 3)
        return {"joints": joints, "confidence": torch.ones(joints.shape[:2]),
                "up": nn.functional.normalize(normals.mean(1), dim=-1)}


def test_readings_give_the_up_of_each_turned_mesh():
    """A flat square facing +z: each turn's readings (each with its own yaw, undone) say up =
    the turn applied to +z."""
    from meshpose.meshkp.readings import read_joints_turned

    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    turns = Rotation.random(3, random_state=5).as_matrix()
    found = read_joints_turned(_NormalsUp(), vertices, faces, turns, 4, torch.Generator().manual_seed(0))
    for turn, reading in zip(turns, found):
        assert reading.up.shape == (4, 3)
        torch.testing.assert_close(reading.up.double(), torch.from_numpy(turn[:, 2]).expand(4, 3), atol=1e-5, rtol=0)


def test_prediction_turns_a_hidden_up_onto_y_and_reads_there():
    """_upright_by_prediction with a stand-in reader whose predicted up is the hidden up, 12
    degrees off once: the turn it returns puts the hidden up on y, and its last reading was
    made in that turn with the readings asked for."""
    from meshpose.mesh_keypoints import PREDICTING_READINGS, UP_SETTLED_DEG, _upright_by_prediction
    from meshpose.meshkp.readings import Readings

    for seed in range(6):
        hidden = Rotation.random(random_state=seed).as_matrix()[:, 1]
        error = Rotation.from_rotvec(np.radians(12) * np.cross(hidden, [1.0, 0, 0]) /
                                     np.linalg.norm(np.cross(hidden, [1.0, 0, 0]))).as_matrix()
        calls = []

        def turned(rotations, count):
            calls.append((rotations[0].copy(), count))
            seen = rotations[0] @ hidden  # the hidden up in the turned frame
            if len(calls) == 1:
                seen = rotations[0] @ error @ hidden  # the first guess is off
            up = torch.from_numpy(np.tile(seen, (count, 1)))
            return [Readings(torch.zeros(count, 1, 3), torch.ones(count, 1), torch.zeros(1, 3), torch.zeros(1, 3), up)]

        rotation, found = _upright_by_prediction(turned, 2)
        np.testing.assert_allclose(rotation @ hidden, [0, 1, 0], atol=1e-9)
        assert calls[0][1] == PREDICTING_READINGS and calls[-1][1] == 2 and np.allclose(calls[-1][0], rotation)
        assert len(calls) == 3 and len(found.up) == 2
        assert UP_SETTLED_DEG < 12


def test_exported_run_is_the_trained_model_with_its_up_head(tmp_path, meshpose_cli):
    from meshpose.meshkp.model_file import load_mesh_keypoint_model
    from meshpose.train.checkpoint import load_weights_file

    config = tmp_path / "tiny.yaml"
    config.write_text("task: meshkp_points\nrun: {name: tiny, device: cpu}\n"
                      "train: {epochs: 1, steps_per_epoch: 2, batch_size: 4}\n"
                      "model: {neighbours: 8, width: 16, up_head: true}\n"
                      "data: {points: 128, val_size: 4, any_rotation: 0.5, loss_up: 1.0}\n")
    runs = tmp_path / "runs"
    assert meshpose_cli("train", str(config), f"run.output_dir={runs}").returncode == 0
    run_dir = next(runs.iterdir())
    out = tmp_path / "tiny.safetensors"
    assert meshpose_cli("export", str(run_dir), "-o", str(out)).returncode == 0
    network = load_mesh_keypoint_model(str(out))
    assert network.up_head is not None and network.points == 128
    trained = MeshKeypointTask().build_model(*_sections(run_dir))
    trained.load_state_dict(load_weights_file(run_dir / "model.pt", kind="model"))
    points = torch.randn(2, 128, 3) * 0.2
    normals = nn.functional.normalize(torch.randn(2, 128, 3), dim=-1)
    expected, got = trained.eval()(points, normals), network(points, normals)
    torch.testing.assert_close(got["up"], expected["up"], atol=2e-2, rtol=0)  # float16 weights
    torch.testing.assert_close(got["joints"], expected["joints"], atol=2e-2, rtol=0)


def _sections(run_dir):
    from meshpose.train.config import read_run_config

    config = read_run_config(run_dir, {"meshkp_points": MeshKeypointTask()})
    return config.model, config.data


def test_fit_up_adds_a_head_and_leaves_every_joint_as_it_was(tmp_path, meshpose_cli):
    """meshpose fit-up on a small model file: the written model reads the same joints and
    confidences as the input (the rest is frozen), its up answers are unit vectors, and the
    up error it states is what evaluate_up measures on the written file."""
    import json

    from safetensors import safe_open

    from meshpose.meshkp.model_file import export_mesh_keypoint_model, load_mesh_keypoint_model
    from meshpose.meshkp.point_task import evaluate_up
    from meshpose.meshkp.pointnet import MeshKeypointNet

    torch.manual_seed(0)
    source = export_mesh_keypoint_model(MeshKeypointNet(8, 16).state_dict(), {"neighbours": 8, "width": 16},
                                        tmp_path / "plain.safetensors", points=128)
    out = tmp_path / "with_up.safetensors"
    result = meshpose_cli("fit-up", str(source), "-o", str(out), "--samples", "64", "--steps", "20")
    assert result.returncode == 0, result.stderr
    before, after = load_mesh_keypoint_model(str(source)), load_mesh_keypoint_model(str(out))
    assert before.up_head is None and after.up_head is not None and after.points == 128
    points = torch.randn(3, 128, 3) * 0.2
    normals = nn.functional.normalize(torch.randn(3, 128, 3), dim=-1)
    with torch.no_grad():
        old, new = before(points, normals), after(points, normals)
    torch.testing.assert_close(new["joints"], old["joints"], atol=1e-6, rtol=0)
    torch.testing.assert_close(new["confidence"], old["confidence"], atol=1e-6, rtol=0)
    torch.testing.assert_close(new["up"].norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)

    with safe_open(str(out), framework="pt") as f:
        header = f.metadata()
    assert "up head fitted with the rest frozen" in header["training_data"]
    stated = json.loads(header["up_metrics"])
    measured = evaluate_up(after, PointDataConfig(points=128), "cpu", count=512)
    assert stated["up_error_deg_median"] == pytest.approx(measured["up_error_deg_median"], abs=0.5)


def test_fit_up_refuses_an_output_it_cannot_write_and_writes_nothing(tmp_path, meshpose_cli):
    result = meshpose_cli("fit-up", "default", "-o", str(tmp_path / "up.pt"), "--samples", "32", "--steps", "1")
    assert result.returncode == 2 and ".safetensors" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_fit_up_refuses_no_samples_with_one_line(tmp_path, meshpose_cli):
    result = meshpose_cli("fit-up", "default", "-o", str(tmp_path / "up.safetensors"), "--samples", "0")
    assert result.returncode == 2 and "samples and steps" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
