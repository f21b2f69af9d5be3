"""Shared fixtures: paths to ../shared, the tiny synthetic corpus built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL_SVS = SHARED / "data" / "slides" / "CMU-1-small-region.svs"


@pytest.fixture(scope="session")
def real_svs() -> Path:
    """The real Aperio slide from ../shared; skip where ../shared is absent."""
    if not REAL_SVS.is_file():
        pytest.skip(f"real slide not found at {REAL_SVS} (../shared is absent)")
    return REAL_SVS


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The ``tiny`` synthetic corpus (seed 42), generated once for the whole session."""
    from napari_crystal.synthetic import generate_corpus

    out = tmp_path_factory.mktemp("tiny-corpus")
    generate_corpus(out, preset="tiny", seed=42)
    return out


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    """Remember the status: `pytest_unconfigure` leaves with it."""
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without Python's finalisation once every result is reported and Xvfb stopped.

    PyQt6 registers an atexit hook (``cleanup_on_exit``) that visits every sip wrapper; after
    a few hundred viewer tests it intermittently meets a wrapper whose C++ object is already
    gone and segfaults (gdb: ``sip_api_get_address`` <- ``cleanup_qobject`` <- ``atexit``),
    turning a green run into exit status 139. Nothing of the tests runs at that point.
    """
    if not _EXIT_STATUS or "PyQt6.QtCore" not in sys.modules:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])
