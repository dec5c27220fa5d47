"""The training engine's logs: TensorBoard event files, a CSV of scalars, a final JSON, a progress bar.

* :class:`TensorBoardWriter` writes scalars to TensorBoard event files through
  ``torch.utils.tensorboard.SummaryWriter`` (which needs the ``tensorboard`` package, a
  meshpose dependency). To read them back without the TensorBoard UI, use TensorBoard's
  ``tensorboard.backend.event_processing.event_accumulator.EventAccumulator``.
* :class:`CSVLogger` appends one row of scalars per call to a CSV file, flushed row by row.
* :func:`write_metrics_json` writes a final metrics file atomically.
* :class:`ProgressBar` is a thin ``tqdm`` wrapper showing loss, learning rate and samples/s.

Resuming a run
--------------
A resumed run reuses the run folder:

* ``TensorBoardWriter(run_dir / "tensorboard")`` starts a **new** event file next to the old
  ones (``events.out.tfevents.<unix time>.<host>.<pid>.<n>``: name order, in which TensorBoard
  reads them, is creation order); TensorBoard merges every event file of a folder into one
  run. Steps logged after the last checkpoint and before the crash are in the old file and are
  logged again by the resumed run; pass ``purge_step=resumed_step + 1`` (``SummaryWriter``'s
  own ``purge_step``) to write a ``SessionLog.START`` event, which tells TensorBoard's event
  accumulator to drop the older points with ``step >= purge_step``.
* ``CSVLogger(path)`` on an existing file with the same header appends; call
  ``truncate_after(resumed_step)`` first so the rows of the lost steps are not held twice.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from meshpose.io.atomic import atomic_write

__all__ = [
    "CSVLogger",
    "ProgressBar",
    "TensorBoardWriter",
    "write_metrics_json",
]

# --------------------------------------------------------------------------------------------
# TensorBoard
# --------------------------------------------------------------------------------------------


class TensorBoardWriter:
    """Write a run's scalars to TensorBoard event files, through ``SummaryWriter``.

    Creates ``log_dir`` (and parents) and a new ``events.out.tfevents.*`` file in it.
    ``SummaryWriter`` queues the events and writes them from a background thread: they reach
    the file at least every two minutes (its ``flush_secs``) and on :meth:`flush` /
    :meth:`close`, so a killed process can lose the last unflushed points.

    Resuming: a resumed run simply opens a new writer on the same folder; TensorBoard merges
    the folder's event files. ``purge_step`` is passed to ``SummaryWriter``, which starts the
    new file with a ``SessionLog.START`` event at that step; TensorBoard then discards the
    points of the older files with ``step >= purge_step`` -- the steps logged after the last
    checkpoint by the crashed run. Use ``purge_step = resumed_step + 1``.

    Args:
        log_dir: the folder of the event files (a run's ``tensorboard/``).
        purge_step: see above; ``None`` (a fresh run) purges nothing.

    Example::

        with TensorBoardWriter(run_dir / "tensorboard") as tb:
            tb.add_scalars({"loss": 0.25, "lr": 1e-3}, step=100)
    """

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None):
        self.log_dir = Path(log_dir)
        self._writer: SummaryWriter | None = SummaryWriter(
            str(self.log_dir), purge_step=None if purge_step is None else int(purge_step))

    def add_scalars(self, scalars: Mapping[str, Any], step: int) -> None:
        """Log the scalars of one step, each key as its own tag of this run.

        Unlike ``SummaryWriter.add_scalars`` this makes no sub-runs: it is one
        ``add_scalar(tag, value, step)`` per key.

        Args:
            scalars: ``{tag: value}``; tags like ``"train/loss"`` (``/`` groups charts in
                TensorBoard); values anything ``float()`` accepts (int, float, numpy scalar,
                0-d tensor), stored as float32 by TensorBoard.
            step: the global step (x axis), an int.

        Raises:
            ValueError: the writer is closed.
        """
        if self._writer is None:
            raise ValueError(f"{self.log_dir}: TensorBoardWriter is closed")
        for tag, value in scalars.items():
            self._writer.add_scalar(str(tag), float(value), int(step))

    def flush(self) -> None:
        """Write the queued events to the event file."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; further writes raise ``ValueError``. Idempotent."""
        if self._writer is not None:
            try:
                self._writer.flush()
            finally:
                self._writer.close()
                self._writer = None

    @property
    def closed(self) -> bool:
        return self._writer is None

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


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
