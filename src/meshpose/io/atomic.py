"""Atomic file writing: a file is either written completely or not at all.

Every writer in meshpose goes through :func:`atomic_write`: the content is written to a hidden
temporary file in the *same folder* as the target (so the final rename never crosses a file
system), flushed to disk with ``fsync``, and moved into place with :func:`os.replace`, which
is atomic on POSIX and Windows. If anything fails on the way the temporary file is removed and
an existing target file is left untouched.

Temporary files and staging folders are named ``.meshpose-tmp-<pid>-<host>-...`` (``<host>`` a
short hash of the machine's name). A process that is killed cannot remove its own; the next
:func:`atomic_write` or :func:`staged_folder` into the same folder removes those whose process
(on this machine) is gone (:func:`remove_stale_temporaries`).

:func:`output_batch` groups the writes of one command: inside it, every :func:`atomic_write` and
:func:`staged_folder` writes its temporary file or folder as usual but moves it into place only
when the whole batch succeeds; if anything fails, every temporary is removed and no output
changes. :func:`check_output_file` and :func:`check_output_folder` check a destination before
anything is computed or written.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from meshpose.errors import MeshposeError

__all__ = [
    "TEMP_PREFIX",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "check_output_folder",
    "output_batch",
    "remove_stale_temporaries",
    "staged_folder",
]


def _current_umask() -> int:
    """The process umask (read once; ``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
#: Start of the name of every temporary file or folder meshpose writes.
TEMP_PREFIX = ".meshpose-tmp-"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-([0-9a-f]{8})-")
_NAME_KEPT = 40  # characters of the target's name kept in a temporary name (NAME_MAX is 255 bytes)
# The pending (commit, discard) actions of the innermost output_batch, or None outside one.
_BATCH: contextvars.ContextVar[list | None] = contextvars.ContextVar("meshpose_output_batch", default=None)


def _temp_prefix(name: str) -> str:
    """``.meshpose-tmp-<pid>-<host>-<part of name>.``: what a temporary for ``name`` starts with."""
    return f"{TEMP_PREFIX}{os.getpid()}-{_HOST}-{name[:_NAME_KEPT]}."


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine (a process of another user is alive)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False
    return False


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and staging folders in ``folder`` left by meshpose processes
    of this machine that are gone (killed while writing). Those of live processes, of other
    machines, and everything else are kept; errors are ignored.

    Returns:
        The paths removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or match.group(2) != _HOST or not _process_gone(int(match.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


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


def _cannot_write(exc: OSError, path) -> MeshposeError:
    return MeshposeError(f"cannot write: {exc.strerror or exc}", path)


@contextlib.contextmanager
def output_batch():
    """Move every file and folder written inside the block into place together, at its end.

    Inside the block :func:`atomic_write` and :func:`staged_folder` leave their results in
    temporary files and folders next to their destinations; when the block ends without an
    exception they are all moved into place, otherwise all are removed (no output changes).
    Code inside the block must not read back what it wrote. A batch inside a batch joins it.
    """
    if _BATCH.get() is not None:
        yield
        return
    pending: list[tuple[Callable[[], None], Callable[[], None]]] = []
    token = _BATCH.set(pending)
    try:
        yield
    except BaseException:
        _BATCH.reset(token)
        for _, discard in reversed(pending):
            discard()
        raise
    _BATCH.reset(token)
    for index, (commit, _) in enumerate(pending):
        try:
            commit()
        except BaseException:
            for _, discard in pending[index:]:
                discard()
            raise


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

    Inside :func:`output_batch` the file is moved into place when the batch ends.
    """
    target = Path(path)
    folder = str(target.parent) if str(target.parent) else "."
    if target.is_dir():
        raise MeshposeError("is a folder, expected a file name to write", target)
    remove_stale_temporaries(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=f".tmp{target.suffix}", dir=folder)
    except FileNotFoundError:
        raise MeshposeError(f"cannot write: folder {folder!r} does not exist", target) from None
    except OSError as exc:
        raise _cannot_write(exc, target) from None
    os.close(fd)
    try:
        writer_fn(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual permissions
        _fsync_path(tmp)
    except OSError as exc:
        _remove_quietly(tmp)
        raise _cannot_write(exc, target) from None
    except BaseException:
        _remove_quietly(tmp)
        raise

    def commit() -> None:
        try:
            if target.is_dir():
                raise MeshposeError("is a folder, expected a file name to write", target)
            os.replace(tmp, target)
        except OSError as exc:
            _remove_quietly(tmp)
            raise _cannot_write(exc, target) from None
        except BaseException:
            _remove_quietly(tmp)
            raise
        _fsync_dir(folder)

    pending = _BATCH.get()
    if pending is None:
        commit()
    else:
        pending.append((commit, lambda: _remove_quietly(tmp)))
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


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, outermost first.
    On failure those created are removed and the ``OSError`` is raised."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    created = []
    try:
        for item in reversed(missing):
            item.mkdir()
            os.chmod(item, 0o777 & ~_UMASK)
            created.append(item)
    except OSError:
        _remove_folders(created)
        raise
    return created


def _remove_folders(folders: list[Path]) -> None:
    """Remove the (empty) folders ``_make_parents`` created, innermost first."""
    for item in reversed(folders):
        with contextlib.suppress(OSError):
            item.rmdir()


def _merge(source: Path, target: Path) -> None:
    """Move the contents of folder ``source`` into folder ``target`` (created if missing):
    sub-folders are merged, files of the same name replaced, other files of ``target`` kept."""
    if not target.exists():
        os.replace(source, target)
        return
    for item in source.iterdir():
        destination = target / item.name
        if item.is_dir() and not item.is_symlink() and destination.is_dir() and not destination.is_symlink():
            _merge(item, destination)
        else:
            if destination.is_dir() and not destination.is_symlink():
                raise MeshposeError("is a folder, cannot replace it with a file", destination)
            os.replace(item, destination)


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike):
    """Write a group of files all-or-nothing into ``out_dir``.

    Yields a temporary folder next to ``out_dir``; when the block ends without an exception its
    files are moved into ``out_dir`` (created, with its missing parents, if missing; files
    already there of other names are kept, same names are replaced, sub-folders are merged),
    otherwise it is deleted and ``out_dir`` is untouched. Nothing written: no folder made. Folders made get the usual
    permissions (``0777`` less the umask). Inside :func:`output_batch` the files are moved
    when the batch ends.

    Raises:
        MeshposeError: ``out_dir`` is a file, or the folder cannot be created or written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MeshposeError("is a file, expected a folder", out_dir)
    created: list[Path] = []
    try:
        created = _make_parents(out_dir.parent)
        remove_stale_temporaries(out_dir.parent)
        staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(out_dir.name), dir=out_dir.parent))
        os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700 folders
    except OSError as exc:
        _remove_folders(created)
        raise _cannot_write(exc, out_dir) from None

    def discard() -> None:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_folders(created)

    def commit() -> None:
        if not out_dir.exists() and not any(staging.iterdir()):
            discard()  # nothing was written: no empty folder either
            return
        try:
            _merge(staging, out_dir)
        except OSError as exc:
            raise _cannot_write(exc, out_dir) from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    try:
        yield staging
    except BaseException:
        discard()
        raise
    pending = _BATCH.get()
    if pending is None:
        commit()
    else:
        pending.append((commit, discard))


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


#: Kernel file systems that hold no files (writing there fails, even for root).
_PSEUDO_FILE_SYSTEMS = {"proc", "sysfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
                        "pstore", "bpf", "configfs", "fusectl", "mqueue", "binfmt_misc", "efivarfs"}


def _file_system_type(folder: Path) -> str | None:
    """The type of the file system ``folder`` is on, from ``/proc/self/mounts`` (None when unknown)."""
    try:
        real = os.path.realpath(folder)
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            table = [line.split()[1:3] for line in mounts if len(line.split()) >= 3]
    except OSError:
        return None
    best, kind = "", None
    for point, fs_type in table:
        point = point.replace("\\040", " ")
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fs_type
    return kind


def _check_writable_folder(folder: Path, target: Path) -> None:
    """``folder`` (existing) must be a folder this process may create entries in."""
    if not folder.is_dir():
        raise MeshposeError(f"cannot write: {str(folder)[:60]!r} is not a folder", target)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MeshposeError(f"cannot write: no permission to write in {str(folder)[:60]!r}", target)
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        raise MeshposeError(f"cannot write: {str(folder)[:60]!r} is on a read-only file system", target)
    kind = _file_system_type(folder)
    if kind in _PSEUDO_FILE_SYSTEMS:
        raise MeshposeError(f"cannot write: {str(folder)[:60]!r} is on the kernel's {kind} file system", target)


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None) -> Path:
    """Check, without writing anything, that ``path`` can be written as a file.

    Args:
        path: the file to write.
        suffixes: the extensions allowed (lower case, with the dot), or None for any.

    Raises:
        MeshposeError: a wrong extension, ``path`` is a folder, its folder is missing, not a
            folder, not writable or on a read-only file system.
    """
    target = Path(path)
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise MeshposeError(f"must end in {' or '.join(suffixes)}", target)
    if target.is_dir():
        raise MeshposeError("is a folder, expected a file name to write", target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise MeshposeError(f"cannot write: folder {str(folder)[:60]!r} does not exist", target)
    _check_writable_folder(folder, target)
    return target


def check_output_folder(path: str | os.PathLike) -> Path:
    """Check, without writing anything, that ``path`` can be created or written as a folder.

    Raises:
        MeshposeError: ``path`` is a file, or its nearest existing folder is not a folder,
            not writable or on a read-only file system.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise MeshposeError("is a file, expected a folder", folder)
    existing = _nearest_existing(folder.parent if not folder.exists() else folder)
    _check_writable_folder(existing, folder)
    if folder.exists():
        # the staging folder is made next to it
        _check_writable_folder(_nearest_existing(folder.parent), folder)
    return folder
