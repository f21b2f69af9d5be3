"""Screenshot for docs/: an NEDC annotation file opened in napari through the plugin.

Writes an example CSV (one region per class of the palette, as a pathologist's blobs over a
20,000 x 12,000 slide) to a temporary folder, opens it with ``viewer.open(...,
plugin="napari-crystal")`` in a shown viewer (Xvfb through pyvirtualdisplay when there is no
display) and saves docs/annotation-in-napari.png.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from scripts._screen import screen

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "annotation-in-napari.png"


def example_annotation(path: Path) -> Path:
    """One smooth closed blob per palette label, in a 4 x 3 grid over a 20,000 x 12,000 slide."""
    from napari_crystal.io.nedc import Annotation, Region, write_annotation
    from napari_crystal.palette import LABELS

    rng = np.random.default_rng(7)
    t = np.linspace(0, 2 * np.pi, 200)
    regions = []
    for i, label in enumerate(LABELS):
        row, col = divmod(i, 4)
        centre = np.array([2000 + row * 4000, 2500 + col * 5000])
        radius = 1500 * (1 + 0.18 * np.sin(3 * t + rng.uniform(0, 6)) + 0.08 * np.cos(5 * t))
        coords = np.column_stack([np.sin(t), np.cos(t)]) * radius[:, None] + centre
        coords = coords.round()
        coords[-1] = coords[0]
        regions.append(Region(i, i + 1, label, "breast", coords, None))
    ann = Annotation(regions, 0.5022, 20_000, 12_000, path.stem, "breast")
    return write_annotation(ann, path)


def main() -> int:
    with screen((1600, 1000)):
        import napari
        from qtpy.QtWidgets import QApplication

        with tempfile.TemporaryDirectory() as tmp:
            path = example_annotation(Path(tmp) / "example_annotation.csv")
            viewer = napari.Viewer(show=True, title="napari-crystal: NEDC annotation")
            viewer.open(str(path), plugin="napari-crystal")
            viewer.window._qt_window.resize(1500, 950)
            viewer.reset_view()
            for _ in range(10):
                QApplication.processEvents()
            OUT.parent.mkdir(exist_ok=True)
            viewer.screenshot(str(OUT), canvas_only=False, flash=False)
            viewer.close()
        print(f"wrote {OUT.relative_to(ROOT)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
