"""The prediction overlay in a real viewer: right classes at the right places, controls, hover."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_crystal import palette
from napari_crystal.patches import PatchTable, frame_patches

pytest.importorskip("napari")

from napari_crystal.plugin.widgets.overlay import (  # noqa: E402
    ALL,
    ERRORS,
    add_prediction_overlay,
    text_overlay,
)

pytestmark = pytest.mark.viewer
SHAPE = (1000, 1500)  # 4 x 6 frames of 250 px
ci = palette.class_index


def _value(layer, row, col):
    """The layer's value under level-0 ``(row, col)``, through napari's own transforms."""
    r, c = np.round(layer.world_to_data((row, col))).astype(int)
    return int(layer.data[r, c])


def _slide(viewer, shape=SHAPE):
    return viewer.add_image(np.full((*shape, 3), 230, np.uint8), rgb=True, name="slide")


@pytest.fixture
def frame_overlay(make_napari_viewer):
    viewer = make_napari_viewer()
    slide = _slide(viewer)
    table = frame_patches([], SHAPE, frame=250, window=500, slide="s.svs")
    n = len(table)
    truth = np.array(["nneo"] * n, dtype=object)
    truth[[7, 8, 20]] = ["dcis", "dcis", "indc"]
    predicted = truth.copy()
    predicted[7] = "indc"  # frame (1, 1): dcis predicted as indc
    predicted[20] = "nneo"  # frame (3, 2): indc predicted as nneo
    classes = ("dcis", "indc", "nneo")
    proba = np.full((n, 3), 0.1, np.float32)
    proba[7] = (0.3, 0.6, 0.1)
    controls = add_prediction_overlay(
        viewer, table, predicted, truth.astype(str), proba, classes, shape=SHAPE, slide=slide
    )
    return viewer, controls, slide


def test_frame_overlay(frame_overlay):
    """One viewer (they are slow to make): classes and places, show, grid, hover."""
    viewer, c, slide = frame_overlay
    _classes_at_the_right_places(c)
    _show_errors_only_and_one_class(c)
    _grid_side_by_side_and_back(viewer, c)
    _hover(viewer, c)


def _classes_at_the_right_places(c):
    # level-0 pixel (300, 300) lies in frame (1, 1); (999, 749) in frame (3, 2), its last row
    assert _value(c.prediction, 300, 300) == ci("indc")
    assert _value(c.truth, 300, 300) == ci("dcis")
    assert _value(c.errors, 300, 300) == ci("dcis")
    assert _value(c.prediction, 999, 749) == ci("nneo") and _value(c.errors, 999, 749) == ci(
        "indc"
    )
    assert _value(c.prediction, 249, 249) == ci("nneo") and _value(c.errors, 249, 249) == 0
    assert _value(c.prediction, 250, 500) == ci("dcis") and _value(c.errors, 250, 500) == 0
    # edges: 249 is still frame row 0, 250 is row 1
    assert _value(c.prediction, 249, 300) == ci("nneo") and _value(c.prediction, 250, 300) == ci(
        "indc"
    )
    # same colours as the reader's palette
    assert np.allclose(c.prediction.colormap.map(ci("indc"))[:3], palette.rgba("indc")[:3])
    assert c.errors.contour > 0


def _show_errors_only_and_one_class(c):
    assert c.showing.choices == (ALL, ERRORS, "errors of dcis (1)", "errors of indc (1)")
    c.showing.value = ERRORS
    assert _value(c.prediction, 100, 100) == 0 and _value(c.prediction, 300, 300) == ci("indc")
    assert np.count_nonzero(c.prediction.data) == 2
    c.showing.value = "errors of indc (1)"
    assert np.argwhere(c.prediction.data).tolist() == [[3, 2]]
    assert _value(c.truth, 999, 749) == ci("indc") and _value(c.errors, 300, 300) == 0
    c.showing.value = ALL
    assert np.count_nonzero(c.prediction.data) == 24


def _grid_side_by_side_and_back(viewer, c):
    before = [layer.name for layer in viewer.layers]
    c.grid.value = True
    assert viewer.grid.enabled and c.truth.visible and c.prediction.visible
    positions = {layer.name: viewer.grid.position(i, viewer.layers) for i, layer in
                 enumerate(viewer.layers) if layer.visible}  # fmt: skip
    assert positions["prediction"] == positions["errors"] == positions["slide (grid)"]
    assert positions["truth"] == positions["slide"] != positions["prediction"]
    c.grid.value = False
    assert not viewer.grid.enabled
    assert [layer.name for layer in viewer.layers] == before


def _hover(viewer, c):
    viewer.cursor.position = (300.0, 300.0)
    c._on_mouse_move(viewer, None)
    assert "true dcis, predicted indc" in c.hover.value and "indc 0.60" in c.hover.value
    text = text_overlay(viewer)
    assert text.visible and "dcis" in text.text


def test_region_overlay_fills_polygons(make_napari_viewer):
    viewer = make_napari_viewer()
    slide = _slide(viewer)
    tri = np.array([[100, 100], [100, 500], [500, 100]], float)
    sq = np.array([[600, 800], [600, 1200], [900, 1200], [900, 800]], float)
    table = PatchTable(
        slide=["s.svs"] * 2, region_id=[4, 9], label=["dcis", "indc"], top=[100, 600],
        left=[100, 800], height=[401, 301], width=[401, 401], level=[0, 0],
        kind=["region"] * 2, index=[0, 1],
    )  # fmt: skip
    regions = [SimpleNamespace(region_id=4, label="dcis", coords=tri),
               SimpleNamespace(region_id=9, label="indc", coords=sq)]  # fmt: skip
    c = add_prediction_overlay(
        viewer, table, ["nneo", "indc"], ["dcis", "indc"], annotation=SimpleNamespace(
            regions=regions), shape=SHAPE, slide=slide,
    )  # fmt: skip
    assert _value(c.prediction, 150, 150) == ci("nneo") and _value(c.errors, 150, 150) == ci(
        "dcis"
    )
    assert _value(c.prediction, 450, 450) == 0  # in the triangle's box, outside the triangle
    assert _value(c.prediction, 750, 1000) == ci("indc") and _value(c.errors, 750, 1000) == 0
    assert _value(c.truth, 150, 150) == ci("dcis")


def test_layers_added_one_per_event_loop_turn(make_napari_viewer, qtbot):
    """The widgets' way: a layer per turn of the event loop, then ``on_ready``; the same
    layers, visibility and outlines as when everything is added at once."""
    from napari_crystal.plugin.widgets.overlay import add_overlay_layers
    from napari_crystal.predictions import build_prediction_map

    viewer = make_napari_viewer()
    slide = _slide(viewer)
    table = frame_patches([], SHAPE, frame=250, window=500, slide="s.svs")
    labels = np.array(["nneo", "dcis"])[np.arange(len(table)) % 2]
    predicted = labels.copy()
    predicted[3] = "indc"
    pmap = build_prediction_map(table, predicted, labels, None, (), None, SHAPE)
    ready = []
    assert add_overlay_layers(viewer, pmap, slide=slide, on_ready=ready.append) is None
    assert len(viewer.layers) == 1  # nothing yet: the first layer comes on the next turn
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=5_000)
    assert not ready
    qtbot.waitUntil(lambda: bool(ready), timeout=10_000)
    staged = ready[0]
    at_once = add_overlay_layers(viewer, pmap, name="again", slide=slide)
    for ours, theirs in zip(staged.layers, at_once.layers, strict=True):
        assert ours in viewer.layers
        assert (ours.visible, ours.contour, ours.opacity) == (
            theirs.visible, theirs.contour, theirs.opacity,
        )  # fmt: skip
        np.testing.assert_array_equal(ours.data, theirs.data)
    assert not staged.truth.visible and staged.errors.visible and staged.errors.contour == 1
