"""Small helpers shared by the readers: existence checks, JSON loading, number parsing.

Every function here turns a low-level failure (``json``, ``numpy``, ``OSError``) into an
:class:`~meshpose.errors.InputFileError` with a one-line message naming the file.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from meshpose.errors import InputFileError

#: Exceptions numpy raises for unreadable / corrupt ``.npy`` / ``.npz`` content.
NUMPY_LOAD_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError, zlib.error,
                     NotImplementedError, RuntimeError)  # zipfile: unknown compression, encrypted


def one_line(text: object, limit: int = 200) -> str:
    """``str(text)`` squeezed onto one line and shortened to ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def require_file(path: str | os.PathLike, kind: str = "file") -> Path:
    """``Path(path)`` if it is an existing regular file, else InputFileError.

    Args:
        path: the file.
        kind: what the file should be, for the message ("mesh file", ...).
    """
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise InputFileError(f"{kind} is a broken symbolic link or a link loop", p)
        raise InputFileError(f"{kind} not found", p)
    if p.is_dir():
        raise InputFileError(f"is a folder, expected a {kind}", p)
    return p


def read_bytes(path: Path) -> bytes:
    """The file's bytes; an empty (or whitespace-only) file is an error ("file is empty")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read file: {exc.strerror or one_line(exc)}", path) from None
    if not data.strip():
        raise InputFileError("file is empty", path)
    return data


def read_text(path: Path) -> str:
    """The file as UTF-8 text (a BOM is allowed); empty and non-UTF-8 files are errors."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"not UTF-8 text (bad byte at offset {exc.start})", path) from None


def load_json(path: Path) -> Any:
    """Parse a JSON file; malformed JSON becomes "malformed JSON: <reason> at line L column C"."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path) from None
    except RecursionError:
        raise InputFileError("malformed JSON: nested too deeply", path) from None


def numbers(value: Any, what: str, path: Path) -> np.ndarray:
    """A (possibly nested) JSON list of numbers as a float64 array.

    Booleans, strings, ``null`` and ragged nesting are errors naming ``what``.
    Non-finite values are *not* checked here (the caller reports them with context).
    """
    try:
        arr = np.array(value)
    except (ValueError, TypeError, OverflowError):
        raise InputFileError(f"{what} must be a list of numbers with a regular shape", path) from None
    bad = _first_non_number(value)  # also catches booleans, which numpy would turn into 0.0 / 1.0
    if arr.dtype.kind == "O" and bad is _NOTHING:
        raise InputFileError(f"{what} holds an integer too large for a number", path)
    if arr.dtype.kind not in "iuf" or bad is not _NOTHING:
        got = f"found {_short(bad)}" if bad is not _NOTHING else f"got {_short(value)}"
        raise InputFileError(f"{what} must be a list of numbers, {got}", path)
    return arr.astype(np.float64)


_NOTHING = object()


def _first_non_number(value: Any) -> Any:
    """The first leaf of a nested list that is not an int/float (bool counts as not), or _NOTHING."""
    if isinstance(value, list):
        for item in value:
            bad = _first_non_number(item)
            if bad is not _NOTHING:
                return bad
        return _NOTHING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return _NOTHING


#: Deflate expands at most about 1032:1, so a zip member claiming more is lying about its size.
_DEFLATE_MAX_RATIO = 1100


def _npy_header(fh, available: int, what: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Read a ``.npy`` header from ``fh`` and check that the data it announces fits in the
    ``available`` bytes from the start of the header (so a header claiming 10^11 rows is
    refused before anything is allocated). ``what`` starts the messages ("member 'x': ").

    Returns:
        ``(shape, dtype)``; ``fh`` is left at the start of the data.
    """
    start = fh.tell()
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise InputFileError(f"{what}not a readable .npy array ({one_line(exc, 100)})", path) from None
    if dtype.hasobject:
        raise InputFileError(f"{what}holds Python objects (pickled arrays are not read)", path)
    count = 1
    for size in shape:
        count *= int(size)
    claimed = count * dtype.itemsize
    left = available - (fh.tell() - start)
    if claimed > left:
        raise InputFileError(
            f"{what}the header announces shape {tuple(shape)} ({claimed:,} bytes) but only {max(left, 0):,} "
            "bytes follow (truncated or corrupt)", path)
    return tuple(shape), dtype


def npz_members(path: Path) -> list[str]:
    """The array names in an ``.npz`` archive (its ``.npy`` members, without the extension)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    except NUMPY_LOAD_ERRORS as exc:
        raise InputFileError(f"not a readable .npz file ({one_line(exc, 100)})", path) from None


def _read_npz_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    """One ``.npy`` member, its sizes checked against the zip directory before reading."""
    name = info.filename[:-4]
    stored = info.compress_size
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != stored:
        raise InputFileError(f"member {name!r}: sizes in the zip directory disagree (corrupt archive)", path)
    if info.file_size > _DEFLATE_MAX_RATIO * stored + 1024:
        raise InputFileError(f"member {name!r} claims {info.file_size:,} bytes from {stored:,} compressed "
                             "(corrupt archive)", path)
    with archive.open(info) as member:
        _npy_header(member, info.file_size, f"member {name!r}: ", path)
    with archive.open(info) as member:
        array = np.lib.format.read_array(member, allow_pickle=False)
        if member.read(1 << 16):  # also reaches the end, where zipfile checks the CRC
            raise InputFileError(f"member {name!r} holds more bytes than its header announces", path)
    return array


def load_npy_or_npz(path: Path, kind: str, members: Iterable[str] | None = None) -> Any:
    """Read a ``.npy`` or ``.npz`` file without pickle, with one-line errors.

    Every array's header is checked against the bytes the file holds before anything is
    allocated (a header announcing terabytes is refused).

    Args:
        path: the file.
        kind: ".npz" or ".npy"; the file's magic bytes must match.
        members: for ``.npz``, the names of the arrays to read (the others are not read);
            None reads all.

    Returns:
        For ``.npz`` a dict name -> array (the members asked for that exist), for ``.npy``
        the array.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputFileError(f"cannot read file: {exc.strerror or one_line(exc)}", path) from None
    if size == 0:
        raise InputFileError("file is empty", path)
    if kind == ".npz" and not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise InputFileError("not a .npz file (not a zip archive)", path)
    if kind == ".npy" and not head.startswith(b"\x93NUMPY"):
        raise InputFileError("not a .npy file (no NumPy header)", path)
    try:
        with open(path, "rb") as fh:
            if kind == ".npy":
                _npy_header(fh, size, "", path)
                fh.seek(0)
                return np.load(fh, allow_pickle=False)
            wanted = None if members is None else set(members)
            with zipfile.ZipFile(fh) as archive:
                out = {}
                for info in archive.infolist():
                    name = info.filename[:-4]
                    if info.filename.endswith(".npy") and (wanted is None or name in wanted):
                        out[name] = _read_npz_member(archive, info, path)
                return out
    except MemoryError:
        raise InputFileError(f"too large to load into memory ({size:,} bytes)", path) from None
    except NUMPY_LOAD_ERRORS as exc:
        if "allow_pickle" in str(exc):
            raise InputFileError(f"{kind} file holds Python objects (pickled arrays are not read)", path) from None
        raise InputFileError(f"not a readable {kind} file ({one_line(exc, 100)})", path) from None


def short_floats(values: Any) -> Any:
    """``values`` as nested lists of Python floats for JSON, float32 arrays written with the
    shortest decimal that reads back as the same float32 (``417.18``, not the float64 noise
    ``417.17999267578125``); other floats as they are (Python's repr is already shortest)."""
    arr = np.asarray(values)
    if arr.dtype != np.float32:
        return arr.astype(np.float64).tolist()
    flat = [float(str(v)) for v in arr.reshape(-1)]
    return np.array(flat, dtype=np.float64).reshape(arr.shape).tolist() if arr.ndim else flat[0]


def _short(value: Any) -> str:
    """A short JSON-ish rendering of ``value`` for messages."""
    try:
        return json.dumps(value)[:60]
    except (TypeError, ValueError):
        return repr(value)[:60]


def integer(value: Any, what: str, path: Path) -> int:
    """A JSON integer (``1``; also ``1.0``), else InputFileError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputFileError(f"{what} must be an integer, got {_short(value)}", path)
    if isinstance(value, (float, np.floating)) and (not np.isfinite(value) or value != int(value)):
        raise InputFileError(f"{what} must be an integer, got {value!r}", path)
    return int(value)


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> list:
    """Sort key comparing digit runs as numbers: ``frame2`` < ``frame10``."""
    return [(0, int(part), part) if part.isdigit() else (1, 0, part) for part in _DIGITS.split(name)]


def sorted_files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Non-hidden regular files in ``folder`` (not recursive) with one of ``suffixes``
    (lower-case, with the dot; compared case-insensitively), in natural name order."""
    wanted = {s.lower() for s in suffixes}
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise InputFileError(f"cannot list folder: {exc.strerror or one_line(exc)}", folder) from None
    files = [p for p in entries if not p.name.startswith(".") and p.suffix.lower() in wanted and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))
