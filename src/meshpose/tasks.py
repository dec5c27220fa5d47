"""What can be trained, by name: the table that the ``task`` key of a config picks from, and the
training entry points bound to it.

    >>> from meshpose.tasks import load_config, train, resume
    >>> run_dir = train(load_config("configs/toy.yaml", ["optim.lr=1e-4"]))
    >>> resume(run_dir)

The engine (:mod:`meshpose.train`) knows no task; this module, above it and above every model,
is where a new task is named (docs/design.md, "Adding a model").
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from meshpose.adapt.task import AdaptTask
from meshpose.meshkp.point_task import MeshKeypointTask
from meshpose.meshkp.seed_task import SeedEdgeTask
from meshpose.models.key2mesh_task import Key2MeshTask
from meshpose.models.toy import LiftAnnyToy, ToyRegression
from meshpose.pose2mesh.task import Pose2MeshTask
from meshpose.train import config as engine_config
from meshpose.train import loop
from meshpose.train.config import Config
from meshpose.train.task import Task

__all__ = ["TASKS", "load_config", "read_run_config", "resume", "train"]

#: Every trainable task, by the name a config's ``task`` key gives.
TASKS: dict[str, Task] = {
    "toy_regression": ToyRegression(),
    "lift_anny_toy": LiftAnnyToy(),
    "key2mesh": Key2MeshTask(),
    "meshkp_seed": SeedEdgeTask(),
    "meshkp_points": MeshKeypointTask(),
    "pose2mesh": Pose2MeshTask(),
    "adapt": AdaptTask(),
}


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """A config file with ``section.key=value`` overrides, checked against its task's sections."""
    return engine_config.load_config(path, overrides, tasks=TASKS)


def read_run_config(run_dir: str | Path) -> Config:
    """The saved, validated config of a run folder (one-line errors for anything else)."""
    return engine_config.read_run_config(run_dir, TASKS)


def train(config: Config, run_dir: str | Path | None = None) -> Path:
    """Train ``config`` in a new run folder (default ``run.output_dir/run.name-<time>``); the folder."""
    return loop.train(config, TASKS[config.task], run_dir=run_dir)


def resume(run_dir: str | Path) -> Path:
    """Continue the run in ``run_dir`` from its last checkpoint, exactly; the folder."""
    return loop.resume(run_dir, TASKS)
