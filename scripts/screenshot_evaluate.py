"""Screenshots for docs/: the Evaluate widget with real results, and the prediction overlay.

Trains two small models (with and without crystals) on the tiny synthetic corpus, evaluates
them in the Evaluate widget of a shown napari viewer (Xvfb via pyvirtualdisplay when there is
no display), then evaluates the sample slide and builds its prediction overlay. Writes
docs/evaluate-widget.png, docs/prediction-overlay.png (a wrong region hovered and clicked) and
docs/overlay-next-error.png (after the next-error key), then accepts that patch's prediction and
retrains: docs/overlay-retrain.png (the history of two rounds).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from scripts._screen import save_screenshot, screen, settle, wait_for_job, wait_until

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SIZE = 32  # mask side: small, so the script runs in about a minute
TREES = 50


def models(work: Path) -> tuple[Path, Path, Path]:
    """Two 50-tree models (crystals merged / dropped) and the eval dataset, tiny corpus."""
    from napari_crystal.dataset import build_dataset
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.synthetic import generate_corpus
    from napari_crystal.training import save_model

    corpus = generate_corpus(work / "corpus", preset="tiny", seed=42)
    train = build_dataset(corpus, "train", work / "train.zarr", size=SIZE)
    build_dataset(corpus, "eval", work / "eval.zarr", size=SIZE)
    paths = []
    for name, crystals in (("with-crystals", "merge"), ("without-crystals", "drop")):
        model = train_on_dataset(train, crystals=crystals, params={"n_estimators": TREES})
        paths.append(save_model(model, work / f"{name}.skops"))
    return paths[0], paths[1], work / "eval.zarr"


def main() -> int:
    """Make both screenshots; returns the exit status."""
    with screen((1700, 1100)):
        import napari

        from napari_crystal.plugin._sample_data import sample_slide_path
        from napari_crystal.plugin.widgets.evaluate_widget import SLIDE, EvaluateWidget

        DOCS.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="napari-crystal-docs-") as tmp:
            model_a, model_b, dataset = models(Path(tmp))
            svs = sample_slide_path()
            viewer = napari.Viewer(show=True, title="napari-crystal: evaluate")
            viewer.window._qt_window.resize(1650, 1060)
            viewer.open(str(svs), plugin="napari-crystal")
            image = next(x for x in viewer.layers if x._type_string == "image")
            shapes = next(x for x in viewer.layers if x._type_string == "shapes")

            widget = EvaluateWidget(viewer)
            dock = viewer.window.add_dock_widget(widget, name="Evaluate classifier", area="right")
            widget.model.value = model_a
            widget.model_b.value = model_b
            widget.dataset.value = dataset
            widget.run()
            wait_for_job(widget)
            if widget.result is None:
                raise RuntimeError("evaluation failed (see the notifications)")
            dock.setMinimumWidth(560)
            save_screenshot(viewer, DOCS / "evaluate-widget.png", 0.5)

            # the open slide, one model, then its overlay
            widget.model_b.value = None
            widget.source.value = SLIDE
            widget.slide.value, widget.annotation_layer.value = image, shapes
            widget.run()
            wait_for_job(widget)
            widget.build_overlay()
            wait_for_job(widget)
            # the overlay adds one layer per event-loop turn after the job
            wait_until(
                lambda: widget.overlay is not None or widget.runner.last_error, 60, "overlay"
            )
            overlay = widget.overlay
            if overlay is None:
                raise RuntimeError("overlay failed (see the notifications)")
            viewer.window.remove_dock_widget(dock)
            settle()
            viewer.window._qt_window.resize(1650, 1000)
            settle()
            overlay_dock = viewer.window._qt_window.findChildren(type(dock))
            for d in overlay_dock:
                d.setMaximumWidth(420)
            for layer in viewer.layers:
                if layer not in (image, *overlay.layers):
                    layer.visible = False
            # zoom onto the annotated part of the slide
            t = overlay.pmap.table
            lo = np.array([t.top.min(), t.left.min()], float)
            hi = np.array([(t.top + t.height).max(), (t.left + t.width).max()], float)
            camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
            camera.center = tuple((lo + hi) / 2)
            canvas = viewer.window._qt_viewer.canvas.native
            camera.zoom = 0.92 * min(canvas.height() / (hi - lo)[0], canvas.width() / (hi - lo)[1])
            # hover a wrongly predicted region: the status shows true, predicted, probabilities
            pmap = overlay.pmap
            wrong = np.flatnonzero(pmap.wrong)
            sizes = [np.count_nonzero(pmap.raster.index == i) for i in wrong]
            target = int(wrong[int(np.argmax(sizes))]) if len(wrong) else 0
            r, c = np.argwhere(pmap.raster.index == target).mean(axis=0)
            pos = ((r + 0.5) * pmap.raster.scale, (c + 0.5) * pmap.raster.scale)
            viewer.cursor.position = pos
            overlay._on_mouse_move(viewer, None)
            # and click it: its classes and probabilities in the panel, its region selected
            from qtpy.QtCore import QPoint, Qt
            from qtpy.QtTest import QTest

            settle()
            y, x = (np.asarray(pos) - np.asarray(camera.center[-2:])) * camera.zoom
            point = QPoint(int(x + canvas.width() / 2), int(y + canvas.height() / 2))
            QTest.mouseMove(canvas, point)
            settle(0.1)
            QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=point)
            settle(0.1)
            if overlay.picked_row is None:
                raise RuntimeError(f"the click at {point} ({pos}) inspected no patch")
            save_screenshot(viewer, DOCS / "prediction-overlay.png", 0.5)
            # the next-error key: the view centres the next wrong patch
            viewer.layers.selection.active = overlay.prediction
            QTest.keyClick(canvas, Qt.Key.Key_Period)
            QTest.keyClick(canvas, Qt.Key.Key_Period)
            save_screenshot(viewer, DOCS / "overlay-next-error.png", 0.5)
            # correct and retrain: accept the prediction by key, retrain, the history's 2 rounds
            QTest.keyClick(canvas, Qt.Key.Key_Slash)
            if not overlay.corrected:
                raise RuntimeError("accepting the prediction corrected nothing")
            overlay.retrain()
            wait_for_job(overlay)
            if len(overlay.history) != 2:
                raise RuntimeError("retraining failed (see the notifications)")
            from qtpy.QtWidgets import QScrollArea

            for area in overlay.native.findChildren(QScrollArea):
                area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
            save_screenshot(viewer, DOCS / "overlay-retrain.png", 0.5)
            viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
