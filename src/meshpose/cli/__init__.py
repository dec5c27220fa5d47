"""The ``meshpose`` command. Each subcommand is a thin wrapper over the Python API; the
subcommands are defined by area in :mod:`meshpose.cli.estimate`, :mod:`meshpose.cli.training`,
:mod:`meshpose.cli.evaluate` and :mod:`meshpose.cli.data`.

User mistakes (bad files, unknown names, bad values) raise :class:`MeshposeError`; ``main``
prints its one line, ``meshpose: error: FILE: problem``, and exits with code 2.
"""
from __future__ import annotations

import argparse
import sys

from meshpose.cli import data, estimate, evaluate, training
from meshpose.cli.arguments import OneLineParser, join_negative_values
from meshpose.errors import MeshposeError
from meshpose.version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="meshpose",
        description="3D human pose and body-mesh estimation on the Anny body model.",
    )
    parser.add_argument("--version", action="version", version=f"meshpose {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in (estimate, training, evaluate, data):
        area.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except MeshposeError as error:
        print(f"meshpose: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meshpose: interrupted", file=sys.stderr)
        return 130
