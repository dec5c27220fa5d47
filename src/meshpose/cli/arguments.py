"""Argument types and the parser class shared by every subcommand.

A bad argument is a user mistake like any other: one line, ``meshpose <command>: error: ...``,
exit code 2 (argparse's default prints the whole usage first).
"""
from __future__ import annotations

import argparse
import sys

import torch

__all__ = ["NEGATIVE_VALUES", "OneLineParser", "device", "join_negative_values"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr, exit code 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


#: Options whose values may start with "-" (mesh-keypoints' ``--up -y``), and those values.
NEGATIVE_VALUES = {"--up": ("-x", "-y", "-z")}


def join_negative_values(argv: list[str]) -> list[str]:
    """``["--up", "-y"]`` as ``["--up=-y"]``: argparse reads a separate value that starts with
    "-" as an option of its own, so ``--up -y`` would be a usage error."""
    joined, skip = [], False
    for index, token in enumerate(argv):
        if skip:
            skip = False
            continue
        following = argv[index + 1] if index + 1 < len(argv) else None
        if token in NEGATIVE_VALUES and following in NEGATIVE_VALUES[token]:
            joined.append(f"{token}={following}")
            skip = True
        else:
            joined.append(token)
    return joined


def device(text: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``, and CUDA only where there is a GPU."""
    try:
        parsed = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text[:40]!r}; use cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unknown device {text[:40]!r}; use cpu, cuda or cuda:N")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine; use cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA devices")
    return text
