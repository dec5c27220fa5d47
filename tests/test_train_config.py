"""Configs: YAML, overrides, one-line validation errors; optimizers and schedules."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from meshpose.errors import MeshposeError
from meshpose.tasks import TASKS, load_config
from meshpose.train.config import config_from_dict, save_config
from meshpose.train.loop import build_optimizer, build_scheduler, lr_factor

TOY = Path(__file__).resolve().parents[1] / "configs" / "toy.yaml"


def test_overrides_are_typed_and_applied():
    config = load_config(TOY, ["optim.lr=1e-4", "train.batch_size=256", "optim.betas=[0.8, 0.99]",
                               "schedule.name=step"])
    assert config.optim.lr == pytest.approx(1e-4) and isinstance(config.optim.lr, float)
    assert config.train.batch_size == 256
    assert config.optim.betas == [0.8, 0.99]
    assert config.schedule.name == "step"
    assert config.model.hidden == 64  # untouched values come from the file


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "unknown key 'optim.lrr'; valid keys in 'optim': name, lr, weight_decay"),
        ("model.width=3", "unknown key 'model.width'; valid keys in 'model': hidden, depth"),
        ("trian.epochs=3", "unknown section 'trian'"),
        ("train.batch_size=big", "'train.batch_size' must be int"),
        ("train.epochs=2.5", "'train.epochs' must be int"),
        ("optim.name=adagrad", "'optim.name' must be one of adam, adamw, rmsprop, sgd"),
        ("train.epochs=0", "'train.epochs' must be positive"),
        ("task=nothing", "unknown task 'nothing'"),
        ("lr=3", "must name section.key"),
    ],
)
def test_bad_keys_and_values_give_one_line(override, message):
    with pytest.raises(MeshposeError) as error:
        load_config(TOY, [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert "toy.yaml" in str(error.value) or "section.key" in str(error.value)


def test_bad_files(tmp_path):
    with pytest.raises(MeshposeError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("task: toy_regression\ntrain: [1, 2\n")
    with pytest.raises(MeshposeError, match="broken.yaml: not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(MeshposeError, match="empty config"):
        load_config(tmp_path / "empty.yaml")


def test_saved_config_reads_back_equal(tmp_path):
    config = load_config(TOY, ["optim.lr=0.02", "schedule.milestones=[10, 20]"])
    save_config(config, tmp_path / "config.yaml")
    import yaml

    again = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()), tasks=TASKS)
    assert again.to_dict() == config.to_dict()


def test_cli_reports_a_mistyped_key_and_writes_nothing(tmp_path, meshpose_cli):
    result = meshpose_cli("train", TOY, "optim.lrr=1", f"run.output_dir={tmp_path / 'runs'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "valid keys in 'optim'" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_learning_rate_schedules_by_hand():
    config = load_config(TOY, ["schedule.warmup_steps=4", "schedule.name=step",
                               "schedule.step_size=10", "schedule.gamma=0.5"])
    s = config.schedule
    assert [lr_factor(s, k, 100, 1.0) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(s, 9, 100, 1.0) == 1.0 and lr_factor(s, 10, 100, 1.0) == 0.5
    assert lr_factor(s, 25, 100, 1.0) == 0.25

    s.name, s.milestones = "multistep", [5, 30]
    assert lr_factor(s, 4, 100, 1.0) == 1.0
    assert lr_factor(s, 5, 100, 1.0) == 0.5 and lr_factor(s, 30, 100, 1.0) == 0.25

    s.name, s.warmup_steps, s.min_lr = "cosine", 0, 0.1
    base = 1.0
    assert lr_factor(s, 0, 100, base) == pytest.approx(1.0)
    assert lr_factor(s, 50, 100, base) == pytest.approx(0.1 + 0.9 * 0.5)  # cos(pi/2) = 0
    assert lr_factor(s, 100, 100, base) == pytest.approx(0.1)
    assert lr_factor(s, 25, 100, base) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_optimizers_and_plateau():
    parameter = torch.nn.Parameter(torch.zeros(3))
    for name, kind in [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                       ("rmsprop", torch.optim.RMSprop), ("sgd", torch.optim.SGD)]:
        config = load_config(TOY, [f"optim.name={name}", "optim.lr=0.5", "optim.weight_decay=0.01"])
        optimizer = build_optimizer([parameter], config.optim)
        assert type(optimizer) is kind
        assert optimizer.param_groups[0]["lr"] == 0.5
        assert optimizer.param_groups[0]["weight_decay"] == 0.01
    assert optimizer.param_groups[0]["momentum"] == 0.9

    config = load_config(TOY, ["schedule.name=plateau", "schedule.warmup_steps=0",
                               "schedule.patience=1", "schedule.factor=0.5", "optim.lr=1.0"])
    optimizer = build_optimizer([parameter], config.optim)
    scheduler, per_step = build_scheduler(optimizer, config, 100)
    assert not per_step
    for value in (1.0, 1.0, 1.0):  # no improvement after the first: patience 1 -> halve once
        scheduler.step(value)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
