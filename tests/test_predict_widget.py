"""Predict slide widget in a real viewer: maps as layers, hover values, presets, bad input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_crystal.plugin.widgets.predict_widget import PredictWidget  # noqa: E402
from test_slidemap import SHAPE, _tissue_source  # noqa: E402

pytestmark = pytest.mark.viewer


@pytest.fixture(scope="module")
def inputs(tiny_corpus, tmp_path_factory):
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.features import FeatureSpec
    from napari_crystal.features.build import build_feature_dataset
    from napari_crystal.synthetic.pyramid import write_pyramid
    from napari_crystal.training import save_model

    root = tmp_path_factory.mktemp("predict-widget")
    slide = write_pyramid(root / "half.svs", _tissue_source, SHAPE, 0.5, min_side=256)
    blank = write_pyramid(
        root / "blank.svs", lambda t, c, h, w: np.full((h, w, 3), 244, np.uint8), SHAPE, 0.5,
        min_side=256,
    )  # fmt: skip
    ds = build_feature_dataset(
        tiny_corpus, "train", root / "colour.zarr", FeatureSpec("colour", mpp=2.0)
    )
    model = save_model(train_on_dataset(ds, params={"n_estimators": 5}), root / "colour.skops")
    return slide, blank, model


def docked(viewer) -> PredictWidget:
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict slide")
    return widget


def wait(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=timeout)


def test_presets_set_frame_and_window(make_napari_viewer):
    widget = docked(make_napari_viewer())
    widget.preset.value = "student"
    assert (widget.frame.value, widget.window.value) == (250, 500)
    widget.preset.value = "nedc"
    assert (widget.frame.value, widget.window.value) == (128, 256)


def test_predict_adds_a_probability_layer_per_class(make_napari_viewer, qtbot, inputs, tmp_path):
    slide, _, model = inputs
    viewer = make_napari_viewer()
    widget = docked(viewer)
    widget.slide.value, widget.model.value, widget.out.value = slide, model, tmp_path / "maps"
    assert widget.run() is not None
    wait(qtbot, widget)
    assert widget.runner.last_error is None, widget.runner.last_error
    loaded = widget.loaded
    probs = [ly for ly in viewer.layers if ly.metadata.get("crystal_map") == "probability"]
    assert [ly.metadata["class"] for ly in probs] == list(loaded.classes)
    assert all(ly.multiscale for ly in probs)
    assert probs[0].scale[-1] == 128 and sum(ly.visible for ly in probs) == 1
    classes = [ly for ly in viewer.layers if ly.metadata.get("crystal_map") == "classes"]
    assert len(classes) == 1 and classes[0].data.shape == (12, 16)
    widget.opacity.value = 0.3
    assert all(ly.opacity == pytest.approx(0.3) for ly in probs)
    # hover: the frame under level-0 (300, 200) is tissue; far right is glass
    text = widget.hover_text(300, 200)
    assert text.startswith("frame: ") and len(text.split(", ")) == min(4, len(loaded.classes))
    values = loaded.values_at(300, 200)
    assert values is not None and sum(values.values()) == pytest.approx(1, abs=0.05)
    assert widget.hover_text(300, SHAPE[1] - 10) == ""
    assert (tmp_path / "maps" / "tiles.geojson").is_file()


def test_slide_without_tissue_shows_the_error(make_napari_viewer, qtbot, inputs, tmp_path):
    _, blank, model = inputs
    viewer = make_napari_viewer()
    widget = docked(viewer)
    widget.slide.value, widget.model.value, widget.out.value = blank, model, tmp_path / "none"
    widget.run()
    wait(qtbot, widget)
    assert "no tissue" in str(widget.runner.last_error)
    assert "no tissue" in widget.info.value
    assert not [ly for ly in viewer.layers if "crystal_map" in ly.metadata]
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_missing_inputs_do_not_start(make_napari_viewer):
    widget = docked(make_napari_viewer())
    assert widget.run() is None and "choose" in widget.info.value
