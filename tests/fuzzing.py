"""What the fuzz tests check for every malformed input: the command refuses it cleanly.

:func:`assert_refused` runs ``meshpose`` in this process (a subprocess would pay the import of
torch on every case) and checks the guarantees of the README's "Bad input" line: exit code 2,
exactly one line on stderr that names the file, no traceback, and the output location exactly as
it was (no file added, removed or changed, no temporary file left).
"""
from __future__ import annotations

import contextlib
import io
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from meshpose.cli import main


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    crash: str | None  #: the traceback of an exception that escaped main, else None


def snapshot(*roots: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under ``roots`` (hidden ones too): path -> (size, mtime ns, mode)."""
    found = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        items = [root, *root.rglob("*")] if root.is_dir() else [root]
        for item in items:
            stat = item.lstat()
            found[str(item)] = (stat.st_size if item.is_file() else 0, stat.st_mtime_ns, stat.st_mode)
    return found


def run_cli(*argv: str | os.PathLike) -> Outcome:
    """``meshpose ARGV`` in this process: exit code, stdout, stderr, and any escaped exception."""
    out, err = io.StringIO(), io.StringIO()
    code, crash = None, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([os.fspath(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is exactly what the test reports
            crash = traceback.format_exc()
    return Outcome(code, out.getvalue(), err.getvalue(), crash)


def assert_refused(argv, names, watch=(), contains: str | None = None) -> Outcome:
    """Run ``meshpose argv`` and check that it refused cleanly.

    Args:
        argv: the command line after ``meshpose``.
        names: the text the one error line must hold (usually the bad file's path).
        watch: files or folders that must be left exactly as they were (the outputs).
        contains: more text the error line must hold (what is wrong), if given.
    """
    before = snapshot(*watch)
    outcome = run_cli(*argv)
    assert outcome.crash is None, f"meshpose {argv} raised:\n{outcome.crash}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.code == 2, f"exit {outcome.code}, stderr {outcome.stderr!r}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {outcome.stderr[:2000]!r}"
    assert "Traceback" not in outcome.stderr
    assert str(names) in lines[0], f"{names!r} not named in {lines[0]!r}"
    if contains is not None:
        assert contains in lines[0], f"{contains!r} not in {lines[0]!r}"
    assert len(lines[0]) < 1000, f"error line of {len(lines[0])} characters"
    after = snapshot(*watch)
    assert after == before, f"output changed: added {sorted(set(after) - set(before))}, " \
                            f"removed {sorted(set(before) - set(after))}"
    return outcome


def locked_folder(path: Path, monkeypatch) -> Path:
    """Make ``path`` a read-only folder (mode 0555). Root may write there anyway, so for root
    ``os.access`` is patched to answer as it would for a user: meshpose's permission check then
    sees what a user's run would."""
    path.mkdir()
    path.chmod(0o555)
    if os.geteuid() == 0:
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != path and access(p, mode, **kw))
    return path
