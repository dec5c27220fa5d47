"""Atomic file writing: a file is either written completely or not at all.

Every writer in meshpose goes through :func:`atomic_write`: the content is written to a hidden
temporary file in the *same folder* as the target (so the final rename never crosses a file
system), flushed to disk with ``fsync``, and moved into place with :func:`os.replace`, which
is atomic on POSIX and Windows. If anything fails on the way the temporary file is removed and
an existing target file is left untouched.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from meshpose.errors import MeshposeError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "staged_folder"]


def _current_umask() -> int:
    """The process umask (read once; ``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_path(path: str) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    """Flush a folder entry (makes the rename durable); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, writer_fn: Callable[[str], object]) -> Path:
    """Write ``path`` atomically by letting ``writer_fn`` write a temporary file first.

    Args:
        path: the file to create or replace. Its folder must exist.
        writer_fn: called once with the temporary file's path (a ``str`` in the same folder,
            ending with the same extension as ``path`` so extension-sniffing writers such as
            ``np.savez`` or ``trimesh`` behave). It must write the whole content there and close
            the file; its return value is ignored.

    Returns:
        ``Path(path)``.

    Raises:
        MeshposeError: the target cannot be written (missing folder, no permission, disk full,
            the target is a folder); the message names ``path``.
        Any exception raised by ``writer_fn`` is re-raised unchanged, except ``OSError`` which
        becomes :class:`MeshposeError`. In every failure case the temporary file is removed
        and an existing file at ``path`` is unchanged.
    """
    target = Path(path)
    folder = str(target.parent) if str(target.parent) else "."
    if target.is_dir():
        raise MeshposeError("is a folder, expected a file name to write", target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=folder)
    except FileNotFoundError:
        raise MeshposeError(f"cannot write: folder {folder!r} does not exist", target) from None
    except OSError as exc:
        raise MeshposeError(f"cannot write: {exc.strerror or exc}", target) from None
    os.close(fd)
    try:
        writer_fn(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual permissions
        _fsync_path(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        _remove_quietly(tmp)
        raise MeshposeError(f"cannot write: {exc.strerror or exc}", target) from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(folder)
    return target


def _remove_quietly(path: str) -> None:
    """Remove ``path`` if it exists, ignoring errors."""
    try:
        os.remove(path)
    except OSError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically write ``text`` to ``path`` (see :func:`atomic_write`); ``\\n`` line endings."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike):
    """Write a group of files all-or-nothing into ``out_dir``.

    Yields a temporary folder next to ``out_dir``; when the block ends without an exception its
    files are moved into ``out_dir`` (created if missing; files already there of other names
    are kept, same names are replaced), otherwise it is deleted and ``out_dir`` is untouched.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            for path in staging.iterdir():
                os.replace(path, out_dir / path.name)
        else:
            os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
