"""The training engine's logs: TensorBoard event files, a CSV of scalars, a final JSON, a progress bar.

Everything here is dependency-free beyond ``tqdm`` (already a meshpose dependency):

* :class:`TensorBoardWriter` writes TensorBoard scalar event files *without* the
  ``tensorboard`` package (TFRecord framing, CRC32C and the few protobuf fields of ``Event``
  are encoded by hand); :func:`read_scalars` reads them back (CRC-checked), for tests and for
  people without TensorBoard.
* :class:`CSVLogger` appends one row of scalars per call to a CSV file, flushed row by row.
* :func:`write_metrics_json` writes a final metrics file atomically.
* :class:`ProgressBar` is a thin ``tqdm`` wrapper showing loss, learning rate and samples/s.

Resuming a run
--------------
A resumed run reuses the run folder:

* ``TensorBoardWriter(run_dir / "tensorboard")`` starts a **new** event file next to the old
  ones (file names start with a zero-padded Unix time, so name order is creation order).
  TensorBoard merges every event file of a folder into one run. Steps logged after the last
  checkpoint and before the crash are in the old file and are logged again by the resumed run;
  pass ``purge_step=resumed_step + 1`` to write a ``SessionLog.START`` event, which tells
  TensorBoard's event accumulator (and :func:`read_scalars`) to drop the older points with
  ``step >= purge_step``.
* ``CSVLogger(path)`` on an existing file with the same header appends; call
  ``truncate_after(resumed_step)`` first so the rows of the lost steps are not held twice.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from meshpose.io.atomic import atomic_write

__all__ = [
    "CSVLogger",
    "ProgressBar",
    "TensorBoardWriter",
    "crc32c",
    "masked_crc32c",
    "read_events",
    "read_scalars",
    "write_metrics_json",
]

# --------------------------------------------------------------------------------------------
# CRC32C (Castagnoli) and TFRecord framing
# --------------------------------------------------------------------------------------------

_CRC32C_POLY = 0x82F63B78  # reflected Castagnoli polynomial 0x1EDC6F41
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def _crc32c_table() -> tuple[int, ...]:
    """The 256-entry lookup table of the reflected CRC32C: the CRC of each single byte value."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, as used by TFRecord files, iSCSI and ext4.

    Args:
        data: the bytes to check.
        crc: the CRC of the bytes before ``data``, to continue a running checksum (0 to start).

    Returns:
        The checksum, an unsigned 32-bit int (``crc32c(b"123456789") == 0xE3069283``).
    """
    table = _CRC32C_TABLE
    crc ^= _U32
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _U32


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``: rotate right by 15 bits, add 0xA282EAD8 (mod 2**32).

    Masking keeps a CRC computed over bytes that themselves hold CRCs well distributed.
    """
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def _frame_record(data: bytes) -> bytes:
    """One TFRecord: uint64 LE length, uint32 LE masked CRC of the length bytes, data, data CRC."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


def _iter_records(path: Path) -> Iterator[bytes]:
    """The records' payloads of a TFRecord file, CRC-checked.

    A truncated *last* record (a writer killed in the middle of a write) ends the iteration
    silently, as in TensorBoard; any CRC mismatch raises ``ValueError``.
    """
    with open(path, "rb") as handle:
        offset = 0
        while True:
            header = handle.read(12)
            if len(header) < 12:
                return  # end of file, or a torn header
            length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
            if masked_crc32c(length_bytes) != length_crc:
                raise ValueError(f"{path}: corrupted record length at byte {offset} (CRC mismatch)")
            (length,) = struct.unpack("<Q", length_bytes)
            body = handle.read(length + 4)
            if len(body) < length + 4:
                return  # torn last record
            data, (data_crc,) = body[:length], struct.unpack("<I", body[length:])
            if masked_crc32c(data) != data_crc:
                raise ValueError(f"{path}: corrupted record data at byte {offset} (CRC mismatch)")
            yield data
            offset += 12 + length + 4


# --------------------------------------------------------------------------------------------
# The few protobuf encodings an Event needs
# --------------------------------------------------------------------------------------------
# Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. A key is (field << 3) | type.


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative values as 64-bit two's complement (10 bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    """``value`` as a little-endian IEEE float32; magnitudes beyond float32 become +-inf."""
    value = float(value)
    try:
        return struct.pack("<f", value)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, value))


def _encode_event(wall_time: float, step: int, *, file_version: str | None = None,
                  scalars: Mapping[str, float] | None = None,
                  session_start: bool = False) -> bytes:
    """Serialise one ``tensorflow.Event``.

    Fields: ``wall_time`` (1, double, seconds since the Unix epoch), ``step`` (2, int64), then one
    of ``file_version`` (3, string), ``summary`` (5, ``Summary{repeated Value value = 1}`` with
    ``Value{string tag = 1; float simple_value = 2}``) or ``session_log`` (7,
    ``SessionLog{status = 1}``, START = 1). ``wall_time`` and ``step`` are always written, even
    when zero (valid protobuf; parsers accept explicit defaults).
    """
    out = _key(1, 1) + struct.pack("<d", float(wall_time)) + _key(2, 0) + _varint(int(step))
    if file_version is not None:
        out += _length_delimited(3, file_version.encode("utf-8"))
    if scalars:
        summary = b"".join(
            _length_delimited(1, _length_delimited(1, str(tag).encode("utf-8"))
                              + _key(2, 5) + _float32(value))
            for tag, value in scalars.items()
        )
        out += _length_delimited(5, summary)
    if session_start:
        out += _length_delimited(7, _key(1, 0) + _varint(1))
    return out


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """Decode one protobuf message into ``(field, wire_type, value)``.

    ``value`` is an int for varints, ``bytes`` for the other wire types (8 bytes, 4 bytes or the
    length-delimited payload). Raises ``ValueError`` on malformed input.
    """
    pos, end = 0, len(data)

    def varint() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise ValueError("malformed protobuf varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    while pos < end:
        key = varint()
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value: Any = varint()
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        elif wire_type == 2:
            size = varint()
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if pos > end:
            raise ValueError("truncated protobuf field")
        yield field, wire_type, value


def _decode_event(data: bytes) -> dict:
    """The fields of one serialised ``Event`` that meshpose writes (others are skipped)."""
    event: dict = {"wall_time": 0.0, "step": 0, "file_version": None, "scalars": [],
                   "session_start": False}
    for field, wire_type, value in _fields(data):
        if field == 1 and wire_type == 1:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif field == 2 and wire_type == 0:
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 3 and wire_type == 2:
            event["file_version"] = value.decode("utf-8")
        elif field == 5 and wire_type == 2:
            for v_field, v_type, v_payload in _fields(value):
                if v_field != 1 or v_type != 2:
                    continue
                tag, simple = None, None
                for s_field, s_type, s_value in _fields(v_payload):
                    if s_field == 1 and s_type == 2:
                        tag = s_value.decode("utf-8")
                    elif s_field == 2 and s_type == 5:
                        simple = struct.unpack("<f", s_value)[0]
                if tag is not None and simple is not None:
                    event["scalars"].append((tag, simple))
        elif field == 7 and wire_type == 2:
            for l_field, l_type, l_value in _fields(value):
                if l_field == 1 and l_type == 0 and l_value == 1:
                    event["session_start"] = True
    return event


# --------------------------------------------------------------------------------------------
# Writer and reader
# --------------------------------------------------------------------------------------------


class TensorBoardWriter:
    """Write TensorBoard scalar event files, without the ``tensorboard`` package.

    Creates ``log_dir`` (and parents) and a new file
    ``events.out.tfevents.<unix_time>.<hostname>.<pid>.meshpose`` in it, whose first record is
    the ``file_version`` event ``"brain.Event:2"``. ``<unix_time>`` is the creation time in whole
    seconds, zero-padded to 10 digits; if that name is taken (two writers in one second and one
    process) the next second is used, so name order stays creation order.

    Every ``add_scalar``/``add_scalars`` call writes one record and pushes it to the operating
    system at once, so TensorBoard sees it live and a killed process loses at most a torn last
    record (which readers skip). ``flush()`` additionally forces the file to disk.

    Resuming: a resumed run simply opens a new writer on the same folder; TensorBoard merges
    the folder's event files. With ``purge_step`` the new file starts with a
    ``SessionLog.START`` event at that step, which makes TensorBoard (and :func:`read_scalars`)
    discard the points of the older files with ``step >= purge_step`` -- the steps logged after
    the last checkpoint by the crashed run. Use ``purge_step = resumed_step + 1``.

    Args:
        log_dir: the folder of the event files (a run's ``tensorboard/``).
        purge_step: see above; ``None`` (a fresh run) writes no ``SessionLog`` event.

    Example::

        with TensorBoardWriter(run_dir / "tensorboard") as tb:
            tb.add_scalars({"loss": 0.25, "lr": 1e-3}, step=100)
    """

    FILE_VERSION = "brain.Event:2"

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        created = int(time.time())
        host, pid = socket.gethostname() or "localhost", os.getpid()
        while True:
            path = self.log_dir / f"events.out.tfevents.{created:010d}.{host}.{pid}.meshpose"
            try:
                self._file: io.BufferedWriter | None = open(path, "xb")
                break
            except FileExistsError:
                created += 1
        self.path = path
        self._write(_encode_event(time.time(), 0, file_version=self.FILE_VERSION))
        if purge_step is not None:
            self._write(_encode_event(time.time(), int(purge_step), session_start=True))

    def _write(self, event: bytes) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: TensorBoardWriter is closed")
        self._file.write(_frame_record(event))
        self._file.flush()

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        """Log one scalar.

        Args:
            tag: the chart name, e.g. ``"train/loss"`` (``/`` groups charts in TensorBoard).
            value: a number (anything ``float()`` accepts: int, float, 0-d tensor or array); it
                is stored as float32, as TensorBoard does.
            step: the global step (x axis), an int.
            wall_time: seconds since the Unix epoch; ``None`` means now.
        """
        self.add_scalars({tag: value}, step, wall_time)

    def add_scalars(self, scalars: Mapping[str, float], step: int,
                    wall_time: float | None = None) -> None:
        """Log several scalars of one step as one event (one record); see :meth:`add_scalar`.

        Unlike PyTorch's ``SummaryWriter.add_scalars`` this writes each key as its own tag in
        this run (no sub-runs).
        """
        if not scalars:
            return
        values = {str(tag): float(value) for tag, value in scalars.items()}
        self._write(_encode_event(time.time() if wall_time is None else wall_time, int(step),
                                  scalars=values))

    def flush(self) -> None:
        """Force everything written so far to disk (``fsync``)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush and close the file; further writes raise ``ValueError``. Idempotent."""
        if self._file is not None:
            try:
                self.flush()
            finally:
                self._file.close()
                self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _event_files(path_or_dir: str | os.PathLike) -> list[Path]:
    path = Path(path_or_dir)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if ".tfevents." in p.name and p.is_file())
    if not path.exists():
        raise FileNotFoundError(path)
    return [path]


def read_events(path: str | os.PathLike) -> list[dict]:
    """Decode the events of one event file.

    Returns:
        One dict per record, in file order: ``wall_time`` (float, s), ``step`` (int),
        ``file_version`` (str or None), ``scalars`` (list of ``(tag, value)``, values float32-
        rounded) and ``session_start`` (bool: a ``SessionLog.START`` event).

    Raises:
        ValueError: a CRC mismatch or malformed protobuf (a torn *last* record is skipped).
    """
    return [_decode_event(data) for data in _iter_records(Path(path))]


def read_scalars(path_or_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Read the scalars of an event file, or of every ``*.tfevents.*`` file of a folder.

    Files of a folder are read in name order (creation order for files named by
    :class:`TensorBoardWriter` and by TensorBoard's own writers) and merged, as TensorBoard
    does. A ``SessionLog.START`` event at step ``s`` drops the points read so far with
    ``step >= s`` (TensorBoard's purge of orphaned steps after a restart); without one, repeated
    steps are all kept, in reading order.

    Returns:
        ``{tag: [(step, value), ...]}`` with points in reading order; values are the stored
        float32 values as Python floats.

    Raises:
        FileNotFoundError: ``path_or_dir`` does not exist.
        ValueError: a CRC mismatch or malformed record in any file.
    """
    scalars: dict[str, list[tuple[int, float]]] = {}
    for file in _event_files(path_or_dir):
        for event in read_events(file):
            if event["session_start"]:
                purge = event["step"]
                for tag, points in scalars.items():
                    scalars[tag] = [point for point in points if point[0] < purge]
            for tag, value in event["scalars"]:
                scalars.setdefault(tag, []).append((event["step"], value))
    return scalars


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _csv_cell(value: Any) -> Any:
    """A CSV cell for ``value``: 0-d tensors/arrays become Python numbers, None an empty cell."""
    if value is None:
        return ""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (int, float, str)):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return value


class CSVLogger:
    """Append rows of scalars (``step``, ``epoch``, ``loss``, ``lr``, ``samples_per_s``, ...) to a CSV.

    The columns are fixed by ``fieldnames``, else by an existing file's header, else by the keys
    of the first row logged (in their order). A row may leave columns out (empty cells) but a
    key that is not a column raises ``ValueError``. Each row is flushed to the operating system
    as soon as it is logged. The file (and its folder) is only created by the first row.

    Resuming: opened on an existing file the logger appends below the existing rows (the header
    must match ``fieldnames`` when given). Call :meth:`truncate_after` with the resumed step
    before logging, so rows of steps that are replayed are not held twice. A torn last line
    (a process killed mid-write) is dropped before appending.

    Args:
        path: the CSV file (e.g. ``run_dir / "metrics.csv"``).
        fieldnames: the columns, in order; ``None`` to take them from the file or first row.

    Raises:
        ValueError: ``fieldnames`` differ from an existing file's header.
    """

    def __init__(self, path: str | os.PathLike, fieldnames: list[str] | None = None):
        self.path = Path(path)
        self._handle: io.TextIOWrapper | None = None
        self._writer: csv.DictWriter | None = None
        existing = self._read_header()
        if fieldnames is not None:
            fieldnames = [str(name) for name in fieldnames]
            if len(set(fieldnames)) != len(fieldnames):
                raise ValueError(f"{self.path}: duplicate CSV column names {fieldnames}")
            if existing is not None and existing != fieldnames:
                raise ValueError(
                    f"{self.path}: existing header {existing} differs from fieldnames {fieldnames}; "
                    "use another file name"
                )
        self.fieldnames: list[str] | None = existing if existing is not None else fieldnames

    def _read_header(self) -> list[str] | None:
        """The header of an existing file, or None when there is none (missing or empty file)."""
        try:
            with open(self.path, newline="", encoding="utf-8") as handle:
                first = handle.readline()
        except FileNotFoundError:
            return None
        if not first.endswith("\n"):
            return None  # empty, or a header torn by a crash: start over
        return next(csv.reader([first]))

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row (``{column: value}``) and flush it.

        Raises:
            ValueError: ``row`` has a key that is not a column (the columns are fixed).
        """
        row = {str(key): _csv_cell(value) for key, value in row.items()}
        if self.fieldnames is None:
            self.fieldnames = list(row)
        unknown = [key for key in row if key not in self.fieldnames]
        if unknown:
            raise ValueError(
                f"{self.path}: new CSV column(s) {unknown}; the columns are fixed to "
                f"{self.fieldnames} (pass fieldnames= to CSVLogger to declare them all up front)"
            )
        if self._handle is None:
            self._open()
        self._writer.writerow(row)
        self._handle.flush()

    def _open(self) -> None:
        """Open for appending: write the header to a new/empty file, drop a torn last line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header_present = self._read_header() is not None
        if header_present:
            self._drop_torn_tail()
        else:
            with open(self.path, "w"):
                pass  # an empty or torn-header file starts over
        self._handle = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=self.fieldnames, restval="",
                                      lineterminator="\n")
        if not header_present:
            self._writer.writeheader()

    def _drop_torn_tail(self) -> None:
        """Cut the file after its last newline (removes a partially written last row)."""
        with open(self.path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            data = handle.read()
            handle.truncate(data.rfind(b"\n") + 1)

    def truncate_after(self, step: int | float) -> int:
        """Drop the rows whose ``step`` column is greater than ``step`` (call on resume).

        Kept rows are left byte for byte as they were. The file is rewritten atomically
        (temporary file in the same folder, fsync, ``os.replace``), so a crash leaves either the
        old or the new file. A missing file is a no-op; a torn last line is dropped.

        Returns:
            The number of rows dropped.

        Raises:
            ValueError: the file has no ``step`` column, or a row's step is not a number.
        """
        self.close()
        try:
            original = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        if b"\n" not in original:
            return 0  # empty file or a torn header: rewritten by the next row
        text = original[: original.rfind(b"\n") + 1].decode("utf-8")  # drop a torn last line
        records = _split_csv_records(text)
        header = next(csv.reader([records[0]]))
        if "step" not in header:
            raise ValueError(f"{self.path}: no 'step' column to truncate by (header {header})")
        column = header.index("step")
        kept, dropped = [records[0]], 0
        for record_text in records[1:]:  # raw text per record, so kept rows stay byte-exact
            record = next(csv.reader([record_text]), [])
            if not record:
                kept.append(record_text)  # a blank line
                continue
            try:
                record_step = float(record[column])
            except (IndexError, ValueError):
                raise ValueError(
                    f"{self.path}: row {record_text.strip()!r} has no numeric step"
                ) from None
            if record_step > step:
                dropped += 1
            else:
                kept.append(record_text)
        new = "".join(kept).encode("utf-8")
        if new != original:
            atomic_write(self.path, lambda tmp: Path(tmp).write_bytes(new))
        return dropped

    def close(self) -> None:
        """Close the file (a later :meth:`log` reopens it for appending). Idempotent."""
        if self._handle is not None:
            self._handle.close()
            self._handle = self._writer = None

    def __enter__(self) -> CSVLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _split_csv_records(text: str) -> list[str]:
    """Split CSV text into its records' raw text (newline included), honouring quoted newlines."""
    records, start, quoted = [], 0, False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == "\n" and not quoted:
            records.append(text[start:index + 1])
            start = index + 1
    if start < len(text):
        records.append(text[start:])
    return records


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def _json_ready(value: Any) -> Any:
    """``value`` with NaN/inf floats as None, 0-d tensors/arrays as numbers, paths as strings."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy / torch scalars and arrays
    if callable(tolist):
        return _json_ready(tolist())
    if isinstance(value, (int, float)):  # other numeric subclasses
        return _json_ready(float(value) if isinstance(value, float) else int(value))
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_metrics_json(path: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` to ``path`` as JSON, atomically.

    Floats are plain JSON numbers; NaN and +-inf (not valid JSON) become ``null``; 0-d
    tensors/arrays become numbers; keys are sorted; 2-space indent. The file is written to a
    temporary file in the same folder, fsynced and renamed over ``path`` (``os.replace``), so a
    crash or an error leaves the old file (or none) and no temporary file.

    Returns:
        ``Path(path)``.
    """
    data = _json_ready(dict(metrics))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True, indent=2, allow_nan=False)
            handle.write("\n")

    return atomic_write(target, write)


# --------------------------------------------------------------------------------------------
# Progress bar
# --------------------------------------------------------------------------------------------


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class ProgressBar:
    """A ``tqdm`` bar over training steps showing loss, learning rate, samples/s and ETA.

    ``samples/s`` counts only the samples processed since *this bar* started (a resumed run
    does not credit the steps done before it), over the time since the bar started; the ETA is
    tqdm's own (it, too, only uses the steps since ``initial``).

    The bar is drawn only when its stream (stderr unless ``file`` is given) is a terminal, so
    log files of batch jobs are not filled with carriage returns; ``disable=False`` forces it
    on, ``disable=True`` off. Disabled or not, the counters (:attr:`n`, :attr:`samples`,
    :attr:`samples_per_s`, :attr:`scalars`) are always kept up to date.

    Args:
        total: the run's total number of steps.
        initial: the steps already done (the resumed step).
        desc: the bar's label.
        disable: ``None`` = auto (off when the stream is not a TTY), or a bool to force.
        file: the stream to draw on (default ``sys.stderr``).
        clock: a monotonic time function in seconds (default ``time.perf_counter``); tests
            inject a fake one.
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "train", disable: bool | None = None,
                 file: Any = None, clock: Callable[[], float] = time.perf_counter):
        from tqdm import tqdm

        stream = sys.stderr if file is None else file
        self.disabled = (not _is_tty(stream)) if disable is None else bool(disable)
        self.total, self.initial, self.n = int(total), int(initial), int(initial)
        self.samples = 0
        self.scalars: dict[str, float] = {}
        self._clock = clock
        self._started = self._last = clock()
        self._bar = tqdm(total=self.total, initial=self.initial, desc=desc, unit="step",
                         dynamic_ncols=True, file=stream, disable=self.disabled, leave=True)

    @property
    def elapsed(self) -> float:
        """Seconds from the bar's start to its last update."""
        return self._last - self._started

    @property
    def samples_per_s(self) -> float:
        """Samples processed since the bar started / seconds since then (0.0 before time passes)."""
        elapsed = self.elapsed
        return self.samples / elapsed if elapsed > 0 else 0.0

    def postfix(self) -> str:
        """The text shown after the bar, e.g. ``"loss=0.1234, lr=1.00e-03, samples/s=512.0"``."""
        parts = []
        for name, value in self.scalars.items():
            if name == "lr":
                parts.append(f"lr={value:.2e}")
            else:
                parts.append(f"{name}={value:.4g}")
        parts.append(f"samples/s={self.samples_per_s:.1f}")
        return ", ".join(parts)

    def update(self, n_steps: int = 1, samples: int = 0, **scalars: float) -> None:
        """Advance by ``n_steps`` steps that processed ``samples`` samples in total.

        Args:
            n_steps: steps done since the last update.
            samples: samples processed in those steps (the global batch size times
                ``n_steps`` for data-parallel runs).
            **scalars: latest values to show, e.g. ``loss=0.12, lr=1e-3`` (floats).
        """
        self._last = self._clock()
        self.n += int(n_steps)
        self.samples += int(samples)
        for name, value in scalars.items():
            self.scalars[name] = float(value)
        if not self.disabled:
            self._bar.set_postfix_str(self.postfix(), refresh=False)
            self._bar.update(n_steps)

    def close(self) -> None:
        """Close the bar (draws its final state). Idempotent."""
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
