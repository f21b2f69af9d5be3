"""Screenshots for docs/: the Annotate widget on the synthetic sample slide.

A copy of the sample slide (with its NEDC CSV) is opened through the plugin in a shown viewer
(Xvfb when there is no display) with the Annotate widget docked, then driven as a user would:
a region is selected and key 9 pressed on the canvas (it becomes invasive carcinoma), a
polygon is drawn with clicks after key 8, and a row of the measurement table is clicked.
Writes docs/annotate-widget.png and docs/annotate-measurements.png.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from scripts._screen import save_screenshot, screen, settle

ROOT = Path(__file__).resolve().parents[1]
OUT_WIDGET = ROOT / "docs" / "annotate-widget.png"
OUT_TABLE = ROOT / "docs" / "annotate-measurements.png"


def _canvas_point(viewer, rc):
    from qtpy.QtCore import QPoint

    canvas = viewer.window._qt_viewer.canvas.native
    camera = viewer.scene.camera
    y, x = (np.asarray(rc, float) - np.asarray(camera.center[-2:])) * camera.zoom
    return canvas, QPoint(int(x + canvas.width() / 2), int(y + canvas.height() / 2))


def _click(viewer, rc) -> None:
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    canvas, point = _canvas_point(viewer, rc)
    QTest.mouseMove(canvas, point)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=point)
    settle(0.05)


def _key(viewer, key: str) -> None:
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.keyClick(viewer.window._qt_viewer.canvas.native, getattr(Qt.Key, f"Key_{key}"))
    settle(0.05)


def main() -> int:
    with screen((1600, 1000)):
        import napari

        from napari_crystal.plugin._sample_data import sample_slide_path
        from napari_crystal.plugin.widgets.annotate_widget import AnnotateWidget

        sample = sample_slide_path()
        with tempfile.TemporaryDirectory() as tmp:
            for suffix in (".svs", ".csv"):
                shutil.copy(
                    sample.with_suffix(suffix), Path(tmp) / sample.with_suffix(suffix).name
                )
            svs = Path(tmp) / sample.name
            viewer = napari.Viewer(show=True, title="napari-crystal: annotate")
            viewer.window._qt_window.resize(1500, 950)
            viewer.open(str(svs), plugin="napari-crystal")
            widget = AnnotateWidget(viewer)
            viewer.window.add_dock_widget(widget, name="Annotate")
            layer = widget.layer
            viewer.reset_view()
            settle(0.5)

            # select a region by clicking it, then key 9: it becomes invasive carcinoma
            labels = layer.features["label"].tolist()
            target = labels.index("norm")
            centre = np.asarray(layer.data[target]).mean(axis=0)
            widget.go_to(target)
            settle(0.3)
            layer.selected_data = set()
            _click(viewer, centre)
            if set(layer.selected_data) != {target}:
                layer.selected_data = {target}  # a click between two overlapping regions
            _key(viewer, "9")

            # key 8 while drawing, then a polygon of four clicks beside it
            viewer.reset_view()
            settle(0.3)
            layer.mode = "add_polygon"
            _key(viewer, "8")
            h, w = widget.viewer.layers[0].level_shapes[0][:2]
            corners = [(0.08 * h, 0.42 * w), (0.08 * h, 0.55 * w), (0.2 * h, 0.58 * w),
                       (0.22 * h, 0.45 * w)]  # fmt: skip
            for rc in corners:
                _click(viewer, rc)
            from qtpy.QtCore import Qt
            from qtpy.QtTest import QTest

            canvas, point = _canvas_point(viewer, corners[0])
            QTest.mouseMove(canvas, point)
            QTest.keyClick(canvas, Qt.Key.Key_Escape)
            layer.mode = "select"
            settle(0.5)
            OUT_WIDGET.parent.mkdir(exist_ok=True)
            save_screenshot(viewer, OUT_WIDGET)

            # a row of the measurement table: the view goes to that region, selected
            row = layer.nshapes - 1
            view = widget.table
            view.scrollTo(widget._model.index(row, 0))
            rect = view.visualRect(widget._model.index(row, 1))
            QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
            save_screenshot(viewer, OUT_TABLE)
            viewer.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
