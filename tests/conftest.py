"""Shared fixtures: one body model (and one anny reference model) per test session, and the
``meshpose`` command run in this process."""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import pytest
import torch


@pytest.fixture(scope="session")
def anny_body():
    from meshpose.body import AnnyBody

    return AnnyBody()


@pytest.fixture(scope="session")
def anny_body64():
    from meshpose.body import AnnyBody

    return AnnyBody(dtype=torch.float64)


@pytest.fixture(scope="session")
def anny_reference():
    """anny's own model (float64), or a skip when anny is not installed.

    The first construction builds anny's cache (~1 min); set ANNY_CACHE_DIR to keep it.
    """
    anny = pytest.importorskip("anny")
    return anny.Anny().to(torch.float64)


@dataclass
class CommandResult:
    """What ``subprocess.run(..., capture_output=True, text=True)`` would give."""

    returncode: int
    stdout: str
    stderr: str


# Warning categories Python does not print by default outside ``__main__``.
_HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def run_meshpose(*args) -> CommandResult:
    """``meshpose ARGS`` run in this process through ``meshpose.cli.main``, the function behind
    the ``meshpose`` entry point and ``python -m meshpose`` (``sys.exit(main())``): its return
    value (or ``SystemExit`` code, as argparse raises) is the exit status, and stdout/stderr are
    what it printed, with the warnings a user would see appended to stderr as Python prints them.

    It saves the 3-5 s a ``python -m meshpose`` subprocess spends importing; the tests of the
    real process (exit status of the entry point, SIGKILL and resume) keep a subprocess.
    """
    from meshpose.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_:
            code = exit_.code
            if code is None:
                code = 0
            elif not isinstance(code, int):  # sys.exit("message"): printed, status 1
                print(code, file=err)
                code = 1
    for warning in caught:
        if not issubclass(warning.category, _HIDDEN_WARNINGS):
            err.write(warnings.formatwarning(warning.message, warning.category, warning.filename,
                                             warning.lineno, warning.line))
    return CommandResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def meshpose_cli():
    """:func:`run_meshpose`: ``meshpose_cli("body", "--out", path)`` -> returncode, stdout, stderr."""
    return run_meshpose
