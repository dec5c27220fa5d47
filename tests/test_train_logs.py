"""Tests of meshpose.train.logs against independent facts (TensorBoard's own event reader,
float32 rounding by numpy, a fake clock)."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from meshpose.train.logs import (
    CSVLogger,
    ProgressBar,
    TensorBoardWriter,
    write_metrics_json,
)

# ------------------------------------------------------------------------------------------
# TensorBoard event files, read back by TensorBoard's own EventAccumulator
# ------------------------------------------------------------------------------------------


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` as TensorBoard sees the run in ``folder``."""
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def event_files(folder):
    return sorted(path for path in folder.iterdir() if ".tfevents." in path.name)


def test_scalars_read_back_by_tensorboard(tmp_path):
    folder = tmp_path / "run" / "tensorboard"  # created, parents included
    rng = np.random.default_rng(0)
    expected: dict[str, list] = {}
    with TensorBoardWriter(folder) as writer:
        for step in range(0, 200, 10):
            scalars = {"loss": rng.uniform(0, 5), "lr": 10 ** rng.uniform(-6, -2),
                       "train/l2": rng.uniform(0, 1)}
            writer.add_scalars({tag: float(value) for tag, value in scalars.items()}, step)
            for tag, value in scalars.items():
                expected.setdefault(tag, []).append((step, np.float32(value)))
        writer.add_scalars({"val/mpjpe": 0.1}, step=200)
    assert len(event_files(folder)) == 1
    got = tensorboard_scalars(folder)
    assert set(got) == {"loss", "lr", "train/l2", "val/mpjpe"}
    for tag, points in expected.items():
        assert [step for step, _ in got[tag]] == list(range(0, 200, 10))
        assert got[tag] == points
    assert got["val/mpjpe"] == [(200, np.float32(0.1))]
    assert got["val/mpjpe"][0][1] != 0.1  # stored as float32, as TensorBoard does


def test_scalar_like_values_and_closed_writer(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    writer.add_scalars({"tensor": torch.tensor(2.5), "tensor32": torch.tensor(0.1),
                        "np64": np.float64(0.25), "np32": np.float32(1 / 3), "int": 3}, step=1)
    writer.close()
    writer.close()  # idempotent
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.add_scalars({"x": 1.0}, 2)
    assert len(event_files(tmp_path)) == 1  # writing after close made no new file
    assert tensorboard_scalars(tmp_path) == {
        "tensor": [(1, 2.5)], "tensor32": [(1, np.float32(0.1))], "np64": [(1, 0.25)],
        "np32": [(1, np.float32(1 / 3))], "int": [(1, 3.0)]}


def test_resumed_writer_purges_replayed_steps(tmp_path):
    folder = tmp_path / "tensorboard"
    with TensorBoardWriter(folder) as first:
        for step in range(1, 11):
            first.add_scalars({"loss": 1.0 / step}, step)
    # Resumed from a checkpoint at step 5: steps 6.. are replayed, with other values.
    with TensorBoardWriter(folder, purge_step=6) as second:
        for step in range(6, 9):
            second.add_scalars({"loss": -float(step)}, step)
    assert len(event_files(folder)) == 2
    assert tensorboard_scalars(folder) == {
        "loss": [(s, np.float32(1.0 / s)) for s in range(1, 6)] + [(6, -6.0), (7, -7.0), (8, -8.0)]}


def test_resumed_writer_without_purge_step_keeps_old_points(tmp_path):
    """The control for the test above: the purge comes from ``purge_step``, not from the reader."""
    with TensorBoardWriter(tmp_path) as first:
        for step in range(1, 4):
            first.add_scalars({"loss": float(step)}, step)
    with TensorBoardWriter(tmp_path) as second:
        second.add_scalars({"loss": -2.0}, 2)
    assert tensorboard_scalars(tmp_path) == {"loss": [(1, 1.0), (2, 2.0), (3, 3.0), (2, -2.0)]}


# ------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_csv_header_fixed_by_first_row(tmp_path):
    path = tmp_path / "logs" / "metrics.csv"
    logger = CSVLogger(path)
    assert not path.exists()  # created by the first row
    logger.log({"step": 10, "epoch": 0.5, "loss": 0.25, "lr": 1e-3})
    # The row is flushed: visible to another reader while the logger is still open.
    assert read_rows(path) == [["step", "epoch", "loss", "lr"], ["10", "0.5", "0.25", "0.001"]]
    logger.log({"loss": 0.125, "step": 20})  # other order, missing columns: empty cells
    with pytest.raises(ValueError, match="samples_per_s"):
        logger.log({"step": 30, "samples_per_s": 5.0})
    logger.close()
    assert read_rows(path) == [["step", "epoch", "loss", "lr"], ["10", "0.5", "0.25", "0.001"],
                               ["20", "", "0.125", ""]]


def test_csv_fieldnames_and_reopen_appends(tmp_path):
    path = tmp_path / "metrics.csv"
    with CSVLogger(path, fieldnames=["step", "loss", "lr"]) as logger:
        logger.log({"step": 1, "loss": 2.0})
    with CSVLogger(path) as logger:  # resumed: takes the header from the file
        assert logger.fieldnames == ["step", "loss", "lr"]
        logger.log({"step": 2, "loss": 1.5, "lr": 0.1})
    with CSVLogger(path, fieldnames=["step", "loss", "lr"]) as logger:
        logger.log({"step": 3, "loss": 1.0, "lr": 0.1})
    assert read_rows(path) == [["step", "loss", "lr"], ["1", "2.0", ""], ["2", "1.5", "0.1"],
                               ["3", "1.0", "0.1"]]
    with pytest.raises(ValueError, match="header"):
        CSVLogger(path, fieldnames=["step", "loss"])
    with pytest.raises(ValueError, match="epoch"):
        CSVLogger(path).log({"step": 4, "epoch": 1})


def test_csv_truncate_after_keeps_earlier_rows_exactly(tmp_path):
    path = tmp_path / "metrics.csv"
    with CSVLogger(path) as logger:
        for step in (10, 20, 30, 40):
            logger.log({"step": step, "loss": 1 / step, "note": "a,b" if step == 20 else "x"})
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    expected_prefix = b"\n".join(lines[:3]) + b"\n"  # header + steps 10 and 20

    logger = CSVLogger(path)
    assert logger.truncate_after(20) == 2
    assert path.read_bytes() == expected_prefix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]  # no temp file left
    logger.log({"step": 30, "loss": 0.5, "note": "resumed"})
    logger.close()
    rows = read_rows(path)
    assert [row[0] for row in rows] == ["step", "10", "20", "30"]
    assert rows[2] == ["20", repr(1 / 20), "a,b"] and rows[3] == ["30", "0.5", "resumed"]

    assert CSVLogger(path).truncate_after(1000) == 0  # nothing later: unchanged
    assert read_rows(path) == rows
    assert CSVLogger(tmp_path / "missing.csv").truncate_after(5) == 0
    assert not (tmp_path / "missing.csv").exists()


def test_csv_torn_last_line_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    with CSVLogger(path) as logger:
        logger.log({"step": 1, "loss": 0.5})
        logger.log({"step": 2, "loss": 0.25})
    with open(path, "a") as handle:
        handle.write("3,0.12")  # killed mid-row
    logger = CSVLogger(path)
    assert logger.truncate_after(2) == 0
    logger.log({"step": 3, "loss": 0.125})
    logger.close()
    assert read_rows(path) == [["step", "loss"], ["1", "0.5"], ["2", "0.25"], ["3", "0.125"]]


def test_csv_truncate_needs_step_column(tmp_path):
    path = tmp_path / "m.csv"
    with CSVLogger(path) as logger:
        logger.log({"iteration": 1})
    with pytest.raises(ValueError, match="step"):
        CSVLogger(path).truncate_after(0)


# ------------------------------------------------------------------------------------------
# metrics.json
# ------------------------------------------------------------------------------------------


def test_metrics_json_round_trip(tmp_path):
    path = tmp_path / "metrics.json"
    metrics = {"val/loss": 0.0123, "steps": 240, "nan": float("nan"), "inf": -math.inf,
               "np": np.float32(0.5), "none": None, "nested": {"b": [1.5, float("nan")], "a": 1},
               "code_version": "0.1.0"}
    assert write_metrics_json(path, metrics) == path
    text = path.read_text()
    assert json.loads(text) == {"val/loss": 0.0123, "steps": 240, "nan": None, "inf": None,
                                "np": 0.5, "none": None, "nested": {"a": 1, "b": [1.5, None]},
                                "code_version": "0.1.0"}
    assert "NaN" not in text and "Infinity" not in text
    assert '\n  "code_version": "0.1.0",\n  "inf": null,' in text  # sorted keys, indent 2
    assert '"val/loss": 0.0123' in text  # a plain number
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_metrics_json_is_atomic(tmp_path, monkeypatch):
    def broken_dump(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_metrics_json(tmp_path / "metrics.json", {"a": 1.0})
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file

    monkeypatch.undo()
    write_metrics_json(tmp_path / "metrics.json", {"a": 1.0})
    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(RuntimeError):
        write_metrics_json(tmp_path / "metrics.json", {"a": 2.0})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1.0}  # old file intact


# ------------------------------------------------------------------------------------------
# ProgressBar
# ------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_progress_samples_per_s_from_fake_clock():
    clock = FakeClock()
    bar = ProgressBar(total=100, initial=40, disable=True, clock=clock)
    assert bar.samples_per_s == 0.0
    for _ in range(10):
        clock.now += 0.5
        bar.update(1, samples=32, loss=0.5, lr=1e-3)
    # 320 samples in 5 s since the bar started; the 40 earlier steps are not credited.
    assert bar.samples_per_s == pytest.approx(64.0)
    assert bar.n == 50 and bar.samples == 320 and bar.elapsed == pytest.approx(5.0)
    clock.now += 3.0
    bar.update(2, samples=128)
    assert bar.samples_per_s == pytest.approx(448 / 8.0)
    assert bar.scalars == {"loss": 0.5, "lr": 1e-3}
    assert bar.postfix() == "loss=0.5, lr=1.00e-03, samples/s=56.0"
    bar.close()


def test_progress_draws_when_forced_and_auto_disables_off_tty():
    stream = io.StringIO()
    assert ProgressBar(total=10, file=stream).disabled  # StringIO is not a TTY

    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    assert not ProgressBar(total=10, file=FakeTTY()).disabled

    clock = FakeClock()
    bar = ProgressBar(total=10, initial=2, desc="toy", disable=False, file=stream, clock=clock)
    clock.now += 2.0
    bar.update(4, samples=100, loss=0.125)
    bar.close()
    out = stream.getvalue()
    assert "toy" in out and "6/10" in out and "loss=0.125" in out and "samples/s=50.0" in out
