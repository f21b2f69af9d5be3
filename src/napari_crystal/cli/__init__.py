"""``napari-crystal`` command line: batch work over the same core the widgets use.

Each command group lives in its own module with a ``register(subparsers)`` function that adds
its sub-commands, each with ``func(args) -> int`` set as its default.
"""

from __future__ import annotations

import argparse
import sys

from napari_crystal import __version__
from napari_crystal.errors import CrystalError

PROG = "napari-crystal"
_GROUPS = (
    "napari_crystal.cli._annotations",
    "napari_crystal.cli._corpus",
    "napari_crystal.cli._pipeline",
    "napari_crystal.cli._predict",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command group that is installed."""
    import importlib

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def fail(message: str) -> int:
    """Print one error line the way every command does, and return the usage status."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def warn(message: str) -> None:
    """Print one warning line the way every command does (stderr; the work goes on)."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn bad input into one line on stderr with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CrystalError as exc:
        return fail(str(exc))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return fail(f"{exc.filename}: {exc.strerror}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
