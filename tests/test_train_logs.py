"""Tests of meshpose.train.logs against independent facts (standard CRC vectors, hand-built
protobuf/TFRecord bytes, float32 rounding by numpy, a fake clock)."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import re
import socket
import struct
import time

import numpy as np
import pytest

from meshpose.train.logs import (
    CSVLogger,
    ProgressBar,
    TensorBoardWriter,
    crc32c,
    masked_crc32c,
    read_events,
    read_scalars,
    write_metrics_json,
)

# ------------------------------------------------------------------------------------------
# CRC32C
# ------------------------------------------------------------------------------------------


def bitwise_crc32c(data: bytes) -> int:
    """Reference CRC32C, bit by bit (no table): independent of the implementation under test."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def reference_mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) % 2**32


def test_crc32c_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("data, expected", [
    (bytes(32), 0x8A9136AA),                      # RFC 3720 B.4: 32 bytes of zeros
    (b"\xff" * 32, 0x62A8AB43),                   # 32 bytes of ones
    (bytes(range(32)), 0x46DD794E),               # incrementing
    (bytes(range(31, -1, -1)), 0x113FDB5C),       # decrementing
])
def test_crc32c_rfc3720_vectors(data, expected):
    assert crc32c(data) == expected
    assert bitwise_crc32c(data) == expected  # the reference is right too


def test_crc32c_matches_bitwise_reference_and_continues():
    rng = random.Random(3)
    for size in (0, 1, 7, 64, 300):
        data = bytes(rng.randrange(256) for _ in range(size))
        assert crc32c(data) == bitwise_crc32c(data)
        assert masked_crc32c(data) == reference_mask(bitwise_crc32c(data))
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283  # running checksum


# ------------------------------------------------------------------------------------------
# TensorBoard event files
# ------------------------------------------------------------------------------------------


def record(data: bytes) -> bytes:
    """A TFRecord framed by hand with the reference CRC."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", reference_mask(bitwise_crc32c(length))) + data
            + struct.pack("<I", reference_mask(bitwise_crc32c(data))))


def split_records(raw: bytes) -> list[bytes]:
    """The whole framed records of a file (length header read directly, no CRC check)."""
    out, pos = [], 0
    while pos < len(raw):
        (length,) = struct.unpack("<Q", raw[pos:pos + 8])
        out.append(raw[pos:pos + 12 + length + 4])
        pos += 12 + length + 4
    return out


def only_event_file(folder):
    files = list(folder.iterdir())
    assert len(files) == 1
    return files[0]


def test_event_file_name_and_file_version_record(tmp_path):
    with TensorBoardWriter(tmp_path / "tb") as writer:
        pass
    path = only_event_file(tmp_path / "tb")
    assert path == writer.path
    host, pid = re.escape(socket.gethostname()), os.getpid()
    assert re.fullmatch(rf"events\.out\.tfevents\.\d{{10}}\.{host}\.{pid}\.meshpose", path.name)
    created = int(path.name.split(".")[3])
    assert abs(created - time.time()) < 60

    (first,) = split_records(path.read_bytes())
    data = first[12:-4]
    # Event{wall_time (field 1, fixed64) = now, step (field 2, varint) = 0,
    #       file_version (field 3, length-delimited) = "brain.Event:2"}
    assert data[0] == 0x09 and data[9:] == b"\x10\x00" + b"\x1a\x0d" + b"brain.Event:2"
    assert abs(struct.unpack("<d", data[1:9])[0] - time.time()) < 60
    assert first == record(data)


def test_one_scalar_record_matches_hand_assembled_bytes(tmp_path):
    with TensorBoardWriter(tmp_path) as writer:
        writer.add_scalar("a", 1.0, step=3, wall_time=0.0)
        writer.add_scalar("loss", 0.5, step=300, wall_time=1.5)
    records = split_records(only_event_file(tmp_path).read_bytes())
    assert len(records) == 3

    # Value{tag (1) = "a", simple_value (2, fixed32) = 1.0f = 0x3F800000}
    value = b"\x0a\x01a" + b"\x15" + b"\x00\x00\x80\x3f"
    summary = b"\x0a\x08" + value                     # Summary{value (1) = Value}
    event = (b"\x09" + b"\x00" * 8                    # wall_time = 0.0
             + b"\x10\x03"                            # step = 3
             + b"\x2a\x0a" + summary)                 # summary (field 5)
    assert len(event) == 23
    expected = struct.pack("<Q", 23) + struct.pack("<I", reference_mask(bitwise_crc32c(
        struct.pack("<Q", 23)))) + event + struct.pack("<I", reference_mask(bitwise_crc32c(event)))
    assert records[1] == expected

    # step 300 is the varint ac 02; 1.5 as a double is 0x3FF8000000000000; 0.5f is 0x3F000000.
    value = b"\x0a\x04loss" + b"\x15" + b"\x00\x00\x00\x3f"
    event = (b"\x09" + b"\x00\x00\x00\x00\x00\x00\xf8\x3f" + b"\x10\xac\x02"
             + b"\x2a\x0d" + b"\x0a\x0b" + value)
    assert records[2] == record(event)


def test_scalars_round_trip_float32(tmp_path):
    rng = random.Random(0)
    expected: dict[str, list] = {}
    with TensorBoardWriter(tmp_path / "tb") as writer:
        for step in range(0, 200, 10):
            scalars = {"train/loss": rng.uniform(0, 5), "lr": 10 ** rng.uniform(-6, -2),
                       "samples_per_s": rng.uniform(100, 1e5)}
            writer.add_scalars(scalars, step)
            for tag, value in scalars.items():
                expected.setdefault(tag, []).append((step, float(np.float32(value))))
        writer.add_scalar("val/mpjpe", 0.1, step=-2)  # negative steps: 10-byte varint
        writer.add_scalar("val/mpjpe", float("nan"), step=2**40)
        writer.add_scalar("val/mpjpe", 1e300, step=7)  # beyond float32: inf
        writer.flush()
    got = read_scalars(tmp_path / "tb")
    assert set(got) == {"train/loss", "lr", "samples_per_s", "val/mpjpe"}
    for tag in expected:
        assert got[tag] == expected[tag]
    (s0, v0), (s1, v1), (s2, v2) = got["val/mpjpe"]
    assert (s0, v0) == (-2, float(np.float32(0.1))) and v0 != 0.1
    assert s1 == 2**40 and math.isnan(v1)
    assert (s2, v2) == (7, math.inf)
    # Reading one file gives the same as reading its folder; events carry their wall time.
    assert repr(read_scalars(writer.path)) == repr(got)  # repr: NaN != NaN
    events = read_events(writer.path)
    assert events[0]["file_version"] == "brain.Event:2"
    assert all(abs(e["wall_time"] - events[0]["wall_time"]) < 60 for e in events)


def test_writer_closed_and_scalar_like_values(tmp_path):
    torch = pytest.importorskip("torch")
    writer = TensorBoardWriter(tmp_path)
    writer.add_scalars({"t": torch.tensor(2.5), "n": np.float64(0.25), "i": 3}, step=1)
    writer.close()
    writer.close()  # idempotent
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.add_scalar("x", 1.0, 2)
    assert read_scalars(tmp_path) == {"t": [(1, 2.5)], "n": [(1, 0.25)], "i": [(1, 3.0)]}


@pytest.mark.parametrize("where", ["length", "length_crc", "data", "data_crc"])
def test_corrupted_byte_raises(tmp_path, where):
    with TensorBoardWriter(tmp_path) as writer:
        writer.add_scalar("loss", 0.75, step=1)
        writer.add_scalar("loss", 0.5, step=2)
    raw = bytearray(writer.path.read_bytes())
    last = len(split_records(bytes(raw))[-1])
    start = len(raw) - last
    offset = {"length": 0, "length_crc": 9, "data": 20, "data_crc": last - 2}[where]
    raw[start + offset] ^= 0x10
    writer.path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="CRC"):
        read_scalars(tmp_path)


def test_torn_last_record_is_skipped(tmp_path):
    with TensorBoardWriter(tmp_path) as writer:
        writer.add_scalar("loss", 0.75, step=1)
        writer.add_scalar("loss", 0.5, step=2)
    raw = writer.path.read_bytes()
    writer.path.write_bytes(raw[:-5])  # a process killed in the middle of a write
    assert read_scalars(tmp_path) == {"loss": [(1, 0.75)]}


def test_resumed_run_files_merge(tmp_path):
    folder = tmp_path / "tensorboard"
    with TensorBoardWriter(folder) as first:
        for step in range(1, 7):
            first.add_scalar("loss", 1.0 / step, step)
    # Resumed from a checkpoint at step 4: steps 5 and 6 are replayed (different values).
    with TensorBoardWriter(folder) as second:
        for step in range(7, 9):
            second.add_scalar("loss", 1.0 / step, step)
    assert first.path != second.path
    assert sorted(folder.iterdir()) == [first.path, second.path]  # name order = creation order
    merged = read_scalars(folder)
    assert merged == {"loss": [(s, float(np.float32(1.0 / s))) for s in range(1, 9)]}

    with TensorBoardWriter(folder, purge_step=5) as third:
        for step in range(5, 8):
            third.add_scalar("loss", -float(step), step)
    purged = read_scalars(folder)["loss"]
    assert purged == [(s, float(np.float32(1.0 / s))) for s in range(1, 5)] + [
        (5, -5.0), (6, -6.0), (7, -7.0)]
    start = [e for e in read_events(third.path) if e["session_start"]]
    assert [e["step"] for e in start] == [5]


def test_read_scalars_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_scalars(tmp_path / "nope")
    assert read_scalars(tmp_path) == {}


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
