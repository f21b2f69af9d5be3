"""argparse types: every command-line value is checked when it is parsed, before any work.

Each function takes the text argparse got and returns the value, or raises
``argparse.ArgumentTypeError`` with a reason; the parser prints it as one line
(``napari-crystal: error: argument --trees: ...``) and exits with status 2.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path, PurePath

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
INT_MAX = 2**31 - 1  # seeds, trees and sizes beyond this are mistakes (numpy seeds are 32-bit)


def _int(text: str, what: str) -> int:
    if not _INT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}")
    value = int(text)
    if abs(value) > INT_MAX:
        raise argparse.ArgumentTypeError(f"{what} must be at most {INT_MAX}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (trees, depth, mask size)."""
    value = _int(text, "value")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def seed(text: str) -> int:
    """A random seed: 0 .. 2**31 - 1 (what numpy and scikit-learn accept)."""
    value = _int(text, "seed")
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be 0 or more, got {text!r}")
    return value


def jobs(text: str) -> int:
    """Thread count: -1 (all cores) or a positive number."""
    value = _int(text, "jobs")
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"must be -1 (all cores) or 1 or more, got {text!r}")
    return value


def mask_size(text: str) -> int:
    """Mask side in pixels: 1 .. 8192 (a 8192^2 mask is 8 MiB packed, 64 Mi features)."""
    value = positive_int(text)
    if value > MAX_MASK_SIZE:
        raise argparse.ArgumentTypeError(
            f"mask size must be at most {MAX_MASK_SIZE} pixels, got {text!r}"
        )
    return value


MAX_MASK_SIZE = 8192


def level(text: str) -> float:
    """A confidence level strictly between 0 and 1."""
    if not _FLOAT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    value = float(text)
    if not (math.isfinite(value) and 0 < value < 1):
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text!r}")
    return value


def scheduler(text: str) -> str:
    """A dask scheduler name or a dask.distributed address (checked, not contacted)."""
    from napari_crystal.parallel import scheduler_kind

    try:
        scheduler_kind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def split_name(text: str) -> str:
    """A corpus split: one folder name inside the corpus (``train``), never a path out of it."""
    parts = PurePath(text).parts
    if len(parts) != 1 or text in (".", "..") or parts[0] != text or "\\" in text:
        raise argparse.ArgumentTypeError(
            f"must be one folder name inside the corpus (train, dev, eval), got {text!r}"
        )
    return text


def new_folder(text: str) -> Path:
    """An output folder: missing (created later) or an existing folder, never a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    return path


def output_file(text: str) -> Path:
    """An output file: missing or a file (replaced atomically), never a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file name")
    return path


def positive_float(text: str) -> float:
    """A finite number > 0 (a pixel size in micrometres)."""
    if not _FLOAT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A share from 0 to 1."""
    if not _FLOAT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    value = float(text)
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value
