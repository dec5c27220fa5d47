"""Mesh -> keypoints: surface sampling, the Anny part cut, the shipped point model, the command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import meshpose
from meshpose.meshkp.frame import UP_AXES as _UP
from meshpose.meshkp.frame import from_y_up as _from_y_up
from meshpose.meshkp.frame import to_y_up as _to_y_up
from meshpose.meshkp.model_file import load_mesh_keypoint_model
from meshpose.meshkp.surface import normalise_points, sample_surface, yaw_rotation

HUMAN_SEG = Path(__file__).parents[2] / "shared" / "data" / "human_seg"


def test_surface_points_lie_on_their_triangles_and_follow_area():
    # Two triangles in the plane z = 0 with areas 1 : 3 (legs 1x2 and 2x3, halves of rectangles).
    vertices = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [5, 0, 0], [7, 0, 0], [5, 3, 0]]])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    points, normals = sample_surface(vertices, faces, 20000, torch.Generator().manual_seed(0))
    x, y, z = points[0].unbind(-1)
    first = x < 3
    assert torch.all(z == 0)
    # inside the first triangle: x/1 + y/2 <= 1; inside the second: (x-5)/2 + y/3 <= 1
    assert torch.all(x[first] / 1 + y[first] / 2 <= 1 + 1e-6)
    assert torch.all((x[~first] - 5) / 2 + y[~first] / 3 <= 1 + 1e-6) and torch.all(x[~first] >= 5 - 1e-6)
    assert abs(first.float().mean().item() - 0.25) < 0.015  # binomial sd 0.003
    # uniform within a triangle: the mean is the centroid
    torch.testing.assert_close(points[0, first].mean(0), torch.tensor([1 / 3, 2 / 3, 0.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(normals.abs(), torch.tensor([0.0, 0, 1]).expand_as(normals))


def test_normalisation_inverts_and_yaw_turns_about_y():
    points = torch.randn(3, 50, 3) * 4 + 7
    normalised, centre, scale = normalise_points(points)
    torch.testing.assert_close(normalised * scale + centre, points)
    torch.testing.assert_close((normalised.amax(1) - normalised.amin(1)).norm(dim=-1), torch.ones(3))
    turn = yaw_rotation(torch.tensor([math.pi / 2]))[0]
    torch.testing.assert_close(turn @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, -1]), atol=1e-6, rtol=0)
    torch.testing.assert_close(turn @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 1, 0]))


@pytest.mark.parametrize("up", sorted(_UP))
def test_up_axes_are_proper_rotations_to_y(up):
    basis = np.eye(3)
    turned = _to_y_up(basis, up)  # rows: where x, y, z go
    assert np.isclose(np.linalg.det(turned), 1.0)
    axis = {"x": 0, "y": 1, "z": 2}[up[-1]]
    sign = -1 if up.startswith("-") else 1
    np.testing.assert_allclose(turned[axis] * sign, [0, 1, 0])
    points = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(_from_y_up(_to_y_up(points, up), up), points)


@pytest.mark.parametrize("up", sorted(_UP))
def test_axis_rotation_is_the_matrix_of_to_y_up(up):
    from meshpose.meshkp.frame import axis_rotation

    points = np.random.default_rng(1).normal(size=(6, 3))
    np.testing.assert_array_equal(points @ axis_rotation(up).T, _to_y_up(points, up))  # exact: 0 / +-1 entries


def test_rotation_onto_y_is_the_smallest_proper_turn():
    from scipy.spatial.transform import Rotation

    from meshpose.meshkp.frame import rotation_onto_y

    for direction in np.random.default_rng(2).normal(size=(20, 3)).tolist() + [[0, 1, 0], [0, -1, 0], [0, -2, 1e-14]]:
        rotation = rotation_onto_y(direction)
        unit = np.asarray(direction) / np.linalg.norm(direction)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(rotation), 1.0)
        np.testing.assert_allclose(rotation @ unit, [0, 1, 0], atol=1e-9)
        # the turn's angle is the angle between the direction and y (no extra spin)
        angle = np.degrees(Rotation.from_matrix(rotation).magnitude())
        assert np.isclose(angle, np.degrees(np.arccos(np.clip(unit[1], -1, 1))), atol=1e-6)


def test_up_search_finds_a_hidden_up_direction():
    """search_up with a stand-in model: humanness 1 within 60 degrees of a hidden up and 0
    beyond; confidence the cosine to it (what the real one does, falling with tilt)."""
    from scipy.spatial.transform import Rotation

    from meshpose.meshkp.orientation import search_up

    for seed in range(10):
        hidden = Rotation.random(random_state=seed).as_matrix()[:, 1]
        calls = []

        def read(rotations):
            calls.append(len(rotations))
            ups = rotations[:, 1]  # the direction each rotation turns onto y
            cosine = ups @ hidden
            return [(float(c > 0.5), float(c), None) for c in cosine]

        found = search_up(read)
        assert np.degrees(np.arccos(min(1.0, found.up @ hidden))) < 2.5, seed
        np.testing.assert_allclose(found.rotation @ found.up, [0, 1, 0], atol=1e-12)
        assert calls[0] == 12 and all(n == 4 for n in calls[1:]) and len(calls) <= 1 + 8


def test_turned_readings_read_the_turned_mesh(anny):
    """read_joints_turned with a turn R gives the joints read_joints gives on the mesh turned by
    R (the same point draws, turned), and with no turn exactly read_joints."""
    from scipy.spatial.transform import Rotation

    from meshpose.meshkp.readings import read_joints, read_joints_turned

    network = load_mesh_keypoint_model()
    vertices, faces, _, _ = _walking_body(anny)
    vertices = torch.from_numpy(vertices / 2.0)  # about unit size
    faces = torch.from_numpy(faces)
    turns = np.stack([np.eye(3), Rotation.from_euler("x", 25, degrees=True).as_matrix()])
    found = read_joints_turned(network, vertices, faces, turns, 2, torch.Generator().manual_seed(3))
    plain = read_joints(network, vertices, faces, 2, torch.Generator().manual_seed(3))
    torch.testing.assert_close(found[0].joints, plain.joints, rtol=0, atol=1e-6)
    turned = read_joints(network, vertices @ torch.from_numpy(turns[1]).T, faces, 2, torch.Generator().manual_seed(3))
    torch.testing.assert_close(found[1].points, turned.points, rtol=0, atol=1e-5)
    torch.testing.assert_close(found[1].joints, turned.joints, rtol=0, atol=2e-3)  # float32 through the network


@pytest.fixture(scope="module")
def anny():
    from meshpose.body import AnnyBody

    return AnnyBody()


def test_anny_seed12_regions_match_the_builder_and_their_bones(anny):
    from meshpose.body.poses import preset_rotations
    from meshpose.meshkp.anny_parts import edge_labels, seed12_regressor
    from meshpose.meshkp.segdata import extract_keypoints

    matrix = seed12_regressor(anny)
    torch.testing.assert_close(matrix.sum(1), torch.ones(12))
    # On a posed body (not the rest pose the regions were found on), the builder run afresh on
    # the same part cut gives the same points: the regions are fixed vertex sets.
    with torch.no_grad():
        vertices = anny(preset_rotations("walk"), torch.tensor([[0.2, 0.7, 0.5, 0.6, 0.4, 0.5]])).vertices[0]
    built = extract_keypoints(vertices.double().numpy(), anny.faces.numpy(), edge_labels(anny))
    assert built.accepted, built.reason
    np.testing.assert_allclose((matrix @ vertices).numpy(), built.keypoints, atol=1e-5)
    # Each labelled point lies near its own bone, not the other side's (Anny's .L is the left).
    with torch.no_grad():
        out = anny(preset_rotations("walk"), torch.full((1, 6), 0.5))
    points = dict(zip(built.names, matrix @ out.vertices[0]))
    for side, other in (("left", "R"), ("right", "L")):
        own = "L" if side == "left" else "R"
        for joint, bone in (("wrist", "wrist"), ("knee", "lowerleg01"), ("elbow", "lowerarm01")):
            point = points[f"{side}_{joint}"]
            assert (point - out.joint(f"bone:{bone}.{own}")[0]).norm() < (point - out.joint(f"bone:{bone}.{other}")[0]).norm()


def _walking_body(anny, yaw=0.0):
    from meshpose.body.poses import preset_rotations
    from meshpose.meshkp.anny_parts import Y_UP

    with torch.no_grad():
        out = anny(preset_rotations("walk"), torch.full((1, 6), 0.5))
    turn = yaw_rotation(torch.tensor([yaw]))[0] @ Y_UP
    return (out.vertices[0] @ turn.T).double().numpy(), anny.faces.numpy(), out, turn


def test_without_an_up_axis_any_rotation_gives_the_joints_of_the_upright_reading(anny):
    """up="auto": the body under random 3D rotations, in millimetres and far from the origin,
    gives (turned back) the joints read with the true up axis, and the found up is y turned."""
    from scipy.spatial.transform import Rotation

    vertices, faces, _, _ = _walking_body(anny, yaw=0.3)
    upright = meshpose.mesh_keypoints((vertices, faces), joint_set="smpl24", up="y")["keypoints"]
    for seed in (1, 2, 3):
        rotation = Rotation.random(random_state=seed).as_matrix()
        offset = np.array([3e3, -2e3, 5e2]) * seed
        result = meshpose.mesh_keypoints(((vertices @ rotation.T) * 1000 + offset, faces), joint_set="smpl24")
        back = (result["keypoints"] - offset) / 1000 @ rotation
        error = np.linalg.norm(back - upright, axis=1)
        # 0.7-2.2 cm when written: the found up is 2-4 degrees off and the point draws differ
        assert np.median(error) < 0.03 and error.max() < 0.08, (seed, error)  # metres
        assert result["up"] @ (rotation @ [0.0, 1.0, 0.0]) > np.cos(np.radians(8)), result["up"]
        assert result["humanness"] >= 0.5


def test_shipped_model_finds_joint_centres_of_a_body_and_follows_turns_scale_and_mirror(anny):
    from meshpose.body import body_joints

    vertices, faces, out, turn = _walking_body(anny, yaw=0.7)
    result = meshpose.mesh_keypoints((vertices, faces), joint_set="h36m17")
    truth = (body_joints(out, "h36m17")[0] @ turn.T).double().numpy()
    error = np.linalg.norm(result["keypoints"] - truth, axis=1)
    assert np.median(error) < 0.06, error  # metres; a 1.7 m body

    seed = meshpose.mesh_keypoints((vertices, faces), up="y")
    in_cm = meshpose.mesh_keypoints((vertices * 100, faces), up="y")
    np.testing.assert_allclose(in_cm["keypoints"], seed["keypoints"] * 100, atol=1.0)  # 1 cm

    z_up = _from_y_up(vertices, "z")  # the same body stored z-up
    np.testing.assert_allclose(_to_y_up(meshpose.mesh_keypoints((z_up, faces), up="z")["keypoints"], "z"),
                               seed["keypoints"], atol=0.01)

    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    flipped = meshpose.mesh_keypoints((mirrored, faces[:, ::-1]), up="y")
    names = seed["names"]
    swap = [names.index(n.replace("left_", "#").replace("right_", "left_").replace("#", "right_")) for n in names]
    unflipped = flipped["keypoints"] * np.array([-1.0, 1.0, 1.0])
    # The mirror image's left joints are the original's right ones: nearer those than their own.
    paired = [i for i, n in enumerate(names) if n.startswith(("left_", "right_"))]
    to_swapped = np.linalg.norm(unflipped - seed["keypoints"][swap], axis=1)
    to_same = np.linalg.norm(unflipped - seed["keypoints"], axis=1)
    assert np.all(to_swapped[paired] < to_same[paired]), (to_swapped, to_same)
    assert np.median(to_swapped) < 0.05


def test_shipped_model_does_not_depend_on_the_triangulation(anny):
    """The same surface with 4x the triangles (every face split in four) gives the same joints.

    A single draw of surface points moves a joint by up to several cm, so the test compares the
    means over four draws, against how much those means move between two sets of seeds on the
    same mesh."""
    import trimesh

    vertices, faces, _, _ = _walking_body(anny, yaw=2.0)
    fine_vertices, fine_faces = trimesh.remesh.subdivide(vertices, faces)
    assert len(fine_faces) == 4 * len(faces)

    def mean_joints(v, f, seeds):
        return np.mean([meshpose.mesh_keypoints((v, f), joint_set="smpl24", seed=s)["keypoints"] for s in seeds], 0)

    original = mean_joints(vertices, faces, range(4))
    reseeded = np.linalg.norm(mean_joints(vertices, faces, range(4, 8)) - original, axis=1)
    change = np.linalg.norm(mean_joints(fine_vertices, fine_faces, range(4, 8)) - original, axis=1)
    assert np.median(change) < 2 * np.median(reseeded) + 0.005, (change, reseeded)
    assert change.max() < 0.05


def test_mesh_keypoints_rejects_bad_meshes_and_names():
    with pytest.raises(meshpose.MeshposeError, match="out of range"):
        meshpose.mesh_keypoints((np.zeros((3, 3)), np.array([[0, 1, 5]])))
    with pytest.raises(meshpose.MeshposeError, match="no surface area"):
        meshpose.mesh_keypoints((np.zeros((3, 3)), np.array([[0, 1, 2]])))
    with pytest.raises(meshpose.UnknownNameError, match="coco17"):
        meshpose.mesh_keypoints((np.eye(3), np.array([[0, 1, 2]])), joint_set="coco17")


def test_command_writes_json_and_png_per_mesh_and_nothing_on_bad_input(tmp_path, anny, meshpose_cli):
    def _run(*args):  # the command, in this process
        return meshpose_cli("mesh-keypoints", *args)

    import trimesh

    vertices, faces, _, _ = _walking_body(anny)
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.Trimesh(vertices, faces, process=False).export(meshes / "walker.ply")
    result = _run(meshes, "-o", tmp_path / "out", "--png", tmp_path / "pictures", "--joint-set", "smpl24")
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "out" / "walker.json").read_text())
    assert document["joint_set"] == "smpl24" and len(document["keypoints"]) == 24
    expected = meshpose.mesh_keypoints((vertices, faces), joint_set="smpl24")
    np.testing.assert_allclose(document["keypoints"]["left_knee"],
                               expected["keypoints"][expected["names"].index("left_knee")], atol=1e-4)
    assert (tmp_path / "pictures" / "walker.png").stat().st_size > 1000

    (meshes / "broken.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 9\n")
    result = _run(meshes, "-o", tmp_path / "out2")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "broken.obj" in result.stderr
    assert not (tmp_path / "out2").exists()


@pytest.mark.skipif(not HUMAN_SEG.is_dir(), reason="../shared/data/human_seg is absent")
def test_shipped_model_on_held_out_human_seg_subjects(tmp_path):
    from meshpose.meshkp.point_task import PointDataConfig, evaluate_real
    from meshpose.meshkp.segdata import build_dataset

    build_dataset(HUMAN_SEG, tmp_path / "kp", progress=False)
    model = load_mesh_keypoint_model()
    scores = evaluate_real(model, PointDataConfig(dataset=str(tmp_path / "kp")), "test", "cpu")
    assert scores["meshes"] >= 20
    assert scores["pck10"] > 0.9 and scores["side_correct"] > 0.9
