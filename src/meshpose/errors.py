"""The one exception family for user-facing errors.

The CLI catches :class:`MeshposeError`, prints ``str(error)`` on one line and exits with code 2.
Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os


class MeshposeError(Exception):
    """A user-facing error: bad input, unknown name, missing file.

    Args:
        message: what is wrong, in one sentence.
        path: the file the problem is in, if any; it is printed first.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputFileError(MeshposeError):
    """An input file is missing, unreadable, malformed or holds invalid values."""


class UnknownNameError(MeshposeError):
    """An unknown joint set, model, format or parameter name."""
