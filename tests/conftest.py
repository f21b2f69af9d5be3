"""Shared fixtures: paths to ../shared, the tiny synthetic corpus built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL_SVS = SHARED / "data" / "slides" / "CMU-1-small-region.svs"

# napari's make_napari_viewer fails a test that leaves a top-level Qt widget behind (a widget
# never docked, closed or given to qtbot.addWidget).
os.environ.setdefault("NAPARI_STRICT_QT", "raise")


@pytest.fixture(autouse=True)
def _widget_config(tmp_path_factory, monkeypatch):
    """Each test's widgets start from their defaults: remembered fields go to a fresh folder."""
    monkeypatch.setenv("NAPARI_CRYSTAL_CONFIG", str(tmp_path_factory.mktemp("config")))


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


# Hypothesis profiles: "ci" (default; bounded, as every run of the suite) and "fuzz" (long
# runs of the fuzz tests: `make fuzz`). Chosen by the HYPOTHESIS_PROFILE environment variable.
settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
settings.register_profile("fuzz", max_examples=5000, deadline=None, print_blob=True)
settings.register_profile("fuzz-short", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
