"""meshpose image: detector mapping, camera fit, smoothing, the pipeline with a detector whose
answer is known, bad input, and (when the image extra is installed) MediaPipe on real photos."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from meshpose.geometry.camera import (
    fit_translation,
    focal_from_field_of_view,
    project,
    translation_from_2d_3d,
)
from meshpose.image.detectors import MEDIAPIPE33, to_joint_set
from meshpose.image.estimate import ImageBodyEstimator, reprojection_errors
from meshpose.image.smoothing import OneEuroFilter, jitter, one_euro, one_euro_rotations
from meshpose.joints import get_joint_set

# ------------------------------------------------------------------------------------------
# detector output -> joint sets


def test_mediapipe_landmarks_map_to_coco17_and_body25_by_name():
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(0, 1, (2, 33, 3)).astype(np.float32)
    mp_index = {n: i for i, n in enumerate(MEDIAPIPE33.names)}
    coco = to_joint_set(landmarks, MEDIAPIPE33, "coco17")
    # MediaPipe's documented landmark numbers: nose 0, left eye 2, right ear 8, left hip 23, right ankle 28.
    for joint, number in (("nose", 0), ("left_eye", 2), ("right_ear", 8), ("left_hip", 23), ("right_ankle", 28)):
        assert mp_index[joint] == number
        np.testing.assert_array_equal(coco[:, get_joint_set("coco17").index(joint)], landmarks[:, number])
    body25 = to_joint_set(landmarks, MEDIAPIPE33, "body25")
    js = get_joint_set("body25")
    neck = body25[:, js.index("neck")]
    np.testing.assert_allclose(neck[:, :2], (landmarks[:, 11, :2] + landmarks[:, 12, :2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(neck[:, 2], np.minimum(landmarks[:, 11, 2], landmarks[:, 12, 2]))
    np.testing.assert_array_equal(body25[:, js.index("left_big_toe")], landmarks[:, 31])  # foot index
    np.testing.assert_array_equal(body25[:, js.index("right_heel")], landmarks[:, 30])
    np.testing.assert_array_equal(body25[:, js.index("left_small_toe")], 0.0)  # no landmark: missing


# ------------------------------------------------------------------------------------------
# camera


def test_focal_from_field_of_view_by_hand():
    assert focal_from_field_of_view((1000, 500), 90.0) == pytest.approx(500.0)
    assert focal_from_field_of_view((300, 800), 60.0) == pytest.approx(400.0 / math.tan(math.radians(30.0)))


def _joints(batch=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 17, 3, generator=generator, dtype=torch.float64) * 0.4


def test_fit_translation_recovers_an_exact_translation():
    joints = _joints()
    t = torch.tensor([[0.3, -0.2, 4.0], [-0.5, 0.1, 6.0], [0.0, 0.4, 2.5]], dtype=torch.float64)
    focal = torch.tensor([[900.0, 900.0], [1200.0, 1100.0], [500.0, 500.0]], dtype=torch.float64)
    principal = torch.tensor([[640.0, 360.0]] * 3, dtype=torch.float64)
    pixels = project(joints + t[:, None], focal, principal)
    torch.testing.assert_close(fit_translation(joints, pixels, focal, principal, init=torch.zeros(3, 3) + 3),
                               t, atol=1e-6, rtol=0)


def test_fit_translation_minimises_pixel_error_like_a_generic_solver():
    from scipy.optimize import least_squares

    joints = _joints(1, seed=3)
    focal = torch.tensor([[1000.0, 1000.0]], dtype=torch.float64)
    principal = torch.tensor([[500.0, 500.0]], dtype=torch.float64)
    t_true = torch.tensor([[0.2, 0.1, 3.0]], dtype=torch.float64)
    noise = torch.randn(1, 17, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 15
    pixels = project(joints + t_true[:, None], focal, principal) + noise
    weights = torch.ones(1, 17, dtype=torch.float64)
    weights[0, :4] = 0.0  # ignored joints

    def residual(t):
        p = joints[0].numpy() + t
        uv = p[:, :2] / p[:, 2:] * 1000.0 + 500.0
        return ((uv - pixels[0].numpy()) * weights[0, :, None].numpy()).ravel()

    reference = least_squares(residual, t_true[0].numpy() + [0.3, -0.3, 1.0]).x
    fitted = fit_translation(joints, pixels, focal, principal, weights)[0].numpy()
    np.testing.assert_allclose(fitted, reference, atol=1e-6)
    # The linear (algebraic) solution is a different, worse fit of the pixels.
    linear = translation_from_2d_3d(joints, pixels, focal, principal, weights)[0].numpy()
    assert np.sum(residual(fitted) ** 2) < np.sum(residual(linear) ** 2)


def test_reprojection_errors_by_hand():
    keypoints = np.array([[[0, 0, 1], [30, 40, 1], [100, 100, 0.1]]], np.float32)
    projected = np.array([[[3, 4], [30, 40], [0, 0]]], np.float32)  # errors 5, 0; third ignored
    pixels, fraction = reprojection_errors(projected, keypoints)
    assert pixels[0] == pytest.approx(2.5)
    assert fraction[0] == pytest.approx(2.5 / 50.0)  # box of the confident joints: 30 x 40
    assert np.isnan(reprojection_errors(projected, keypoints * [1, 1, 0])[0][0])


# ------------------------------------------------------------------------------------------
# smoothing


def test_one_euro_with_beta_zero_is_an_exponential_average():
    fps, cutoff = 30.0, 2.0
    alpha = 1.0 / (1.0 + fps / (2 * math.pi * cutoff))
    x = np.random.default_rng(0).normal(size=(20, 2))
    expected = [x[0]]
    for value in x[1:]:
        expected.append(alpha * value + (1 - alpha) * expected[-1])
    np.testing.assert_allclose(one_euro(x, fps, min_cutoff=cutoff, beta=0.0), np.array(expected))


def test_one_euro_follows_fast_motion_with_less_lag_when_beta_is_high():
    t = np.arange(60) / 30.0
    ramp = 2.0 * t[:, None]  # 2 units per second
    slow = one_euro(ramp, 30.0, min_cutoff=0.5, beta=0.0)
    fast = one_euro(ramp, 30.0, min_cutoff=0.5, beta=5.0)
    assert abs(fast[-1, 0] - ramp[-1, 0]) < 0.5 * abs(slow[-1, 0] - ramp[-1, 0])
    still = one_euro(np.ones((10, 3)), 30.0)
    np.testing.assert_allclose(still, 1.0)
    step = OneEuroFilter(30.0)
    step(np.zeros(2))
    step.reset()
    np.testing.assert_array_equal(step(np.full(2, 7.0)), 7.0)  # after a reset the first sample passes


def test_one_euro_rotations_stay_rotations_and_reduce_jitter():
    import roma

    generator = torch.Generator().manual_seed(0)
    angles = torch.linspace(0, 1.0, 40)[:, None] * torch.tensor([[0.0, 0.0, 1.0]])
    noisy = angles + 0.05 * torch.randn(40, 3, generator=generator)
    rotations = roma.rotvec_to_rotmat(noisy.double()).numpy()
    smoothed = one_euro_rotations(rotations, 30.0, min_cutoff=1.0, beta=0.0)
    np.testing.assert_allclose(smoothed @ np.swapaxes(smoothed, -1, -2), np.broadcast_to(np.eye(3), (40, 3, 3)), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(smoothed), 1.0, atol=1e-9)
    points = lambda r: r @ np.array([1.0, 0.0, 0.0])
    assert jitter(points(smoothed)[:, None], 30.0) < 0.5 * jitter(points(rotations)[:, None], 30.0)


def test_jitter_of_a_parabola_by_hand():
    fps = 10.0
    t = np.arange(12) / fps
    joints = np.zeros((12, 2, 3))
    joints[:, :, 0] = 0.5 * 3.0 * t[:, None] ** 2  # constant acceleration 3 m/s^2
    assert jitter(joints, fps) == pytest.approx(3.0)
    assert jitter(joints[:2], fps) == 0.0


# ------------------------------------------------------------------------------------------
# the pipeline, with a detector whose answer is known

SIZE, FOCAL = (320, 400), 500.0  # (W, H) pixels


@pytest.fixture(scope="module")
def scene(anny_body):
    """A rendered person and the true coco17 keypoints of three frames of a CMU take."""
    from meshpose.body import body_joints
    from meshpose.data.posebank import load_shipped_pose_bank
    from meshpose.viz import overlay_mesh

    bank = load_shipped_pose_bank()
    with torch.no_grad():
        bodies = anny_body(bank.rotation_matrices(np.arange(100, 106)), torch.full((6, 6), 0.5))
    axes = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # z-up, facing -y -> camera
    centre = bodies.joint("bone:root")[0]
    to_camera = lambda p: (p - centre) @ axes.T + torch.tensor([0.0, 0.1, 3.2])
    w, h = SIZE
    background = np.full((h, w, 3), 100, np.uint8)
    images = [overlay_mesh(background, to_camera(v).numpy(), anny_body.faces.numpy(), FOCAL, (w / 2, h / 2),
                           alpha=1.0, color=(210, 170, 140)) for v in bodies.vertices]
    joints = to_camera(body_joints(bodies, "coco17")).numpy()
    pixels = joints[..., :2] / joints[..., 2:] * FOCAL + np.array([w / 2, h / 2])
    keypoints = np.concatenate([pixels, np.ones_like(pixels[..., :1])], -1).astype(np.float32)
    return {"images": images, "keypoints": keypoints, "background": background, "joints": joints}


class TruthDetector:
    """Returns the true keypoints of the scene's image it is shown, nobody on a blank image."""

    joint_set = "coco17"

    def __init__(self, scene):
        self.scene = scene

    def __call__(self, image):
        for picture, keypoints in zip(self.scene["images"], self.scene["keypoints"]):
            if np.array_equal(picture, image):
                return keypoints[None]
        return np.zeros((0, 17, 3), np.float32)


@pytest.fixture(scope="module")
def estimator(scene):
    return ImageBodyEstimator(TruthDetector(scene))


def test_the_body_reprojects_onto_true_keypoints(estimator, scene):
    result = estimator(scene["images"][0])
    assert result["camera_source"] == "fit" and len(result["keypoints2d"]) == 1
    # Independent check of the reported error: project the camera-frame joints by hand.
    points = result["joints3d"][0] + result["cam_t"][0]
    focal = result["focal"][0]
    by_hand = points[:, :2] / points[:, 2:] * focal + np.array(SIZE) / 2
    true = scene["keypoints"][0, :, :2]
    diagonal = np.linalg.norm(true.max(0) - true.min(0))
    assert result["reprojection"][0] == pytest.approx(np.median(np.linalg.norm(by_hand - true, axis=1)) / diagonal, rel=1e-4)
    assert result["reprojection"][0] < 0.08
    # The body is where the person stands, at the distance the guessed focal length implies
    # (depth scales with it): within 15%.
    assert result["cam_t"][0, 2] == pytest.approx(3.2 * focal / FOCAL, rel=0.15)


def test_the_research_model_is_selectable_and_lines_up(scene):
    research = ImageBodyEstimator(TruthDetector(scene), model="research")
    result = research(scene["images"][0])
    assert len(result["keypoints2d"]) == 1 and result["reprojection"][0] < 0.08


def test_known_focal_length_takes_the_models_camera(scene):
    known = ImageBodyEstimator(TruthDetector(scene), focal_length=FOCAL)
    result = known(scene["images"][0])
    assert result["camera_source"] == "model"
    np.testing.assert_allclose(result["focal"], [FOCAL, FOCAL])
    assert result["reprojection"][0] < 0.15
    assert result["cam_t"][0, 2] == pytest.approx(3.2, rel=0.15)


def test_process_writes_each_person_and_reports_bad_files_in_one_line(tmp_path, estimator, scene):
    import io

    from meshpose.image import process
    from meshpose.io.meshes import read_mesh
    from meshpose.viz import save_png

    folder = tmp_path / "photos"
    save_png(folder / "person.png", scene["images"][0])
    save_png(folder / "empty.png", scene["background"])
    (folder / "broken.jpg").write_bytes(b"this is not an image")
    (folder / "notes.txt").write_text("ignored")
    errors = io.StringIO()
    reports = process(folder, tmp_path / "out", estimator, errors=errors)
    by_name = {r.path.split("/")[-1]: r for r in reports}
    assert sorted(by_name) == ["broken.jpg", "empty.png", "person.png"]
    assert by_name["person.png"].error is None and by_name["person.png"].people == 1
    assert by_name["empty.png"].error == "no person found"
    assert "cannot read image" in by_name["broken.jpg"].error
    lines = errors.getvalue().strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(str(folder)) for line in lines)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["person_person00.json", "person_person00.obj", "person_person00.png", "summary.json"]

    result = estimator(scene["images"][0])
    mesh = read_mesh(tmp_path / "out" / "person_person00.obj")
    np.testing.assert_allclose(mesh.vertices, result["vertices"][0] + result["cam_t"][0], atol=1e-5)
    document = json.loads((tmp_path / "out" / "person_person00.json").read_text())
    np.testing.assert_allclose(document["keypoints2d"]["points"], scene["keypoints"][0], atol=1e-3)
    assert document["keypoints2d"]["names"] == list(get_joint_set("coco17").names)
    assert len(document["parameters"]["pose_rotation_matrices"]) == 22
    assert document["camera"]["source"] == "fit"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [entry["error"] is None for entry in summary["inputs"]] == [False, False, True]

    from meshpose.io.images import read_image

    picture = read_image(tmp_path / "out" / "person_person00.png")
    assert picture.shape == scene["images"][0].shape
    # The overlay covers the person: pixels inside the true keypoints' box changed.
    x0, y0 = scene["keypoints"][0, :, :2].min(0).astype(int)
    x1, y1 = scene["keypoints"][0, :, :2].max(0).astype(int)
    changed = np.abs(picture[y0:y1, x0:x1].astype(int) - scene["images"][0][y0:y1, x0:x1]).sum(-1) > 10
    assert changed.mean() > 0.2


def _keypoint_file(path, keypoints):
    frames = np.repeat(np.arange(len(keypoints)), 1)
    np.savez(path, keypoints=keypoints, joint_set="coco17", frame_ids=frames, person_ids=np.zeros_like(frames))
    return path


def test_cli_takes_another_tools_detections_and_rejects_bad_input(tmp_path, scene, capsys):
    from meshpose.cli import main
    from meshpose.viz import save_png

    image = tmp_path / "frame.png"
    save_png(image, scene["images"][1])
    keypoints = _keypoint_file(tmp_path / "kp.npz", scene["keypoints"][1:2])
    assert main(["image", str(image), "--out-dir", str(tmp_path / "out"), "--keypoints", str(keypoints)]) == 0
    document = json.loads((tmp_path / "out" / "frame_person00.json").read_text())
    assert document["reprojection_error"]["median_fraction_of_bbox_diagonal"] < 0.08
    capsys.readouterr()

    two = _keypoint_file(tmp_path / "two.npz", scene["keypoints"][:2])
    assert main(["image", str(image), "--out-dir", str(tmp_path / "bad"), "--keypoints", str(two)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "two.npz" in err[0] and "2 frames for 1" in err[0]
    assert not (tmp_path / "bad").exists()

    assert main(["image", str(tmp_path / "missing.jpg"), "--out-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jpg" in err[0] and "no such file" in err[0]
    (tmp_path / "notes.txt").write_text("x")
    assert main(["image", str(tmp_path / "notes.txt"), "--out-dir", str(tmp_path / "bad")]) == 2
    assert "not an image or video" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_video_frames_are_estimated_smoothed_and_written(tmp_path, scene, capsys):
    cv2 = pytest.importorskip("cv2")
    from meshpose.cli import main

    video = tmp_path / "clip.avi"
    h, w = scene["images"][0].shape[:2]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    for image in scene["images"]:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    # Detections with noise, so that the filter has jitter to remove.
    noisy = scene["keypoints"].copy()
    noisy[..., :2] += np.random.default_rng(0).normal(0, 4, noisy[..., :2].shape)
    keypoints = _keypoint_file(tmp_path / "kp.npz", noisy)
    assert main(["image", str(video), "--out-dir", str(tmp_path / "out"), "--keypoints", str(keypoints),
                 "--no-meshes"]) == 0
    out = capsys.readouterr().out
    raw, smoothed = (float(v) for v in out.split("joint jitter ")[1].split(" m/s^2")[0].split(" -> "))
    assert smoothed < raw
    files = sorted(p.name for p in (tmp_path / "out" / "clip").iterdir())
    assert files == [f"frame{i:06d}_person00.{ext}" for i in range(6) for ext in ("json", "png")]
    assert json.loads((tmp_path / "out" / "clip" / "frame000004_person00.json").read_text())["frame"] == 4


# ------------------------------------------------------------------------------------------
# MediaPipe (the image extra)


@pytest.fixture(scope="module")
def mediapipe_pose():
    pytest.importorskip("mediapipe")
    from meshpose.image.detectors import MediaPipePose

    return MediaPipePose()


def test_mediapipe_finds_the_astronaut(mediapipe_pose):
    data = pytest.importorskip("skimage.data")
    keypoints = to_joint_set(mediapipe_pose(data.astronaut()), MEDIAPIPE33, "coco17")
    assert keypoints.shape == (1, 17, 3)
    coco = get_joint_set("coco17")
    nose = keypoints[0, coco.index("nose")]
    # Her face, marked by hand on the 512 x 512 picture: x 180-280, y 70-180.
    assert 180 < nose[0] < 280 and 70 < nose[1] < 180 and nose[2] > 0.9
    # She faces the camera: her left shoulder is on the image's right.
    assert keypoints[0, coco.index("left_shoulder"), 0] > keypoints[0, coco.index("right_shoulder"), 0] + 100


def test_mediapipe_on_a_rendered_body_lines_up(mediapipe_pose, scene):
    estimator = ImageBodyEstimator(mediapipe_pose)
    result = estimator(scene["images"][0])
    assert len(result["keypoints2d"]) == 1
    truth = scene["keypoints"][0, :, :2]
    diagonal = np.linalg.norm(truth.max(0) - truth.min(0))
    detected = result["keypoints2d"][0]
    confident = detected[:, 2] >= 0.5
    assert np.median(np.linalg.norm(detected[confident, :2] - truth[confident], axis=1)) < 0.05 * diagonal
    assert result["reprojection"][0] < 0.08


def test_mediapipe_blank_image_finds_nobody(mediapipe_pose, scene):
    assert mediapipe_pose(scene["background"]).shape == (0, 33, 3)


def test_missing_mediapipe_says_which_pythons_the_image_extra_supports(monkeypatch):
    """On Python 3.13+ the image extra installs without MediaPipe (no wheel): the detector's error
    names the Python version and the way around it, in one line."""
    import sys

    from meshpose.image import detectors

    monkeypatch.setattr(sys, "version_info", (3, 13, 1, "final", 0))
    message = detectors._missing_mediapipe()
    assert "Python 3.13" in message and "3.10-3.12" in message and "--keypoints" in message
    assert "\n" not in message
    monkeypatch.setattr(sys, "version_info", (3, 12, 7, "final", 0))
    assert "pip install 'meshpose[image]'" in detectors._missing_mediapipe()
