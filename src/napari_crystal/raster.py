"""Annotation polygons to a class-index image at a bounded resolution (never level 0 of a slide).

Raster pixel ``i`` at downsample ``d`` covers level-0 pixels ``[i*d, (i+1)*d)``; level-0 pixel
``j`` is centred on coordinate ``j`` (napari's convention), so raster pixel ``i`` is centred on
level-0 coordinate ``i*d + (d-1)/2``. A layer shows it aligned with ``scale=(d, d)`` and
``translate=((d-1)/2, (d-1)/2)`` (:func:`raster_transform`).
"""

from __future__ import annotations

import math

import numpy as np

from napari_crystal.nedc import Annotation
from napari_crystal.palette import class_index


def annotation_shape(ann: Annotation) -> tuple[int, int]:
    """Level-0 (rows, cols) of the annotated slide: from the header, else the regions' extent."""
    if ann.height and ann.width:
        return int(ann.height), int(ann.width)
    if not ann.regions:
        return 1, 1
    top = np.max([r.coords.max(axis=0) for r in ann.regions], axis=0)
    return int(top[0]) + 1, int(top[1]) + 1


def raster_transform(downsample: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(scale, translate)`` that puts a raster of this downsample exactly under level 0."""
    offset = (downsample - 1) / 2
    return (downsample, downsample), (offset, offset)


def rasterize_annotation(
    ann: Annotation, shape: tuple[int, int] | None = None, max_side: int = 4096
) -> tuple[np.ndarray, float]:
    """Class index per pixel (``palette.class_index``, 0 = unannotated) and the downsample.

    ``shape`` is the level-0 (rows, cols) size (default: the annotation's width/height). The
    longer side of the result is at most ``max_side``; later regions paint over earlier ones,
    as napari draws later shapes on top.
    """
    rows, cols = shape if shape is not None else annotation_shape(ann)
    downsample = max(1.0, max(rows, cols) / max_side)
    out_shape = (
        min(max_side, max(1, math.ceil(rows / downsample))),
        min(max_side, max(1, math.ceil(cols / downsample))),
    )
    offset = (downsample - 1) / 2
    # Level-0 coordinates -> raster coordinates whose integers are raster pixel centres.
    polygons = [(r.coords - offset) / downsample for r in ann.regions]
    owner = np.zeros(out_shape, dtype=np.int32)  # 1 + index of the last region covering a pixel
    spans = polygon_spans(polygons, out_shape)
    paint_spans(owner, spans)
    lut = np.array([0] + [class_index(r.label) for r in ann.regions], dtype=np.uint8)
    return np.take(lut, owner), downsample  # take: a third of the time of lut[owner]


def polygon_spans(
    polygons: list[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row, first and end column, polygon number of every run of pixels whose centres lie
    inside a polygon (even-odd rule), for all polygons at once (scanline, vectorised)."""
    empty = (np.zeros(0, np.int64),) * 4
    if not polygons:
        return empty
    sizes = np.array([len(p) for p in polygons])
    rc = np.concatenate(polygons).reshape(-1, 2)
    owner = np.repeat(np.arange(len(polygons)), sizes)
    nxt = np.arange(len(rc)) + 1  # next vertex, wrapping within each polygon
    ends = np.cumsum(sizes)
    nxt[ends - 1] = ends - sizes
    y0, x0 = rc[:, 0], rc[:, 1]
    y1, x1 = y0[nxt], x0[nxt]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.maximum(np.ceil(lo), 0).astype(np.int64)  # scanlines r with lo <= r < hi
    last = np.minimum(np.ceil(hi), shape[0]).astype(np.int64)
    count = np.maximum(last - first, 0)
    total = int(count.sum())
    if total == 0:
        return empty
    edge = np.repeat(np.arange(len(y0)), count)
    row = first[edge] + np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    t = (row - y0[edge]) / (y1[edge] - y0[edge])
    x = x0[edge] + t * (x1[edge] - x0[edge])
    poly = owner[edge]
    order = np.lexsort((x, poly * shape[0] + row))  # poly, then row, then x
    row, x, poly = row[order], x[order], poly[order]
    # Crossings pair up within each polygon and row: pixels with x_a <= centre < x_b.
    width = shape[1]
    ca = np.clip(np.ceil(x[0::2]), 0, width).astype(np.int64)
    cb = np.clip(np.ceil(x[1::2]), 0, width).astype(np.int64)
    keep = cb > ca
    return row[0::2][keep], ca[keep], cb[keep], poly[0::2][keep]


def paint_spans(owner: np.ndarray, spans, chunk: int = 1 << 22) -> None:
    """``owner[pixel] = max(owner, polygon + 1)`` over every span, in bounded memory."""
    row, ca, cb, poly = spans
    flat_owner = owner.reshape(-1)
    lengths = cb - ca
    bounds = np.searchsorted(np.cumsum(lengths), np.arange(chunk, int(lengths.sum()), chunk))
    for part in np.split(np.arange(len(row)), bounds + 1):
        if not len(part):
            continue
        n = lengths[part]
        start = row[part] * owner.shape[1] + ca[part]
        flat = np.repeat(start - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
        np.maximum.at(flat_owner, flat, np.repeat(poly[part] + 1, n).astype(owner.dtype))
