"""Fuzz tests of the training engine and of run folders: every malformed or hostile input is
refused cleanly (one line, exit 2, nothing written: :func:`fuzzing.assert_refused`).

* configs (``meshpose train CONFIG``): damaged files, YAML bombs, repeated keys, every numeric
  field of every task out of its range or not finite, values torch would reject;
* run folders, through every command that reads one (``train --resume``, ``adapt --resume``,
  ``export``, ``plot``, ``eval-reference``, ``eval --reference-model``, pose2mesh's
  ``model.posenet_init``): missing, a file, no or a damaged ``config.yaml``, missing, damaged or
  hostile weights, a ``last`` pointer leading out of the folder;
* pickle payloads: checkpoint files whose unpickling would create a marker file never do;
* a loss that goes non-finite stops the run (exit 2, no ``model.pt``, no checkpoint of bad weights);
* a run that fails before its first checkpoint, or an export that fails, leaves nothing.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shlex
import shutil
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fuzzing import assert_refused, run_cli, snapshot

from meshpose.errors import MeshposeError
from meshpose.tasks import TASKS
from meshpose.train import loop
from meshpose.train.config import (
    DEFAULT_INT,
    FIXED_SECTIONS,
    MAX_CONFIG_BYTES,
    Limit,
    config_from_dict,
    load_config,
)

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "configs" / "toy.yaml"
TOY_DICT = yaml.safe_load(TOY.read_text())


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A fresh working folder (the current one, so the default ``runs/`` lands in it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def toy_config(**changes) -> dict:
    """The toy config with ``{"section.key": value}`` changes."""
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TOY_DICT.items()}
    for key, value in changes.items():
        section, name = key.split(".")
        config.setdefault(section, {})[name] = value
    return config


def default_config(task: str) -> dict:
    """The complete default config of ``task`` as a plain dict (what a run saves)."""
    return config_from_dict({"task": task}, tasks=TASKS).to_dict()


# ============================================================================================
# Configs: the file itself
# ============================================================================================

def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _long_error_bomb() -> str:
    """~300 bytes: a value that, expanded, is tens of MB of text (a value quoted in an error)."""
    lines = ["task: toy_regression", "model:", '  hidden: &a "' + "x" * 100 + '"']
    text = "\n".join(lines) + "\nx:\n"
    for previous, name in zip("abcde", "bcdef"):
        text += f"  {name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
    return text


CONFIG_FILES = {
    "binary": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "latin1": "task: caf\xe9\n".encode("latin-1"),
    "nul_byte": b"task: toy_regression\x00\n",
    "empty": b"",
    "blank": b"   \n\n",
    "list": b"- task\n- toy_regression\n",
    "scalar": b"toy_regression\n",
    "syntax_error": b"task: toy_regression\ntrain: [1, 2\n",
    "bad_indentation": b"task: toy_regression\n train:\n epochs: 1\n",
    "python_tag": b"!!python/object/apply:os.system ['echo hacked']\n",
    "python_tag_value": b"task: !!python/object/apply:os.getcwd []\n",
    "two_documents": b"task: toy_regression\n---\ntask: key2mesh\n",
    "alias": b"task: toy_regression\nmodel: &m {hidden: 8}\ndata: *m\n",
    "merge_key": b"task: toy_regression\ntrain: {<<: {epochs: 1}, batch_size: 8}\n",
    "billion_laughs": _billion_laughs().encode(),
    "long_error_bomb": _long_error_bomb().encode(),
    "repeated_key": b"task: toy_regression\noptim:\n  lr: 0.1\n  lr: 0.2\n",
    "repeated_section": b"task: toy_regression\noptim:\n  lr: 0.1\nmodel: {hidden: 8}\noptim:\n  lr: 0.2\n",
    "repeated_task": b"task: toy_regression\ntask: key2mesh\n",
    "int_key": b"task: toy_regression\n1: x\n",
    "null_key": b"task: toy_regression\n~: x\n",
    "list_key": b"task: toy_regression\n? [a, b]\n: 1\n",
    "int_key_in_section": b"task: toy_regression\noptim: {1: 2}\n",
    "deep_nesting": b"task: toy_regression\nx: " + b"[" * 20000 + b"]" * 20000 + b"\n",
    "oversized": b"task: toy_regression\n" + b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 10),
    "huge_task_name": b"task: " + b"y" * 500_000 + b"\n",
    "huge_section_name": b"task: toy_regression\n" + b"z" * 500_000 + b": {}\n",
    "huge_key_name": b"task: toy_regression\noptim: {" + b"k" * 500_000 + b": 1}\n",
    "section_not_mapping": b"task: toy_regression\noptim: 5\n",
    "section_list": b"task: toy_regression\noptim: [lr, 1]\n",
    "no_task": b"optim: {lr: 0.1}\n",
    "task_not_text": b"task: [toy_regression]\n",
    "timestamp_task": b"task: 2020-01-01\n",
    "unknown_section": b"task: toy_regression\noptimizer: {lr: 0.1}\n",
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILES))
def test_damaged_config_file_is_refused(work, case):
    config = work / "config.yaml"
    config.write_bytes(CONFIG_FILES[case])
    assert_refused(["train", config], config, watch=(work / "runs",))


def test_config_path_kinds_are_refused(work):
    folder = work / "folder.yaml"
    folder.mkdir()
    assert_refused(["train", folder], folder, watch=(work / "runs",), contains="folder")
    missing = work / "missing.yaml"
    assert_refused(["train", missing], missing, watch=(work / "runs",), contains="not found")
    fifo = work / "fifo.yaml"
    os.mkfifo(fifo)  # reading it would block forever
    assert_refused(["train", fifo], fifo, watch=(work / "runs",), contains="not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_config_is_refused(work):
    config = write_yaml(work / "config.yaml", toy_config())
    config.chmod(0)
    try:
        assert_refused(["train", config], config, watch=(work / "runs",), contains="cannot read")
    finally:
        config.chmod(0o644)


def test_yaml_bombs_are_refused_quickly_and_briefly(work):
    """The alias bombs are refused at their first alias: no expansion, a short line."""
    for case in ("billion_laughs", "long_error_bomb"):
        config = work / f"{case}.yaml"
        config.write_bytes(CONFIG_FILES[case])
        assert len(CONFIG_FILES[case]) < 500
        outcome = assert_refused(["train", config], config, watch=(work / "runs",), contains="alias")
        assert len(outcome.stderr) < 300


def test_python_tags_run_nothing(work):
    marker = work / "marker"
    config = work / "config.yaml"
    config.write_text(f"!!python/object/apply:os.system [{shlex.quote('touch ' + str(marker))!r}]\n")
    assert_refused(["train", config], config, watch=(work / "runs",))
    assert not marker.exists()


def test_repeated_keys_name_the_key(work):
    config = work / "config.yaml"
    config.write_bytes(CONFIG_FILES["repeated_key"])
    assert_refused(["train", config], config, contains="'lr' given twice")
    config.write_bytes(CONFIG_FILES["repeated_section"])
    assert_refused(["train", config], config, contains="'optim' given twice")


# ============================================================================================
# Configs: every value
# ============================================================================================

def _numeric_fields():
    """``(task, section, field name, kind, limit, default)`` of every int/float field of every
    config section of every task (the fixed sections once, with the toy task)."""
    found = []
    for task_name, task in TASKS.items():
        sections = {"model": task.ModelConfig, "data": task.DataConfig}
        if task_name == "toy_regression":
            sections = {**FIXED_SECTIONS, **sections}
        for section, schema in sections.items():
            hints = typing.get_type_hints(schema)
            for item in dataclasses.fields(schema):
                hint = hints[item.name]
                kind = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
                if kind in (int, float):
                    default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
                    found.append((task_name, section, item.name, kind, getattr(schema, "LIMITS", {}).get(item.name),
                                  default))
    return found


NUMERIC_FIELDS = _numeric_fields()


def test_every_numeric_field_declares_its_range():
    """The class of "a number with no bound" (depth 1000000, negative widths) cannot come back."""
    missing = [f"{task}:{section}.{name}" for task, section, name, _, limit, _ in NUMERIC_FIELDS if limit is None]
    assert not missing, f"numeric config fields without LIMITS: {missing}"
    assert len(NUMERIC_FIELDS) > 80


def _out_of_range(kind: type, limit: Limit) -> list:
    """Values just outside ``limit`` (and, for floats, NaN and infinities)."""
    bad = []
    if math.isfinite(limit.low):
        low = limit.low
        bad.append(low if limit.low_open else (low - 1 if kind is int else low - max(abs(low) * 0.5, 0.5)))
    if math.isfinite(limit.high):
        high = limit.high
        bad.append(high if limit.high_open else (int(high) + 1 if kind is int else high * 2 + 1))
    if kind is float:
        bad += [math.nan, math.inf, -math.inf]
    else:
        bad.append(10**30)  # beyond any bound and beyond int64
    return bad


VALUE_CASES = [
    pytest.param(task, section, name, value, id=f"{task}-{section}.{name}={value!r}")
    for task, section, name, kind, limit, default in NUMERIC_FIELDS
    for value in _out_of_range(kind, limit or DEFAULT_INT)
]


def _with_value(task: str, section: str, name: str, value) -> dict:
    config = toy_config() if task == "toy_regression" else {"task": task}
    default = getattr(config_from_dict({"task": task}, tasks=TASKS), section)
    current = getattr(default, name)
    if isinstance(current, list):  # a list field: one bad item among good ones
        value = [value, *current[1:]] if current else [value]
    config.setdefault(section, {})
    config[section] = {**(config.get(section) or {}), name: value}
    return config


@pytest.mark.parametrize("task, section, name, value", VALUE_CASES)
def test_out_of_range_value_is_refused(work, task, section, name, value):
    config = write_yaml(work / "config.yaml", _with_value(task, section, name, value))
    assert_refused(["train", config], config, watch=(work / "runs",), contains=f"'{section}.{name}'")


BAD_VALUE_CASES = [
    ("optim.lr", ".nan", "finite"), ("optim.lr", "-1", "positive"), ("optim.lr", "0", "positive"),
    ("optim.lr", "1e31", "positive and at most"), ("optim.lr", "1" + "0" * 400, "finite"),
    ("optim.lr", "nan", "finite"), ("optim.lr", "-.inf", "finite"),
    ("optim.eps", "-1e-8", "'optim.eps' must be"), ("optim.weight_decay", "-0.1", "'optim.weight_decay'"),
    ("optim.momentum", "-0.5", "'optim.momentum' must be"), ("optim.betas", "[0.9]", "must hold 2 values"),
    ("optim.betas", "[1.0, 0.5]", "'optim.betas' must be"), ("optim.betas", "[.nan, 0.9]", "finite"),
    ("schedule.step_size", "0", "'schedule.step_size' must be positive"),
    ("schedule.factor", "1.0", "'schedule.factor' must be"), ("schedule.gamma", "-1", "'schedule.gamma'"),
    ("model.hidden", "-5", "'model.hidden' must be positive"), ("model.hidden", "0", "positive"),
    ("model.hidden", "100000000", "at most"), ("model.depth", "1000000", "'model.depth' must be"),
    ("data.in_dim", "-1", "'data.in_dim'"), ("data.val_size", "1000000000", "'data.val_size'"),
    ("train.batch_size", "10000000", "'train.batch_size' must be"), ("train.epochs", "1e400", "must be int"),
    ("train.grad_clip", ".inf", "finite"), ("checkpoint.keep", "0", "'checkpoint.keep' must be positive"),
    ("run.seed", "-1", "'run.seed' must be"), ("run.seed", "99999999999999999999999", "'run.seed'"),
    ("run.device", "tpu", "'run.device' must be"), ("run.device", "cuda:x", "'run.device' must be"),
    ("run.name", "../escape", "'run.name' must be a file name"), ("run.name", '""', "'run.name'"),
    ("run.name", '"a\\0b"', "NUL"), ("run.output_dir", '"' + "d" * 5000 + '"', "characters long"),
    ("schedule.milestones", "[" + ", ".join(["1"] * 2000) + "]", "must hold 0 to 1000 values"),
    ("train.amp", "fp8", "'train.amp' must be one of"), ("model.hidden", "{a: 1}", "'model.hidden' must be int"),
    ("data.noise", "true", "'data.noise' must be float"), ("train.compile", "1", "'train.compile' must be bool"),
    ("model.hidden", "'" + "9" * 100_000 + "'", "must be int"),
]


@pytest.mark.parametrize("key, text, says", BAD_VALUE_CASES, ids=[f"{k}={t[:20]}" for k, t, _ in BAD_VALUE_CASES])
def test_bad_value_in_file_is_refused(work, key, text, says):
    section, name = key.split(".")
    body = yaml.safe_dump({k: v for k, v in toy_config().items() if k != section}, sort_keys=False)
    others = "".join(f"  {k}: {json.dumps(v)}\n"
                     for k, v in (TOY_DICT.get(section) or {}).items() if k != name)
    config = work / "config.yaml"
    config.write_text(body + f"{section}:\n{others}  {name}: {text}\n")
    outcome = assert_refused(["train", config], config, watch=(work / "runs",), contains=says)
    assert "9" * 100 not in outcome.stderr and "d" * 100 not in outcome.stderr  # a short excerpt only


@pytest.mark.parametrize("key, text, says", BAD_VALUE_CASES[:24], ids=[f"{k}={t[:20]}" for k, t, _ in BAD_VALUE_CASES[:24]])
def test_bad_value_as_override_is_refused(work, key, text, says):
    assert_refused(["train", TOY, f"{key}={text}"], TOY, watch=(work / "runs",), contains=says)


@pytest.mark.parametrize("overrides, says", [
    (["optim.name=sgd", "optim.nesterov=true", "optim.momentum=0"], "'optim.nesterov' needs"),
    (["schedule.name=plateau", "schedule.warmup_steps=5"], "not supported with the plateau"),
    (["optim.lr=0.1", "optim.lr=0.2"], "given twice"),
    (["optim.lr=&a [*a]"], "'optim.lr' must be float"),
    (["optim.lr=" + "[" * 5000], "'optim.lr' must be float"),
])
def test_inconsistent_or_repeated_overrides_are_refused(work, overrides, says):
    names = "optim.lr" if "given twice" in says else TOY
    assert_refused(["train", TOY, *overrides], names, watch=(work / "runs",), contains=says)


@pytest.mark.parametrize("task, section, name, value, says", [
    ("key2mesh", "data", "input_sets", [], "'data.input_sets' must hold"),
    ("key2mesh", "data", "input_sets", ["coco18"], "'data.input_sets' must be one of"),
    ("pose2mesh", "data", "stage", "both", "'data.stage' must be one of"),
    ("pose2mesh", "model", "widths", [64] * 20, "'model.widths' must hold"),
    ("lift_anny_toy", "data", "distance_m", [3.0], "'data.distance_m' must hold 2"),
    ("lift_anny_toy", "data", "joint_set", "nonsense", "'data.joint_set' must be one of"),
    ("meshkp_seed", "data", "scale_range", 1.0, "'data.scale_range' must be"),
])
def test_task_section_values_are_checked(work, task, section, name, value, says):
    config = write_yaml(work / "config.yaml", {"task": task, section: {name: value}})
    assert_refused(["train", config], config, watch=(work / "runs",), contains=says)


def test_the_shipped_configs_are_valid():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path, tasks=TASKS)


# ============================================================================================
# Run folders
# ============================================================================================

@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A finished 4-step toy run (checkpoints at steps 2 and 4)."""
    run_dir = tmp_path_factory.mktemp("toy") / "run"
    outcome = run_cli("train", TOY, "train.epochs=1", "train.steps_per_epoch=4", "checkpoint.every_steps=2",
                      "train.log_every=1", "model.hidden=16", "--run-dir", run_dir)
    assert outcome.code == 0, outcome.stderr
    return run_dir


@pytest.fixture(scope="module")
def keypoint_dataset(tmp_path_factory) -> Path:
    """A two-mesh keypoint dataset (octahedra), as ``meshpose data build-keypoints`` lays it out."""
    folder = tmp_path_factory.mktemp("kpdata")
    (folder / "meshes").mkdir()
    octahedron = ("v 1 0 0\nv -1 0 0\nv 0 1 0\nv 0 -1 0\nv 0 0 1\nv 0 0 -1\n"
                  "f 1 3 5\nf 3 2 5\nf 2 4 5\nf 4 1 5\nf 3 1 6\nf 2 3 6\nf 4 2 6\nf 1 4 6\n")
    names = ["adobe__one.obj", "tr_reg_000.obj"]
    for name in names:
        (folder / "meshes" / name).write_text(octahedron)
    header = "name," + ",".join(f"k{i}_{a}" for i in range(12) for a in "xyz")
    rows = [name + "," + ",".join(["0.1"] * 36) for name in names]
    (folder / "keypoints.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


def fake_run(folder: Path, task: str, **changes) -> Path:
    """A run folder of ``task`` with its default config (``{"section.key": value}`` changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = default_config(task)
    for key, value in changes.items():
        section, name = key.split(".")
        config[section][name] = value
    write_yaml(folder / "config.yaml", config)
    return folder


# The commands that read a run folder: name -> (task of its runs, argv for RUN, what it reads)
def _commands(tmp: Path, dataset: Path) -> dict:
    return {
        "train-resume": ("toy_regression", lambda run: ["train", "--resume", run], "checkpoint"),
        "adapt-resume": ("adapt", lambda run: ["adapt", "--resume", run], "checkpoint"),
        "export": ("key2mesh", lambda run: ["export", run, "-o", tmp / "out.safetensors"], "model"),
        "export-checkpoint": ("key2mesh", lambda run: ["export", run, "-o", tmp / "out.safetensors"], "checkpoint"),
        "plot": ("adapt", lambda run: ["plot", run, "-o", tmp / "plot.png"], "model"),
        "eval-reference": ("meshkp_seed", lambda run: ["eval-reference", run, dataset], "best"),
        "eval-reference-final": ("meshkp_seed", lambda run: ["eval-reference", run, dataset, "--weights", "final"],
                                 "model"),
        "eval": ("meshkp_seed", lambda run: ["eval", "--tasks", "mesh-keypoints", "--keypoint-dataset", dataset,
                                            "--reference-model", run], "best"),
        "posenet-init": ("pose2mesh", lambda run: ["train", _pose2mesh_config(tmp, run)], "model"),
    }


def _pose2mesh_config(tmp: Path, posenet_run: Path) -> Path:
    """A stage-2 pose2mesh config that starts PoseNet from ``posenet_run``."""
    config = default_config("pose2mesh")
    config["run"]["output_dir"] = str(tmp / "runs")
    config["model"]["posenet_init"] = str(posenet_run)
    return write_yaml(tmp / "pose2mesh.yaml", config)


COMMANDS = ["train-resume", "adapt-resume", "export", "export-checkpoint", "plot", "eval-reference",
            "eval-reference-final", "eval", "posenet-init"]
OUTPUTS = ("out.safetensors", "plot.png", "runs")


def _refuse(tmp: Path, argv: list, run: Path, contains: str | None = None):
    """The command refused, naming the run folder, with the run folder and outputs unchanged."""
    return assert_refused(argv, run, watch=(run, *(tmp / name for name in OUTPUTS)), contains=contains)


FOLDER_KINDS = {
    "missing": lambda run: None,
    "a_file": lambda run: run.write_text("not a folder\n"),
    "empty_folder": lambda run: run.mkdir(),
    "config_is_a_folder": lambda run: (run / "config.yaml").mkdir(parents=True),
    "config_binary": lambda run: _config_bytes(run, bytes(range(256)) * 8),
    "config_empty": lambda run: _config_bytes(run, b""),
    "config_alias_bomb": lambda run: _config_bytes(run, _billion_laughs().encode()),
    "config_repeated_key": lambda run: _config_bytes(run, b"task: toy_regression\ntask: adapt\n"),
    "config_list": lambda run: _config_bytes(run, b"- task\n"),
    "config_oversized": lambda run: _config_bytes(run, b"#" * (MAX_CONFIG_BYTES + 10)),
    "config_bad_value": lambda run: _config_bytes(run, None, **{"model.hidden": -5}),
    "config_unknown_key": lambda run: _config_bytes(run, None, **{"model.nonsense": 1}),
    "no_weights": lambda run: _config_bytes(run, None),
}


def _config_bytes(run: Path, data: bytes | None, **changes) -> None:
    """``run/config.yaml`` with ``data``, or (None) the default config of the run's task."""
    run.mkdir(parents=True, exist_ok=True)
    if data is None:
        config = default_config(run.name.split("--")[0])
        for key, value in changes.items():
            section, name = key.split(".")
            config[section][name] = value
        write_yaml(run / "config.yaml", config)
    else:
        (run / "config.yaml").write_bytes(data)


@pytest.mark.parametrize("kind", sorted(FOLDER_KINDS))
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_run_folder_is_refused(tmp_path, keypoint_dataset, command, kind):
    task, argv, _ = _commands(tmp_path, keypoint_dataset)[command]
    run = tmp_path / f"{task}--run"
    FOLDER_KINDS[kind](run)
    _refuse(tmp_path, argv(run), run)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("train-resume", "posenet-init")])
def test_run_of_another_task_is_refused(tmp_path, keypoint_dataset, command):
    _, argv, _ = _commands(tmp_path, keypoint_dataset)[command]
    run = fake_run(tmp_path / "run", "toy_regression")
    torch.save({"0.weight": torch.zeros(2, 2)}, run / "model.pt")
    _refuse(tmp_path, argv(run), run)


# ---------------------------------------------------------------------------------- weights

class OpenMarker:
    """Unpickling this creates ``path`` (``open(path, "w")``)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class SystemMarker:
    """Unpickling this runs ``touch path`` in a shell."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.path)}",))


def _payload(kind: str, marker: Path, checkpoint: bool):
    evil = OpenMarker(marker) if kind.endswith("open") else SystemMarker(marker)
    return {"model": evil, "step": 1} if checkpoint else {"weight": evil}


def write_payload(path: Path, kind: str, marker: Path, checkpoint: bool) -> None:
    """A file whose unpickling creates ``marker``: ``torch.save`` or plain ``pickle`` of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = _payload(kind, marker, checkpoint)
    if kind.startswith("torch"):
        torch.save(obj, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(obj, handle)


PAYLOADS = ["torch-open", "torch-system", "pickle-open", "pickle-system"]


def test_the_payloads_are_live(tmp_path):
    """Loaded the unsafe way, each payload creates its marker: the tests below mean something."""
    for kind in PAYLOADS:
        marker = tmp_path / f"marker-{kind}"
        path = tmp_path / f"{kind}.pt"
        write_payload(path, kind, marker, checkpoint=True)
        with open(path, "rb") as handle:
            torch.load(handle, weights_only=False) if kind.startswith("torch") else pickle.load(handle)
        assert marker.exists(), kind


def _weights_target(run: Path, reads: str) -> Path:
    """Where a command of this kind reads the weights of ``run`` (and the pointer set up)."""
    checkpoints = run / "checkpoints"
    if reads == "model":
        return run / "model.pt"
    if reads == "best":
        return checkpoints / "best.pt"
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / "last").write_text("step-00000009.pt\n")
    return checkpoints / "step-00000009.pt"


def _prepare(tmp_path: Path, command: str, dataset: Path, toy_run: Path):
    """``(run folder, argv, weights path)`` of ``command`` on a run of its task."""
    task, argv, reads = _commands(tmp_path, dataset)[command]
    if task == "toy_regression":
        run = tmp_path / "run"
        shutil.copytree(toy_run, run)
        (run / "model.pt").unlink()
    else:
        run = fake_run(tmp_path / "run", task)
    return run, argv(run), _weights_target(run, reads)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("command", COMMANDS)
def test_pickle_payload_never_runs(tmp_path, keypoint_dataset, toy_run, command, payload):
    run, argv, target = _prepare(tmp_path, command, keypoint_dataset, toy_run)
    marker = tmp_path / "marker"
    write_payload(target, payload, marker, checkpoint=target.name != "model.pt")
    _refuse(tmp_path, argv, run, contains="Python objects" if payload.startswith("torch") else None)
    assert not marker.exists()


POINTERS = ["../../outside.pt", "ABSOLUTE", "step-00000004.pt/../../../outside.pt", "step-4.pt\x00x",
            "/etc/passwd", "step-4.pt extra", "model.pt"]


@pytest.mark.parametrize("pointer", POINTERS)
@pytest.mark.parametrize("payload", PAYLOADS[:2])
def test_last_pointer_out_of_the_folder_is_refused(tmp_path, toy_run, payload, pointer):
    outside = tmp_path / "outside.pt"
    marker = tmp_path / "marker"
    write_payload(outside, payload, marker, checkpoint=True)
    name = str(outside) if pointer == "ABSOLUTE" else pointer
    toy = tmp_path / "toy"
    shutil.copytree(toy_run, toy)
    (toy / "model.pt").unlink()
    key2mesh = fake_run(tmp_path / "key2mesh", "key2mesh")
    (key2mesh / "checkpoints").mkdir()
    for run, argv in ((toy, ["train", "--resume", toy]), (key2mesh, ["export", key2mesh, "-o", tmp_path / "out.safetensors"])):
        (run / "checkpoints" / "last").write_text(name + "\n")
        _refuse(tmp_path, argv, run / "checkpoints" / "last", contains="step-<digits>.pt")
    assert not marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_checkpoint_link_out_of_the_folder_is_refused(tmp_path, toy_run, payload):
    outside = tmp_path / "outside.pt"
    marker = tmp_path / "marker"
    write_payload(outside, payload, marker, checkpoint=True)
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    (run / "model.pt").unlink()
    (run / "checkpoints" / "step-00000009.pt").symlink_to(outside)
    (run / "checkpoints" / "last").write_text("step-00000009.pt\n")
    _refuse(tmp_path, ["train", "--resume", run], run, contains="leads out of the checkpoints folder")
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["a_folder", "binary", "empty_file", "whitespace", "huge", "fifo"])
def test_damaged_last_pointer_is_refused(tmp_path, toy_run, kind):
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    (run / "model.pt").unlink()
    last = run / "checkpoints" / "last"
    last.unlink()
    if kind == "a_folder":
        last.mkdir()
    elif kind == "fifo":
        os.mkfifo(last)  # reading it would block forever
    else:
        last.write_bytes({"binary": bytes(range(256)), "empty_file": b"", "whitespace": b"  \n",
                          "huge": b"step-00000004.pt" * 100_000}[kind])
    _refuse(tmp_path, ["train", "--resume", run], last)


def _state_of(hidden: int = 16) -> dict:
    return TASKS["toy_regression"].build_model(
        config_from_dict(toy_config(**{"model.hidden": hidden}), tasks=TASKS).model,
        config_from_dict(toy_config(), tasks=TASKS).data).state_dict()


def _old_format(toy_run: Path) -> dict:
    """A checkpoint as meshpose wrote them before: numpy's RNG state tuple with its ndarray."""
    state = torch.load(toy_run / "checkpoints" / "step-00000004.pt", weights_only=True)
    state["rng"][0]["numpy"] = np.random.get_state()
    return state


HOSTILE_FILES = {  # kind -> (bytes or object to torch.save or a callable(path), what the line says)
    "garbage": (bytes(range(256)) * 10, "not a readable"),
    "empty": (b"", "not a readable"),
    "truncated": ("truncated", "not a readable"),
    "a_folder": ("folder", "is a folder"),
    "fifo": ("fifo", "not a regular file"),
    "dangling_link": ("dangling", "not found"),
    "a_list": ([1, 2, 3], None),
    "no_model": ({"step": 3, "weights": {}}, None),
    "wrong_shapes": ({"model": {"0.weight": torch.zeros(3)}, "step": 1}, None),
    "non_finite": ("nan", "non-finite"),
    "numpy_inside": ({"model": {"w": np.zeros(3)}, "step": 1}, "Python objects"),
    "bad_step": ({"model": {}, "step": "four"}, None),
}


def _write_hostile(path: Path, kind: str, toy_run: Path, checkpoint: bool) -> None:
    content, _ = HOSTILE_FILES[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "truncated":
        data = (toy_run / "checkpoints" / "step-00000004.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "folder":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif content == "dangling":
        path.symlink_to(path.parent / "nowhere.pt")
    elif content == "nan":
        state = {k: torch.full_like(v, math.nan) for k, v in _state_of().items()}
        torch.save({"model": state, "step": 1} if checkpoint else state, path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif checkpoint or not isinstance(content, dict) or "model" not in content:
        torch.save(content, path)
    else:
        torch.save(content["model"], path)


@pytest.mark.parametrize("kind", sorted(HOSTILE_FILES))
@pytest.mark.parametrize("command", COMMANDS)
def test_damaged_weights_are_refused(tmp_path, keypoint_dataset, toy_run, command, kind):
    run, argv, target = _prepare(tmp_path, command, keypoint_dataset, toy_run)
    _write_hostile(target, kind, toy_run, checkpoint=target.name != "model.pt")
    _refuse(tmp_path, argv, run, contains=HOSTILE_FILES[kind][1])


CHECKPOINT_CHANGES = {  # a toy checkpoint with one part changed -> refused on resume
    "old_format_rng": lambda s, run: _old_format(run),
    "no_optimizer": lambda s, run: {k: v for k, v in s.items() if k != "optimizer"},
    "optimizer_of_other_shapes": lambda s, run: {**s, "optimizer": {**s["optimizer"], "state": {
        0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}}}},
    "optimizer_lr_text": lambda s, run: {**s, "optimizer": {**s["optimizer"], "param_groups": [
        {**s["optimizer"]["param_groups"][0], "lr": "fast"}]}},
    "scheduler_of_other_kind": lambda s, run: {**s, "scheduler": {"factor": 0.5, "mode": "min", "best": 1.0}},
    "scheduler_base_text": lambda s, run: {**s, "scheduler": {**s["scheduler"], "base_lrs": ["x"]}},
    "rng_empty": lambda s, run: {**s, "rng": []},
    "rng_garbage": lambda s, run: {**s, "rng": [{"python": (1, 2), "numpy": {}, "torch": torch.zeros(3)}]},
    "rng_numpy_keys_short": lambda s, run: {**s, "rng": [{**s["rng"][0], "numpy": {
        **s["rng"][0]["numpy"], "keys": torch.zeros(5, dtype=torch.int64)}}]},
    "best_text": lambda s, run: {**s, "best": "great"},
    "model_of_other_size": lambda s, run: {**s, "model": _state_of(hidden=8)},
    "negative_step": lambda s, run: {**s, "step": -3},
}


@pytest.mark.parametrize("change", sorted(CHECKPOINT_CHANGES))
def test_checkpoint_that_does_not_fit_is_refused_on_resume(tmp_path, toy_run, change):
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    (run / "model.pt").unlink()
    newest = run / "checkpoints" / "step-00000004.pt"
    state = torch.load(newest, weights_only=True)
    torch.save(CHECKPOINT_CHANGES[change](state, toy_run), newest)
    outcome = _refuse(tmp_path, ["train", "--resume", run], run)
    if change == "old_format_rng":
        assert "older meshpose version" in outcome.stderr


def test_a_good_run_still_resumes_exports_nothing_and_keeps_no_temporary_files(tmp_path, toy_run):
    """The safe loading reads meshpose's own checkpoints: resume after the last one finishes."""
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    (run / "model.pt").unlink()
    outcome = run_cli("train", "--resume", run)
    assert outcome.code == 0, outcome.stderr
    final = torch.load(run / "model.pt", weights_only=True)
    reference = torch.load(toy_run / "model.pt", weights_only=True)
    assert all(torch.equal(final[k], reference[k]) for k in reference)
    assert not list(run.rglob(".*.tmp*"))
    # a toy run has no model file: refused, nothing written
    _refuse(tmp_path, ["export", run, "-o", tmp_path / "out.safetensors"], run, contains="no model file")


def test_resume_follows_an_edited_learning_rate(tmp_path, toy_run):
    """A run can be resumed with other optimiser settings by editing its config.yaml."""
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    (run / "model.pt").unlink()
    (run / "checkpoints" / "step-00000004.pt").unlink()
    (run / "checkpoints" / "last").write_text("step-00000002.pt\n")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["optim"]["lr"] = config["optim"]["lr"] / 10
    write_yaml(run / "config.yaml", config)
    assert run_cli("train", "--resume", run).code == 0
    state = torch.load(run / "checkpoints" / "step-00000004.pt", weights_only=True)
    assert state["scheduler"]["base_lrs"] == [pytest.approx(config["optim"]["lr"])]
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(config["optim"]["lr"])


def test_adapt_resume_of_another_task_is_refused(tmp_path, toy_run):
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    _refuse(tmp_path, ["adapt", "--resume", run], run, contains="not 'adapt'")


def test_eval_checks_the_dataset_before_the_run(tmp_path):
    """A bad dataset is refused before the reference run is even read (its payload never runs)."""
    run = fake_run(tmp_path / "run", "meshkp_seed")
    marker = tmp_path / "marker"
    write_payload(run / "checkpoints" / "best.pt", "torch-open", marker, checkpoint=True)
    dataset = tmp_path / "no-dataset"
    dataset.mkdir()
    for argv in (["eval", "--tasks", "mesh-keypoints", "--keypoint-dataset", dataset, "--reference-model", run],
                 ["eval-reference", run, dataset]):
        assert_refused(argv, dataset, watch=(run, dataset), contains="keypoints.csv")
    assert not marker.exists()


# ============================================================================================
# Non-finite losses and weights
# ============================================================================================

def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(work):
    run = work / "run"
    outcome = assert_refused(["train", TOY, "optim.lr=1e30", "checkpoint.every_steps=1", "--run-dir", run],
                             run, contains="at step 2")
    assert "loss is nan" in outcome.stderr or "loss is inf" in outcome.stderr
    assert not (run / "model.pt").exists() and not (run / "metrics.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last", "step-00000001.pt"]
    state = torch.load(run / "checkpoints" / "step-00000001.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # resumed with the same settings: stopped again, the same way, nothing added
    assert_refused(["train", "--resume", run], run, watch=(run / "checkpoints", run / "config.yaml"),
                   contains="at step 2")
    assert not (run / "model.pt").exists()


def test_nan_loss_before_the_first_checkpoint_leaves_nothing(work):
    assert_refused(["train", TOY, "optim.lr=1e30"], "runs/toy-", watch=(work / "runs",), contains="at step 2")


class _PoisonTask:
    """The toy task whose model gets a NaN buffer in its first loss (the loss itself is finite)."""

    ModelConfig = TASKS["toy_regression"].ModelConfig
    DataConfig = TASKS["toy_regression"].DataConfig

    def build_model(self, model, data):
        net = TASKS["toy_regression"].build_model(model, data)
        net.register_buffer("poison", torch.zeros(1))
        return net

    def make_batch(self, *args, **kwargs):
        return TASKS["toy_regression"].make_batch(*args, **kwargs)

    def loss(self, model, batch):
        model.poison.fill_(math.nan)
        return TASKS["toy_regression"].loss(model, batch)

    def validate(self, model, data, device):
        return TASKS["toy_regression"].validate(model, data, device)


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    config = load_config(TOY, ["checkpoint.every_steps=1", f"run.output_dir={tmp_path / 'runs'}"], tasks=TASKS)
    with pytest.raises(MeshposeError, match="weights are not finite after step 1 .*'poison'"):
        loop.train(config, _PoisonTask())
    assert not (tmp_path / "runs").exists()


# ============================================================================================
# Nothing half-written
# ============================================================================================

@pytest.mark.parametrize("overrides, says", [
    (["schedule.name=plateau", "schedule.warmup_steps=0", "schedule.metric=val/nothing"], "'schedule.metric'"),
    (["checkpoint.best_metric=val/nothing"], "'checkpoint.best_metric'"),
])
def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(work, overrides, says):
    settings = ["train.epochs=1", "train.steps_per_epoch=3", "checkpoint.every_steps=10"]
    assert_refused(["train", TOY, *settings, *overrides], TOY, watch=(work / "runs",), contains=says)
    # in a --run-dir that was empty: left empty
    run = work / "given"
    run.mkdir()
    assert_refused(["train", TOY, *settings, *overrides, "--run-dir", run], TOY, watch=(run,), contains=says)
    assert run.is_dir() and not any(run.iterdir())


def test_a_missing_dataset_leaves_no_run_folder(work):
    config = write_yaml(work / "seed.yaml", {"task": "meshkp_seed", "run": {"output_dir": str(work / "deep/runs")},
                                            "data": {"dataset": str(work / "no-dataset")}})
    assert_refused(["train", config], work / "no-dataset", watch=(work / "deep",))
    assert not (work / "deep").exists()


def test_run_dir_that_is_a_file_or_not_empty_is_refused(work):
    file = work / "file"
    file.write_text("x")
    assert_refused(["train", TOY, "--run-dir", file], file, watch=(file,), contains="not a folder")
    full = work / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert_refused(["train", TOY, "--run-dir", full], full, watch=(full,), contains="not empty")
    assert_refused(["train", TOY, f"run.output_dir={file}/runs"], file, watch=(file,),
                   contains="cannot create the run folder")


@pytest.fixture
def key2mesh_run(tmp_path) -> Path:
    """A finished key2mesh run folder (small regressor, weights written by hand)."""
    from meshpose.models.regressor import KeypointRegressor

    run = fake_run(tmp_path / "run", "key2mesh", **{"model.hidden": 32, "model.blocks": 1})
    torch.save(KeypointRegressor(32, 1, 2).state_dict(), run / "model.pt")
    (run / "metrics.json").write_text('{"val/loss": 0.5}\n')
    return run


def test_export_writes_whole_files_only(tmp_path, key2mesh_run):
    from safetensors import safe_open

    out = tmp_path / "out.safetensors"
    outcome = run_cli("export", key2mesh_run, "-o", out)
    assert outcome.code == 0, outcome.stderr
    with safe_open(str(out), "pt") as handle:
        assert handle.metadata()["step"] == "final" and "val/loss" in handle.metadata()["metrics"]
    before = snapshot(out)
    # failures leave an existing output as it was, and nothing else
    (key2mesh_run / "metrics.json").write_bytes(b"\xff" * 10)
    assert_refused(["export", key2mesh_run, "-o", out], key2mesh_run / "metrics.json", watch=(out, tmp_path))
    assert snapshot(out) == before
    (key2mesh_run / "metrics.json").unlink()
    assert_refused(["export", key2mesh_run, "-o", tmp_path / "missing" / "out.safetensors"], "missing",
                   watch=(tmp_path,))
    assert_refused(["export", key2mesh_run, "-o", tmp_path], tmp_path, watch=(tmp_path,), contains="is a folder")
    torch.save({"encoder.weight": torch.zeros(2, 2)}, key2mesh_run / "model.pt")
    assert_refused(["export", key2mesh_run, "-o", out], key2mesh_run, watch=(out,), contains="do not fit")


def test_plot_output_is_checked_before_the_work(tmp_path):
    run = fake_run(tmp_path / "run", "adapt")
    assert_refused(["plot", run, "-o", tmp_path], tmp_path, watch=(tmp_path,), contains="is a folder")
    (run / "metrics.csv").write_text("step,loss\n1,abc\n")
    torch.save({}, run / "model.pt")
    assert_refused(["plot", run, "-o", tmp_path / "p.png"], run / "metrics.csv", watch=(tmp_path,))
