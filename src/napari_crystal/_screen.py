"""A screen for napari where there is none: Xvfb through pyvirtualdisplay.

The demo, the screenshot scripts and the viewer benchmarks all open real napari windows;
on a headless machine they start one virtual X screen here, and leave ``DISPLAY`` alone
where a screen exists.
"""

from __future__ import annotations

import os
import shutil


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
