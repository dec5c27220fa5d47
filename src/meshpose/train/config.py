"""Experiment configuration: YAML files, dot-path overrides, validation against typed sections.

A config file has fixed sections (``run``, ``train``, ``optim``, ``schedule``, ``checkpoint``)
and two sections whose fields belong to the task (``model``, ``data``); ``task`` names the task
in the table the caller passes (:data:`meshpose.tasks.TASKS` for ``meshpose train``). Every key is checked: an unknown or mistyped key, or a
value of the wrong type, stops with one line that names the file and lists the valid keys.

    meshpose train configs/toy.yaml optim.lr=1e-4 train.batch_size=256
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshpose.errors import MeshposeError
from meshpose.io.atomic import atomic_write_text
from meshpose.train.task import Task


@dataclass
class RunSection:
    """Where and how a run happens."""

    name: str = "run"  #: run folder prefix under output_dir
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  #: "auto" (cuda when available), "cpu", "cuda"


@dataclass
class TrainSection:
    """The optimisation loop. ``batch_size`` is global: split across processes under torchrun."""

    epochs: int = 1
    steps_per_epoch: int = 100
    batch_size: int = 64
    log_every: int = 10  #: steps between progress/CSV/TensorBoard rows
    val_every: int = 0  #: steps between validations; 0 = at each epoch end only
    grad_clip: float = 0.0  #: max gradient norm; 0 = off
    amp: str = "fp32"  #: mixed precision on CUDA: "fp32" (none), "bf16", "fp16"
    compile: bool = False  #: torch.compile the model


@dataclass
class OptimSection:
    name: str = "adam"  #: adam, adamw, rmsprop, sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  #: sgd and rmsprop
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  #: adam, adamw
    eps: float = 1e-8
    nesterov: bool = False  #: sgd


@dataclass
class ScheduleSection:
    """Learning-rate schedule, stepped every optimisation step (plateau: every validation)."""

    name: str = "constant"  #: constant, step, multistep, cosine, plateau
    warmup_steps: int = 0  #: linear warm-up from 0, before any schedule
    step_size: int = 1000  #: step: decay every this many steps
    milestones: list[int] = field(default_factory=list)  #: multistep: decay at these steps
    gamma: float = 0.1  #: step, multistep: decay factor
    min_lr: float = 0.0  #: cosine: final learning rate
    metric: str = "val/loss"  #: plateau: validation metric watched
    mode: str = "min"  #: plateau: "min" or "max"
    factor: float = 0.5  #: plateau: decay factor
    patience: int = 2  #: plateau: validations without improvement before decaying


@dataclass
class CheckpointSection:
    every_steps: int = 100  #: save "last" this often (and at every epoch end)
    keep: int = 3  #: keep at most this many step checkpoints (plus "best")
    best_metric: str = "val/loss"  #: validation metric that picks "best"; "" = no best
    best_mode: str = "min"


FIXED_SECTIONS: dict[str, type] = {
    "run": RunSection,
    "train": TrainSection,
    "optim": OptimSection,
    "schedule": ScheduleSection,
    "checkpoint": CheckpointSection,
}


@dataclass
class Config:
    """A validated experiment configuration."""

    task: str
    run: RunSection
    train: TrainSection
    optim: OptimSection
    schedule: ScheduleSection
    checkpoint: CheckpointSection
    model: Any
    data: Any
    source: str = ""  #: the file it was read from

    def to_dict(self) -> dict:
        """Plain nested dict (what is saved as ``config.yaml`` in a run folder)."""
        result = {"task": self.task}
        for name in (*FIXED_SECTIONS, "model", "data"):
            result[name] = dataclasses.asdict(getattr(self, name))
        return result


def load_config(path: str | Path, overrides: Sequence[str] = (), *, tasks: Mapping[str, Task]) -> Config:
    """Read a YAML config, apply ``section.key=value`` overrides, validate against the sections of
    its task in ``tasks`` (task name -> task).

    Raises:
        MeshposeError: missing/unreadable file, unknown task, section or key, wrong type.
    """
    path = Path(path)
    if not path.exists():
        raise MeshposeError("config file not found", path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MeshposeError(f"not valid YAML{where}", path) from None
    if raw is None:
        raise MeshposeError("empty config file", path)
    if not isinstance(raw, dict):
        raise MeshposeError("a config file must be a mapping of sections", path)
    for override in overrides:
        _apply_override(raw, override, path)
    return config_from_dict(raw, source=str(path), tasks=tasks)


def config_from_dict(raw: dict, source: str = "", *, tasks: Mapping[str, Task]) -> Config:
    """Validate a nested dict (e.g. a saved ``config.yaml``) into a :class:`Config` of a task in
    ``tasks`` (task name -> task)."""
    where = source or None
    raw = dict(raw)
    task_name = raw.pop("task", None)
    if task_name is None:
        raise MeshposeError(f"missing 'task'; choose from {', '.join(tasks)}", where)
    if task_name not in tasks:
        raise MeshposeError(f"unknown task {task_name!r}; choose from {', '.join(tasks)}", where)
    task = tasks[task_name]
    schemas = {**FIXED_SECTIONS, "model": task.ModelConfig, "data": task.DataConfig}
    unknown = set(raw) - set(schemas)
    if unknown:
        raise MeshposeError(
            f"unknown section {sorted(unknown)[0]!r}; valid sections: task, {', '.join(schemas)}",
            where,
        )
    sections = {}
    for name, schema in schemas.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise MeshposeError(f"section {name!r} must be a mapping of keys", where)
        sections[name] = _build_section(name, schema, values, where)
    config = Config(task=task_name, source=source, **sections)
    _check_values(config, where)
    return config


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def _apply_override(raw: dict, override: str, path: Path) -> None:
    if "=" not in override:
        raise MeshposeError(f"override {override!r} must look like section.key=value")
    key, text = override.split("=", 1)
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if parts == ["task"]:
        raw["task"] = value
        return
    if len(parts) != 2 or not all(parts):
        raise MeshposeError(f"override {override!r} must name section.key (e.g. optim.lr=1e-4)")
    section, name = parts
    target = raw.setdefault(section, {})
    if target is None:
        target = raw[section] = {}
    if not isinstance(target, dict):
        raise MeshposeError(f"section {section!r} must be a mapping of keys", path)
    target[name] = value


def _build_section(name: str, schema: type, values: dict, where) -> Any:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise MeshposeError(
            f"unknown key '{name}.{unknown[0]}'; valid keys in '{name}': {', '.join(fields)}", where
        )
    hints = typing.get_type_hints(schema)
    checked = {key: _coerce(f"{name}.{key}", hints[key], value, where) for key, value in values.items()}
    return schema(**checked)


def _coerce(key: str, hint, value, where):
    """Check ``value`` against a field type; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise MeshposeError(f"'{key}' must be a list, got {value!r}", where)
        return [_coerce(key, item, v, where) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise MeshposeError(f"'{key}' must be {hint.__name__}, got {value!r}", where)


def _check_values(config: Config, where) -> None:
    choices = {
        "optim.name": (config.optim.name, ("adam", "adamw", "rmsprop", "sgd")),
        "schedule.name": (config.schedule.name, ("constant", "step", "multistep", "cosine", "plateau")),
        "schedule.mode": (config.schedule.mode, ("min", "max")),
        "checkpoint.best_mode": (config.checkpoint.best_mode, ("min", "max")),
        "train.amp": (config.train.amp, ("fp32", "bf16", "fp16")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise MeshposeError(f"'{key}' must be one of {', '.join(allowed)}, got {value!r}", where)
    positive = {
        "train.epochs": config.train.epochs,
        "train.steps_per_epoch": config.train.steps_per_epoch,
        "train.batch_size": config.train.batch_size,
        "train.log_every": config.train.log_every,
        "checkpoint.every_steps": config.checkpoint.every_steps,
        "checkpoint.keep": config.checkpoint.keep,
        "optim.lr": config.optim.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise MeshposeError(f"'{key}' must be positive, got {value!r}", where)
