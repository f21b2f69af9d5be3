"""Widget fields remembered between sessions, in napari-crystal's own config folder.

Not napari's settings: a small JSON file (``widgets.json``) in the user's config folder for
napari-crystal (``$NAPARI_CRYSTAL_CONFIG`` when set), one section per widget. A value that no
longer fits its field (a choice that went away, a number out of range) is skipped, never an
error; the file is written atomically a moment after the last change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from napari_crystal._atomic import atomic_write

FILE_NAME = "widgets.json"
SAVE_DELAY_MS = 300


def config_dir() -> Path:
    """``$NAPARI_CRYSTAL_CONFIG``, else the platform's user config folder for napari-crystal."""
    env = os.environ.get("NAPARI_CRYSTAL_CONFIG")
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-crystal"))


def _load() -> dict:
    try:
        data = json.loads((config_dir() / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _plain(value: Any) -> Any:
    """A field value as JSON: paths as strings, numbers, booleans, strings, None."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def remember(section: str, fields: dict[str, Any]) -> None:
    """Fill ``fields`` (name -> magicgui value widget) from the last session, then save each
    change. Paths are restored only while they still exist."""
    saved = _load().get(section, {})
    for name, widget in fields.items():
        if name not in saved:
            continue
        value = saved[name]
        if getattr(widget, "widget_type", "") == "FileEdit":
            if not value or not Path(value).exists():
                continue
        try:
            widget.value = value
        except (ValueError, TypeError, KeyError):
            continue  # the field changed since: keep its default

    def save() -> None:
        data = _load()
        data[section] = {name: _plain(w.value) for name, w in fields.items()}
        try:
            atomic_write(config_dir() / FILE_NAME, json.dumps(data, indent=1).encode("utf-8"))
        except OSError:
            pass  # a read-only config folder costs the memory of fields, nothing else

    from qtpy.QtCore import QTimer

    # typing a path changes the field per key: write once the typing pauses
    timer = QTimer(next(iter(fields.values())).native if fields else None)
    timer.setSingleShot(True)
    timer.setInterval(SAVE_DELAY_MS)
    timer.timeout.connect(save)
    for widget in fields.values():
        widget.changed.connect(lambda *_: timer.start())
