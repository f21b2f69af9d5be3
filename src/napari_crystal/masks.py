"""Masks: a region's polygon or its stained pixels as a binary ``size`` x ``size`` image.

The mask rules (resize, threshold, polygon fill) are stated in ``RESIZE_RULE``,
``THRESHOLD_RULE`` and :mod:`napari_crystal.geometry`; datasets of many masks are in
:mod:`napari_crystal.dataset`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_crystal.geometry import level_box, polygon_mask
from napari_crystal.patches import Patch, check_patch_memory

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
    top, left, h, w = level_box(patch.top, patch.left, patch.height, patch.width, ds)
    check_patch_memory(patch.slide, f"patch {patch.kind} {patch.index}", (h, w), int(size))
    if polygon is None:
        inside = np.ones((h, w), dtype=bool)
    else:
        inside = polygon_mask(polygon, (h, w), top * ds, left * ds, ds)
    if method == "polygon":
        crop_mask = inside
    else:
        # read_region takes level-0 top/left and floors them to the level as level_box does
        rgb = np.asarray(slide.read_region(level, patch.top, patch.left, h, w))[..., :3]
        crop_mask = threshold_mask(rgb, inside, channel)
    return resize_mask(crop_mask, size)
