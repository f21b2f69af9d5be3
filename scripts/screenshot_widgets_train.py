"""Screenshots for docs/: the Generate masks and Train classifier widgets with real results.

Opens the synthetic sample slide through the plugin in a shown napari viewer (Xvfb through
pyvirtualdisplay when there is no display), generates its masks, selects a region, trains the
study's forest on those masks, and writes docs/mask-widget.png and docs/train-widget.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from scripts._screen import save_screenshot, screen, wait_for_job

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
WINDOW = (1700, 1000)


def _frame(viewer, image, gallery, patch, row: int) -> None:
    """Point the camera at the selected region and its tile in the gallery, with context."""
    layout = gallery.metadata["layout"]
    cell = layout["cell"]
    tile = np.array([(row // layout["cols"]) * cell, (row % layout["cols"]) * cell])
    corners = [
        np.asarray(image.translate) + np.asarray(image.scale) * [patch.top, patch.left],
        np.asarray(gallery.translate) + np.asarray(gallery.scale) * (tile + cell),
    ]
    lo, hi = np.min(corners, axis=0), np.max(corners, axis=0)
    span = (hi - lo) * 1.35 + 200
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.camera.center = tuple((lo + hi) / 2)
    viewer.camera.zoom = min(canvas.height() / span[0], canvas.width() / span[1])


def main() -> int:
    """Make both screenshots; returns the exit status."""
    with screen((WINDOW[0] + 100, WINDOW[1] + 100)):
        import napari
        import napari.layers

        from napari_crystal.plugin._sample_data import sample_slide_path
        from napari_crystal.plugin.widgets.mask_widget import GALLERY, MaskWidget
        from napari_crystal.plugin.widgets.train_widget import TrainWidget

        DOCS.mkdir(exist_ok=True)
        svs = sample_slide_path()
        viewer = napari.Viewer(show=True, title="napari-crystal: generate masks, train")
        viewer.window._qt_window.resize(*WINDOW)
        layers = viewer.open(str(svs), plugin="napari-crystal")
        image = next(x for x in layers if isinstance(x, napari.layers.Image))
        shapes = next(x for x in layers if isinstance(x, napari.layers.Shapes))
        for layer in layers:  # the class raster would hide the tissue under the masks
            if isinstance(layer, napari.layers.Labels):
                layer.visible = False

        masks = MaskWidget(viewer)
        masks_dock = viewer.window.add_dock_widget(masks, name="Generate masks", area="right")
        masks.image.value, masks.shapes.value = image, shapes
        masks.run()
        wait_for_job(masks)
        table = masks.dataset.table
        crystal = np.flatnonzero(table.label == "cidc")
        row = int(crystal[np.argmax(table.left[crystal])])  # the one nearest the gallery
        shapes.selected_data = {int(table.index[row])}
        viewer.layers.selection.active = shapes
        _frame(viewer, image, viewer.layers[GALLERY], table[row], row)
        save_screenshot(viewer, DOCS / "mask-widget.png", 1.0)

        train = TrainWidget(viewer)
        viewer.window.remove_dock_widget(masks_dock)
        viewer.window.add_dock_widget(train, name="Train classifier", area="right")
        model = svs.with_name("sample-forest.skops")  # beside the cached sample
        model.unlink(missing_ok=True)  # the widget would ask before replacing it
        train.out.value = model
        train.run()
        wait_for_job(train)
        viewer.reset_view()
        save_screenshot(viewer, DOCS / "train-widget.png", 1.0)
        viewer.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
