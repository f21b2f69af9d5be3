"""Patch tables: the crops of a slide that become masks (one per region, or NEDC frames).

A patch box is in level-0 pixels, (row, column) order; ``level`` is the pyramid level its crop
is read at (see ``LEVEL_RULE``). Frame labelling is exact polygon/window overlap, vectorised.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from napari_crystal.errors import DatasetError

LEVEL_RULE = (
    "coarsest pyramid level at which the patch box is still at least `size` pixels on its "
    "shorter side (min(height, width) / downsample >= size); level 0 when no level qualifies"
)
# Overlaps within this fraction of the window area below the threshold count as reaching it,
# so float rounding in an exact computation cannot flip a tie (0.25 px^2 for a 500-px window).
TIE_TOLERANCE = 1e-9


def choose_level(downsamples: Sequence[float], height: float, width: float, size: int) -> int:
    """The level ``LEVEL_RULE`` picks for a ``height`` x ``width`` box and a ``size`` mask."""
    best = 0
    side = min(height, width)
    for level, ds in enumerate(downsamples):
        if side / float(ds) >= size and float(ds) >= float(downsamples[best]):
            best = level
    return best


@dataclass(frozen=True)
class Patch:
    """One patch: its slide, source region, label, level-0 box and the level it is read at.

    ``kind`` is ``"region"`` (``index`` = region position in the annotation, file order) or
    ``"frame"`` (``index`` = frame number, row-major; ``region_id`` -1 and ``label`` "" when
    no region labels the frame).
    """

    slide: str
    region_id: int
    label: str
    top: int
    left: int
    height: int
    width: int
    level: int
    kind: str
    index: int


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Patch))
STRING_COLUMNS = ("slide", "label", "kind")


def _column(name: str, values: Iterable[Any]) -> np.ndarray:
    if name in STRING_COLUMNS:
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
        return arr.astype(str) if arr.size else np.zeros(0, dtype="<U1")
    return np.asarray(values, dtype=np.int64).reshape(-1)


@dataclass
class PatchTable:
    """Patches as numpy column arrays: cheap at 50,000 rows, sliceable, easy to save."""

    slide: np.ndarray
    region_id: np.ndarray
    label: np.ndarray
    top: np.ndarray
    left: np.ndarray
    height: np.ndarray
    width: np.ndarray
    level: np.ndarray
    kind: np.ndarray
    index: np.ndarray

    def __post_init__(self) -> None:
        for name in COLUMNS:
            setattr(self, name, _column(name, getattr(self, name)))
        lengths = {len(getattr(self, name)) for name in COLUMNS}
        if len(lengths) > 1:
            raise ValueError(f"patch table columns differ in length: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.top)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return Patch(**{n: getattr(self, n)[key].item() for n in COLUMNS})
        return PatchTable(**{n: getattr(self, n)[key] for n in COLUMNS})

    def __iter__(self) -> Iterator[Patch]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatchTable):
            return NotImplemented
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in COLUMNS)

    def columns(self) -> dict[str, np.ndarray]:
        """``{column: array}``, for saving."""
        return {n: getattr(self, n) for n in COLUMNS}

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> PatchTable:
        """Inverse of ``columns()``."""
        return cls(**{n: columns[n] for n in COLUMNS})

    @classmethod
    def from_rows(cls, rows: Iterable[Patch]) -> PatchTable:
        """A table from ``Patch`` rows."""
        rows = list(rows)
        return cls(**{n: [getattr(r, n) for r in rows] for n in COLUMNS})

    @classmethod
    def concat(cls, tables: Sequence[PatchTable]) -> PatchTable:
        """Tables one after the other (an empty table for none)."""
        if not tables:
            return cls.from_rows([])
        return cls(**{n: np.concatenate([getattr(t, n) for t in tables]) for n in COLUMNS})


def _regions(annotation_or_polygons) -> list[np.ndarray]:
    regions = getattr(annotation_or_polygons, "regions", annotation_or_polygons)
    return [np.asarray(getattr(r, "coords", r), dtype=np.float64).reshape(-1, 2) for r in regions]


def _source(annotation, fallback) -> str:
    return str(getattr(annotation, "source", None) or fallback)


def region_patches(slide, annotation, size: int = 256) -> PatchTable:
    """One patch per region: the polygon's bounding box clipped to the slide, label = region's.

    ``slide`` is a path (opened only for its shape and levels) or an open ``Slide``. A region
    wholly outside the slide raises ``DatasetError`` naming the annotation file and the region.
    """
    if isinstance(slide, (str, os.PathLike)):
        from napari_crystal.io.slide import open_slide

        opened = open_slide(slide)
        try:
            path, shape, downsamples = str(slide), opened.shape, list(opened.downsamples)
        finally:
            opened.close()
    else:
        path, shape, downsamples = str(slide.path), slide.shape, list(slide.downsamples)
    n_rows, n_cols = int(shape[0]), int(shape[1])
    rows: list[Patch] = []
    for pos, region in enumerate(annotation.regions):
        coords = np.asarray(region.coords, dtype=np.float64).reshape(-1, 2)
        where = f"region {region.region_id} (#{pos}, {region.label})"
        if len(coords) == 0:
            raise DatasetError(_source(annotation, path), f"{where} has no vertices")
        top = max(0, math.floor(coords[:, 0].min()))
        left = max(0, math.floor(coords[:, 1].min()))
        bottom = min(n_rows, math.floor(coords[:, 0].max()) + 1)
        right = min(n_cols, math.floor(coords[:, 1].max()) + 1)
        if bottom <= top or right <= left:
            raise DatasetError(
                _source(annotation, path),
                f"{where} lies wholly outside the slide {path} ({n_rows} x {n_cols} pixels)",
            )
        height, width = bottom - top, right - left
        level = choose_level(downsamples, height, width, size)
        rows.append(
            Patch(
                path,
                int(region.region_id),
                str(region.label),
                top,
                left,
                height,
                width,
                level,
                "region",
                pos,
            )  # fmt: skip
        )
    return PatchTable.from_rows(rows)


def frame_grid(shape: Sequence[int], frame: int = 250, window: int = 500):
    """Frame grid of a level-0 ``shape``: (n_rows, n_cols, margin).

    Frames tile level 0 from (0, 0) with step ``frame`` and cover the whole slide (the last
    row/column of frames may stick out); each window starts ``margin = (window - frame) // 2``
    before its frame.
    """
    if frame <= 0 or window < frame:
        raise ValueError(f"need 0 < frame <= window, got frame={frame}, window={window}")
    return -(-int(shape[0]) // frame), -(-int(shape[1]) // frame), (window - frame) // 2


def _edge_integral(r0, c0, r1, c1, ys, xs) -> np.ndarray:
    """Sum over edges of the signed area between each edge and row ``y``, left of column ``x``.

    For a closed polygon this is area(polygon ∩ {row < y, col < x}) up to the orientation sign.
    Shapes: edges (E,), ys (Y,), xs (X,) -> (Y, X).
    """
    forward = c1 > c0
    a = np.where(forward, c0, c1)[:, None, None]
    b = np.where(forward, c1, c0)[:, None, None]
    ga = np.where(forward, r0, r1)[:, None, None]
    gb = np.where(forward, r1, r0)[:, None, None]
    sign = np.where(forward, 1.0, -1.0)[:, None, None]
    span = b - a
    slope = np.divide(gb - ga, span, out=np.zeros_like(span), where=span > 0)
    end = np.clip(xs[None, None, :], a, b)  # (E, 1, X)
    width = end - a
    y = ys[None, :, None]
    ha = y - ga  # (E, Y, 1)
    hb = y - (ga + slope * width)  # (E, Y, X)
    both = (ha >= 0) & (hb >= 0)
    diff = ha - hb
    with np.errstate(divide="ignore", invalid="ignore"):
        left_tri = np.where(ha > 0, ha * ha / np.where(diff > 0, 2 * diff, 1.0), 0.0)
        right_tri = np.where(hb > 0, hb * hb / np.where(diff < 0, -2 * diff, 1.0), 0.0)
    area = np.where(both, (ha + hb) * 0.5, np.where(ha > 0, left_tri, right_tri)) * width
    return (sign * area).sum(axis=0)


def _prefix_area(coords: np.ndarray, ys: np.ndarray, xs: np.ndarray, budget: int = 1 << 21):
    """area(polygon ∩ {row < y, col < x}) on the grid ``ys`` x ``xs`` (exact up to rounding)."""
    closed = coords if np.array_equal(coords[0], coords[-1]) else np.vstack([coords, coords[:1]])
    r0, c0, r1, c1 = closed[:-1, 0], closed[:-1, 1], closed[1:, 0], closed[1:, 1]
    keep = c0 != c1  # vertical edges bound no area
    r0, c0, r1, c1 = r0[keep], c0[keep], r1[keep], c1[keep]
    out = np.zeros((len(ys), len(xs)))
    if len(r0) == 0:
        return out
    step = max(1, budget // max(1, len(r0) * len(xs)))
    for start in range(0, len(ys), step):
        out[start : start + step] = _edge_integral(r0, c0, r1, c1, ys[start : start + step], xs)
    y, x = closed[:, 0], closed[:, 1]
    orientation = np.sign(np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:]))
    return out * (orientation or 1.0)


def window_overlaps(coords, shape, frame: int = 250, window: int = 500):
    """Exact overlap area of one polygon with every frame's window: ((r0, r1), (c0, c1), areas).

    Only the windows meeting the polygon's bounding box are computed; ``areas`` has shape
    (r1 - r0, c1 - c0) and every other window's overlap is 0.
    """
    n_rows, n_cols, margin = frame_grid(shape, frame, window)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    spans = []
    for axis, n in ((0, n_rows), (1, n_cols)):
        starts = np.arange(n, dtype=np.float64) * frame - margin
        first = int(np.searchsorted(starts + window, lo[axis], side="right"))
        last = int(np.searchsorted(starts, hi[axis], side="left"))
        spans.append((first, max(first, last), starts))
    (r_first, r_last, r_starts), (c_first, c_last, c_starts) = spans
    if r_last <= r_first or c_last <= c_first:
        return (r_first, r_first), (c_first, c_first), np.zeros((0, 0))
    local = coords - lo  # small numbers: less rounding
    tops = r_starts[r_first:r_last] - lo[0]
    lefts = c_starts[c_first:c_last] - lo[1]
    # the prefix area is flat beyond the bounding box: clip the window edges into it
    ys, iy = np.unique(np.clip(np.concatenate([tops, tops + window]), 0, hi[0] - lo[0]),
                       return_inverse=True)  # fmt: skip
    xs, ix = np.unique(np.clip(np.concatenate([lefts, lefts + window]), 0, hi[1] - lo[1]),
                       return_inverse=True)  # fmt: skip
    grid = _prefix_area(local, ys, xs)
    n_r, n_c = len(tops), len(lefts)
    top_rows, bottom_rows = grid[iy[:n_r]], grid[iy[n_r:]]
    left, right = ix[:n_c], ix[n_c:]
    areas = bottom_rows[:, right] - top_rows[:, right] - bottom_rows[:, left] + top_rows[:, left]
    return (r_first, r_last), (c_first, c_last), areas


def polygon_area(coords) -> float:
    """Shoelace area of a polygon given as (N, 2) row/col vertices."""
    c = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    y, x = c[:, 0], c[:, 1]
    return abs(float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0])) / 2


def label_frames(annotation, shape, frame: int = 250, window: int = 500, threshold: float = 0.5):
    """Per frame, the position of the first region (file order) covering ``threshold`` of its window.

    Returns an (n_rows, n_cols) int64 array, -1 for unlabelled frames. Overlaps are exact
    polygon/window areas (edge integrals, inclusion-exclusion on the window grid); ties are
    decided with ``TIE_TOLERANCE`` of the window area. ``annotation`` is an ``Annotation`` or a
    sequence of (N, 2) row/col polygons.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    n_rows, n_cols, _ = frame_grid(shape, frame, window)
    need = threshold * window * window * (1 - TIE_TOLERANCE)
    out = np.full((n_rows, n_cols), -1, dtype=np.int64)
    polygons = _regions(annotation)
    for pos in range(len(polygons) - 1, -1, -1):
        coords = polygons[pos]
        if len(coords) < 3 or polygon_area(coords) < need:
            continue  # cannot cover enough of any window
        (r0, r1), (c0, c1), areas = window_overlaps(coords, shape, frame, window)
        if areas.size:
            block = out[r0:r1, c0:c1]
            block[areas >= need] = pos
    return out


def frame_patches(
    annotation,
    shape,
    frame: int = 250,
    window: int = 500,
    threshold: float = 0.5,
    slide: str = "",
    downsamples: Sequence[float] = (1.0,),
    size: int = 256,
    tissue=None,
    min_tissue: float = 0.25,
) -> PatchTable:
    """NEDC frames of a slide as patches: box = the window centred on the frame (level 0).

    Every frame is a row (row-major, ``index`` = frame number); the label is the first region
    covering ``threshold`` of the window (``label_frames``), "" and region id -1 otherwise.
    Windows at the edges stick out of the slide; reading pads them. With a ``tissue`` mask
    (:func:`napari_crystal.tissue.tissue_mask`) only windows with at least ``min_tissue`` of
    tissue are kept, with their frame numbers.
    """
    labels = label_frames(annotation, shape, frame, window, threshold).ravel()
    n_rows, n_cols, margin = frame_grid(shape, frame, window)
    rr, cc = np.divmod(np.arange(n_rows * n_cols, dtype=np.int64), n_cols)
    regions = list(getattr(annotation, "regions", []))
    names = np.array([str(r.label) for r in regions] + [""])
    ids = np.array([int(r.region_id) for r in regions] + [-1], dtype=np.int64)
    if not regions:  # a bare polygon list has no labels or ids
        names = np.array([str(i) for i in range(labels.max(initial=-1) + 1)] + [""])
        ids = np.arange(len(names), dtype=np.int64)
        ids[-1] = -1
    n = len(labels)
    table = PatchTable(
        slide=np.full(n, str(slide)),
        region_id=ids[labels],
        label=names[labels],
        top=rr * frame - margin,
        left=cc * frame - margin,
        height=np.full(n, window),
        width=np.full(n, window),
        level=np.full(n, choose_level(downsamples, window, window, size)),
        kind=np.full(n, "frame"),
        index=np.arange(n),
    )
    if tissue is None:
        return table
    from napari_crystal.tissue import on_tissue

    return on_tissue(table, tissue, min_tissue)
