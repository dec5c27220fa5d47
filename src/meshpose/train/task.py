"""What the engine trains: a *task*, an object with the interface of :class:`Task`.

The engine imports no task. The name -> task table is :data:`meshpose.tasks.TASKS`, above the
engine; the engine receives the task object (or, to resume a run, the table that names it).

A task supplies the typed ``model`` and ``data`` config sections and four functions::

    build_model(model_cfg, data_cfg) -> nn.Module
    make_batch(data_cfg, generator, batch_size, device, rows) -> batch
    loss(model, batch) -> (scalar loss, {name: float})
    validate(model, data_cfg, device) -> {"val/<name>": float}

``make_batch`` draws the random numbers of a whole global batch of ``batch_size`` samples from
``generator`` (seeded by the engine from the run seed and the step number, so data is the same
after a resume and on every process), then builds only the samples in ``rows`` (a slice: this
process's share under DDP), so that the expensive part of sample generation is split across
processes while the data stay identical to a single-process run.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

__all__ = ["Task", "process_rows"]


class Task(Protocol):
    """The interface of a trainable task (see the module docstring). A task may also have
    ``export(run_dir, out) -> Path``, which ``meshpose export`` calls to write a finished run as
    a model file."""

    ModelConfig: type  #: dataclass of the config's ``model`` section
    DataConfig: type  #: dataclass of the config's ``data`` section

    def build_model(self, model: Any, data: Any) -> nn.Module: ...

    def make_batch(self, data: Any, generator: torch.Generator, batch_size: int, device: torch.device,
                   rows: slice = slice(None)) -> Any: ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, model: nn.Module, data: Any, device: torch.device) -> dict[str, float]: ...


def process_rows(batch_size: int, rank: int, world_size: int) -> slice:
    """This process's rows ``[rank * n / W, (rank + 1) * n / W)`` of a global batch of n."""
    if batch_size % world_size:
        raise ValueError(f"global batch {batch_size} does not split over {world_size} processes")
    share = batch_size // world_size
    return slice(rank * share, (rank + 1) * share)
