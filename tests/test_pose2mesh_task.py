"""Training task ``pose2mesh``: batch shapes and a short CPU run whose loss goes down."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from meshpose.train.tasks import TASKS

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose2mesh.yaml"


def small_overrides(cache_dir) -> list[str]:
    return ["run.device=cpu", "train.amp=fp32", "model.n_levels=4", "model.widths=[8,8,8,16]",
            "model.joint_width=16", "model.blocks=1", f"model.cache_dir={cache_dir}",
            "data.regressor_samples=100", "data.val_size=4", "data.val_batch=4"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pose2mesh_cache")


def test_make_batch_shapes(cache_dir):
    from meshpose.train.config import load_config

    config = load_config(CONFIG, small_overrides(cache_dir))
    task = TASKS["pose2mesh"]
    generator = torch.Generator().manual_seed(0)
    batch = task.make_batch(config.data, generator, 4, "cpu", slice(1, 3))
    assert batch["x"].shape == (2, 17, 5)
    assert batch["joints"].shape == (2, 17, 3) and batch["vertices"].shape == (2, 13718, 3)
    assert batch["regressor"].shape == (17, 13718)
    torch.testing.assert_close(batch["x"][:, 0, 2:], torch.zeros(2, 3))  # root-relative 3D input
    assert (batch["joints"][:, 0] == 0).all()
    noise = batch["x"][..., 2:] - batch["joints"]
    assert 0.005 < float(noise[:, 1:].std()) < 0.05  # ~20 mm input noise
    # Rows: the same global draws as a full batch.
    full = task.make_batch(config.data, torch.Generator().manual_seed(0), 4, "cpu")
    torch.testing.assert_close(full["x"][1:3], batch["x"])
    model = task.build_model(config.model, config.data)
    loss, scalars = task.loss(model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(scalars) == {"vertices_mm", "joints_mm", "normal", "edge_mm"}


def test_short_cpu_run_lowers_the_loss(cache_dir, tmp_path):
    from meshpose.train.config import load_config
    from meshpose.train.loop import train

    torch.set_num_threads(2)
    config = load_config(CONFIG, small_overrides(cache_dir) + [
        "train.epochs=1", "train.steps_per_epoch=12", "train.batch_size=4", "train.log_every=1",
        "train.grad_clip=0.0", "optim.lr=0.003", "schedule.warmup_steps=0", "schedule.name=constant",
        "checkpoint.every_steps=100"])
    run = train(config, run_dir=tmp_path / "run")
    with open(run / "metrics.csv") as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh)]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    with open(run / "validation.csv") as fh:
        val = list(csv.DictReader(fh))[-1]
    assert float(val["val/mpjpe_mm"]) > 0 and float(val["val/pve_mm"]) > 0
