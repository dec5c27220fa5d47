"""Training task ``pose2mesh``: batch contents checked against the camera model, a tiny two-stage
training run (PoseNet, then MeshNet on the frozen PoseNet), export, and inference from the file."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from meshpose.tasks import TASKS

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose2mesh.yaml"


def small_overrides(cache_dir, stage: str) -> list[str]:
    return ["run.device=cpu", "train.amp=fp32", f"data.stage={stage}", "model.posenet_width=64",
            "model.n_levels=4", "model.widths=[8,8,8,16]", "model.joint_width=16", "model.blocks=1",
            f"model.cache_dir={cache_dir}", "data.regressor_samples=100", "data.val_size=4", "data.val_batch=4"]


def short_run(cache_dir, stage: str, steps: int, lr: float = 0.003) -> list[str]:
    return small_overrides(cache_dir, stage) + [
        "train.epochs=1", f"train.steps_per_epoch={steps}", "train.batch_size=8", "train.log_every=1",
        "train.grad_clip=0.0", f"optim.lr={lr}", "schedule.warmup_steps=0", "schedule.name=constant",
        "checkpoint.every_steps=100"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pose2mesh_cache")


def test_posenet_batch_targets_match_the_cameras(cache_dir):
    from meshpose.models.regressor import slot_index
    from meshpose.tasks import load_config

    config = load_config(CONFIG, small_overrides(cache_dir, "posenet") + ["data.input_sets=[h36m17]"])
    task = TASKS["pose2mesh"]
    batch = task.make_batch(config.data, torch.Generator().manual_seed(0), 6, "cpu", slice(2, 5))
    assert batch["joints"].shape == (3, 17, 3) and "vertices" not in batch
    assert (batch["joints"][:, 0] == 0).all()  # root-relative
    # The input is the same joints seen by the camera with detector noise: the clean projections
    # of the targets lie within a few percent of the box size of the noisy input keypoints.
    keypoints = batch["slots"][:, slot_index("h36m17")]
    seen = keypoints[..., 2] > 0
    box = (keypoints[..., :2].amax(1) - keypoints[..., :2].amin(1)).amax(-1)
    error = (keypoints[..., :2] - batch["joints_px"]).norm(dim=-1)
    assert float(error[seen].median()) < 0.05 * float(box.median())
    # Rows: the same global draws as a full batch.
    full = task.make_batch(config.data, torch.Generator().manual_seed(0), 6, "cpu")
    torch.testing.assert_close(full["slots"][2:5], batch["slots"])
    model = task.build_model(config.model, config.data)
    loss, scalars = task.loss(model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and set(scalars) == {"joints3d_mm", "joints2d"}


def test_meshnet_batch(cache_dir):
    from meshpose.tasks import load_config

    config = load_config(CONFIG, small_overrides(cache_dir, "meshnet"))
    batch = TASKS["pose2mesh"].make_batch(config.data, torch.Generator().manual_seed(1), 2, "cpu")
    assert batch["vertices"].shape == (2, 13718, 3) and batch["regressor"].shape == (17, 13718)
    # The fitted regressor maps the true vertices to the true joints (~2 mm).
    regressed = torch.einsum("jv,bvc->bjc", batch["regressor"], batch["vertices"])
    assert float((regressed - batch["joints"]).norm(dim=-1).mean()) < 0.006


def test_unknown_stage_is_a_clear_error(cache_dir):
    from meshpose.errors import MeshposeError
    from meshpose.tasks import load_config

    with pytest.raises(MeshposeError, match="data.stage"):  # refused with the config, before any build
        load_config(CONFIG, small_overrides(cache_dir, "both"))


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv") as fh:
        return [float(row["loss"]) for row in csv.DictReader(fh)]


@pytest.mark.slow  # two training runs, export and predict: ~20-30 s
def test_two_stage_training_export_and_predict(cache_dir, tmp_path, anny_body):
    from meshpose.pose2mesh.task import export_pose2mesh
    from meshpose.pose2mesh.inference import load_pose2mesh
    from meshpose.predict import predict
    from meshpose.tasks import load_config
    from meshpose.tasks import train

    torch.set_num_threads(2)
    stage1 = train(load_config(CONFIG, short_run(cache_dir, "posenet", 30)), run_dir=tmp_path / "posenet")
    losses = _losses(stage1)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    posenet = {k: v for k, v in torch.load(stage1 / "model.pt").items() if k.startswith("posenet.")}

    config = load_config(CONFIG, short_run(cache_dir, "meshnet", 10) + [f"model.posenet_init={stage1}"])
    stage2 = train(config, run_dir=tmp_path / "meshnet")
    losses = _losses(stage2)
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    final = torch.load(stage2 / "model.pt")
    for key, value in posenet.items():  # stage 2 starts from stage 1 and keeps PoseNet frozen
        torch.testing.assert_close(final[key], value, rtol=0, atol=0)
    with open(stage2 / "validation.csv") as fh:
        val = list(csv.DictReader(fh))[-1]
    assert 0 < float(val["val/pa_mpjpe_mm"]) < float(val["val/mpjpe_mm"]) and float(val["val/pve_mm"]) > 0

    # Export, load and predict: the file reproduces the trained network with float16-rounded weights.
    path = export_pose2mesh(stage2, tmp_path / "p2m.safetensors")
    predictor = load_pose2mesh(str(path), body=anny_body)
    net = TASKS["pose2mesh"].build_model(config.model, config.data)
    net.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in final.items()})
    net.eval()
    from meshpose.models.regressor import to_slots

    keypoints = torch.rand(3, 17, 3) * 300
    keypoints[..., 2] = 1.0
    direct = net(to_slots(keypoints, "coco17"))["vertices"]
    loaded = predictor(keypoints, "coco17")
    root = loaded["root"]
    torch.testing.assert_close(loaded["vertices"] + root[:, None], direct, atol=1e-5, rtol=1e-5)
    results = predict(keypoints.numpy(), "coco17", ("h36m17", "h36m17_anatomical", "coco17"), model=str(path),
                      image_size=(640, 480), focal_length=800.0)
    assert results["vertices"].shape == (3, 13718, 3) and results["pose"].shape == (3, 0)
    # The root removed from the mesh is MeshNet's own (anatomical) pelvis; Human3.6M's pelvis is
    # regressed from the mesh (of an untrained network here, so anywhere).
    np.testing.assert_allclose(results["joints3d_h36m17_anatomical"][:, 0], 0, atol=2e-4)
    assert np.isfinite(results["joints3d_h36m17"]).all()
    assert results["cam_t"].shape == (3, 3) and np.isfinite(results["cam_t"]).all()
    # Fine-tuning starts from the file's weights.
    config.model.init, config.model.posenet_init = str(path), ""
    resumed = TASKS["pose2mesh"].build_model(config.model, config.data).state_dict()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)


def test_translation_from_2d_3d_recovers_the_camera_translation():
    from meshpose.geometry.camera import translation_from_2d_3d

    generator = torch.Generator().manual_seed(3)
    joints = torch.randn(4, 17, 3, generator=generator) * 0.4
    t = torch.tensor([[0.3, -0.2, 4.0], [-1.0, 0.5, 7.5], [0.0, 0.0, 3.0], [2.0, 1.0, 12.0]])
    focal = torch.tensor([[1000.0, 1000.0], [800.0, 820.0], [1500.0, 1500.0], [600.0, 600.0]])
    principal = torch.tensor([[320.0, 240.0], [500.0, 500.0], [960.0, 540.0], [0.0, 0.0]])
    camera = joints + t[:, None]
    pixels = focal[:, None] * camera[..., :2] / camera[..., 2:] + principal[:, None]
    torch.testing.assert_close(translation_from_2d_3d(joints, pixels, focal, principal), t, atol=1e-4, rtol=1e-5)
    # A zero weight removes a joint: a corrupted keypoint then changes nothing.
    pixels[:, 5] += 300.0
    weights = torch.ones(4, 17)
    weights[:, 5] = 0
    torch.testing.assert_close(translation_from_2d_3d(joints, pixels, focal, principal, weights), t,
                               atol=1e-4, rtol=1e-5)
