"""Train classifier widget in a real viewer: training from a dataset file and from the mask
widget, the paper's defaults, cancelling, bad input, and the event loop turning meanwhile."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import QTimer  # noqa: E402

from napari_crystal.dataset import Dataset, build_dataset, load_dataset, save_dataset  # noqa: E402
from napari_crystal.errors import Cancelled, DatasetError  # noqa: E402
from napari_crystal.experiment import train_on_dataset  # noqa: E402
from napari_crystal.plugin.widgets._layers import mask_dataset  # noqa: E402
from napari_crystal.plugin.widgets.mask_widget import GALLERY, MaskWidget  # noqa: E402
from napari_crystal.plugin.widgets.train_widget import FROM_FILE, FROM_MASKS, TrainWidget  # noqa: E402
from napari_crystal.training import DEFAULT_PARAMS, load_model  # noqa: E402
from test_mask_widget import first_slide, open_slide_layers  # noqa: E402

pytestmark = pytest.mark.viewer


@pytest.fixture(scope="module")
def train_zarr(tiny_corpus, tmp_path_factory):
    """The tiny corpus's train split as 32x32 threshold masks."""
    out = tmp_path_factory.mktemp("train-widget") / "train.zarr"
    build_dataset(tiny_corpus, "train", out, "threshold", 32, scheduler="sync")
    return out


def random_dataset(n: int, size: int, seed: int = 0) -> Dataset:
    """Blobby random masks in 6 classes of different densities (no slide needed)."""
    rng = np.random.default_rng(seed)
    labels = np.array(["bckg", "norm", "infl", "susp", "dcis", "indc"])[rng.integers(0, 6, n)]
    density = {lab: 0.15 + 0.12 * i for i, lab in enumerate(sorted(set(labels)))}
    coarse = rng.random((n, size // 8, size // 8))
    masks = (
        np.kron(coarse, np.ones((8, 8))) < np.array([density[x] for x in labels])[:, None, None]
    )
    packed = np.packbits(masks.reshape(n, -1), axis=1)
    return Dataset.from_packed(packed, labels, size, slide="random")


def docked(viewer) -> TrainWidget:
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train classifier")
    return widget


def wait(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=timeout)


def test_defaults_are_the_papers(make_napari_viewer):
    widget = docked(make_napari_viewer())
    assert widget.params == DEFAULT_PARAMS
    assert widget.crystals.value == "merge"


def test_train_from_file_saves_the_cli_model(make_napari_viewer, qtbot, train_zarr, tmp_path):
    viewer = make_napari_viewer()
    widget = docked(viewer)
    widget.source.value = FROM_FILE
    widget.dataset_path.value = train_zarr
    widget.n_estimators.value = 10
    out = tmp_path / "model.skops"
    widget.out.value = out
    assert widget.run() is not None
    wait(qtbot, widget)
    assert widget.runner.last_error is None, widget.runner.last_error
    model = load_model(out)
    # the CLI's training of the same dataset with the same settings gives the same forest
    dataset = load_dataset(train_zarr)
    params = {**DEFAULT_PARAMS, "n_estimators": 10}
    direct = train_on_dataset(dataset, crystals="merge", params=params)
    X = np.unpackbits(np.asarray(dataset.packed[:]), axis=1).astype(np.float32)
    assert model.classes == direct.classes and model.params == direct.params
    assert np.array_equal(model.estimator.predict(X), direct.estimator.predict(X))
    # what it trained on: merged crystal classes, counts summing to the dataset
    table = widget.counts.to_dict("list")
    assert table["class"][-1] == "total" and table["patches"][-1] == len(dataset)
    assert dict(zip(table["class"][:-1], table["patches"][:-1], strict=True)) == model.class_counts
    assert not {"cnno", "cdcs", "cidc"} & set(table["class"])
    assert str(out) in widget.status.value and widget.model_path == out


def test_train_from_mask_widget_keep_and_drop(make_napari_viewer, qtbot, tiny_corpus, tmp_path):
    viewer = make_napari_viewer()
    masks = MaskWidget(viewer)
    viewer.window.add_dock_widget(masks)
    image, shapes, ann = open_slide_layers(viewer, first_slide(tiny_corpus))
    masks.image.value, masks.shapes.value = image, shapes
    masks.method.value, masks.size.value = "polygon", 32
    widget = docked(viewer)
    assert widget.source.value == FROM_MASKS and widget.run() is None  # no masks yet
    assert "generate masks first" in widget.status.value
    masks.run()
    qtbot.waitUntil(lambda: not masks.runner.busy, timeout=30_000)
    labels = [r.label for r in ann.regions]
    crystal = {"cnno", "cdcs", "cidc"} & set(labels)
    assert crystal, "the first tiny train slide has crystal regions"
    widget.n_estimators.value = 5
    for mode in ("keep", "drop"):
        widget.crystals.value = mode
        widget.out.value = tmp_path / f"{mode}.skops"
        widget.run()
        wait(qtbot, widget)
        assert widget.runner.last_error is None, widget.runner.last_error
        model = load_model(tmp_path / f"{mode}.skops")
        kept = [x for x in labels if mode == "keep" or x not in crystal]
        assert sum(model.class_counts.values()) == len(kept)
        assert (crystal <= set(model.classes)) == (mode == "keep")
        assert f"{len(masks.dataset)} masks of 32x32" in widget.dataset_info.value


def test_cancel_leaves_no_model_and_controls_come_back(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = docked(viewer)
    path = tmp_path / "random.zarr"
    save_dataset(random_dataset(300, 32), path)
    widget.source.value = FROM_FILE
    widget.dataset_path.value = path
    widget.n_estimators.value = 1000  # sub-forests of 10 trees: many left when we cancel
    out = tmp_path / "cancelled.skops"
    widget.out.value = out
    widget.run()
    controls = [widget.run_button, widget.out, widget.crystals, widget.n_estimators]
    assert not any(w.enabled for w in controls) and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: widget.bar.value >= 1, timeout=30_000)  # some trees grown
    assert widget.bar.max == 1000
    widget.cancel_button.changed.emit(True)
    wait(qtbot, widget, timeout=120_000)  # the core stops between sub-forests
    assert isinstance(widget.runner.last_error, Cancelled)
    assert not out.exists() and not list(tmp_path.glob(".cancelled.skops*"))
    assert "cancelled" in widget.status.value and widget.model is None
    assert all(w.enabled for w in controls) and not widget.cancel_button.enabled


def test_bad_input(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = docked(viewer)
    widget.source.value = FROM_FILE
    out = tmp_path / "model.skops"
    # no dataset file, then no model file
    widget.out.value = out
    assert widget.run() is None and "choose a dataset file" in widget.status.value
    widget.out.value = ""
    widget.dataset_path.value = tmp_path
    assert widget.run() is None and "choose a model file" in widget.status.value
    # a folder that is not a dataset: reported by the worker, nothing written
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not masks")
    widget.dataset_path.value = notes
    widget.out.value = out
    widget.run()
    wait(qtbot, widget)
    assert isinstance(widget.runner.last_error, DatasetError)
    assert "not a napari-crystal dataset" in widget.status.value and not out.exists()
    # a dataset with a single class cannot train a classifier
    one = random_dataset(20, 16)
    one.table.label[:] = "bckg"
    save_dataset(one, tmp_path / "one.zarr")
    widget.dataset_path.value = tmp_path / "one.zarr"
    widget.run()
    wait(qtbot, widget)
    assert "at least 2 classes" in widget.status.value and not out.exists()
    assert widget.run_button.enabled


def test_event_loop_keeps_turning_while_training(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = docked(viewer)
    path = tmp_path / "random.zarr"
    save_dataset(random_dataset(400, 64), path)
    widget.source.value = FROM_FILE
    widget.dataset_path.value = path
    widget.n_estimators.value = 100
    widget.out.value = tmp_path / "model.skops"
    ticks, bar_values = [], set()

    def tick():
        ticks.append(time.perf_counter())
        bar_values.add(widget.bar.value)

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    start = time.perf_counter()
    widget.run()
    wait(qtbot, widget)
    elapsed = time.perf_counter() - start
    timer.stop()
    assert widget.runner.last_error is None, widget.runner.last_error
    during = [t for t in ticks if t <= start + elapsed]
    # a frozen loop would tick ~once; a free one ~100 times a second. Generous: 5 per second.
    assert len(during) >= max(3, elapsed / 0.2), (len(during), elapsed)
    assert len(bar_values) >= 3  # the per-tree progress reached the bar while it ran


def test_docked_from_the_plugin_menu_they_share_the_dataset(
    make_napari_viewer, qtbot, tiny_corpus
):
    viewer = make_napari_viewer()
    _, masks = viewer.window.add_plugin_dock_widget("napari-crystal", "Generate masks")
    _, train = viewer.window.add_plugin_dock_widget("napari-crystal", "Train classifier")
    assert isinstance(masks, MaskWidget) and isinstance(train, TrainWidget)
    image, shapes, _ = open_slide_layers(viewer, first_slide(tiny_corpus))
    masks.image.value, masks.shapes.value = image, shapes
    masks.method.value, masks.size.value = "polygon", 16
    masks.run()
    qtbot.waitUntil(lambda: not masks.runner.busy, timeout=30_000)
    # each widget got its own proxy of the viewer; the dataset is found through either
    assert mask_dataset(train.viewer)[0] is masks.dataset is not None
    assert "16x16 (polygon)" in train.dataset_info.value  # the train widget saw it arrive
    viewer.layers.remove(GALLERY)  # the dataset goes with its gallery
    assert (
        mask_dataset(train.viewer) == (None, None) and "no masks yet" in train.dataset_info.value
    )


def test_import_warm_up_leaves_the_interpreter_as_it_found_it():
    """The warm-up moves the imports' objects to the oldest generation by freezing and at once
    unfreezing: nothing may stay frozen (napari's layers are freed only by the collector), and
    the collector and the GIL switch interval come back as they were."""
    import gc
    import sys

    from napari_crystal.plugin.widgets.train_widget import _import_training_libraries

    interval = sys.getswitchinterval()
    assert gc.isenabled()
    _import_training_libraries()
    assert gc.get_freeze_count() == 0
    assert gc.isenabled() and sys.getswitchinterval() == interval
