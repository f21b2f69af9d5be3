"""A screen for napari where there is none: Xvfb through pyvirtualdisplay.

The demo, the screenshot scripts and the viewer benchmarks all open real napari windows;
on a headless machine they start one virtual X screen here, and leave ``DISPLAY`` alone
where a screen exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager


def start_screen(size: tuple[int, int] = (1600, 1000)):
    """Start Xvfb of ``size`` and point ``DISPLAY`` at it; None when a screen is already set.

    Stop the returned display (``.stop()``) when done.
    """
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        raise RuntimeError("no DISPLAY and no Xvfb: install xvfb (`make test` does, as root)")
    from pyvirtualdisplay import Display

    display = Display(visible=False, size=size)
    display.start()
    return display


@contextmanager
def screen(size: tuple[int, int] = (1600, 1000)) -> Iterator[None]:
    """`start_screen` for the length of a ``with`` block, stopped however the block ends."""
    display = start_screen(size)
    try:
        yield
    finally:
        if display is not None:
            display.stop()


def settle(seconds: float = 0.3) -> None:
    """Let Qt process events for ``seconds``, so layers and docks are drawn before a shot."""
    import time

    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def wait_for_job(widget, timeout: float = 600) -> None:
    """Process events until the widget's `Runner` job is over; raise the job's error if any."""
    import time

    end = time.monotonic() + timeout
    while widget.runner.busy:
        if time.monotonic() > end:
            raise TimeoutError("the widget's job did not finish")
        settle(0.05)
    if widget.runner.last_error is not None:
        raise widget.runner.last_error
    settle()


def wait_until(condition, timeout: float = 30, what: str = "the condition") -> None:
    """Process events until ``condition()`` is true (e.g. an overlay added a layer per turn)."""
    import time

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} did not happen in {timeout:g} s")
        settle(0.05)


def save_screenshot(viewer, path, settle_seconds: float = 0.5) -> None:
    """A screenshot of the whole window (widgets included) once it has been drawn."""
    settle(settle_seconds)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")
