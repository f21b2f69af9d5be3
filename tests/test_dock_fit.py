"""Every napari-crystal dock docked at once fits a 1366 x 768 laptop screen."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

pytestmark = pytest.mark.viewer

SCREEN = (1366, 768)


def all_widgets(viewer) -> list:
    from napari_crystal.plugin.widgets.annotate_widget import AnnotateWidget
    from napari_crystal.plugin.widgets.evaluate_widget import EvaluateWidget
    from napari_crystal.plugin.widgets.mask_widget import MaskWidget
    from napari_crystal.plugin.widgets.overlay import PredictionOverlayWidget
    from napari_crystal.plugin.widgets.predict_widget import PredictWidget
    from napari_crystal.plugin.widgets.train_widget import TrainWidget

    return [
        cls(viewer)
        for cls in (
            AnnotateWidget,
            MaskWidget,
            TrainWidget,
            EvaluateWidget,
            PredictionOverlayWidget,
            PredictWidget,
        )
    ]


def test_all_docks_fit_a_laptop_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_shapes(name="annotation")
    window = viewer.window._qt_window
    widgets = all_widgets(viewer)
    for widget in widgets:
        viewer.window.add_dock_widget(widget, area="right", name=type(widget).__name__)
    window.showNormal()
    window.resize(*SCREEN)
    qtbot.wait(50)
    needed = window.minimumSizeHint().height()
    assert needed <= SCREEN[1], f"the window needs {needed} px of height"
    assert window.height() <= SCREEN[1]
    for name, widget in viewer.window.dock_widgets.items():
        # each dock scrolls instead of asking for its full height
        native = getattr(widget, "native", widget)
        assert native.minimumSizeHint().height() < 200, name
    # without their scroll areas the docks' contents would need far more than the screen
    contents = sum(w.body.native.minimumSizeHint().height() for w in widgets if hasattr(w, "body"))
    assert contents > SCREEN[1]
