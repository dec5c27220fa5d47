"""Experiment configuration: YAML files, dot-path overrides, validation against typed sections.

A config file has fixed sections (``run``, ``train``, ``optim``, ``schedule``, ``checkpoint``)
and two sections whose fields belong to the task (``model``, ``data``); ``task`` names the task
in the table the caller passes (:data:`meshpose.tasks.TASKS` for ``meshpose train``). Every key is
checked: an unknown or mistyped key, or a value of the wrong type, stops with one line that names
the file and lists the valid keys.

    meshpose train configs/toy.yaml optim.lr=1e-4 train.batch_size=256

Every value is checked too, before anything is created:

* the file: a regular file of at most :data:`MAX_CONFIG_BYTES`, UTF-8 YAML without aliases
  (``*name``: no "billion laughs") and without merge keys (``<<``), no key or section twice;
* numbers: finite, and within the range a section declares for each field in its ``LIMITS``
  (:class:`Limit`; e.g. widths and depths have upper bounds, so a typo cannot exhaust memory);
* lists: at most ``LENGTHS`` (default :data:`MAX_LIST`) items; text: at most :data:`MAX_TEXT`
  characters, no NUL byte, one of ``CHOICES`` where a section lists them.

Error messages quote at most a short excerpt of a value.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from meshpose.errors import InputFileError, MeshposeError
from meshpose.io._util import one_line
from meshpose.io.atomic import atomic_write_text
from meshpose.train.task import Task

#: Largest config file read (a config is a few hundred bytes; this stops reading of the wrong file).
MAX_CONFIG_BYTES = 1_000_000
#: Default largest number of items in a list value.
MAX_LIST = 1000
#: Largest text value, in characters (paths included).
MAX_TEXT = 4096
#: Longest excerpt of a user value quoted in a message.
EXCERPT = 60


def short(value: Any) -> str:
    """``repr(value)`` on one line, cut to :data:`EXCERPT` characters."""
    return one_line(repr(value), EXCERPT)


@dataclass(frozen=True)
class Limit:
    """The allowed range of a numeric config field (or of each item of a list field).

    Args:
        low, high: the bounds; ``math.inf`` for none (values must be finite anyway).
        low_open, high_open: the bound itself is excluded.
    """

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """E.g. ``"positive and at most 4096"``, ``"at least 0 and below 1"``."""
        low, high = _number(self.low), _number(self.high)
        text = "positive" if self.low == 0 and self.low_open else f"at least {low}"
        if math.isinf(self.high):
            return text
        if not self.low_open and not self.high_open:
            return f"between {low} and {high}"
        return f"{text} and {'below' if self.high_open else 'at most'} {high}"


def _number(value: float) -> str:
    """A bound as text: integers in full (4294967295), others short (1e-08)."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}"


def positive(high: float = math.inf) -> Limit:
    """``0 < value <= high``."""
    return Limit(0, high, low_open=True)


def between(low: float, high: float = math.inf, high_open: bool = False) -> Limit:
    """``low <= value <= high`` (``< high`` with ``high_open``)."""
    return Limit(low, high, high_open=high_open)


#: The range of an integer field whose section declares none.
DEFAULT_INT = between(0, 2**31 - 1)
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")


@dataclass
class RunSection:
    """Where and how a run happens."""

    name: str = "run"  #: run folder prefix under output_dir (a file name: no "/")
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  #: "auto" (cuda when available), "cpu", "cuda", "cuda:N"

    LIMITS: ClassVar[dict[str, Limit]] = {"seed": between(0, 2**32 - 1)}


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

    LIMITS: ClassVar[dict[str, Limit]] = {
        "epochs": positive(1_000_000), "steps_per_epoch": positive(1_000_000_000),
        "batch_size": positive(65_536), "log_every": positive(1_000_000_000),
        "val_every": between(0, 1_000_000_000), "grad_clip": between(0, 1e30),
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"amp": ("fp32", "bf16", "fp16")}


@dataclass
class OptimSection:
    name: str = "adam"  #: adam, adamw, rmsprop, sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  #: sgd and rmsprop
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  #: adam, adamw
    eps: float = 1e-8
    nesterov: bool = False  #: sgd

    # Beyond 1e30, the optimizers' float32 arithmetic overflows (an error inside torch).
    LIMITS: ClassVar[dict[str, Limit]] = {
        "lr": positive(1e30), "weight_decay": between(0, 1e30), "momentum": between(0, 1),
        "betas": between(0, 1, high_open=True), "eps": between(0, 1e30),
    }
    LENGTHS: ClassVar[dict[str, tuple[int, int]]] = {"betas": (2, 2)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"name": ("adam", "adamw", "rmsprop", "sgd")}


@dataclass
class ScheduleSection:
    """Learning-rate schedule, stepped every optimisation step (plateau: every validation)."""

    name: str = "constant"  #: constant, step, multistep, cosine, plateau
    warmup_steps: int = 0  #: linear warm-up from 0, before any schedule
    step_size: int = 1000  #: step: decay every this many steps
    milestones: list[int] = field(default_factory=list)  #: multistep: decay at these steps
    gamma: float = 0.1  #: step, multistep: decay factor (at most 1)
    min_lr: float = 0.0  #: cosine: final learning rate
    metric: str = "val/loss"  #: plateau: validation metric watched
    mode: str = "min"  #: plateau: "min" or "max"
    factor: float = 0.5  #: plateau: decay factor
    patience: int = 2  #: plateau: validations without improvement before decaying

    LIMITS: ClassVar[dict[str, Limit]] = {
        "warmup_steps": between(0, 1_000_000_000), "step_size": positive(1_000_000_000),
        "milestones": between(0, 1_000_000_000), "gamma": between(0, 1), "min_lr": between(0, 1e30),
        "factor": between(0, 1, high_open=True), "patience": between(0, 1_000_000_000),
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "name": ("constant", "step", "multistep", "cosine", "plateau"), "mode": ("min", "max")}


@dataclass
class CheckpointSection:
    every_steps: int = 100  #: save "last" this often (and at every epoch end)
    keep: int = 3  #: keep at most this many step checkpoints (plus "best")
    best_metric: str = "val/loss"  #: validation metric that picks "best"; "" = no best
    best_mode: str = "min"

    LIMITS: ClassVar[dict[str, Limit]] = {"every_steps": positive(1_000_000_000), "keep": positive(1000)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"best_mode": ("min", "max")}


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
        MeshposeError: missing/unreadable/oversized/malformed file, unknown task, section or key,
            a key given twice, a value of the wrong type or out of its range.
    """
    path = Path(path)
    raw = read_yaml_mapping(path)
    given = set()
    for override in overrides:
        key = _apply_override(raw, override, path)
        if key in given:
            raise MeshposeError(f"override of '{one_line(key, EXCERPT)}' given twice")
        given.add(key)
    return config_from_dict(raw, source=str(path), tasks=tasks)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and merge keys, refusing a key given twice."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a config",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise yaml.constructor.ConstructorError(None, None, "merge keys (<<) are not allowed",
                                                            key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                except TypeError:
                    continue  # unhashable: the base class reports it
                if repeated:
                    raise yaml.constructor.ConstructorError(None, None, f"key {short(key)} given twice",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """``text`` parsed by the strict safe loader (raises ``yaml.YAMLError``, ``RecursionError``)."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass


def read_yaml_mapping(path: str | Path, kind: str = "config file") -> dict:
    """The top-level mapping of a YAML config file (a run's ``config.yaml`` too), read safely.

    Raises:
        InputFileError: naming ``path``: missing, a folder or not a regular file, unreadable,
            larger than :data:`MAX_CONFIG_BYTES`, not UTF-8, not valid YAML (aliases, merge keys
            and repeated keys included), empty, or not a mapping with text keys.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{kind} not found", path)
    if path.is_dir():
        raise InputFileError(f"is a folder, expected a YAML {kind}", path)
    if not path.is_file():
        raise InputFileError(f"not a regular file, expected a YAML {kind}", path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise InputFileError(f"cannot read {kind}: {error.strerror or one_line(error, EXCERPT)}", path) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise InputFileError(f"larger than {MAX_CONFIG_BYTES // 1000} kB: not a {kind}", path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputFileError(f"not a YAML {kind}: not UTF-8 text (bad byte at offset {error.start})", path) from None
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as error:
        raise InputFileError(f"not valid YAML{_yaml_problem(error)}", path) from None
    except RecursionError:
        raise InputFileError("not valid YAML: nested too deeply", path) from None
    if raw is None:
        raise InputFileError(f"empty {kind}", path)
    if not isinstance(raw, dict):
        raise InputFileError(f"a {kind} must be a mapping of sections, got {type(raw).__name__}", path)
    _check_keys(raw, "the top level", path)
    return raw


def _yaml_problem(error: yaml.YAMLError) -> str:
    """`` at line L: problem`` of a PyYAML error, shortened."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None)
    if problem is None and isinstance(error, yaml.reader.ReaderError):
        problem = f"special character at position {error.position}"
    return f"{where}: {one_line(problem, 80)}" if problem else where


def _check_keys(mapping: dict, where_in: str, path) -> None:
    bad = next((key for key in mapping if not isinstance(key, str)), None)
    if bad is not None:
        raise MeshposeError(f"keys must be text: {short(bad)} in {where_in}", path)


def config_from_dict(raw: dict, source: str = "", *, tasks: Mapping[str, Task]) -> Config:
    """Validate a nested dict (e.g. a saved ``config.yaml``) into a :class:`Config` of a task in
    ``tasks`` (task name -> task)."""
    where = source or None
    if not isinstance(raw, dict):
        raise MeshposeError("a config must be a mapping of sections", where)
    _check_keys(raw, "the top level", where)
    raw = dict(raw)
    task_name = raw.pop("task", None)
    if task_name is None:
        raise MeshposeError(f"missing 'task'; choose from {', '.join(tasks)}", where)
    if not isinstance(task_name, str) or task_name not in tasks:
        raise MeshposeError(f"unknown task {short(task_name)}; choose from {', '.join(tasks)}", where)
    task = tasks[task_name]
    schemas = {**FIXED_SECTIONS, "model": task.ModelConfig, "data": task.DataConfig}
    unknown = sorted(set(raw) - set(schemas))
    if unknown:
        raise MeshposeError(
            f"unknown section {short(unknown[0])}; valid sections: task, {', '.join(schemas)}", where
        )
    sections = {}
    for name, schema in schemas.items():
        values = raw.get(name)
        values = {} if values is None else values
        if not isinstance(values, dict):
            raise MeshposeError(f"section {name!r} must be a mapping of keys", where)
        _check_keys(values, f"section {name!r}", where)
        sections[name] = _build_section(name, schema, values, where)
    config = Config(task=task_name, source=source, **sections)
    _check_values(config, where)
    return config


def require_run_dir(run_dir: str | Path) -> Path:
    """``Path(run_dir)`` if it is a run folder (a folder with a ``config.yaml`` file), else
    :class:`InputFileError` naming it."""
    path = Path(run_dir)
    if not path.exists():
        raise InputFileError("run folder not found", path)
    if not path.is_dir():
        raise InputFileError("not a run folder (a file, expected a folder)", path)
    saved = path / "config.yaml"
    if not (saved.exists() or saved.is_symlink()):
        raise InputFileError("not a run folder (no config.yaml)", path)
    return path


def read_run_config(run_dir: str | Path, tasks: Mapping[str, Task]) -> Config:
    """The saved config of a run folder, read safely and validated against its task in ``tasks``."""
    saved = require_run_dir(run_dir) / "config.yaml"
    return config_from_dict(read_yaml_mapping(saved, "run config"), source=str(saved), tasks=tasks)


class _PlainDumper(yaml.SafeDumper):
    """A safe dumper that never writes anchors and aliases (the reader refuses them)."""

    def ignore_aliases(self, data) -> bool:
        return True


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.dump(config.to_dict(), Dumper=_PlainDumper, sort_keys=False))


def _apply_override(raw: dict, override: str, path: Path) -> str:
    """Apply ``section.key=value`` to ``raw``; the ``section.key`` it set."""
    quoted = short(override)
    if "=" not in override:
        raise MeshposeError(f"override {quoted} must look like section.key=value")
    key, text = override.split("=", 1)
    parts = key.strip().split(".")
    try:
        value = parse_yaml(text) if text.strip() else ""
    except (yaml.YAMLError, RecursionError):
        value = text
    if parts == ["task"]:
        raw["task"] = value
        return "task"
    if len(parts) != 2 or not all(parts):
        raise MeshposeError(f"override {quoted} must name section.key (e.g. optim.lr=1e-4)")
    section, name = parts
    target = raw.setdefault(section, {})
    if target is None:
        target = raw[section] = {}
    if not isinstance(target, dict):
        raise MeshposeError(f"section {short(section)} must be a mapping of keys", path)
    target[name] = value
    return f"{section}.{name}"


def _build_section(name: str, schema: type, values: dict, where) -> Any:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise MeshposeError(
            f"unknown key '{name}.{one_line(unknown[0], EXCERPT)}'; valid keys in '{name}': {', '.join(fields)}",
            where,
        )
    hints = typing.get_type_hints(schema)
    checked = {key: _coerce(f"{name}.{key}", hints[key], value, where) for key, value in values.items()}
    section = schema(**checked)
    _check_section(name, schema, section, where)
    return section


def _coerce(key: str, hint, value, where):
    """Check ``value`` against a field type; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise MeshposeError(f"'{key}' must be a list, got {short(value)}", where)
        return [_coerce(key, item, v, where) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer beyond float range
                raise MeshposeError(f"'{key}' must be a finite number, got {short(value)}", where) from None
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
    raise MeshposeError(f"'{key}' must be {hint.__name__}, got {short(value)}", where)


def _check_section(name: str, schema: type, section: Any, where) -> None:
    """Every value of one section within its declared limits (see the module docstring)."""
    limits = getattr(schema, "LIMITS", {})
    lengths = getattr(schema, "LENGTHS", {})
    choices = getattr(schema, "CHOICES", {})
    for item in dataclasses.fields(schema):
        key, value = f"{name}.{item.name}", getattr(section, item.name)
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            low, high = lengths.get(item.name, (0, MAX_LIST))
            if not low <= len(value) <= high:
                count = f"{low}" if low == high else f"{low} to {high}"
                raise MeshposeError(f"'{key}' must hold {count} values, got {len(value)}", where)
        for one in values:
            if isinstance(one, str):
                _check_text(key, one, choices.get(item.name), where)
            elif isinstance(one, (int, float)) and not isinstance(one, bool):
                _check_number(key, one, limits.get(item.name), where)


def _check_text(key: str, value: str, allowed, where) -> None:
    if len(value) > MAX_TEXT:
        raise MeshposeError(f"'{key}' is {len(value)} characters long (at most {MAX_TEXT})", where)
    if "\x00" in value:
        raise MeshposeError(f"'{key}' holds a NUL character", where)
    if allowed is not None and value not in allowed:
        raise MeshposeError(f"'{key}' must be one of {', '.join(allowed)}, got {short(value)}", where)


def _check_number(key: str, value: float, limit: Limit | None, where) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise MeshposeError(f"'{key}' must be a finite number, got {value!r}", where)
    if limit is None:
        limit = DEFAULT_INT if isinstance(value, int) else Limit(-math.inf)
    if not limit.allows(value):
        raise MeshposeError(f"'{key}' must be {limit.describe()}, got {short(value)}", where)


def _check_values(config: Config, where) -> None:
    """The rules that involve more than one value, or a value's form."""
    run = config.run
    if not DEVICE.match(run.device):
        raise MeshposeError(f"'run.device' must be auto, cpu, cuda or cuda:N, got {short(run.device)}", where)
    if not run.name or run.name in (".", "..") or "/" in run.name or "\\" in run.name:
        raise MeshposeError(f"'run.name' must be a file name (no '/'), got {short(run.name)}", where)
    optim = config.optim
    if optim.name == "sgd" and optim.nesterov and optim.momentum == 0:
        raise MeshposeError("'optim.nesterov' needs a positive 'optim.momentum'", where)
    schedule = config.schedule
    if schedule.name == "plateau" and schedule.warmup_steps:
        raise MeshposeError("'schedule.warmup_steps' is not supported with the plateau schedule", where)
