"""Annotation polygons to a class-index image at a bounded resolution (never level 0 of a slide).

Raster pixel ``i`` at downsample ``d`` covers level-0 pixels ``[i*d, (i+1)*d)``; level-0 pixel
``j`` is centred on coordinate ``j`` (napari's convention), so raster pixel ``i`` is centred on
level-0 coordinate ``i*d + (d-1)/2``. A layer shows it aligned with ``scale=(d, d)`` and
``translate=((d-1)/2, (d-1)/2)`` (:func:`raster_transform`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from napari_crystal.palette import class_index

if TYPE_CHECKING:
    from napari_crystal.io.annotation import Annotation


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
    sizes = np.array([len(r.coords) for r in ann.regions], dtype=np.int64)
    rc = (
        (np.concatenate([r.coords for r in ann.regions]) - offset) / downsample
        if len(sizes)
        else np.zeros((0, 2))
    )
    owner = np.zeros(out_shape, dtype=np.int32)  # 1 + index of the last region covering a pixel
    spans = _spans(rc.reshape(-1, 2), sizes, out_shape)
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
    return _spans(np.concatenate(polygons).reshape(-1, 2), sizes, shape)


def _spans(rc: np.ndarray, sizes: np.ndarray, shape: tuple[int, int]):
    """:func:`polygon_spans` of polygons given as one (N, 2) array and their vertex counts.
    Most edges cross no scanline at a bounded resolution: only the crossing ones go on."""
    empty = (np.zeros(0, np.int64),) * 4
    if not len(rc):
        return empty
    ends = np.cumsum(sizes)
    starts = ends - sizes
    y0 = np.ascontiguousarray(rc[:, 0])
    y1 = np.empty_like(y0)  # the next vertex's row, wrapping within each polygon
    y1[:-1] = y0[1:]
    y1[ends[sizes > 0] - 1] = y0[starts[sizes > 0]]
    first = np.ceil(np.minimum(y0, y1))  # scanlines r with lo <= r < hi
    np.maximum(first, 0, out=first)
    last = np.ceil(np.maximum(y0, y1))
    np.minimum(last, shape[0], out=last)
    last -= first
    crossing = np.flatnonzero(last > 0)
    count = last[crossing].astype(np.int64)
    total = int(count.sum())
    if total == 0:
        return empty
    poly_c = np.searchsorted(ends, crossing, side="right")  # polygon of each crossing edge
    nxt = crossing + 1
    wrap = nxt == ends[poly_c]
    nxt[wrap] = starts[poly_c[wrap]]
    edge = np.repeat(np.arange(len(crossing)), count)
    row = np.repeat(first[crossing].astype(np.int64) - (np.cumsum(count) - count), count)
    row += np.arange(total)
    ey0, ey1 = y0[crossing][edge], y1[crossing][edge]
    ex0, ex1 = rc[crossing, 1][edge], rc[nxt, 1][edge]
    t = (row - ey0) / (ey1 - ey0)
    x = ex0 + t * (ex1 - ex0)
    poly = poly_c[edge]
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


def polygon_area(coords: np.ndarray) -> float:
    """Shoelace area of a polygon (closing vertex optional)."""
    y, x = coords[:, 0], coords[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_length(coords: np.ndarray) -> float:
    """Perimeter of a polygon, closing it if the last vertex is not the first."""
    closed = np.vstack([coords, coords[:1]])
    return float(np.hypot(*np.diff(closed, axis=0).T).sum())


def box_coverage(mask: np.ndarray, downsample: float, top, left, height, width) -> np.ndarray:
    """Share of each level-0 box ``[top, top+height) x [left, left+width)`` that ``mask`` covers.

    ``mask`` pixel ``i`` covers level-0 ``[i*downsample, (i+1)*downsample)``; boxes may cut
    mask pixels (counted by the area they share) and stick out of the mask (no coverage
    there). Exact: bilinear reads of the summed-area table, which is bilinear per pixel.
    """
    m = np.asarray(mask, dtype=bool)
    table = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    table[1:, 1:] = m.cumsum(axis=0, dtype=np.float64).cumsum(axis=1)
    t, lf, h, w = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (top, left, height, width))
    )
    d = float(downsample)

    def corner(y, x):  # covered area (mask pixels) of [0, y) x [0, x)
        y = np.clip(y / d, 0, m.shape[0])
        x = np.clip(x / d, 0, m.shape[1])
        y0 = np.minimum(np.floor(y).astype(np.intp), max(m.shape[0] - 1, 0))
        x0 = np.minimum(np.floor(x).astype(np.intp), max(m.shape[1] - 1, 0))
        fy, fx = y - y0, x - x0
        y1 = np.minimum(y0 + 1, m.shape[0])
        x1 = np.minimum(x0 + 1, m.shape[1])
        top_ = table[y0, x0] * (1 - fx) + table[y0, x1] * fx
        bottom = table[y1, x0] * (1 - fx) + table[y1, x1] * fx
        return top_ * (1 - fy) + bottom * fy

    covered = corner(t + h, lf + w) - corner(t, lf + w) - corner(t + h, lf) + corner(t, lf)
    area = h * w / (d * d)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(area > 0, covered / area, 0.0)
    return np.clip(share, 0.0, 1.0)
