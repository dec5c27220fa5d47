"""The meshpose command: ``--help`` through the real entry point in a subprocess, the commands
through ``meshpose.cli.main`` in this process (the ``meshpose_cli`` fixture: exit status, stdout,
stderr), which saves a 3-5 s import per call."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from safetensors.numpy import load_file

import meshpose


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "meshpose", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0
    for command in ("body", "joints", "convert", "export-body"):
        assert command in result.stdout


def test_body_writes_mesh_keypoints_and_picture(tmp_path, anny_body, meshpose_cli):
    result = meshpose_cli(
        "body", "--pose", "walk", "--shape", "gender=1,age=0.7", "--out", tmp_path / "body.obj",
        "--keypoints", tmp_path / "body.json", "--joint-set", "h36m17", "--png", tmp_path / "body.png",
    )
    assert result.returncode == 0, result.stderr
    mesh = trimesh.load(tmp_path / "body.obj", process=False)
    assert len(mesh.vertices) == anny_body.num_vertices
    assert len(mesh.faces) == len(anny_body.faces)

    # The written mesh is the body model's output for that pose and shape.
    from meshpose.body import preset_pose

    import torch

    expected = anny_body(preset_pose("walk"), torch.tensor([[1.0, 0.7, 0.5, 0.5, 0.5, 0.5]]))
    assert np.abs(mesh.vertices - expected.vertices[0].numpy()).max() < 1e-5

    keypoints = json.loads((tmp_path / "body.json").read_text())
    assert keypoints["joint_set"] == "h36m17"
    assert len(keypoints["keypoints"]) == 17
    # h36m17 is Human3.6M's pelvis, regressed from the mesh by the shipped regressor's weights.
    stored = load_file(str(Path(meshpose.__file__).parent / "assets" / "h36m17_regressor.safetensors"))
    rows = stored["joint"] == 0
    regressed = (stored["weight"][rows, None] * mesh.vertices[stored["vertex"][rows]]).sum(0)
    pelvis = np.array(keypoints["keypoints"]["pelvis"])
    assert np.allclose(pelvis, regressed, atol=1e-5)

    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "body.png"))
    assert (picture < 250).any(axis=-1).mean() > 0.05  # something drawn, not a blank page


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shape", "age=2"], "age=2.0 is outside"),
        (["--shape", "height=tall"], "must be numbers"),
        (["--shape", "hair=1"], "unknown shape parameter"),
        (["--pose", "dance"], "unknown pose"),
        (["--joint-set", "coco99"], "unknown joint set"),
    ],
)
def test_body_bad_arguments_give_one_line_and_exit_2(tmp_path, args, message, meshpose_cli):
    out = tmp_path / "body.obj"
    result = meshpose_cli("body", "--out", out, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_body_pose_file(tmp_path, meshpose_cli):
    pose = np.zeros((22, 3))
    pose[0] = [0.0, 0.0, np.pi / 2]  # turn a quarter about the vertical
    np.save(tmp_path / "pose.npy", pose)
    assert meshpose_cli("body", "--pose", tmp_path / "pose.npy", "--out", tmp_path / "a.obj").returncode == 0
    assert meshpose_cli("body", "--out", tmp_path / "b.obj").returncode == 0
    turned = trimesh.load(tmp_path / "a.obj", process=False).vertices
    upright = trimesh.load(tmp_path / "b.obj", process=False).vertices
    # A quarter turn about +z maps (x, y) to (-y, x) about the pelvis at the origin.
    assert np.allclose(turned[:, 0], -upright[:, 1], atol=1e-5)
    assert np.allclose(turned[:, 1], upright[:, 0], atol=1e-5)

    np.save(tmp_path / "bad.npy", np.zeros((21, 3)))
    result = meshpose_cli("body", "--pose", tmp_path / "bad.npy", "--out", tmp_path / "c.obj")
    assert result.returncode == 2 and "bad.npy" in result.stderr and "(21, 3)" in result.stderr
    assert not (tmp_path / "c.obj").exists()


def test_joints_prints_a_set_in_order(meshpose_cli):
    result = meshpose_cli("joints", "openpose18")
    assert result.returncode == 0
    listed = [line.split(":")[1].strip() for line in result.stdout.splitlines()
              if line.strip()[:1].isdigit()]
    assert listed[:4] == ["nose", "neck", "right_shoulder", "right_elbow"]
    assert len(listed) == 18


def test_convert_round_trip_and_joint_set_change(tmp_path, meshpose_cli):
    people = [
        {"pose_keypoints_2d": [float(v) for j in range(18) for v in (10 * j, 5 * j, 0.9)]},
    ]
    (tmp_path / "frame.json").write_text(json.dumps({"version": 1.3, "people": people}))
    result = meshpose_cli("convert", tmp_path / "frame.json", "-o", tmp_path / "out.npz", "--to", "coco17")
    assert result.returncode == 0, result.stderr
    data = np.load(tmp_path / "out.npz")
    assert str(data["joint_set"]) == "coco17"
    # coco17's left_shoulder is OpenPose joint 5: (50, 25).
    assert np.allclose(data["keypoints"][0, 5], [50.0, 25.0, 0.9])


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"people": [', "malformed JSON"),
        ("", "empty"),
        ('{"version": 1.3, "people": [{"pose_keypoints_2d": [1, 2, 0.5]}]}', "keypoint"),
        ('{"version": 1.3, "people": [{"pose_keypoints_2d": %s}]}' % ([1.0, 2.0, 1.5] * 18), "1.5"),
    ],
)
def test_convert_bad_input_one_line_exit_2_nothing_written(tmp_path, content, message, meshpose_cli):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "out.npz"
    result = meshpose_cli("convert", bad, "-o", out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "bad.json" in lines[0] and message in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]  # no temporary file left behind either


def test_a_negative_up_axis_may_be_a_separate_argument(tmp_path, capsys):
    """``--up -y`` reads as ``--up=-y`` (argparse alone would take ``-y`` for an option): the
    command gets past argument parsing and fails on the missing mesh, naming it."""
    from meshpose.cli import main
    from meshpose.cli.arguments import join_negative_values

    assert join_negative_values(["a", "--up", "-y", "-o", "b"]) == ["a", "--up=-y", "-o", "b"]
    assert join_negative_values(["--up", "-o", "b"]) == ["--up", "-o", "b"]  # not an axis: unchanged
    missing = tmp_path / "missing.obj"
    assert main(["mesh-keypoints", str(missing), "-o", str(tmp_path / "out.json"), "--up", "-y"]) == 2
    error = capsys.readouterr().err
    assert "missing.obj" in error and "expected one argument" not in error
