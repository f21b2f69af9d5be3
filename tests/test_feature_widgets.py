"""Feature sets from the widgets: Train's choice is stored in the model as the CLI stores it;
Evaluate (on the open slide) and the core use the model's set by themselves."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_crystal.dataset import build_dataset, load_dataset  # noqa: E402
from napari_crystal.plugin.widgets import _runner  # noqa: E402
from napari_crystal.plugin.widgets.evaluate_widget import SLIDE, EvaluateWidget  # noqa: E402
from napari_crystal.plugin.widgets.mask_widget import MaskWidget  # noqa: E402
from napari_crystal.plugin.widgets.train_widget import FROM_FILE, TrainWidget  # noqa: E402
from napari_crystal.training import load_model  # noqa: E402
from test_mask_widget import first_slide, open_slide_layers  # noqa: E402

pytestmark = pytest.mark.viewer


@pytest.fixture(scope="module")
def zarrs(tiny_corpus, tmp_path_factory):
    """Train as 32-px masks, and as colour rows at 2 um/px made by the CLI."""
    from napari_crystal.cli import main

    out = tmp_path_factory.mktemp("feature-widgets")
    build_dataset(tiny_corpus, "train", out / "train.zarr", size=32, scheduler="sync")
    assert main(["dataset", str(tiny_corpus), "--split", "train", "--out",
                 str(out / "colour.zarr"), "--features", "colour", "--mpp", "2",
                 "--scheduler", "sync", "--quiet"]) == 0  # fmt: skip
    return out


@pytest.fixture
def errors(monkeypatch):
    from napari_crystal.plugin.widgets import train_widget

    seen = []
    monkeypatch.setattr(_runner, "show_error", seen.append)
    monkeypatch.setattr(train_widget, "show_error", seen.append)
    return seen


def _train(qtbot, widget, out):
    widget.out.value = out
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=120_000)


def test_train_widget_feature_choice_makes_the_cli_model(
    make_napari_viewer, qtbot, zarrs, tmp_path, errors
):
    """colour at 2 um/px from a mask dataset file: the CLI's rows, settings and forest."""
    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train classifier")
    assert w.features.value == "mask" and w.mpp.native.isHidden() and w.stain.native.isHidden()
    w.source.value = FROM_FILE
    w.dataset_path.value = zarrs / "train.zarr"
    w.n_estimators.value = 10
    w.features.value = "colour"
    assert not w.mpp.native.isHidden() and not w.stain.native.isHidden()
    w.mpp.value = 2.0
    _train(qtbot, w, tmp_path / "colour.skops")
    assert w.runner.last_error is None, w.runner.last_error
    model = load_model(tmp_path / "colour.skops")
    cli = load_model_trained_by_cli(zarrs, tmp_path)
    assert model.meta["features"]["feature_set"] == "colour"
    assert model.meta["features"] == cli.meta["features"]
    assert model.training_hash == cli.training_hash  # the same rows and labels
    assert model.meta["training"] == cli.meta["training"]
    assert "colour at 2 um/px" in w.status.value
    # a feature dataset file: its set is picked; another set is refused naming both
    w.dataset_path.value = zarrs / "colour.zarr"
    assert w.features.value == "colour" and "colour at 2 um/px" in w.dataset_info.value
    w.features.value = "texture"
    w.out.value = tmp_path / "texture.skops"
    assert w.run() is None and not w.runner.busy  # refused before any work
    assert errors[-1].startswith("napari-crystal: the dataset holds colour at 2 um/px")
    assert "rows, not texture" in errors[-1]
    assert not (tmp_path / "texture.skops").exists()


def load_model_trained_by_cli(zarrs, tmp_path):
    from napari_crystal.cli import main

    out = tmp_path / "cli.skops"
    assert main(["train", str(zarrs / "colour.zarr"), "--out", str(out), "--trees", "10",
                 "--quiet"]) == 0  # fmt: skip
    return load_model(out)


def test_feature_fields_are_remembered(make_napari_viewer, qtbot):
    from napari_crystal.plugin.widgets import _persist

    viewer = make_napari_viewer()
    first = TrainWidget(viewer)
    viewer.window.add_dock_widget(first, name="first")
    first.features.value, first.mpp.value, first.stain.value = "texture", 1.5, "reinhard"
    qtbot.wait(_persist.SAVE_DELAY_MS + 200)
    again = TrainWidget(viewer)
    viewer.window.add_dock_widget(again, name="again")
    assert (again.features.value, again.mpp.value, again.stain.value) == (
        "texture", 1.5, "reinhard",
    )  # fmt: skip
    assert not again.mpp.native.isHidden()


def test_drawn_masks_to_a_feature_model_evaluated_on_the_open_slide(
    make_napari_viewer, qtbot, tiny_corpus, tmp_path, errors
):
    """Masks from drawn layers, a morphology model from them (the regions' outlines come
    from the layer), evaluated on the open slide with its own feature set."""
    viewer = make_napari_viewer()
    masks = MaskWidget(viewer)
    viewer.window.add_dock_widget(masks, name="masks")
    slide = first_slide(tiny_corpus)
    image, shapes, ann = open_slide_layers(viewer, slide)
    masks.image.value, masks.shapes.value = image, shapes
    masks.size.value = 32
    masks.run()
    qtbot.waitUntil(lambda: not masks.runner.busy, timeout=60_000)
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="train")
    w.n_estimators.value, w.features.value, w.mpp.value = 5, "morphology", 2.0
    _train(qtbot, w, tmp_path / "morph.skops")
    assert w.runner.last_error is None, (w.runner.last_error, errors)
    model = load_model(tmp_path / "morph.skops")
    assert model.meta["features"]["feature_set"] == "morphology"
    assert model.meta["training"]["slides"] == [slide.stem]
    assert sum(model.class_counts.values()) == len(ann.regions)

    ev = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(ev, name="evaluate")
    ev.model.value = tmp_path / "morph.skops"
    ev.source.value = SLIDE
    ev.slide.value, ev.annotation_layer.value = image, shapes
    ev.run()
    qtbot.waitUntil(lambda: not ev.runner.busy, timeout=60_000)
    assert ev.result is not None, errors
    report = ev.report()
    assert report.n == len(ann.regions)
    # the same as the core on the same rows: predictions of the model's own feature rows
    rows = ev.result.slide[0].dataset
    assert rows.feature_set == "morphology" and rows.packed.shape[1] == len(
        model.meta["feature_names"]
    )
    assert np.array_equal(
        ev.result.slide[0].predicted, model.estimator.predict(np.asarray(rows.packed))
    )


def test_core_refuses_a_mask_dataset_for_a_feature_model_naming_both(zarrs, tmp_path):
    from napari_crystal.errors import ModelError
    from napari_crystal.experiment import check_evaluation_inputs, train_on_dataset
    from napari_crystal.training import save_model

    model = train_on_dataset(load_dataset(zarrs / "colour.zarr"), params={"n_estimators": 5})
    save_model(model, tmp_path / "c.skops")
    with pytest.raises(ModelError, match="made with mask .* trained on colour at 2 um/px"):
        check_evaluation_inputs([tmp_path / "c.skops"], zarrs / "train.zarr")
    check_evaluation_inputs([tmp_path / "c.skops"], zarrs / "colour.zarr")
