"""Small helpers shared by the readers: existence checks, JSON loading, number parsing.

Every function here turns a low-level failure (``json``, ``numpy``, ``OSError``) into an
:class:`~meshpose.errors.InputFileError` with a one-line message naming the file.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from meshpose.errors import InputFileError

#: Exceptions numpy raises for unreadable / corrupt ``.npy`` / ``.npz`` content.
NUMPY_LOAD_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError)


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
    if arr.dtype.kind not in "iuf":
        bad = _first_non_number(value)
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


def load_npy_or_npz(path: Path, kind: str) -> Any:
    """``np.load(path, allow_pickle=False)`` with one-line errors.

    Args:
        path: the file.
        kind: ".npz" or ".npy"; the file's magic bytes must match.

    Returns:
        For ``.npz`` a dict name -> array (all members read), for ``.npy`` the array.
    """
    head = read_bytes(path)[:8]
    if kind == ".npz" and not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise InputFileError("not a .npz file (not a zip archive)", path)
    if kind == ".npy" and not head.startswith(b"\x93NUMPY"):
        raise InputFileError("not a .npy file (no NumPy header)", path)
    try:
        # open the file ourselves: np.load leaks its handle when a zip archive is corrupt
        with open(path, "rb") as fh:
            if kind == ".npz":
                with np.load(fh, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            return np.load(fh, allow_pickle=False)
    except NUMPY_LOAD_ERRORS as exc:
        if "allow_pickle" in str(exc):
            raise InputFileError(f"{kind} file holds Python objects (pickled arrays are not read)", path) from None
        raise InputFileError(f"not a readable {kind} file ({one_line(exc, 100)})", path) from None


def _short(value: Any) -> str:
    """A short JSON-ish rendering of ``value`` for messages."""
    try:
        return json.dumps(value)[:80]
    except (TypeError, ValueError):
        return repr(value)[:80]


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
