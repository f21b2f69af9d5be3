"""Tissue detection: which parts of a slide hold tissue, so frames skip blank glass.

``TISSUE_RULE`` states the method: Otsu on the saturation of a small thumbnail, cleaned with
small morphology. The thumbnail comes from a coarse pyramid level (or level 0 read in bands
and averaged, for a single-level slide); no level is ever read whole at full size.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from napari_crystal.errors import SlideError
from napari_crystal.geometry import box_coverage

TISSUE_RULE = (
    "tissue = saturation (HSV: (max - min) / max of R, G, B) of a thumbnail (longer side <= max_side) "
    "above max(Otsu threshold, min_saturation), then binary closing with a disk of `radius` "
    "thumbnail pixels, holes and objects smaller than `min_area` level-0 pixels^2 filled/removed"
)
# Glass is grey (saturation ~0.01 on Aperio scans); without a floor Otsu would split the noise
# of a blank slide into "tissue" and "glass".
MIN_SATURATION = 0.05
_BAND_BYTES = 1 << 26  # level rows read at a time for the thumbnail: ~64 MB of RGB


class TissueMask(NamedTuple):
    """A boolean tissue mask and its downsample: mask pixel ``i`` covers level-0 rows
    ``[i * downsample, (i + 1) * downsample)`` (same for columns)."""

    mask: np.ndarray
    downsample: float

    @property
    def fraction(self) -> float:
        """Share of the thumbnail that is tissue (0 for a blank slide)."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def box_fraction(self, top, left, height, width) -> np.ndarray:
        """Share of each level-0 box (arrays or scalars) covered by tissue, in [0, 1]."""
        return box_coverage(self.mask, self.downsample, top, left, height, width)


def thumbnail(slide, max_side: int = 1024) -> tuple[np.ndarray, float]:
    """An RGB uint8 thumbnail whose longer side is at most ``max_side``, and its downsample.

    Reads the coarsest level still at least half of ``max_side`` on its longer side (level
    0 only for a single-level slide), in bands of rows, and averages blocks of ``f x f``
    level pixels to fit ``max_side`` (the part of a block outside the slide counts as white).
    """
    target = max(1.0, max(int(n) for n in slide.shape) / max_side)
    sides = [max(int(n) for n in arr.shape[:2]) for arr in slide.levels]
    level = max((i for i, side in enumerate(sides) if side >= max_side / 2), default=0)
    ds = float(slide.downsamples[level])
    factor = max(1, math.ceil(target / ds - 1e-9))
    arr = slide.levels[level]
    rows, cols = (int(n) for n in arr.shape[:2])
    out_rows, out_cols = -(-rows // factor), -(-cols // factor)
    out = np.empty((out_rows, out_cols, 3), dtype=np.uint8)
    band = max(1, _BAND_BYTES // max(1, cols * 3 * factor)) * factor  # level rows per read
    for r0 in range(0, rows, band):
        r1 = min(rows, r0 + band)
        block = np.asarray(arr[r0:r1, :])[..., :3]
        if factor == 1:
            out[r0:r1] = block
            continue
        n = -(-(r1 - r0) // factor)
        padded = np.full((n * factor, out_cols * factor, 3), 255, dtype=np.uint8)
        padded[: r1 - r0, :cols] = block
        sums = padded.reshape(n, factor, out_cols, factor, 3).sum(axis=(1, 3), dtype=np.uint32)
        half = factor * factor // 2
        out[r0 // factor : r0 // factor + n] = (sums + half) // (factor * factor)
    return out, ds * factor


def tissue_mask(
    slide,
    *,
    max_side: int = 1024,
    min_saturation: float = MIN_SATURATION,
    radius: int = 2,
    min_area: float = 128 * 128,
    allow_empty: bool = False,
) -> TissueMask:
    """Tissue mask of a slide (``TISSUE_RULE``) at the thumbnail's downsample.

    Parameters
    ----------
    slide : Slide or path
        An open slide, or a path (opened and closed here).
    max_side : int
        Longer side of the thumbnail the mask is computed on.
    min_saturation : float
        Saturation that is never tissue, whatever Otsu says (glass on a blank slide).
    radius : int
        Disk radius (thumbnail pixels) of the closing that joins nearby tissue bits.
    min_area : float
        Holes and specks smaller than this (level-0 pixels^2) are filled / dropped.
    allow_empty : bool
        Return an all-False mask for a slide without tissue instead of raising.

    Returns
    -------
    TissueMask
        ``(mask, downsample)``: boolean mask, and level-0 pixels per mask pixel.

    Raises
    ------
    SlideError
        The slide has no tissue (unless ``allow_empty``), naming the slide.
    """
    if isinstance(slide, (str, os.PathLike)):
        from napari_crystal.io.slide import open_slide

        with open_slide(slide) as opened:
            return tissue_mask(
                opened,
                max_side=max_side,
                min_saturation=min_saturation,
                radius=radius,
                min_area=min_area,
                allow_empty=allow_empty,
            )
    from skimage import morphology
    from skimage.filters import threshold_otsu

    thumb, downsample = thumbnail(slide, max_side)
    saturation = _saturation(thumb)
    low, high = float(saturation.min()), float(saturation.max())
    threshold = threshold_otsu(saturation) if high > low else high
    mask = saturation > max(float(threshold), min_saturation)
    if radius > 0:
        mask = morphology.closing(mask, morphology.disk(radius))
    area = max(1, int(min_area / (downsample * downsample)))
    mask = ~_without_small(~mask, area)  # fill holes
    mask = _without_small(mask, area)  # drop specks
    if not mask.any() and not allow_empty:
        raise SlideError(
            getattr(slide, "path", None),
            f"no tissue found: no saturation above {max(float(threshold), min_saturation):.3f} "
            f"in a {thumb.shape[1]}x{thumb.shape[0]} thumbnail (blank glass?)",
        )
    return TissueMask(mask, float(downsample))


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation ``(max - min) / max`` (as ``skimage.color.rgb2hsv``), 0 for black."""
    high = rgb.max(axis=-1).astype(np.float32)
    low = rgb.min(axis=-1).astype(np.float32)
    return np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)


def _without_small(mask: np.ndarray, area: int) -> np.ndarray:
    """``mask`` without its 4-connected components of fewer than ``area`` pixels."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= area
    keep[0] = False
    return keep[labels]


def on_tissue(table, tissue: TissueMask, min_fraction: float = 0.25):
    """Rows of a patch table whose level-0 box has at least ``min_fraction`` tissue.

    Rows keep their ``index`` (frame number), so results map back onto the frame grid.
    """
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    share = tissue.box_fraction(table.top, table.left, table.height, table.width)
    return table[np.flatnonzero(share >= min_fraction)]
