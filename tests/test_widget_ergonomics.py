"""Widget ergonomics: layer boxes that choose the only fitting layer, short notifications."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

pytestmark = pytest.mark.viewer


def _slide_and_annotation(viewer):
    viewer.add_image(np.zeros((64, 64)), name="thumbnail")  # not from a slide file
    slide = viewer.add_image(np.zeros((64, 64)), name="slide", metadata={"path": "/x/slide.svs"})
    viewer.add_shapes(name="scribbles")
    annotation = viewer.add_shapes(
        [np.array([[1, 1], [1, 9], [9, 9]])],
        shape_type="polygon",
        features={"label": ["dcis"]},
        name="slide annotation",
    )
    return slide, annotation


def test_layer_boxes_choose_the_only_slide_and_annotation(make_napari_viewer):
    from napari_crystal.plugin.widgets.mask_widget import MaskWidget
    from napari_crystal.plugin.widgets.overlay import PredictionOverlayWidget

    viewer = make_napari_viewer()
    slide, annotation = _slide_and_annotation(viewer)
    mask = MaskWidget(viewer)
    overlay = PredictionOverlayWidget(viewer)
    for widget in (mask, overlay):
        viewer.window.add_dock_widget(widget)
    assert mask.image.value is slide and mask.shapes.value is annotation
    # not "(region boxes)" when an annotation is open
    assert overlay.slide.value is slide and overlay.annotation_layer.value is annotation


def test_layer_boxes_follow_layers_opened_later_but_never_guess(make_napari_viewer):
    from napari_crystal.plugin.widgets.mask_widget import MaskWidget

    viewer = make_napari_viewer()
    mask = MaskWidget(viewer)
    viewer.window.add_dock_widget(mask)
    assert mask.image.value is None and mask.shapes.value is None
    slide, annotation = _slide_and_annotation(viewer)
    assert mask.image.value is slide and mask.shapes.value is annotation
    viewer.add_image(np.zeros((8, 8)), name="second", metadata={"path": "/x/other.svs"})
    assert mask.image.value is slide  # a choice made stays; two slides: no guessing


def test_brief_errors_lead_with_the_reason():
    from napari_crystal.errors import AnnotationError, DatasetError

    deep = "/data/projects/2026/breast/nedc_bc/v1.0.0/train/00000042/slide_0001.csv"
    assert AnnotationError(deep, "no label column", 7).brief() == (
        "no label column (slide_0001.csv:7)"
    )
    assert DatasetError(None, "choose a dataset").brief() == "choose a dataset"


def test_a_failed_job_notification_starts_with_the_reason(qtbot, monkeypatch):
    from magicgui.widgets import ProgressBar, PushButton

    from napari_crystal.errors import DatasetError
    from napari_crystal.plugin.widgets import _runner

    shown = []
    monkeypatch.setattr(_runner, "show_error", shown.append)

    def job(progress=None, cancel=None):
        raise DatasetError("/very/long/folder/of/studies/run-17/masks.zarr", "not a dataset")

    runner = _runner.Runner(ProgressBar(), [PushButton()], PushButton())
    runner.start(job, label="training", on_done=print)
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert shown == ["napari-crystal: training failed: not a dataset (masks.zarr)"]


@pytest.mark.parametrize("replace", [False, True])
def test_training_asks_before_replacing_a_model_file(make_napari_viewer, tmp_path, monkeypatch,
                                                     replace):  # fmt: skip
    from napari_crystal.plugin.widgets import train_widget
    from napari_crystal.plugin.widgets.train_widget import FROM_FILE, TrainWidget

    asked = []
    monkeypatch.setattr(
        train_widget, "confirm_overwrite", lambda parent, path: asked.append(path) or replace
    )
    started = []
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    monkeypatch.setattr(widget.runner, "start", lambda *a, **k: started.append(a) or "job")
    model = tmp_path / "model.skops"
    model.write_bytes(b"an earlier model")
    widget.source.value = FROM_FILE
    widget.dataset_path.value = tmp_path / "train.zarr"
    widget.out.value = model
    result = widget.run()
    assert asked == [model]
    assert (result == "job") is replace and bool(started) is replace
    assert model.read_bytes() == b"an earlier model"
    if not replace:
        assert "model.skops kept as it was" in widget.status.value


def test_fields_are_remembered_between_sessions(make_napari_viewer, qtbot, tmp_path):
    import json
    import os

    from napari_crystal.plugin.widgets import _persist
    from napari_crystal.plugin.widgets.train_widget import TrainWidget

    viewer = make_napari_viewer()
    first = TrainWidget(viewer)
    viewer.window.add_dock_widget(first)
    first.n_estimators.value = 123
    first.criterion.value = "entropy"
    first.dataset_path.value = tmp_path
    qtbot.wait(_persist.SAVE_DELAY_MS + 200)
    folder = _persist.config_dir()
    assert os.environ["NAPARI_CRYSTAL_CONFIG"] == str(folder)  # not napari's settings
    assert sorted(p.name for p in folder.iterdir()) == [_persist.FILE_NAME]  # no temporaries
    saved = json.loads((folder / _persist.FILE_NAME).read_text())["train"]
    assert saved["n_estimators"] == 123 and saved["dataset"] == str(tmp_path)

    second = TrainWidget(viewer)  # the next session
    viewer.window.add_dock_widget(second)
    assert second.n_estimators.value == 123 and second.criterion.value == "entropy"
    assert str(second.dataset_path.value) == str(tmp_path)


def test_remembered_values_that_no_longer_fit_are_skipped(make_napari_viewer, tmp_path):
    import json

    from napari_crystal.plugin.widgets import _persist
    from napari_crystal.plugin.widgets.train_widget import TrainWidget

    folder = _persist.config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _persist.FILE_NAME).write_text(
        json.dumps(
            {
                "train": {
                    "criterion": "no such criterion",
                    "n_estimators": 77,
                    "dataset": str(tmp_path / "gone.zarr"),
                }
            }
        )  # fmt: skip
    )
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.n_estimators.value == 77
    assert widget.criterion.value == "gini"  # the default, not an error
    assert "gone.zarr" not in str(widget.dataset_path.value)
