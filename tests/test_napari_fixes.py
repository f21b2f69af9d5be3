"""`_napari_fixes.add_editing_later`: a Labels layer added in two steps works like one added whole."""

import numpy as np
from napari.layers import Labels

from napari_crystal.plugin._napari_fixes import EDITING_OVERLAYS, add_editing_later


def test_editing_overlays_come_back_and_work(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = Labels(np.zeros((20, 30), np.uint8))
    restore = add_editing_later(viewer, layer)
    assert layer in viewer.layers
    assert not any(k in layer._overlays for k in EDITING_OVERLAYS)
    canvas = viewer.window._qt_viewer.canvas
    before = len(canvas._layer_overlay_to_visual[layer])
    restore()
    assert all(k in layer._overlays for k in EDITING_OVERLAYS)
    # napari built the overlays' visuals when they came back, as it does on a whole add
    assert len(canvas._layer_overlay_to_visual[layer]) == before + len(EDITING_OVERLAYS)
    for mode in ("paint", "polygon", "pan_zoom"):  # the tools that use them
        layer.mode = mode
    layer.paint((5, 5), 3)
    assert layer.data[5, 5] == 3
    restore()  # a second call changes nothing
    assert all(k in layer._overlays for k in EDITING_OVERLAYS)


def test_a_layer_without_them_is_added_whole(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((4, 4)))
    viewer.layers.remove(image)
    add_editing_later(viewer, image)()
    assert image in viewer.layers
