"""Exact resume: runs killed with SIGKILL (mid-epoch, mid-save) end bit-identical to an
uninterrupted run; checkpoints stay bounded; DDP over two CPU processes matches one process."""
from __future__ import annotations

import csv
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TOY = Path(__file__).resolve().parents[1] / "configs" / "toy.yaml"
# Long enough (a few seconds) for kills to land at arbitrary moments; still quick on CPU.
SETTINGS = [
    "train.epochs=4", "train.steps_per_epoch=60", "train.batch_size=256", "model.hidden=256",
    "checkpoint.every_steps=7", "checkpoint.keep=2", "train.log_every=5",
]


def start(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "meshpose", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "model.pt", weights_only=True)


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    finish(start("train", TOY, *SETTINGS, "--run-dir", run_dir))
    return run_dir


def wait_for(condition, timeout=120.0, poll=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return False


@pytest.mark.slow  # training subprocesses: ~10 s each, after the reference run
def test_killed_at_random_moments_then_resumed_is_bit_identical(reference_run, tmp_path):
    rng = random.Random(20261122)
    run_dir = tmp_path / "run"
    process = start("train", TOY, *SETTINGS, "--run-dir", run_dir)
    kills = 0
    for _ in range(3):
        # Once training is under way (a first checkpoint exists), kill at a random moment.
        assert wait_for(lambda: (run_dir / "checkpoints" / "last").exists() or process.poll() is not None)
        time.sleep(rng.uniform(0.05, 1.0))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        process = start("train", "--resume", run_dir)
    finish(process)
    assert kills >= 2
    assert_identical(weights(run_dir), weights(reference_run))

    # The logs hold each step once, in order, despite the replayed steps.
    with open(run_dir / "metrics.csv") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == sorted(set(steps)) and steps[-1] == 240


@pytest.mark.slow  # training subprocesses: ~10 s each, after the reference run
def test_killed_in_the_middle_of_a_save(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    slow = {"MESHPOSE_TEST_CHECKPOINT_PAUSE": "0.3"}
    process = start("train", TOY, *SETTINGS, "--run-dir", run_dir, env=slow)
    checkpoints = run_dir / "checkpoints"

    def saving_after_first():  # a temporary checkpoint file exists and a complete one too
        return checkpoints.exists() and any(checkpoints.glob(".meshpose-tmp-*-step-*")) and any(
            checkpoints.glob("step-*.pt"))

    assert wait_for(saving_after_first)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert any(checkpoints.glob(".meshpose-tmp-*-step-*"))  # really killed mid-save
    last = (checkpoints / "last").read_text().strip()
    state = torch.load(checkpoints / last, weights_only=True)  # the pointer names a whole file
    assert state["step"] > 0
    finish(start("train", "--resume", run_dir))
    assert_identical(weights(run_dir), weights(reference_run))
    assert not any(checkpoints.glob(".*.tmp*"))  # leftovers cleaned up


def test_checkpoints_are_bounded_and_complete(reference_run):
    checkpoints = reference_run / "checkpoints"
    step_files = sorted(checkpoints.glob("step-*.pt"))
    assert len(step_files) == 2  # checkpoint.keep
    assert step_files[-1].name == "step-00000240.pt"
    assert (checkpoints / "best.pt").exists()
    state = torch.load(step_files[-1], weights_only=True)
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "step", "epoch", "best",
                "config", "code_version"):
        assert key in state
    assert state["step"] == 240 and state["epoch"] == 4
    import json

    metrics = json.loads((reference_run / "metrics.json").read_text())
    assert metrics["steps"] == 240 and metrics["val/loss"] < 0.1  # it learned something (target variance ~0.5)


def test_resume_after_the_last_checkpoint_finishes_the_run(reference_run, tmp_path):
    """Killed after the final checkpoint but before the final files: resuming writes them."""
    import json
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    (run_dir / "model.pt").unlink()
    (run_dir / "metrics.json").unlink()
    finish(start("train", "--resume", run_dir))
    assert_identical(weights(run_dir), weights(reference_run))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 240 and metrics["final_train_loss"] is None
    assert metrics["val/loss"] == json.loads((reference_run / "metrics.json").read_text())["val/loss"]


def test_resume_without_checkpoint_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    process = start("train", "--resume", tmp_path / "empty")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "empty" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # training subprocesses: ~10 s each, after the reference run
def test_two_process_ddp_matches_one_process(tmp_path):
    settings = ["train.epochs=1", "train.steps_per_epoch=30", "train.batch_size=64",
                "optim.name=sgd", "optim.lr=0.05", "schedule.warmup_steps=0", "run.device=cpu"]
    single = tmp_path / "single"
    finish(start("train", TOY, *settings, "--run-dir", single))
    double = tmp_path / "double"
    process = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), "-m", "meshpose", "train", str(TOY), *settings,
         "--run-dir", str(double)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert process.returncode == 0, process.stderr
    import json

    assert json.loads((double / "metrics.json").read_text())["processes"] == 2
    a, b = weights(single), weights(double)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-5), key
    assert not all(torch.equal(a[k], torch.zeros_like(a[k])) for k in a)
