"""Generate masks widget in a real viewer, on the tiny corpus: layers and corpus sources, gallery,
counts, selection preview, saving, bad input and cancelling."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_crystal import dataset as core  # noqa: E402
from napari_crystal import palette
from napari_crystal.errors import Cancelled  # noqa: E402
from napari_crystal.io.nedc import read_annotation  # noqa: E402
from napari_crystal.masks import resize_mask  # noqa: E402
from napari_crystal.plugin.widgets import mask_widget  # noqa: E402
from napari_crystal.plugin.widgets._layers import mask_dataset  # noqa: E402
from napari_crystal.plugin.widgets.mask_widget import (  # noqa: E402
    CORPUS,
    GALLERY,
    LABELS,
    PREVIEW,
    MaskWidget,
)

pytestmark = pytest.mark.viewer


def first_slide(corpus: Path, split: str = "train") -> Path:
    return sorted((corpus / split).glob("*.svs"))[0]


def open_slide_layers(viewer, svs: Path):
    """Open a slide through the plugin's reader: (image layer, Shapes layer, Annotation)."""
    import napari.layers

    layers = viewer.open(str(svs), plugin="napari-crystal")
    image = next(x for x in layers if isinstance(x, napari.layers.Image))
    shapes = next(x for x in layers if isinstance(x, napari.layers.Shapes))
    return image, shapes, read_annotation(svs.with_suffix(".csv"))


def docked(viewer) -> MaskWidget:
    widget = MaskWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate masks")
    return widget


def wait(qtbot, widget, timeout=30_000):
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=timeout)


def test_layers_gallery_counts_selection_and_save(
    make_napari_viewer, qtbot, tiny_corpus, tmp_path
):
    viewer = make_napari_viewer()
    svs = first_slide(tiny_corpus)
    image, shapes, ann = open_slide_layers(viewer, svs)
    widget = docked(viewer)
    assert widget.image.value is None or widget.image.value is image  # picked from the viewer
    widget.image.value, widget.shapes.value = image, shapes
    widget.size.value = 64
    worker = widget.run()
    assert worker is not None and not widget.run_button.enabled and widget.cancel_button.enabled
    wait(qtbot, widget)
    assert widget.runner.last_error is None, widget.runner.last_error
    assert widget.run_button.enabled and widget.save_button.enabled

    # the same dataset the core gives for the same slide and annotation (GUI = CLI)
    ds = widget.dataset
    direct = core.dataset_for_slide(svs, ann, "threshold", 64)
    assert len(ds) == len(ann.regions) and ds.size == 64 and ds.method == "threshold"
    assert np.array_equal(np.asarray(ds.packed), np.asarray(direct.packed))
    assert list(ds.labels) == [r.label for r in ann.regions]
    found, path = mask_dataset(viewer)
    assert found is ds and path is None  # in memory, not saved yet

    # counts table: one row per class present, then the total
    table = widget.counts.to_dict("list")
    expected = palette.count_by_class([r.label for r in ann.regions])
    assert table["class"] == [*expected, "total"]
    assert table["masks"] == [*expected.values(), len(ann.regions)]

    # gallery: one tile per mask, in the class colour, right of the slide, labelled by class
    gallery = viewer.layers[GALLERY]
    layout = gallery.metadata["layout"]
    cell, pad, tile = layout["cell"], layout["pad"], layout["tile"]
    assert layout["n"] == len(ds) and gallery.rgb
    assert gallery.extent.world[0][1] > image.extent.world[1][1]  # beside, not over, the slide
    camera, size = viewer.scene.camera, np.asarray(viewer.canvas.size, float)
    centre, half = np.asarray(camera.center[-2:]), size / 2 / camera.zoom
    low, high = np.asarray(gallery.extent.world[0][-2:]), np.asarray(gallery.extent.world[1][-2:])
    assert np.all(low >= centre - half - 1) and np.all(high <= centre + half + 1)  # in view
    i = 3
    r, c = (i // layout["cols"]) * cell + pad, (i % layout["cols"]) * cell + pad
    inner = gallery.data[r : r + tile, c : c + tile]
    colour = (mask_widget.palette.rgba(ds.labels[i])[:3] * 255).astype(np.uint8)
    lit = np.all(inner == colour, axis=-1)
    assert np.array_equal(lit, resize_mask(ds.mask(i), tile))
    assert list(viewer.layers[LABELS].features["label"]) == list(ds.labels)

    # selecting a region in the Shapes layer shows its mask over that region
    k = 5
    shapes.selected_data = {k}
    preview = viewer.layers[PREVIEW]
    patch = ds.table[k]
    assert np.array_equal(preview.data[..., 3] > 0, ds.mask(k))
    box_top_left = preview.translate - preview.scale / 2 + 0.5
    assert np.allclose(box_top_left, [patch.top, patch.left])
    assert np.allclose(preview.scale * ds.size, [patch.height, patch.width])
    assert f"region {patch.region_id} ({patch.label})" in widget.status.value
    r0, c0 = (k // layout["cols"]) * cell, (k % layout["cols"]) * cell
    assert np.all(viewer.layers[GALLERY].data[r0 + 1, c0 + 1] == 255)  # outlined in white
    shapes.selected_data = {1}
    assert not np.all(viewer.layers[GALLERY].data[r0 + 1, c0 + 1] == 255)

    # save: atomic write through the core, the same dataset back
    out = tmp_path / "slide.zarr"
    widget.out.value = out
    assert widget.save() is not None
    wait(qtbot, widget)
    back = core.load_dataset(out)
    assert np.array_equal(np.asarray(back.packed[:]), np.asarray(ds.packed))
    assert list(back.labels) == list(ds.labels) and str(out) in widget.status.value
    found, path = mask_dataset(viewer)
    assert found is ds and path == str(out)  # the train widget now names the file


def test_corpus_split_builds_into_the_dataset_file(
    make_napari_viewer, qtbot, tiny_corpus, tmp_path
):
    viewer = make_napari_viewer()
    widget = docked(viewer)
    widget.source.value = CORPUS
    assert widget.image.native.isHidden() and not widget.corpus.native.isHidden()
    widget.corpus.value = tiny_corpus
    widget.split.value = "dev"
    widget.method.value = "polygon"
    widget.size.value = 32
    out = tmp_path / "dev.zarr"
    widget.out.value = out
    widget.run()
    wait(qtbot, widget)
    assert widget.runner.last_error is None, widget.runner.last_error
    saved = core.load_dataset(out)
    assert len(saved) == len(widget.dataset) > 0 and saved.method == "polygon"
    assert widget.counts.to_dict("list")["masks"][-1] == len(saved)
    assert viewer.layers[GALLERY].metadata["layout"]["n"] == len(saved)
    found, path = mask_dataset(viewer)
    assert found is widget.dataset and path == str(out)


def test_bad_input_is_reported_and_nothing_runs(make_napari_viewer, qtbot, tiny_corpus, tmp_path):
    viewer = make_napari_viewer()
    widget = docked(viewer)
    # no layer chosen
    assert widget.run() is None and "choose a slide image layer" in widget.status.value
    # a Shapes layer without labels
    svs = first_slide(tiny_corpus)
    image, shapes, _ = open_slide_layers(viewer, svs)
    bare = viewer.add_shapes([[[10, 10], [10, 90], [90, 50]]], shape_type="polygon", name="drawn")
    widget.image.value, widget.shapes.value = image, bare
    assert widget.run() is None and "no 'label' feature" in widget.status.value
    # an image layer that is not a slide file
    plain = viewer.add_image(np.zeros((50, 50)), name="plain")
    widget.image.value, widget.shapes.value = plain, shapes
    assert widget.run() is None and "not opened from a slide file" in widget.status.value
    # corpus without a dataset file, and a folder that is not a corpus
    widget.source.value = CORPUS
    widget.corpus.value = tiny_corpus
    assert widget.run() is None and "choose a dataset file" in widget.status.value
    widget.corpus.value = tmp_path
    widget.out.value = tmp_path / "x.zarr"
    widget.split.value = "train"
    assert widget.run() is None and "no train/ folder" in widget.status.value
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    widget.corpus.value = empty
    widget.run()
    wait(qtbot, widget)
    assert "no slides" in str(widget.runner.last_error) and not (tmp_path / "x.zarr").exists()
    assert widget.dataset is None and GALLERY not in viewer.layers
    assert widget.run_button.enabled  # still usable


def _slowed(real, seconds):
    """``real`` with a pause after each progress report, so a test can cancel half-way."""

    def job(*args, progress, cancel, **kwargs):
        def slow(done, total):
            progress(done, total)
            time.sleep(seconds)

        return real(*args, progress=slow, cancel=cancel, **kwargs)

    return job


@pytest.mark.parametrize("source", ["layers", "corpus"])
def test_cancel_half_way_leaves_no_dataset(
    make_napari_viewer, qtbot, tiny_corpus, tmp_path, monkeypatch, source
):
    viewer = make_napari_viewer()
    widget = docked(viewer)
    out = tmp_path / "cancelled.zarr"
    widget.out.value = out
    widget.size.value = 32
    if source == "layers":
        monkeypatch.setattr(mask_widget, "dataset_for_slide", _slowed(core.dataset_for_slide, 0.1))
        image, shapes, _ = open_slide_layers(viewer, first_slide(tiny_corpus))
        widget.image.value, widget.shapes.value = image, shapes
    else:
        monkeypatch.setattr(mask_widget, "build_dataset", _slowed(core.build_dataset, 0.5))
        widget.source.value = CORPUS
        widget.corpus.value = tiny_corpus
        widget.split.value = "train"
    widget.run()
    qtbot.waitUntil(lambda: widget.bar.value >= 1, timeout=20_000)
    assert widget.bar.value < widget.bar.max  # half-way
    widget.cancel_button.changed.emit(True)
    wait(qtbot, widget)
    assert isinstance(widget.runner.last_error, Cancelled)
    assert widget.dataset is None and GALLERY not in viewer.layers
    assert not out.exists() and "cancelled" in widget.status.value
    assert widget.run_button.enabled and not widget.cancel_button.enabled
