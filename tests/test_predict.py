"""meshpose predict: the regressor, the results schema, per-person files, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import meshpose
from meshpose.errors import MeshposeError
from meshpose.models.regressor import SLOTS, normalise, root_from_weak_perspective, slot_index, to_slots

SAMPLE = Path(meshpose.__file__).parent / "assets" / "sample_coco.json"


def test_slots_keep_surface_and_centre_points_apart():
    coco, h36m = slot_index("coco17"), slot_index("h36m17")
    assert len(set(coco.tolist()) & set(h36m.tolist())) == 0
    assert SLOTS[int(coco[11])] == "surface:left_hip" and SLOTS[int(h36m[4])] == "centre:left_hip"
    # mpii16 and h36m17 share joint centres by name
    assert SLOTS[int(slot_index("mpii16")[6])] == "centre:pelvis" == SLOTS[int(h36m[0])]


def test_normalisation_by_hand():
    keypoints = torch.tensor([[[100.0, 50.0, 1.0], [300.0, 150.0, 1.0], [999.0, 999.0, 0.0]]])
    slots = torch.zeros(1, len(SLOTS), 3)
    slots[0, :3] = keypoints[0]
    normalised, confidence, centre, size = normalise(slots)
    assert torch.allclose(centre, torch.tensor([[200.0, 100.0]]))  # the ignored point does not count
    assert size.item() == 200.0  # the larger side
    assert torch.allclose(normalised[0, 0], torch.tensor([-1.0, -0.5]))
    assert torch.allclose(normalised[0, 2], torch.zeros(2))  # masked


def test_root_from_weak_perspective_inverts_a_pinhole_projection():
    # A root at (0.4, -0.2, 5) m, f = 1000, principal (640, 360): it projects to (720, 320).
    focal, principal = torch.tensor([[1000.0, 1000.0]]), torch.tensor([[640.0, 360.0]])
    centre, size = torch.tensor([[700.0, 330.0]]), torch.tensor([400.0])
    s = 1000.0 / 5.0 / (400.0 / 2)  # pixels per metre / half box size
    t = (torch.tensor([[720.0, 320.0]]) - centre) / (size[:, None] / 2)
    root = root_from_weak_perspective(torch.cat([torch.tensor([[s]]), t], 1), centre, size, focal, principal)
    assert torch.allclose(root, torch.tensor([[0.4, -0.2, 5.0]]), atol=1e-5)


def test_rotation_onto_ray_by_hand():
    from meshpose.geometry.rotations import rotation_onto_ray

    focal, principal = torch.tensor([[1000.0, 800.0]] * 3), torch.tensor([[500.0, 400.0]] * 3)
    # At the principal point nothing turns; 1000 px right (fx = 1000) is 45 degrees about +y;
    # 800 px down (fy = 800) is 45 degrees about -x (the optical axis tips towards +y).
    pixels = torch.tensor([[500.0, 400.0], [1500.0, 400.0], [500.0, 1200.0]])
    turn = rotation_onto_ray(pixels, focal, principal)
    c = 0.5 ** 0.5
    about_y = torch.tensor([[c, 0.0, c], [0.0, 1.0, 0.0], [-c, 0.0, c]])
    about_minus_x = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, c], [0.0, -c, c]])
    assert torch.allclose(turn[0], torch.eye(3), atol=1e-6)
    assert torch.allclose(turn[1], about_y, atol=1e-6)
    assert torch.allclose(turn[2], about_minus_x, atol=1e-6)


def test_a_person_off_centre_is_turned_into_the_real_cameras_axes():
    # The network reads box-normalised keypoints, so it gives the same body wherever the person
    # is in the image: the view of a camera aimed at them. With intrinsics, that body is turned
    # so that the camera's optical axis goes to the ray through the root (the direction of
    # cam_t): Rodrigues' formula, written out here.
    people = np.array([entry["keypoints"] for entry in json.loads(SAMPLE.read_text())], np.float32)
    people = people.reshape(len(people), 17, 3)
    people[..., 0] += 500.0  # further right: 11-30 degrees off the optical axis
    plain = meshpose.predict(people, "coco17", ("coco17",))["joints3d_coco17"]
    known = meshpose.predict(people, "coco17", ("coco17",), image_size=(1280, 720), focal_length=1000.0)
    for person in range(len(people)):
        ray = known["cam_t"][person] / np.linalg.norm(known["cam_t"][person])
        axis = np.cross([0.0, 0.0, 1.0], ray)
        sin, cos = np.linalg.norm(axis), ray[2]
        k = axis / sin
        cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        turn = np.eye(3) + sin * cross + (1 - cos) * cross @ cross
        assert np.degrees(np.arcsin(sin)) > 5  # a real turn for every person
        assert np.abs(known["joints3d_coco17"][person] - plain[person] @ turn.T).max() < 1e-3


@pytest.fixture(scope="module")
def synthetic_people(anny_body):
    """Held-out CMU poses seen by a camera: 2D input and true 3D (h36m17, root-relative)."""
    from meshpose.data.posebank import load_shipped_pose_bank
    from meshpose.data.samples import SampleConfig, SampleEngine

    bank = load_shipped_pose_bank()
    held = np.array([str(n).startswith("cmu/13/") for n in bank.clip_names])[bank.clip]
    bank = type(bank)(bank.rotations[held], bank.clip[held], bank.frame[held], bank.clip_names,
                      bank.clip_sources, bank.clip_licences, bank.clip_shapes)
    engine = SampleEngine(bank, SampleConfig(joint_set="h36m17", vertices=False), body=anny_body)
    return engine.sample(64, torch.Generator().manual_seed(5))


def test_prediction_beats_a_mean_pose_on_held_out_motion(synthetic_people):
    from meshpose import metrics

    truth = synthetic_people["joints3d"] - synthetic_people["root"][:, None]
    # The samples' true joints are Anny's anatomical centres: compare like with like.
    results = meshpose.predict(synthetic_people["keypoints2d"].numpy(), "h36m17", ("h36m17_anatomical",))
    predicted = torch.from_numpy(results["joints3d_h36m17_anatomical"])
    ours = metrics.pa_mpjpe(predicted, truth)
    # Baseline: the body's reference pose for everybody.
    baseline = metrics.pa_mpjpe(predicted[:0].new_tensor(np.repeat(predicted.mean(0, keepdim=True).numpy(), 64, 0)), truth)
    assert ours < 0.8 * baseline
    assert ours < 0.12  # metres; the shipped model's synthetic validation is ~70 mm


def test_results_schema_and_cam_t(synthetic_people):
    keypoints = synthetic_people["keypoints2d"][:5].numpy()
    size = tuple(int(v) for v in synthetic_people["image_size"][0])
    focal = float(synthetic_people["focal"][0, 0])
    results = meshpose.predict(keypoints, "h36m17", ("coco17", "smpl24"), image_size=size, focal_length=focal)
    assert results["joints3d_coco17"].shape == (5, 17, 3) and results["joints3d_smpl24"].shape == (5, 24, 3)
    assert results["vertices"].shape[0] == 5 and results["faces"].shape[1] == 3
    assert np.allclose(results["joints3d_smpl24"][:, 0], 0.0, atol=1e-5)  # root-relative: pelvis at 0
    assert results["cam_t"].shape == (5, 3) and (results["cam_t"][:, 2] > 0).all()
    # The camera distance is recovered roughly (weak perspective from the box size).
    truth = synthetic_people["root"][:5, 2].numpy()
    assert np.median(np.abs(results["cam_t"][:, 2] - truth) / truth) < 0.35


def test_predict_command_on_the_shipped_sample(tmp_path, meshpose_cli):
    out = tmp_path / "out.npz"
    result = meshpose_cli("predict", SAMPLE, "-o", out, "--out-dir", tmp_path / "people",
                          "--output-joints", "coco17", "h36m17")
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    assert data["joints3d_h36m17"].shape == (4, 17, 3)
    assert list(data["frame_ids"]) == [0, 0, 1, 1]
    files = sorted(p.name for p in (tmp_path / "people").iterdir())
    assert len(files) == 12 and files[0] == "frame000000_person00.json"
    keypoints = json.loads((tmp_path / "people" / "frame000000_person00.json").read_text())
    assert keypoints["joint_set"] == "coco17" and len(keypoints["keypoints"]) == 17

    # Into an existing folder: the user's own files stay.
    (tmp_path / "people" / "notes.txt").write_text("mine")
    again = meshpose_cli("predict", SAMPLE, "-o", out, "--out-dir", tmp_path / "people")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "people" / "notes.txt").read_text() == "mine"
    assert len(list((tmp_path / "people").iterdir())) == 13


@pytest.mark.parametrize("content, message", [
    ("[{\"image_id\": 0, \"category_id\": 1, \"keypoints\": [1, 2]}]", "keypoint"),
    ("{", "malformed JSON"),
])
def test_predict_bad_input_one_line_exit_2_nothing_written(tmp_path, content, message, meshpose_cli):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = meshpose_cli("predict", bad, "-o", tmp_path / "o.npz", "--out-dir", tmp_path / "people")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json" in lines[0] and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_predict_api_rejects_wrong_shapes():
    with pytest.raises(MeshposeError, match="keypoints must be"):
        meshpose.predict(np.zeros((2, 16, 3)), "coco17")
    with pytest.raises(MeshposeError, match="predict reads"):
        meshpose.predict(np.zeros((2, 12, 3)), "seed12")


def test_key2mesh_run_exports_final_weights_or_its_last_checkpoint(tmp_path):
    """A tiny key2mesh run -> export -> load_regressor gives the run's weights (to float16), both
    from ``model.pt`` and, once that is gone, from the last checkpoint."""
    from meshpose.models.export import export_regressor
    from meshpose.models.inference import load_regressor
    from meshpose.tasks import load_config
    from meshpose.tasks import train

    config = load_config(Path(__file__).parents[1] / "configs" / "key2mesh.yaml", [
        "run.device=cpu", f"run.output_dir={tmp_path}", "train.epochs=1", "train.steps_per_epoch=2",
        "train.batch_size=8", "data.val_size=8", "model.hidden=32", "checkpoint.every_steps=1"])
    run_dir = train(config)
    final = torch.load(run_dir / "model.pt", weights_only=True)
    exported = load_regressor(str(export_regressor(run_dir, tmp_path / "final.safetensors"))).state_dict()
    assert exported.keys() == final.keys()
    for name, value in final.items():
        torch.testing.assert_close(exported[name], value.half().float())

    checkpoint = torch.load(run_dir / "checkpoints" / "step-00000001.pt", weights_only=False)["model"]
    (run_dir / "model.pt").unlink()
    (run_dir / "checkpoints" / "step-00000002.pt").unlink()
    (run_dir / "checkpoints" / "last").write_text("step-00000001.pt")
    exported = load_regressor(str(export_regressor(run_dir, tmp_path / "step1.safetensors"))).state_dict()
    changed = [name for name in checkpoint if not torch.equal(checkpoint[name], final[name])]
    assert changed  # step 1 differs from the final weights, so the test can tell them apart
    for name, value in checkpoint.items():
        torch.testing.assert_close(exported[name], value.half().float())


# ------------------------------------------------------------------------------- Pose2Mesh
def test_shipped_pose2mesh_beats_a_mean_pose_and_recovers_the_camera(synthetic_people):
    from meshpose import metrics

    # 16 people: MeshNet costs ~0.5 s of CPU per body. PA-MPJPE 70 mm (68 mm for 32), 0.46 of the
    # mean pose's (0.42 for 32); cam_t depth error median 0.13 (0.13 for 32).
    n = 16
    truth = (synthetic_people["joints3d"] - synthetic_people["root"][:, None])[:n]
    size = tuple(int(v) for v in synthetic_people["image_size"][0])
    focal = float(synthetic_people["focal"][0, 0])
    results = meshpose.predict(synthetic_people["keypoints2d"][:n].numpy(), "h36m17",
                               ("h36m17_anatomical", "coco17", "h36m17"), model="pose2mesh", image_size=size,
                               focal_length=focal)
    assert results["vertices"].shape == (n, 13718, 3) and results["pose"].shape == (n, 0)
    assert results["joints3d_coco17"].shape == (n, 17, 3) and results["joints3d_h36m17"].shape == (n, 17, 3)
    predicted = torch.from_numpy(results["joints3d_h36m17_anatomical"])  # like the samples' truth
    ours = metrics.pa_mpjpe(predicted, truth)
    baseline = metrics.pa_mpjpe(predicted.mean(0, keepdim=True).expand(n, -1, -1), truth)
    assert ours < 0.8 * baseline
    assert ours < 0.13  # metres; its synthetic validation PA-MPJPE is ~66 mm
    # cam_t: the least-squares translation puts the pelvis at about the true distance.
    depth = synthetic_people["root"][:n, 2].numpy()
    assert np.median(np.abs(results["cam_t"][:, 2] - depth) / depth) < 0.35


def test_pose2mesh_passes_are_sized_by_free_memory():
    from meshpose.pose2mesh.inference import BYTES_PER_PERSON, people_per_pass

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert people_per_pass(cpu, free_bytes=8 * BYTES_PER_PERSON) == 2  # a quarter of the free memory
    assert people_per_pass(cpu, free_bytes=0) == 1
    assert people_per_pass(cpu, free_bytes=2**50) == 64 and people_per_pass(cuda, free_bytes=2**50) == 4096
    assert people_per_pass(cuda, free_bytes=400 * BYTES_PER_PERSON) == 100


def test_pose2mesh_in_small_passes_gives_the_one_pass_answer(synthetic_people, monkeypatch):
    """A batch split into passes of 3 gives what one pass gives (MeshNet normalises per person),
    and people without enough visible joints keep their rows, NaN, between the others."""
    import meshpose.pose2mesh.inference as inference

    keypoints = synthetic_people["keypoints2d"][:7].numpy().copy()
    keypoints[2, :, 2] = 0.0  # nobody visible in row 2
    size = tuple(int(v) for v in synthetic_people["image_size"][0])
    focal = float(synthetic_people["focal"][0, 0])

    def run():
        return meshpose.predict(keypoints, "h36m17", ("coco17",), model="pose2mesh", image_size=size,
                                focal_length=focal)

    monkeypatch.setattr(inference, "people_per_pass", lambda device: 64)
    whole = run()
    monkeypatch.setattr(inference, "people_per_pass", lambda device: 3)
    passes = run()
    assert whole["valid"].tolist() == [True, True, False, True, True, True, True]
    for key in ("vertices", "joints3d_coco17", "cam_t"):
        assert np.isnan(passes[key][2]).all() and not np.isnan(np.delete(passes[key], 2, 0)).any()
        np.testing.assert_allclose(passes[key], whole[key], rtol=0, atol=1e-5)


def test_predict_command_with_pose2mesh(tmp_path, meshpose_cli):
    out = tmp_path / "out.npz"
    result = meshpose_cli("predict", SAMPLE, "-o", out, "--model", "pose2mesh", "--out-dir", tmp_path / "people",
                          "--output-joints", "h36m17")
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    assert data["joints3d_h36m17"].shape == (4, 17, 3) and data["pose"].shape == (4, 0)
    assert len(list((tmp_path / "people").iterdir())) == 12
    # The two model families agree on these people's 3D joints up to a similarity transform
    # within a loose bound (independent networks; a broken one lands far off).
    regressor = meshpose.predict(np.asarray(_sample_keypoints()), "coco17", ("h36m17",))
    from meshpose import metrics

    gap = metrics.pa_mpjpe(torch.from_numpy(data["joints3d_h36m17"]), torch.from_numpy(regressor["joints3d_h36m17"]))
    assert gap < 0.12


def test_h36m17_output_is_the_shipped_regressor_on_the_predicted_mesh():
    from safetensors.numpy import load_file

    results = meshpose.predict(np.asarray(_sample_keypoints()), "coco17", ("h36m17", "h36m17_anatomical"))
    stored = load_file(str(SAMPLE.parent / "h36m17_regressor.safetensors"))
    matrix = np.zeros((17, results["vertices"].shape[1]))
    np.add.at(matrix, (stored["joint"], stored["vertex"]), stored["weight"])
    expected = np.einsum("jv,nvd->njd", matrix, results["vertices"].astype(np.float64))
    assert np.abs(results["joints3d_h36m17"] - expected).max() < 1e-5
    # The anatomical pelvis (Anny's root bone) is the origin of the outputs; the two definitions
    # of the same joints differ by centimetres.
    assert np.abs(results["joints3d_h36m17_anatomical"][:, 0]).max() < 1e-6
    gap = np.linalg.norm(results["joints3d_h36m17"] - results["joints3d_h36m17_anatomical"], axis=-1).mean()
    assert 0.005 < gap < 0.08


def _sample_keypoints():
    from meshpose.io.keypoints import read_keypoints

    return read_keypoints(SAMPLE).keypoints


def test_the_research_model_is_selectable_and_says_what_it_learnt_from(tmp_path, meshpose_cli):
    """``--model research`` is a shipped name; its file's header names the Human3.6M detections it
    adapted to, and its bodies differ from the default model's."""
    from safetensors import safe_open

    from meshpose.io.weights import SHIPPED_MODELS, model_path

    with safe_open(str(model_path("research", SHIPPED_MODELS)), "pt") as handle:
        training_data = handle.metadata()["training_data"]
    assert "S5-S8" in training_data and "CMU" in training_data
    people = np.array([entry["keypoints"] for entry in json.loads(SAMPLE.read_text())], np.float32)
    people = people.reshape(len(people), 17, 3)
    default = meshpose.predict(people, "coco17", ("coco17",))["joints3d_coco17"]
    research = meshpose.predict(people, "coco17", ("coco17",), model="research")["joints3d_coco17"]
    assert research.shape == default.shape and np.abs(research - default).max() > 0.01
    result = meshpose_cli("predict", SAMPLE, "-o", tmp_path / "out.npz", "--model", "research")
    assert result.returncode == 0, result.stderr
    assert np.allclose(np.load(tmp_path / "out.npz")["joints3d_coco17"], research, atol=1e-5)
