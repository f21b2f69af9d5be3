"""Generate masks widget: regions of an open slide (or a corpus split) become a mask dataset.

The work is `masks.dataset_for_slide` / `masks.build_dataset` run through `Runner`; this module
only turns layers into their inputs and shows the result: a gallery (one tile per mask, in the
class colour, labelled by class) beside the slide, a per-class count table, and the mask of
the region selected in the Shapes layer laid over that region.

The dataset travels with its gallery: the gallery layer's metadata holds it (and its file once
saved), which is how the Train widget of the same viewer finds it (`_layers.mask_dataset`).
The widget also emits `dataset_ready`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info
from psygnal import Signal

from napari_crystal import palette
from napari_crystal.dataset import Dataset, build_dataset, dataset_for_slide, save_dataset
from napari_crystal.errors import CrystalError, DatasetError
from napari_crystal.geometry import raster_transform
from napari_crystal.masks import CHANNELS, METHODS, resize_mask
from napari_crystal.plugin.widgets._layers import (
    ANNOTATIONS_KEY,
    DATASET_KEY,
    DATASET_PATH_KEY,
    is_annotation_layer,
    is_slide_layer,
    layers_of,
    preselect,
    shapes_annotation,
    slide_path,
)
from napari_crystal.plugin.widgets._persist import remember
from napari_crystal.plugin.widgets._runner import Runner
from napari_crystal.plugin.widgets._ui import count_table, job_row, scroll_body, wrapped

if TYPE_CHECKING:
    import napari

__all__ = ["MaskWidget", "mask_grid"]

LAYERS, CORPUS = "slide layers", "corpus folder"
ALL_SPLITS = "(whole folder)"
GALLERY, LABELS, PREVIEW = "mask gallery", "mask gallery labels", "selected mask"
MAX_TEXT = 400  # beyond this many tiles, per-tile class text is unreadable: colours only
TILE_BACKGROUND = (34, 36, 40)
SELECTED_BORDER = (255, 255, 255)

PROGRESS_S = 0.1  # at most 10 progress repaints a second: each costs a window repaint

# --------------------------------------------------------------------------- gallery


def mask_grid(dataset: Dataset, tile: int = 64, chunk: int = 512) -> tuple[np.ndarray, dict]:
    """An RGB grid with one tile per mask: mask pixels and a 2-px border in the class colour.

    Returns the image and its layout (``cols``, ``cell``, ``tile``, ``pad``); tile ``i`` starts
    at row ``(i // cols) * cell + pad``, column ``(i % cols) * cell + pad``. Masks are unpacked
    ``chunk`` at a time and shrunk with the datasets' nearest-neighbour rule.
    """
    n, size = len(dataset), int(dataset.size)
    tile = min(int(tile), size)
    pad = 3
    cell = tile + 2 * pad
    cols = max(1, math.ceil(math.sqrt(n * 1.3)))
    rows = max(1, math.ceil(n / cols))
    grid = np.zeros((rows * cell, cols * cell, 3), dtype=np.uint8)
    layout = {"cols": cols, "cell": cell, "tile": tile, "pad": pad, "n": n}
    colours = {label: _colour(label) for label in set(dataset.labels.tolist())}
    for start, feats in dataset.iter_features(chunk):
        for k, flat in enumerate(feats):
            i = start + k
            colour = colours[str(dataset.labels[i])]
            mask = resize_mask(flat.reshape(size, size).astype(bool), tile)
            r, c = _tile_origin(layout, i)
            inner = grid[r + pad : r + pad + tile, c + pad : c + pad + tile]
            inner[:] = TILE_BACKGROUND
            inner[mask] = colour
            _paint_border(grid, layout, i, colour)
    return grid, layout


def _tile_origin(layout: dict, i: int) -> tuple[int, int]:
    return (i // layout["cols"]) * layout["cell"], (i % layout["cols"]) * layout["cell"]


def _colour(label: str) -> np.ndarray:
    return (palette.rgba(label)[:3] * 255).astype(np.uint8)


def _paint_border(grid: np.ndarray, layout: dict, i: int, colour) -> None:
    """Paint tile ``i``'s border ring (between the 1-px gap and the mask) in ``colour``."""
    r, c = _tile_origin(layout, i)
    cell, pad, tile = layout["cell"], layout["pad"], layout["tile"]
    inner = grid[r + pad : r + pad + tile, c + pad : c + pad + tile].copy()
    grid[r + 1 : r + cell - 1, c + 1 : c + cell - 1] = colour
    grid[r + pad : r + pad + tile, c + pad : c + pad + tile] = inner


def _build_from_layers(slide, annotation, method, size, channel, progress=None, cancel=None):
    """Worker job: the slide's dataset and its gallery."""
    dataset = dataset_for_slide(
        slide, annotation, method, size, progress=progress, cancel=cancel, channel=channel
    )
    return dataset, mask_grid(dataset)


def _build_from_corpus(corpus, split, out, method, size, channel, progress=None, cancel=None):
    """Worker job: a corpus split's dataset (saved at ``out``, resumable) and its gallery."""
    dataset = build_dataset(
        corpus, split, out, method, size, progress=progress, cancel=cancel, channel=channel
    )
    return dataset, mask_grid(dataset)


def _save(dataset: Dataset, path, progress=None, cancel=None) -> Path:
    """Worker job: ``save_dataset`` (atomic) of the widget's dataset."""
    return save_dataset(dataset, path)


# --------------------------------------------------------------------------- widget


class MaskWidget(Container):
    """Turn annotated regions into binary masks: gallery, counts, selection preview, save."""

    dataset_ready = Signal(object)  # the new Dataset

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self.dataset: Dataset | None = None
        self.saved_path: Path | None = None
        self.layout_info: dict | None = None
        self._source_shapes = None  # the Shapes layer the current dataset was made from
        self._grid: np.ndarray | None = None
        self._selected: int | None = None

        self.source = ComboBox(label="source", choices=[LAYERS, CORPUS], value=LAYERS)
        self.image = ComboBox(label="slide layer", choices=self._image_choices, nullable=True)
        self.shapes = ComboBox(
            label="annotation layer", choices=self._shapes_choices, nullable=True
        )
        self.corpus = FileEdit(label="corpus folder", mode="d")
        self.split = ComboBox(label="split", choices=["train", "dev", "eval", ALL_SPLITS])
        self.method = ComboBox(label="method", choices=list(METHODS), value="threshold")
        self.channel = ComboBox(label="threshold on", choices=list(CHANNELS), value="grey")
        self.size = SpinBox(label="mask size", value=256, min=8, max=2048, step=8)
        self.out = FileEdit(label="dataset file", mode="w", filter="*.zarr")
        self.run_button = PushButton(text="Generate masks")
        self.cancel_button = PushButton(text="Cancel")
        self.bar = ProgressBar(label="")
        self.status = wrapped(Label(value=""))
        self.counts = count_table({"class": [], "masks": [], "meaning": []})
        self.save_button = PushButton(text="Save dataset")
        self.body = scroll_body(
            self,
            [
                self.source,
                self.image,
                self.shapes,
                self.corpus,
                self.split,
                self.method,
                self.channel,
                self.size,
                self.run_button,
                job_row(self.bar, self.cancel_button),
                self.status,
                self.counts,
                self.out,
                self.save_button,
            ],  # fmt: skip
        )
        controls = [
            self.source, self.image, self.shapes, self.corpus, self.split, self.method,
            self.channel, self.size, self.out, self.run_button, self.save_button,
        ]  # fmt: skip
        self.runner = Runner(self.bar, controls, self.cancel_button, min_interval=PROGRESS_S)
        self.source.changed.connect(self._on_source)
        self.method.changed.connect(self._on_source)
        self.run_button.changed.connect(self.run)
        self.save_button.changed.connect(self.save)
        viewer.layers.events.inserted.connect(self._layers_changed)
        viewer.layers.events.removed.connect(self._layers_changed)
        self._layers_changed()
        self._on_source()
        self.save_button.enabled = False
        remember("masks", {
            "corpus": self.corpus, "split": self.split, "method": self.method,
            "channel": self.channel, "size": self.size,
        })  # fmt: skip

    # ------------------------------------------------------------------ choices

    def _image_choices(self, _widget=None):
        return layers_of(self.viewer, "image")

    def _shapes_choices(self, _widget=None):
        return layers_of(self.viewer, "shapes")

    def _layers_changed(self, event=None) -> None:
        preselect(self.image, is_slide_layer)
        preselect(self.shapes, is_annotation_layer)
        if self._source_shapes is not None and self._source_shapes not in self.viewer.layers:
            self._disconnect_selection()

    def _on_source(self, *_: Any) -> None:
        layers = self.source.value == LAYERS
        for w in (self.image, self.shapes):
            w.visible = layers
        for w in (self.corpus, self.split):
            w.visible = not layers
        self.channel.visible = self.method.value == "threshold"

    # ------------------------------------------------------------------ run

    def run(self, *_: Any):
        """Start mask generation for the chosen source; returns the worker (None on bad input)."""
        method, size, channel = self.method.value, int(self.size.value), self.channel.value
        try:
            if self.source.value == LAYERS:
                image, shapes = self.image.value, self.shapes.value
                if image is None or shapes is None:
                    raise DatasetError(
                        None, "choose a slide image layer and an annotation Shapes layer"
                    )
                path = slide_path(image)
                annotation = shapes_annotation(shapes, image)
                job, args = _build_from_layers, (path, annotation, method, size, channel)
                label = f"masks of {path.name}"
                source_shapes = shapes
                self._annotations = {path.stem: annotation}  # for other feature sets
            else:
                corpus = Path(self.corpus.value)
                if not str(self.corpus.value) or not corpus.is_dir():
                    raise DatasetError(corpus, "choose a corpus folder")
                out = self._out_path()
                if out is None:
                    raise DatasetError(
                        None, "choose a dataset file: a corpus dataset is built straight into it"
                    )
                split = None if self.split.value == ALL_SPLITS else self.split.value
                if split and not (corpus / split).is_dir():
                    raise DatasetError(corpus / split, f"no {split}/ folder in the corpus")
                job, args = _build_from_corpus, (corpus, split, out, method, size, channel)
                label = f"masks of {corpus.name}/{split or ''}"
                source_shapes = None
                self._annotations = None
        except CrystalError as exc:
            show_error(f"napari-crystal: {exc.brief()}")
            self.status.value = str(exc)
            return None
        self.status.value = f"generating {label}..."
        started = time.perf_counter()
        return self.runner.start(
            job,
            *args,
            label=label,
            on_done=lambda result: self._done(result, source_shapes, started),
            on_error=self._failed,
        )

    def _out_path(self) -> Path | None:
        value = str(self.out.value) if self.out.value is not None else ""
        return Path(value) if value and value != "." else None

    def _failed(self, exc: BaseException) -> None:
        self.status.value = f"failed: {exc}" if str(exc) else "cancelled; nothing was saved"

    def _done(self, result, source_shapes, started: float) -> None:
        dataset, (grid, layout) = result
        self.dataset = dataset
        self.layout_info, self._grid, self._selected = layout, grid, None
        self._show_counts(dataset)
        self.saved_path = self._out_path() if self.source.value == CORPUS else None
        self._show_gallery(dataset, grid, layout)
        self._disconnect_selection()
        if source_shapes is not None:
            self._source_shapes = source_shapes
            source_shapes.selected_data.events.items_changed.connect(self._on_selection)
        where = self.saved_path or "memory (not saved yet)"
        self.status.value = (
            f"{len(dataset)} masks of {dataset.size}x{dataset.size} ({dataset.method}) in "
            f"{time.perf_counter() - started:.1f} s; in {where}"
        )
        self.save_button.enabled = True
        self.dataset_ready.emit(dataset)

    def _show_counts(self, dataset: Dataset) -> None:
        counts = palette.count_by_class(dataset.labels)
        self.counts.value = {
            "class": [*counts, "total"],
            "masks": [*counts.values(), len(dataset)],
            "meaning": [palette.MEANINGS.get(k, "unknown label") for k in counts] + [""],
        }
        self.counts.native.resizeColumnsToContents()

    def _placement(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, translate) putting the gallery right of everything else, as tall as it."""
        others = [
            layer
            for layer in self.viewer.layers
            if layer.name not in (GALLERY, LABELS, PREVIEW) and layer.ndim == 2
        ]
        grid_h = self._grid.shape[0]
        if not others:
            return np.ones(2), np.zeros(2)
        lo = np.min([layer.extent.world[0][-2:] for layer in others], axis=0)
        hi = np.max([layer.extent.world[1][-2:] for layer in others], axis=0)
        height, width = hi - lo
        s = max(height, 1.0) / grid_h
        return np.array([s, s]), np.array([lo[0], hi[1] + 0.04 * max(width, 1.0)])

    def _show_gallery(self, dataset: Dataset, grid: np.ndarray, layout: dict) -> None:
        for name in (GALLERY, LABELS, PREVIEW):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        scale, translate = self._placement()
        self.viewer.add_image(
            grid, name=GALLERY, rgb=True, scale=scale, translate=translate,
            metadata={
                "layout": layout, "labels": list(dataset.labels), DATASET_KEY: dataset,
                DATASET_PATH_KEY: None if self.saved_path is None else str(self.saved_path),
                ANNOTATIONS_KEY: getattr(self, "_annotations", None),
            },
        )  # fmt: skip
        if len(dataset) <= MAX_TEXT:
            origins = np.array([_tile_origin(layout, i) for i in range(len(dataset))], float)
            # text sits above its point: put the point at the tile's lower-left corner
            corner = np.array([layout["pad"] + layout["tile"] - 2, layout["pad"] + 1])
            self.viewer.add_points(
                origins + corner,
                name=LABELS,
                scale=scale,
                translate=translate,
                size=0.1,
                face_color="transparent",
                border_width=0,
                features={"label": np.asarray(dataset.labels, dtype=str)},
                text={
                    "string": "{label}",
                    "color": "white",
                    "size": 8,
                    "anchor": "upper_left",
                },
            )  # fmt: skip
        self.viewer.layers.selection.active = self.viewer.layers[GALLERY]
        self.viewer.reset_view()  # the gallery lies beside the slide: show both

    # ------------------------------------------------------------------ selection

    def _disconnect_selection(self) -> None:
        if self._source_shapes is not None:
            try:
                self._source_shapes.selected_data.events.items_changed.disconnect(
                    self._on_selection
                )
            except (TypeError, ValueError, RuntimeError):
                pass
        self._source_shapes = None

    def _on_selection(self, *_: Any) -> None:
        shapes = self._source_shapes
        if shapes is None or self.dataset is None:
            return
        chosen = sorted(shapes.selected_data)
        if chosen:
            self.show_region(chosen[-1])

    def row_of_shape(self, shape_index: int) -> int | None:
        """Dataset row of the region made from shape ``shape_index`` (None if there is none)."""
        table = self.dataset.table
        rows = np.flatnonzero((table.kind == "region") & (table.index == int(shape_index)))
        return int(rows[0]) if len(rows) else None

    def show_region(self, shape_index: int) -> int | None:
        """Show the mask of a region: laid over it on the slide and outlined in the gallery."""
        row = self.row_of_shape(shape_index)
        if row is None:
            show_info(f"napari-crystal: shape {shape_index} has no mask; generate masks again")
            return None
        patch = self.dataset.table[row]
        mask = self.dataset.mask(row)
        rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
        rgba[mask] = (palette.rgba(patch.label, 0.85) * 255).astype(np.uint8)
        image = self.image.value
        world = (image.scale, image.translate) if image is not None else None
        scale, translate = raster_transform(
            np.array([patch.height, patch.width]) / self.dataset.size,
            origin=(patch.top, patch.left),
            world=world,
        )
        if PREVIEW in self.viewer.layers:
            layer = self.viewer.layers[PREVIEW]
            layer.data, layer.scale, layer.translate = rgba, scale, translate
        else:
            self.viewer.add_image(rgba, name=PREVIEW, rgb=True, scale=scale, translate=translate)
        self._outline(row)
        self.status.value = (
            f"region {patch.region_id} ({patch.label}): mask {row + 1} of {len(self.dataset)}, "
            f"{int(mask.sum())} of {mask.size} pixels on"
        )
        return row

    def _outline(self, row: int) -> None:
        """Draw the selected tile's border white (the previous one back in its class colour)."""
        if GALLERY not in self.viewer.layers or self._grid is None:
            return
        if self._selected is not None:
            label = str(self.dataset.labels[self._selected])
            _paint_border(self._grid, self.layout_info, self._selected, _colour(label))
        _paint_border(self._grid, self.layout_info, row, SELECTED_BORDER)
        self._selected = row
        self.viewer.layers[GALLERY].data = self._grid

    # ------------------------------------------------------------------ save

    def save(self, *_: Any):
        """Save the current dataset at the dataset file (atomic); returns the worker."""
        out = self._out_path()
        if self.dataset is None:
            show_error("napari-crystal: no dataset yet: generate masks first")
            return None
        if out is None:
            show_error("napari-crystal: choose a dataset file to save to")
            return None
        if self.saved_path is not None and self.saved_path.resolve() == out.resolve():
            show_info(f"napari-crystal: the dataset is already saved at {out}")
            return None
        self.status.value = f"saving {out.name}..."
        return self.runner.start(
            _save, self.dataset, out, label=f"save {out.name}", on_done=self._saved,
            on_error=self._failed,
        )  # fmt: skip

    def _saved(self, path: Path) -> None:
        self.saved_path = Path(path)
        if GALLERY in self.viewer.layers:
            self.viewer.layers[GALLERY].metadata[DATASET_PATH_KEY] = str(path)
        self.status.value = f"saved {len(self.dataset)} masks to {path}"
