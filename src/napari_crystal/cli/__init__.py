"""``napari-crystal`` command line: batch work over the same core the widgets use.

Each command group lives in its own module with a ``register(subparsers)`` function that adds
its sub-commands, each with ``func(args) -> int`` set as its default.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings

from napari_crystal import __version__
from napari_crystal.errors import CrystalError, shorten

PROG = "napari-crystal"
_GROUPS = (
    "napari_crystal.cli._annotations",
    "napari_crystal.cli._corpus",
    "napari_crystal.cli._pipeline",
    "napari_crystal.cli._predict",
    "napari_crystal.cli._retrain",
)


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error (``napari-crystal: error: ...``), status 2."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {shorten(message, 300)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command group that is installed."""
    import importlib

    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
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
    print(f"{PROG}: warning: {shorten(message, 300)}", file=sys.stderr)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as ``napari-crystal: warning: ...``, one line, no source path."""
    return f"{PROG}: warning: {shorten(message, 300)}\n"


def _quiet_libraries() -> None:
    """Third-party log lines (tifffile on a damaged file) would precede our one-line error."""
    for name in ("tifffile", "imagecodecs", "zarr", "numcodecs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn bad input into one line on stderr with status 2."""
    previous, warnings.formatwarning = warnings.formatwarning, _format_warning
    on_term = _terminate_cleanly()
    try:
        return _run(argv)
    finally:
        warnings.formatwarning = previous  # main() called in-process leaves no trace
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)


def _terminate_cleanly():
    """SIGTERM unwinds like Ctrl-C (temporaries removed, status 143) instead of killing."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


def _run(argv: list[str] | None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CrystalError as exc:
        return fail(shorten(str(exc), 300))
    except BrokenPipeError:  # `napari-crystal info ... | head`: the reader left early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # missing, unreadable, symlink loops, full disks: the OS's reason
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
