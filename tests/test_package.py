"""Packaging-level checks: the manifest validates, the core stays napari-free, the CLI starts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_crystal import palette
from napari_crystal.cli import main
from napari_crystal.errors import AnnotationError

CORE = ["errors", "palette", "nedc", "raster", "slide", "synthetic", "patches", "masks",
        "training", "evaluation", "experiment"]  # fmt: skip


def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-crystal")
    assert manifest.name == "napari-crystal"
    assert {r.command for r in manifest.contributions.readers} == {
        "napari-crystal.read_annotation",
        "napari-crystal.read_slide",
    }


def test_core_imports_no_qt_or_napari():
    code = (
        "import sys, importlib\n"
        f"for m in {CORE!r}: importlib.import_module('napari_crystal.' + m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'PyQt6', 'qtpy', 'magicgui', 'vispy'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "napari-crystal" in capsys.readouterr().out


def test_error_renders_path_and_line():
    assert str(AnnotationError("a.csv", "bad row", line=7)) == "a.csv:7: bad row"
    assert str(AnnotationError("a.csv", "empty file")) == "a.csv: empty file"


def test_palette_is_consistent():
    assert len(palette.LABELS) == 12
    assert [palette.class_index(lab) for lab in palette.LABELS] == list(range(1, 13))
    assert palette.class_index("zzzz") == palette.UNKNOWN_INDEX
    assert palette.index_label(palette.class_index("cidc")) == "cidc"
    cmap = palette.label_colormap()
    assert cmap[0][3] == 0 and all(cmap[i][3] > 0 for i in range(1, palette.UNKNOWN_INDEX + 1))
    colours = {tuple(np.round(palette.rgba(lab), 3)) for lab in palette.LABELS}
    assert len(colours) == 12
