"""The pathologist's whole loop in one viewer, by key presses and clicks: draw a region, label
it by key, save, train, evaluate, click an error, accept the prediction, save, retrain."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import Qt  # noqa: E402

from napari_crystal.dataset import build_dataset  # noqa: E402
from napari_crystal.io import read_annotation  # noqa: E402
from napari_crystal.plugin.widgets import _runner, overlay  # noqa: E402
from napari_crystal.plugin.widgets.annotate_widget import AnnotateWidget  # noqa: E402
from napari_crystal.plugin.widgets.evaluate_widget import SLIDE, EvaluateWidget  # noqa: E402
from napari_crystal.plugin.widgets.train_widget import FROM_FILE, TrainWidget  # noqa: E402
from napari_crystal.training import load_model  # noqa: E402
from test_annotate_widget import canvas_of, click, draw_polygon, look_at, press  # noqa: E402
from test_mask_widget import open_slide_layers  # noqa: E402

pytestmark = pytest.mark.viewer


@pytest.fixture(scope="module")
def train_zarr(tiny_corpus, tmp_path_factory):
    """The tiny corpus's train split as 32-px threshold masks."""
    out = tmp_path_factory.mktemp("loop") / "train.zarr"
    build_dataset(tiny_corpus, "train", out, "threshold", 32, scheduler="sync")
    return out


@pytest.fixture
def messages(monkeypatch):
    seen: list[tuple[str, str]] = []
    for module in (_runner, overlay):
        for kind in ("show_error", "show_info", "show_warning"):
            if hasattr(module, kind):
                monkeypatch.setattr(module, kind, lambda m, k=kind: seen.append((k, m)))
    return seen


def dock(viewer, widget, name):
    viewer.window.add_dock_widget(widget, name=name)
    return widget


def finish(qtbot, runner, timeout=120_000):
    qtbot.waitUntil(lambda: not runner.busy, timeout=timeout)


def test_draw_label_save_train_evaluate_correct_retrain(
    make_napari_viewer, qtbot, tiny_corpus, train_zarr, tmp_path, messages
):
    source = sorted((tiny_corpus / "eval").glob("*.svs"))[0]
    for suffix in (".svs", ".csv"):  # a copy: saving must not touch the session's corpus
        shutil.copy(source.with_suffix(suffix), tmp_path / source.with_suffix(suffix).name)
    svs, csv = tmp_path / source.name, tmp_path / source.with_suffix(".csv").name
    viewer = make_napari_viewer(show=True)
    image, shapes, ann = open_slide_layers(viewer, svs)
    n_regions = len(ann.regions)
    assert tuple(image.scale[-2:]) == (1, 1)  # world = level-0 pixels below

    # draw a region, label it by key, save
    annotate = dock(viewer, AnnotateWidget(viewer), "Annotate")
    assert annotate.layer is shapes
    look_at(viewer, qtbot, (2550, 750), 0.15)
    viewer.layers.selection.active = shapes
    shapes.mode = "add_polygon"
    press(viewer, qtbot, "8")  # dcis for the shapes drawn next
    draw_polygon(viewer, qtbot, shapes, [(2400, 600), (2400, 900), (2700, 900)])
    assert shapes.nshapes == n_regions + 1 and shapes.features["label"].iloc[-1] == "dcis"
    qtbot.mouseClick(annotate.save_button.native, Qt.MouseButton.LeftButton)
    saved = read_annotation(csv)
    assert len(saved.regions) == n_regions + 1 and saved.regions[-1].label == "dcis"
    shapes.mode = "pan_zoom"

    # train
    train = dock(viewer, TrainWidget(viewer), "Train")
    train.source.value = FROM_FILE
    train.dataset_path.value = train_zarr
    train.n_estimators.value = 5
    train.out.value = tmp_path / "model.skops"
    qtbot.mouseClick(train.run_button.native, Qt.MouseButton.LeftButton)
    finish(qtbot, train.runner)
    assert (tmp_path / "model.skops").is_file(), messages

    # evaluate on the open slide and show the overlay
    evaluate = dock(viewer, EvaluateWidget(viewer), "Evaluate")
    evaluate.model.value = tmp_path / "model.skops"
    evaluate.source.value = SLIDE
    evaluate.slide.value, evaluate.annotation_layer.value = image, shapes
    qtbot.mouseClick(evaluate.run_button.native, Qt.MouseButton.LeftButton)
    finish(qtbot, evaluate.runner)
    qtbot.mouseClick(evaluate.overlay_button.native, Qt.MouseButton.LeftButton)
    finish(qtbot, evaluate.runner)
    qtbot.waitUntil(lambda: evaluate.overlay is not None, timeout=10_000)  # a layer per turn
    o = evaluate.overlay
    assert o is not None and len(o.pmap.table) == n_regions + 1, messages
    assert len(o.history) == 1 and o.history[0].wrong == evaluate.report().incorrect > 0

    # click an error
    row = int(np.flatnonzero(o.pmap.wrong)[0])
    info = o.pmap.info(row)
    pixels = np.argwhere(o.pmap.raster.index == row)
    centre = (pixels[len(pixels) // 2] + 0.5) * o.pmap.raster.scale
    look_at(viewer, qtbot, tuple(centre), 0.5)
    viewer.layers.selection.active = o.prediction
    click(viewer, qtbot, centre)
    assert o.picked_row == row
    seen = o.masks(row)  # the mask the model classified, shown in the panel
    assert np.array_equal(seen, evaluate.result.slide[0].dataset.mask(row)) and seen.shape == (
        32,
        32,
    )
    assert o.mask_view.visible and not o.mask_view.native.pixmap().isNull()
    index = int(np.flatnonzero(shapes.features["region_id"].to_numpy() == info.region_id)[0])
    assert shapes.selected_data == {index}

    # accept the prediction by key, save through the panel
    qtbot.keyClick(canvas_of(viewer), Qt.Key.Key_Slash)
    assert shapes.features["label"].iloc[index] == info.predicted != info.truth
    assert o.corrected == {info.region_id}
    qtbot.mouseClick(o.save_button.native, Qt.MouseButton.LeftButton)
    labels = {r.region_id: r.label for r in read_annotation(csv).regions}
    assert labels[info.region_id] == info.predicted

    # retrain and re-evaluate: a second round in the history, a second model file
    qtbot.mouseClick(o.retrain_button.native, Qt.MouseButton.LeftButton)
    finish(qtbot, o.runner)
    assert len(o.history) == 2, messages
    assert o.masks is not None and not o.mask_view.visible  # until a patch is inspected again
    assert o.picked.value == overlay.PICK_HINT and o.picked_row is None
    # the hover text under the unmoved cursor is the new map's: the corrected truth
    assert f"true {info.predicted}" in o.hover.value, o.hover.value
    assert f"true {info.truth}" not in o.hover.value
    second = o.history[1]
    assert second.number == 2 and second.corrections == 1 and second.n == n_regions + 1
    assert second.model == "model-round2.skops"
    assert [row[0] for row in o.history_table.value["data"]] == ["1", "2 (optimistic)"]
    model = load_model(tmp_path / "model-round2.skops")
    assert model.meta["retrained"]["regions"] == [info.region_id]
    assert model.params == load_model(tmp_path / "model.skops").params
    truth = dict(zip(o.pmap.table.region_id.tolist(), o.pmap.truth.tolist(), strict=True))
    assert truth[info.region_id] == info.predicted  # scored against the corrected annotation
    assert o.prediction in viewer.layers and o.setup.model == str(tmp_path / "model-round2.skops")
