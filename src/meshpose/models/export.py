"""A trained run as a shipped-style model file (``meshpose export RUN_DIR -o OUT.safetensors``).

Weights in float16 (inference precision is unaffected in practice; the file is half the size),
the model settings, the resolved config, the training-data statement and the final metrics in
the header. A run stopped before its end (no ``model.pt``) is exported from its last checkpoint,
and the header says which step. Tasks whose runs export (key2mesh, adapt, pose2mesh) name their
exporter as their ``export`` attribute; they all write through :func:`save_model_file`.

Every file of the run folder is read safely (YAML without aliases, weights with
``weights_only``), and the model file is written atomically: on any error ``out`` is unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io._util import one_line
from meshpose.io.atomic import atomic_write
from meshpose.models.inference import FORMAT
from meshpose.models.regressor import KeypointRegressor
from meshpose.train.checkpoint import load_model_weights, read_run_weights, require_file
from meshpose.train.config import (
    MAX_CONFIG_BYTES,
    config_from_dict,
    read_yaml_mapping,
    require_run_dir,
)
from meshpose.train.task import Task

TRAINING_DATA = ("CMU motion capture (free for any use) retargeted to Anny (Apache-2.0/CC0); "
                 "CMU subjects 13 and 14 held out")

__all__ = ["TRAINING_DATA", "export_regressor", "read_run", "save_model_file", "training_data"]


def training_data(data: dict) -> str:
    """The training-data statement of a key2mesh run's ``data`` config section: the shipped
    CMU statement, or the sources and licences of the banks it named and of the Human3.6M joint
    regressor when the keypoints were drawn with it."""
    if not data.get("bank") and not data.get("extra_banks") and not data.get("h36m_inputs"):
        return TRAINING_DATA
    names = ([data["bank"]] if data.get("bank") else ["the shipped CMU bank"]) + list(data.get("extra_banks", []))
    text = f"pose banks {', '.join(Path(n).name for n in names)} retargeted to Anny (Apache-2.0/CC0)"
    if data.get("h36m_inputs"):
        text += ("; h36m17/mpii16 keypoints drawn at Human3.6M's joints by the vertex regressor fitted "
                 "to Human3.6M S1 (non-commercial research only)")
    return text + "; each bank names its clips' sources and licences (clip_licences)"


def read_run(run_dir: str | Path, task_name: str, task: Task | None = None
             ) -> tuple[dict, dict[str, torch.Tensor], str]:
    """``(config as a plain dict, final or last-checkpoint weights, step)`` of a ``task_name`` run.

    With ``task`` the config is validated against its sections (and completed with defaults);
    without, only its task name is checked.

    Raises:
        MeshposeError: naming the path: not a run folder, a run of another task, damaged config
            or weights.
    """
    saved = require_run_dir(run_dir) / "config.yaml"
    raw = read_yaml_mapping(saved, "run config")
    if task is not None:
        config = config_from_dict(raw, source=str(saved), tasks={task_name: task}).to_dict()
    elif raw.get("task") != task_name:
        raise InputFileError(f"not a {task_name} run (task: {one_line(repr(raw.get('task')), 60)})", saved)
    else:
        config = raw
    state, step = read_run_weights(run_dir)
    return config, state, step


def _metrics_text(run_dir: Path) -> str:
    """The run's ``metrics.json`` as text (``"{}"`` when there is none); damaged is an error."""
    path = run_dir / "metrics.json"
    if not (path.exists() or path.is_symlink()):
        return "{}"
    require_file(path, "metrics file")
    with open(path, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    try:
        metrics = json.loads(data.decode("utf-8")) if len(data) <= MAX_CONFIG_BYTES else None
    except (ValueError, RecursionError) as error:
        raise InputFileError(f"damaged metrics file ({one_line(error, 80)})", path) from None
    if not isinstance(metrics, dict):
        raise InputFileError("damaged metrics file (not a JSON object of at most 1 MB)", path)
    return json.dumps(metrics, indent=2, sort_keys=True)


def save_model_file(run_dir: str | Path, out: str | Path, config: dict, state: dict[str, torch.Tensor],
                    step: str, header: dict[str, str]) -> Path:
    """Write ``state`` (floating tensors as float16) to ``out``, atomically, with ``header`` plus
    the run's config, final metrics and step."""
    out = Path(out)
    if out.is_dir():
        raise MeshposeError("is a folder, expected a model file name (.safetensors)", out)
    header = {**header, "config": json.dumps(config), "metrics": _metrics_text(Path(run_dir)), "step": step}
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    atomic_write(out, lambda tmp: save_file(state, tmp, metadata=header))
    return out


def export_regressor(run_dir: str | Path, out: str | Path, task: Task | None = None) -> Path:
    """A ``key2mesh`` run as a regressor model file (``meshpose-regressor-1``); ``task`` (the
    key2mesh task) validates the run's config."""
    config, state, step = read_run(run_dir, "key2mesh", task)
    if task is not None:  # the config is complete: check that the weights are this regressor's
        settings = config["model"]
        load_model_weights(KeypointRegressor(settings["hidden"], settings["blocks"], settings["iterations"]),
                           state, Path(run_dir))
    header = {"format": FORMAT, "model": json.dumps(config["model"]), "training_data": training_data(config["data"])}
    return save_model_file(run_dir, out, config, state, step, header)
