"""A trained run as a shipped-style model file (``meshpose export RUN_DIR -o OUT.safetensors``).

Weights in float16 (inference precision is unaffected in practice; the file is half the size),
the model settings, the resolved config, the training-data statement and the final metrics in
the header. A run stopped before its end (no ``model.pt``) is exported from its last checkpoint,
and the header says which step. Tasks whose runs export (key2mesh, adapt, pose2mesh) name their
exporter as their ``export`` attribute; they all write through :func:`save_model_file`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from meshpose.models.inference import FORMAT
from meshpose.train.checkpoint import read_run_weights

TRAINING_DATA = ("CMU motion capture (free for any use) retargeted to Anny (Apache-2.0/CC0); "
                 "CMU subjects 13 and 14 held out")

__all__ = ["TRAINING_DATA", "export_regressor", "read_run", "save_model_file"]


def read_run(run_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """``(config as a plain dict, final or last-checkpoint weights, step)`` of a run folder."""
    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    state, step = read_run_weights(run_dir)
    return config, state, step


def save_model_file(run_dir: str | Path, out: str | Path, config: dict, state: dict[str, torch.Tensor],
                    step: str, header: dict[str, str]) -> Path:
    """Write ``state`` (floating tensors as float16) to ``out`` with ``header`` plus the run's
    config, final metrics and step."""
    metrics_file = Path(run_dir) / "metrics.json"
    header = {**header, "config": json.dumps(config),
              "metrics": metrics_file.read_text() if metrics_file.exists() else "{}", "step": step}
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(state, str(out), metadata=header)
    return Path(out)


def export_regressor(run_dir: str | Path, out: str | Path) -> Path:
    """A ``key2mesh`` run as a regressor model file (``meshpose-regressor-1``)."""
    config, state, step = read_run(run_dir)
    header = {"format": FORMAT, "model": json.dumps(config["model"]), "training_data": TRAINING_DATA}
    return save_model_file(run_dir, out, config, state, step, header)
