"""Inspecting the prediction overlay: click a patch, step through errors by key, the legend."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import QPoint, Qt  # noqa: E402

from napari_crystal.patches import PatchTable  # noqa: E402
from napari_crystal.plugin.widgets.overlay import (  # noqa: E402
    NEXT_ERROR,
    add_prediction_overlay,
)

pytestmark = pytest.mark.viewer
SHAPE = (1000, 1500)


def _point(viewer, rc) -> QPoint:
    canvas = viewer.window._qt_viewer.canvas.native
    camera = viewer.scene.camera
    y, x = (np.asarray(rc, float) - np.asarray(camera.center[-2:])) * camera.zoom
    return QPoint(int(round(x + canvas.width() / 2)), int(round(y + canvas.height() / 2)))


@pytest.fixture
def region_overlay(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    slide = viewer.add_image(np.full((*SHAPE, 3), 230, np.uint8), rgb=True, name="slide")
    tri = np.array([[100, 100], [100, 500], [500, 100]], float)
    sq = np.array([[600, 800], [600, 1200], [900, 1200], [900, 800]], float)
    annotation = viewer.add_shapes(
        [tri, sq], shape_type="polygon", name="annotation",
        features={"label": ["dcis", "indc"], "region_id": [4, 9]},
    )  # fmt: skip
    table = PatchTable(
        slide=["s.svs"] * 2, region_id=[4, 9], label=["dcis", "indc"], top=[100, 600],
        left=[100, 800], height=[401, 301], width=[401, 401], level=[0, 0],
        kind=["region"] * 2, index=[0, 1],
    )  # fmt: skip
    regions = [SimpleNamespace(region_id=4, label="dcis", coords=tri),
               SimpleNamespace(region_id=9, label="indc", coords=sq)]  # fmt: skip
    proba = np.array([[0.3, 0.1, 0.6], [0.1, 0.8, 0.1]], np.float32)
    controls = add_prediction_overlay(
        viewer, table, ["nneo", "indc"], ["dcis", "indc"], proba, ("dcis", "indc", "nneo"),
        annotation=SimpleNamespace(regions=regions), shape=SHAPE, slide=slide,
    )  # fmt: skip
    viewer.scene.camera.center = (500, 750)
    viewer.scene.camera.zoom = 0.4
    qtbot.wait(20)
    return viewer, controls, annotation


def test_click_a_patch_shows_its_classes_and_selects_its_region(region_overlay, qtbot):
    viewer, controls, annotation = region_overlay
    canvas = viewer.window._qt_viewer.canvas.native
    point = _point(viewer, (200, 200))  # inside region 4's triangle
    qtbot.mouseMove(canvas, point)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=point)
    qtbot.wait(10)
    assert controls.picked_row == 0
    assert "region 4: true dcis, predicted nneo" in controls.picked.value
    assert "nneo 0.60, dcis 0.30, indc 0.10" in controls.picked.value
    assert set(annotation.selected_data) == {0}


def test_error_keys_go_to_each_wrong_patch(region_overlay, qtbot):
    viewer, controls, _ = region_overlay
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.layers.selection.active = controls.prediction
    qtbot.keyClick(canvas, Qt.Key.Key_Period)  # the only error: region 4's patch
    assert controls.picked_row == 0
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], [300.5, 300.5])
    qtbot.keyClick(canvas, Qt.Key.Key_Comma)
    assert controls.picked_row == 0  # previous of the only error is itself
    assert NEXT_ERROR in {str(k) for k in viewer.keymap}
    viewer.layers.remove(controls.prediction)  # the overlay is gone: keys given back
    assert NEXT_ERROR not in {str(k) for k in viewer.keymap}


def test_legend_names_the_classes_shown(region_overlay):
    _, controls, _ = region_overlay
    legend = controls.legend.value
    for label in ("dcis", "indc", "nneo", "wrong"):
        assert label in legend
    assert legend.index("nneo") < legend.index("dcis") < legend.index("indc")  # palette order
