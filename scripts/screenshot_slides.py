"""Screenshots for docs/: a synthetic slide with its annotation layers, and the real Aperio SVS.

Opens each slide through the plugin's reader in a shown napari viewer (Xvfb via pyvirtualdisplay
when there is no display) and saves docs/synthetic-slide.png and docs/real-svs.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scripts._screen import screen

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REAL_SVS = ROOT.parent / "shared" / "data" / "slides" / "CMU-1-small-region.svs"


def _shot(viewer, path: Path, center=None, zoom=None) -> None:
    from qtpy.QtWidgets import QApplication

    viewer.window._qt_window.resize(1500, 950)
    viewer.reset_view()
    if center is not None:
        viewer.camera.center = center
    if zoom is not None:
        viewer.camera.zoom = zoom
    for _ in range(5):
        QApplication.processEvents()
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> int:
    with screen((1600, 1000)):
        import napari

        from napari_crystal.plugin._sample_data import sample_slide_path

        DOCS.mkdir(exist_ok=True)
        svs = sample_slide_path()
        viewer = napari.Viewer(show=True, title="napari-crystal: synthetic NEDC slide")
        viewer.open(str(svs), plugin="napari-crystal")
        shapes = next(layer for layer in viewer.layers if layer._type_string == "shapes")
        lo, hi = shapes.extent.world  # zoom onto the annotated part, wide enough for context
        centre = tuple((lo + hi) / 2)
        _shot(viewer, DOCS / "synthetic-slide.png", center=centre, zoom=1150 / 2600)
        viewer.close()

        if REAL_SVS.is_file():
            viewer = napari.Viewer(show=True, title="napari-crystal: CMU-1-small-region.svs")
            viewer.open(str(REAL_SVS), plugin="napari-crystal")
            _shot(viewer, DOCS / "real-svs.png")
            viewer.close()
        else:
            print(f"skipped docs/real-svs.png: {REAL_SVS} not found", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
