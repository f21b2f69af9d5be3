"""Correcting from the prediction overlay: set truth, accept the prediction, bad input, and the
panel going away with the overlay's layers (real clicks and key presses)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import Qt  # noqa: E402

import test_overlay_inspect  # noqa: E402
from napari_crystal import palette  # noqa: E402
from napari_crystal.plugin.widgets import overlay  # noqa: E402
from napari_crystal.plugin.widgets.overlay import text_overlay  # noqa: E402
from test_overlay_inspect import _point  # noqa: E402

region_overlay = test_overlay_inspect.region_overlay  # the same viewer, slide and overlay

pytestmark = pytest.mark.viewer


@pytest.fixture
def notes(monkeypatch):
    """Notifications the overlay panel shows, as (kind, text)."""
    seen: list[tuple[str, str]] = []
    for kind in ("info", "warning", "error"):
        monkeypatch.setattr(overlay, f"show_{kind}", lambda text, k=kind: seen.append((k, text)))
    return seen


def click(viewer, qtbot, rc):
    canvas = viewer.window._qt_viewer.canvas.native
    point = _point(viewer, rc)
    qtbot.mouseMove(canvas, point)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=point)
    qtbot.wait(10)


def test_accept_prediction_by_key_then_set_truth_by_button(region_overlay, qtbot, notes):
    viewer, controls, annotation = region_overlay
    canvas = viewer.window._qt_viewer.canvas.native
    click(viewer, qtbot, (200, 200))  # region 4: true dcis, predicted nneo
    assert controls.picked_row == 0
    assert not controls.mask_view.visible  # built from a table alone: no masks to show
    qtbot.keyClick(canvas, Qt.Key.Key_Slash)  # accept the prediction
    assert list(annotation.features["label"]) == ["nneo", "indc"]
    np.testing.assert_allclose(annotation.edge_color[0], palette.rgba("nneo"))
    assert controls.corrected == {4} and not controls.pmap.wrong.any()
    assert "0 wrong" in controls.summary.value
    assert controls.errors.data.max() == 0  # the error outline went with it

    controls.true_class.value = "indc"
    qtbot.mouseClick(controls.set_truth_button.native, Qt.MouseButton.LeftButton)
    assert list(annotation.features["label"]) == ["indc", "indc"]
    assert list(controls.pmap.truth) == ["indc", "indc"] and controls.pmap.wrong.sum() == 1
    assert "errors of indc (1)" in controls.showing.choices
    assert "dcis -> indc" not in controls.status.value and "nneo -> indc" in controls.status.value
    assert not notes


def test_relabel_without_patch_or_annotation_changes_nothing(region_overlay, qtbot, notes):
    viewer, controls, annotation = region_overlay
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.layers.selection.active = controls.prediction
    qtbot.keyClick(canvas, Qt.Key.Key_Slash)  # nothing inspected yet
    assert notes[-1][1].startswith("napari-crystal: accept prediction: no patch selected")
    assert controls.set_truth("norm") is False
    assert list(annotation.features["label"]) == ["dcis", "indc"]

    click(viewer, qtbot, (700, 1000))  # region 9
    viewer.layers.remove(annotation)
    assert controls.set_truth("norm") is False
    assert "no annotation layer holds region 9, nothing changed" in notes[-1][1]
    assert list(controls.pmap.truth) == ["dcis", "indc"] and not controls.corrected
    assert controls.save_annotation() is None
    assert "nothing saved" in notes[-1][1]


def test_retrain_needs_a_model_and_corrections(region_overlay, notes):
    _, controls, _ = region_overlay
    assert controls.retrain() is None  # built without a model file
    assert "no model file" in notes[-1][1] and notes[-1][1].endswith("nothing changed")
    controls.setup = overlay.RetrainSetup("model.skops")
    assert controls.retrain() is None
    assert "no corrections yet" in notes[-1][1]
    assert len(controls.history) == 1 and controls.history[0].wrong == 1


def hover(viewer, rc):
    """What napari does when the mouse moves: the cursor, then the viewer's callbacks."""
    viewer.cursor.position = tuple(float(v) for v in rc)
    for callback in list(viewer.mouse_move_callbacks):
        callback(viewer, None)


def test_removing_an_overlay_layer_removes_panel_keys_and_hover_text(region_overlay, qtbot):
    viewer, controls, _ = region_overlay
    hover(viewer, (200, 200))
    assert text_overlay(viewer).visible and "region 4" in text_overlay(viewer).text
    assert "overlay" in viewer.window.dock_widgets
    viewer.layers.remove(controls.errors)  # any of the three
    assert "overlay" not in viewer.window.dock_widgets
    assert not controls.native.isVisible()
    assert not text_overlay(viewer).visible and text_overlay(viewer).text == ""
    assert controls._on_mouse_move not in viewer.mouse_move_callbacks
    assert overlay.ACCEPT not in {str(k) for k in viewer.keymap}
    hover(viewer, (700, 1000))  # hovering shows nothing any more
    assert not text_overlay(viewer).visible
