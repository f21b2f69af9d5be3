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


def shorten(text: object, limit: int = 80) -> str:
    """``text`` on one line, cut to ``limit`` characters with its full length named."""
    text = " ".join(str(text).split()) if "\n" in str(text) or "\r" in str(text) else str(text)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}... ({len(text)} characters)"


def reason_first(exc: BaseException) -> str:
    """The reason, then where (``reason (path:line)``): what a notification should lead with."""
    if isinstance(exc, CrystalError):
        where = exc.path or "<input>"
        if exc.line is not None:
            where = f"{where}:{exc.line}"
        return f"{shorten(exc.message, 300)} ({where})"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc} ({exc.filename})"
    return shorten(str(exc) or type(exc).__name__, 300)


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
