"""Predictions on a slide as class images: what the prediction overlay shows, without napari.

A patch table with predicted and true labels becomes three rasters aligned with level 0:
predicted class, true class and errors (true class where the prediction is wrong), in the
palette's class indices. Region patches are their polygons filled, at most ``max_side`` pixels
on the longer side; frame patches are one pixel per frame. Both rest on one index raster
(which patch covers each pixel), so the class maps are table lookups (fast for 20,000
patches) and hovering a level-0 position finds its patch in O(1).

Raster pixel ``i`` covers level-0 pixels ``[i * scale, (i + 1) * scale)``, the convention of
:mod:`napari_crystal.geometry` (whose ``raster_transform`` places it in napari).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_crystal import palette
from napari_crystal.errors import DatasetError, ModelError
from napari_crystal.geometry import (
    level_box,
    polygon_area,
    polygon_mask,
    raster_grid,
    raster_index,
    raster_transform,
)
from napari_crystal.patches import PatchTable

Progress = Callable[[int, int], None] | None
MAX_SIDE = 4096


# ----------------------------------------------------------------- index rasters


@dataclass
class PatchRaster:
    """Which table row covers each pixel (-1: none) of a grid with ``scale`` level-0 pixels each."""

    index: np.ndarray
    scale: float
    kind: str

    @property
    def translate(self) -> tuple[float, float]:
        """napari ``translate`` that puts pixel ``i`` over level-0 pixels ``[i s, (i+1) s)``."""
        return raster_transform(self.scale)[1]

    def rows_at(self, rows, cols) -> np.ndarray:
        """Table rows under level-0 positions (floats allowed; -1 outside or uncovered)."""
        r, c = raster_index(rows, self.scale), raster_index(cols, self.scale)
        h, w = self.index.shape
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        out = np.full(np.shape(r), -1, dtype=np.int64)
        out[inside] = self.index[r[inside], c[inside]]
        return out

    def at(self, row: float, col: float) -> int:
        """Table row under one level-0 position, -1 for none."""
        return int(self.rows_at(row, col))


def infer_frame(table: PatchTable) -> int:
    """Frame size of a table of NEDC frames: the step between frame positions.

    Frame boxes are windows centred on frames at multiples of the frame size, so every
    difference between two window tops (or lefts) is a multiple of it; with one frame, the
    window itself.
    """
    steps = [np.diff(np.unique(table.top)), np.diff(np.unique(table.left))]
    diffs = np.concatenate(steps).astype(np.int64)
    diffs = diffs[diffs > 0]
    if len(diffs) == 0:
        return int(table.height.min()) if len(table) else 1
    return int(np.gcd.reduce(diffs))


def frame_raster(
    table: PatchTable, shape: Sequence[int] | None = None, frame: int | None = None
) -> PatchRaster:
    """One pixel per NEDC frame (frame grid from (0, 0), ``frame`` level-0 pixels a side)."""
    frame = int(frame or infer_frame(table))
    if frame < 1:
        raise ValueError(f"frame size must be positive, got {frame}")
    margin = (table.height - frame) // 2
    r = (table.top + margin) // frame
    c = (table.left + margin) // frame
    if len(table) and (r.min() < 0 or c.min() < 0):
        raise DatasetError(None, "frame patches start before the slide's origin")
    if shape is not None:
        n_rows, n_cols = -(-int(shape[0]) // frame), -(-int(shape[1]) // frame)
    else:
        n_rows = int(r.max()) + 1 if len(table) else 0
        n_cols = int(c.max()) + 1 if len(table) else 0
    index = np.full((n_rows, n_cols), -1, dtype=np.int32)
    keep = (r < n_rows) & (c < n_cols)
    index[r[keep], c[keep]] = np.arange(len(table), dtype=np.int32)[keep]
    return PatchRaster(index, float(frame), "frame")


def _extent(table: PatchTable, shape: Sequence[int] | None) -> tuple[int, int]:
    if shape is not None:
        return int(shape[0]), int(shape[1])
    if not len(table):
        return 0, 0
    return int((table.top + table.height).max()), int((table.left + table.width).max())


def region_raster(
    table: PatchTable,
    polygons: Sequence[np.ndarray] | None = None,
    shape: Sequence[int] | None = None,
    max_side: int = MAX_SIDE,
) -> PatchRaster:
    """Region patches filled at a downsample that keeps the longer side <= ``max_side``.

    ``polygons[i]`` is row i's polygon (level-0 row/col); without polygons the patch boxes are
    filled. Larger regions are painted first, so where regions nest the innermost one shows
    (and is what hovering finds); a region smaller than a pixel still gets the pixel at its
    centre, so no patch disappears.
    """
    ds, (n_rows, n_cols) = raster_grid(_extent(table, shape), max_side, whole=True)
    index = np.full((n_rows, n_cols), -1, dtype=np.int32)
    if polygons is not None and len(polygons) != len(table):
        raise ValueError(f"{len(polygons)} polygons for {len(table)} patches")
    area = table.height.astype(np.float64) * table.width
    if polygons is not None:
        area = np.array([polygon_area(p) if len(p) >= 3 else 0.0 for p in polygons])
    for i in np.argsort(-area, kind="stable"):
        top, left, h, w = level_box(
            int(table.top[i]), int(table.left[i]), int(table.height[i]), int(table.width[i]), ds
        )
        r0, c0, r1, c1 = max(0, top), max(0, left), min(n_rows, top + h), min(n_cols, left + w)
        if r1 <= r0 or c1 <= c0:
            continue
        if polygons is None:
            inside = np.ones((r1 - r0, c1 - c0), dtype=bool)
        else:
            inside = polygon_mask(polygons[i], (r1 - r0, c1 - c0), r0 * ds, c0 * ds, ds)
        if not inside.any():
            inside[(r1 - r0 - 1) // 2, (c1 - c0 - 1) // 2] = True
        index[r0:r1, c0:c1][inside] = i
    return PatchRaster(index, float(ds), "region")


def patch_raster(
    table: PatchTable,
    polygons: Sequence[np.ndarray] | None = None,
    shape: Sequence[int] | None = None,
    *,
    max_side: int = MAX_SIDE,
    frame: int | None = None,
) -> PatchRaster:
    """`frame_raster` for a table of frames, `region_raster` for regions (not both mixed)."""
    kinds = set(np.unique(table.kind).tolist())
    if kinds == {"frame"}:
        return frame_raster(table, shape, frame)
    if kinds <= {"region"}:
        return region_raster(table, polygons, shape, max_side)
    raise ValueError(f"patch table mixes kinds {sorted(kinds)}: build one overlay per kind")


# ----------------------------------------------------------------- class maps


def class_indices(labels: Sequence[str]) -> np.ndarray:
    """Palette index per label (uint8; "" is 0, unannotated), computed once per distinct label."""
    arr = np.asarray(labels, dtype=str)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint8)
    values, inverse = np.unique(arr, return_inverse=True)
    lut = np.array([palette.class_index(v) if v else 0 for v in values], dtype=np.uint8)
    return lut[inverse.reshape(-1)]


@dataclass
class PatchInfo:
    """What hovering a patch shows: where it is, its true and predicted class, probabilities."""

    row: int
    kind: str
    region_id: int
    box: tuple[int, int, int, int]
    truth: str
    predicted: str
    proba: dict[str, float]

    def text(self) -> str:
        """One status-bar line, probabilities highest first."""
        what = f"region {self.region_id}" if self.kind == "region" else f"frame #{self.row}"
        verdict = "" if not self.truth else (" ✓" if self.truth == self.predicted else " ✗")
        top = sorted(self.proba.items(), key=lambda kv: -kv[1])[:4]
        probs = ", ".join(f"{k} {v:.2f}" for k, v in top)
        truth = self.truth or "unlabelled"
        return f"{what}: true {truth}, predicted {self.predicted}{verdict}" + (
            f" ({probs})" if probs else ""
        )


@dataclass
class PredictionMap:
    """Class rasters of one slide's predictions, and the patches behind them.

    ``predicted_map``/``truth_map`` hold palette indices (0 where no patch), ``errors_map``
    the true class of wrongly predicted patches (0 elsewhere, and for unlabelled patches).
    """

    table: PatchTable
    predicted: np.ndarray
    truth: np.ndarray
    proba: np.ndarray | None
    classes: tuple[str, ...]
    raster: PatchRaster
    predicted_map: np.ndarray
    truth_map: np.ndarray
    errors_map: np.ndarray
    not_measured: int = 0  # the slide's patches a feature set skipped (not in the map)

    @property
    def wrong(self) -> np.ndarray:
        """Per patch: labelled and predicted as another class."""
        return (self.truth != "") & (self.predicted != self.truth)

    @property
    def scale(self) -> tuple[float, float]:
        """napari ``scale`` of the maps."""
        return (self.raster.scale, self.raster.scale)

    @property
    def translate(self) -> tuple[float, float]:
        """napari ``translate`` of the maps."""
        return self.raster.translate

    def error_counts(self) -> dict[str, int]:
        """Wrong patches per true class, palette order."""
        return palette.count_by_class(self.truth[self.wrong])

    def info(self, row: int) -> PatchInfo:
        """Hover information of table row ``row``."""
        t = self.table
        proba = {}
        if self.proba is not None and len(self.classes):
            proba = {c: float(p) for c, p in zip(self.classes, self.proba[row], strict=True)}
        box = (int(t.top[row]), int(t.left[row]), int(t.height[row]), int(t.width[row]))
        return PatchInfo(
            row, str(t.kind[row]), int(t.region_id[row]), box, str(self.truth[row]),
            str(self.predicted[row]), proba,
        )  # fmt: skip

    def info_at(self, row: float, col: float) -> PatchInfo | None:
        """Hover information of the patch under level-0 ``(row, col)``, None where there is none."""
        i = self.raster.at(row, col)
        return None if i < 0 else self.info(i)


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` with 0 where ``index`` is -1."""
    lut = np.zeros(len(values) + 1, dtype=np.uint8)
    lut[:-1] = values
    return lut[index]


def build_prediction_map(
    table: PatchTable,
    predicted: Sequence[str],
    truth: Sequence[str],
    proba: np.ndarray | None = None,
    classes: Sequence[str] = (),
    polygons: Sequence[np.ndarray] | None = None,
    shape: Sequence[int] | None = None,
    *,
    max_side: int = MAX_SIDE,
    frame: int | None = None,
) -> PredictionMap:
    """Prediction, truth and error rasters of one slide's patches (see the module docstring).

    ``truth`` "" marks unlabelled patches (frames no region covers): shown as predicted only.
    ``proba`` columns follow ``classes`` (the model's class order).
    """
    predicted = np.asarray(predicted, dtype=str).reshape(-1)
    truth = np.asarray(truth, dtype=str).reshape(-1)
    n = len(table)
    if len(predicted) != n or len(truth) != n:
        raise ValueError(
            f"{n} patches but {len(predicted)} predictions and {len(truth)} true labels"
        )
    if proba is not None:
        proba = np.asarray(proba)
        if proba.shape != (n, len(classes)):
            raise ValueError(
                f"probabilities have shape {proba.shape}, expected ({n}, {len(classes)})"
            )
    raster = patch_raster(table, polygons, shape, max_side=max_side, frame=frame)
    p_idx, t_idx = class_indices(predicted), class_indices(truth)
    wrong = (truth != "") & (predicted != truth)
    e_idx = np.where(wrong, t_idx, 0).astype(np.uint8)
    return PredictionMap(
        table, predicted, truth, proba, tuple(classes), raster,
        _gather(p_idx, raster.index), _gather(t_idx, raster.index), _gather(e_idx, raster.index),
    )  # fmt: skip


# ----------------------------------------------------------------- matching inputs


def rows_of_slide(
    table: PatchTable,
    slide_path: str | os.PathLike,
    shape: Sequence[int] | None = None,
    dataset: str | os.PathLike | None = None,
) -> np.ndarray:
    """Rows of ``table`` that belong to the slide at ``slide_path`` (bool mask).

    Same resolved path, or else (a corpus that moved) the same file name. Raises
    `DatasetError` naming the dataset when no patch is of this slide, or when its patches do
    not fit the slide's level-0 ``shape`` (a same-named but different slide).
    """
    slide_path = Path(slide_path)
    where = dataset if dataset is not None else slide_path
    names = np.asarray(table.slide, dtype=str)
    try:
        resolved = str(slide_path.resolve())
    except OSError:
        resolved = str(slide_path)
    rows = (names == resolved) | (names == str(slide_path))
    if not rows.any():
        rows = np.array([Path(s).name == slide_path.name for s in names], dtype=bool)
    if not rows.any():
        held = sorted({Path(s).name for s in names})
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise DatasetError(
            where,
            f"has no patches of slide {slide_path.name} (its patches are of {shown or 'no slide'})",
        )
    if shape is not None:
        sub = table[rows]
        # region boxes are clipped to the slide; frame windows may stick out by their margin
        slack = np.where(sub.kind == "frame", sub.height // 2, 0)
        bottom = (sub.top + sub.height - slack).max()
        right = (sub.left + sub.width - slack).max()
        if bottom > int(shape[0]) or right > int(shape[1]):
            raise DatasetError(
                where,
                f"patches of {slide_path.name} reach ({bottom}, {right}) but the slide is "
                f"{int(shape[0])} x {int(shape[1])} pixels: the dataset was made from another "
                "slide of that name",
            )
    return rows


def region_polygons(table: PatchTable, annotation, where=None) -> list[np.ndarray]:
    """The annotation polygon of each region patch, checked against the table.

    A region patch's ``index`` is its region's position in the annotation; region id and
    label must agree, else the annotation is not the one the dataset was made from.
    """
    regions = list(annotation.regions)
    where = where or getattr(annotation, "source", None)
    out = []
    for i in range(len(table)):
        pos, rid, label = int(table.index[i]), int(table.region_id[i]), str(table.label[i])
        if not 0 <= pos < len(regions):
            raise DatasetError(
                where, f"has {len(regions)} regions; the dataset needs region #{pos} (id {rid})"
            )
        region = regions[pos]
        if int(region.region_id) != rid or str(region.label) != label:
            raise DatasetError(
                where,
                f"region #{pos} is id {region.region_id} ({region.label}) but the dataset's "
                f"patch is id {rid} ({label}): annotation and dataset do not belong together",
            )
        out.append(np.asarray(region.coords, dtype=np.float64).reshape(-1, 2))
    return out


def check_classes(model, labels: Sequence[str], where=None) -> list[str]:
    """Labels of the data the model cannot predict; `ModelError` when it can predict none.

    ``labels`` are true labels already mapped with the model's crystal policy; "" (unlabelled
    frames) is ignored.
    """
    present = sorted({str(v) for v in np.unique(np.asarray(labels, dtype=str))} - {""})
    known = set(model.classes)
    missing = [v for v in present if v not in known]
    if present and len(missing) == len(present):
        raise ModelError(
            where if where is not None else model.path,
            f"model classes ({', '.join(model.classes)}) do not match the data's "
            f"({', '.join(present)}): no class in common",
        )
    return missing
