"""Errors that carry the file (and line) they are about, so every layer can print one line."""

from __future__ import annotations

from os import PathLike


class CrystalError(ValueError):
    """Bad input from a file: rendered as ``PATH:LINE: message`` (``PATH: message`` without line)."""

    def __init__(self, path: str | PathLike | None, message: str, line: int | str | None = None):
        self.path = None if path is None else str(path)
        self.message = message
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"

    def brief(self) -> str:
        """The reason first, then only the file's name (and line): for notifications, which
        napari cuts after a line or two, so a long folder would hide the reason."""
        if self.path is None:
            return self.message
        name = self.path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or self.path
        line = "" if self.line is None else f":{self.line}"
        return f"{self.message} ({name}{line})"


class AnnotationError(CrystalError):
    """An NEDC annotation file that cannot be read or written."""


class SlideError(CrystalError):
    """A slide file that cannot be opened or read."""


class DatasetError(CrystalError):
    """A dataset (patch table + masks) that is missing, broken or does not match."""


class ModelError(CrystalError):
    """A model file that is not ours, from an incompatible version, or does not fit the data."""


class Cancelled(Exception):
    """Raised inside long work when the caller asked it to stop."""
