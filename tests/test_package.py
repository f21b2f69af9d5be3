"""Packaging-level checks: the manifest validates, the core stays napari-free, the CLI starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import napari_crystal
from napari_crystal import palette
from napari_crystal.cli import main
from napari_crystal.errors import AnnotationError

GUI_PACKAGES = (
    "napari",
    "PyQt6",
    "PyQt5",
    "PySide2",
    "PySide6",
    "qtpy",
    "magicgui",
    "superqt",
    "vispy",
)
PACKAGE = Path(napari_crystal.__file__).parent


def core_modules() -> list[str]:
    """Every module of the package outside ``plugin/``, found by walking the source tree."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if rel.parts[0] == "plugin" or rel.name == "__main__":
            continue
        parts = [p for p in rel.parts if p != "__init__"]
        names.append(".".join(["napari_crystal", *parts]))
    return names


def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-crystal")
    assert manifest.name == "napari-crystal"
    assert {r.command for r in manifest.contributions.readers} == {
        "napari-crystal.read_annotation",
        "napari-crystal.read_slide",
    }


def test_core_module_list_is_complete():
    names = core_modules()
    assert {"napari_crystal.geometry", "napari_crystal.io.nedc", "napari_crystal.cli"} <= set(
        names
    )
    assert not any(".plugin" in n for n in names)


def test_core_imports_no_gui_library():
    """Importing every core module (and running their import-time code) pulls in no GUI stack."""
    code = (
        "import sys, importlib\n"
        f"for m in {core_modules()!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {GUI_PACKAGES!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_source_names_no_gui_library():
    """No core module even mentions a GUI import (lazy imports inside functions included)."""
    import ast

    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "plugin":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            offenders += [f"{path.name}: {m}" for m in mods if m.split(".")[0] in GUI_PACKAGES]
    assert offenders == []


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
