"""Masks: a region's polygon or its stained pixels as a binary ``size`` x ``size`` image.

The mask rules (resize, threshold, polygon fill) are stated in ``RESIZE_RULE``,
``THRESHOLD_RULE`` and :mod:`napari_crystal.geometry`; datasets of many masks are in
:mod:`napari_crystal.dataset`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from napari_crystal.patches import Patch

METHODS = ("threshold", "polygon")
CHANNELS = ("grey", "haematoxylin")
RESIZE_RULE = (
    "nearest neighbour: mask pixel (i, j) = crop pixel (floor((i + 0.5) * h / size), "
    "floor((j + 0.5) * w / size)), identical to skimage.transform.resize(order=0)"
)
THRESHOLD_RULE = (
    "Otsu (skimage.filters.threshold_otsu) on the crop's grey (skimage.color.rgb2gray) or "
    "haematoxylin (rgb2hed channel 0) values inside the polygon; stained = grey <= t or "
    "haematoxylin > t, inside the polygon only; no pixel when the values inside are constant"
)

Progress = Callable[[int, int], None] | None


# --------------------------------------------------------------------------- masks


def _level_box(patch: Patch, downsample: float) -> tuple[int, int, int, int]:
    """The patch box at a level: (top, left, height, width) covering the level-0 box."""
    top = math.floor(patch.top / downsample)
    left = math.floor(patch.left / downsample)
    bottom = math.ceil((patch.top + patch.height) / downsample)
    right = math.ceil((patch.left + patch.width) / downsample)
    return top, left, max(1, bottom - top), max(1, right - left)


def _fill_polygon(shape, poly: np.ndarray) -> np.ndarray:
    """``skimage.draw.polygon2mask(shape, poly)``, fast: scanline parity, edges by skimage.

    Pixels more than a pixel from every edge are decided by even-odd crossings of their row
    (unambiguous there); pixels near an edge by ``skimage.measure.points_in_poly``, the test
    ``polygon2mask`` applies to every pixel. Equality with ``polygon2mask`` is tested.
    """
    from skimage.measure import points_in_poly

    h, w = int(shape[0]), int(shape[1])
    if len(poly) < 3 or h == 0 or w == 0:
        return np.zeros((h, w), dtype=bool)
    closed = np.vstack([poly, poly[:1]])
    y0, x0, y1, x1 = closed[:-1, 0], closed[:-1, 1], closed[1:, 0], closed[1:, 1]
    rows = np.arange(h, dtype=np.float64)[:, None]
    r_idx, e_idx = np.nonzero(((y0 <= rows) & (rows < y1)) | ((y1 <= rows) & (rows < y0)))
    y0e, x0e = y0[e_idx], x0[e_idx]
    xi = (x1[e_idx] - x0e) * (r_idx - y0e) / (y1[e_idx] - y0e) + x0e
    # a pixel is inside when an odd number of crossings lie right of it: toggle [0, ceil(xi))
    stop = np.clip(np.ceil(xi), 0, w).astype(np.intp)
    flat = np.bincount(r_idx * (w + 1) + stop, minlength=h * (w + 1))
    toggles = (flat.reshape(h, w + 1)[:, :w] & 1).astype(np.uint8)
    toggles[:, 0] ^= (np.bincount(r_idx, minlength=h) & 1).astype(np.uint8)
    inside = np.bitwise_xor.accumulate(toggles, axis=1).astype(bool)
    # the band of pixels within a pixel of an edge, from points every half pixel along edges
    steps = np.maximum(2, np.ceil(np.hypot(y1 - y0, x1 - x0) * 2).astype(np.intp) + 1)
    e = np.repeat(np.arange(len(steps)), steps)
    starts = np.cumsum(steps) - steps
    t = (np.arange(len(e)) - starts[e]) / (steps[e] - 1)  # linspace(0, 1, k) per edge
    by = np.floor(y0[e] + t * (y1[e] - y0[e])).astype(np.intp)
    bx = np.floor(x0[e] + t * (x1[e] - x0[e])).astype(np.intp)
    band = np.zeros((h, w), dtype=bool)
    for dy in (-1, 0, 1, 2):
        for dx in (-1, 0, 1, 2):
            ry, rx = by + dy, bx + dx
            ok = (ry >= 0) & (ry < h) & (rx >= 0) & (rx < w)
            band[ry[ok], rx[ok]] = True
    pts = np.argwhere(band)
    if len(pts):
        inside[band] = points_in_poly(pts.astype(np.float64), poly)
    return inside


def polygon_mask(polygon, shape, top: float = 0, left: float = 0, downsample: float = 1.0):
    """Pixels of a ``shape`` crop at ``downsample`` (origin at level-0 ``top, left``) in the polygon.

    Same pixels as ``skimage.draw.polygon2mask`` (centre in, boundary included), computed by
    scanlines; level-0 pixel k has its centre at coordinate k, a level pixel at the centre of
    the block it covers.
    """
    coords = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    local = (coords - (top, left) - (downsample - 1) / 2) / downsample
    return _fill_polygon(shape, local)


def threshold_mask(rgb: np.ndarray, inside: np.ndarray, channel: str = "grey") -> np.ndarray:
    """Stained pixels of an RGB crop by Otsu inside ``inside`` (see ``THRESHOLD_RULE``)."""
    from skimage.filters import threshold_otsu

    if channel == "grey":
        from skimage.color import rgb2gray

        values = rgb2gray(rgb)
    elif channel == "haematoxylin":
        from skimage.color import rgb2hed

        values = rgb2hed(rgb)[..., 0]
    else:
        raise ValueError(f"unknown threshold channel {channel!r}; expected one of {CHANNELS}")
    picked = values[inside]
    if picked.size == 0 or picked.min() == picked.max():
        return np.zeros(inside.shape, dtype=bool)
    t = threshold_otsu(picked)
    stained = values <= t if channel == "grey" else values > t
    return stained & inside


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D bool mask to ``size`` x ``size`` (``RESIZE_RULE``)."""
    h, w = mask.shape
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(np.intp)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(np.intp)
    return mask[np.ix_(rows, cols)]


def make_mask(
    slide,
    patch: Patch,
    polygon,
    method: str = "threshold",
    size: int = 256,
    channel: str = "grey",
    level: int | None = None,
) -> np.ndarray:
    """Binary (size, size) mask of a patch, from its crop at ``patch.level`` (or ``level``).

    ``method="polygon"``: the region's shape (no pixels are read). ``"threshold"``: stained
    pixels inside the polygon (``THRESHOLD_RULE``). ``polygon`` None means the whole box.
    """
    if method not in METHODS:
        raise ValueError(f"unknown mask method {method!r}; expected one of {METHODS}")
    level = patch.level if level is None else int(level)
    ds = float(slide.downsamples[level])
    top, left, h, w = _level_box(patch, ds)
    if polygon is None:
        inside = np.ones((h, w), dtype=bool)
    else:
        inside = polygon_mask(polygon, (h, w), top * ds, left * ds, ds)
    if method == "polygon":
        crop_mask = inside
    else:
        # read_region takes level-0 top/left and floors them to the level as _level_box does
        rgb = np.asarray(slide.read_region(level, patch.top, patch.left, h, w))[..., :3]
        crop_mask = threshold_mask(rgb, inside, channel)
    return resize_mask(crop_mask, size)
