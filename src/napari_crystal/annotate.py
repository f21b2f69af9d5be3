"""Annotating by hand: class keys, region ids, colours and measurements of drawn regions.

Plain functions over label lists and vertex arrays (level-0 (row, col) pixels), so the Annotate
widget only wires them to a Shapes layer and the same rules hold wherever regions are drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from napari_crystal import palette

KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")
# The nine NEDC labels on 1-9 (palette order), the first crystal label on 0; the other
# classes are one click away in the widget's class list.
DEFAULT_KEY_CLASSES: tuple[str, ...] = palette.LABELS[: len(KEYS)]

MEASUREMENT_COLUMNS = ("region_id", "class", "area_um2", "perimeter_um", "vertices")


def class_keys(classes: Sequence[str] = DEFAULT_KEY_CLASSES) -> dict[str, str]:
    """``{key: class}`` for keys 1-9 then 0, given up to ten classes in key order.

    Raises
    ------
    ValueError
        More than ten classes, or a class given twice.
    """
    classes = [str(c) for c in classes]
    if len(classes) > len(KEYS):
        raise ValueError(f"at most {len(KEYS)} classes can have a key, got {len(classes)}")
    if len(set(classes)) != len(classes):
        raise ValueError("a class can have only one key")
    return dict(zip(KEYS, classes, strict=False))


def key_of(label: str, keys: dict[str, str]) -> str:
    """The key that sets ``label`` (``""`` when it has none)."""
    for key, value in keys.items():
        if value == label:
            return key
    return ""


def _whole(value) -> int | None:
    """``value`` as a whole number, or None when absent (None, NaN, empty, not whole)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(number) or number != int(number):
        return None
    return int(number)


def assign_region_ids(ids: Sequence) -> np.ndarray:
    """Region ids made unique: the first use of an id keeps it; missing ids and later
    repeats get new ids above the largest in use, in order. Returns int64 ids."""
    out = np.zeros(len(ids), dtype=np.int64)
    seen: set[int] = set()
    fresh: list[int] = []
    for i, value in enumerate(ids):
        number = _whole(value)
        if number is None or number in seen:
            fresh.append(i)
        else:
            seen.add(number)
            out[i] = number
    start = max(seen, default=0) + 1
    out[fresh] = np.arange(start, start + len(fresh), dtype=np.int64)
    return out


def class_colours(labels: Sequence[str], alpha: float = 1.0) -> np.ndarray:
    """(N, 4) RGBA of each label's palette colour (unknown labels get the unknown colour)."""
    labels = np.asarray(labels, dtype=object).astype(str)
    if not len(labels):
        return np.zeros((0, 4))
    names, inverse = np.unique(labels, return_inverse=True)
    table = np.array([palette.rgba(name, alpha) for name in names])
    return table[inverse.reshape(-1)]


def _ring_sums(coords: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per polygon: twice the signed shoelace area, the closed perimeter and the vertex count,
    in a few numpy passes over all vertices (a closing vertex equal to the first is ignored)."""
    rings = []
    for c in coords:
        c = np.asarray(c, dtype=np.float64)[:, -2:]
        if len(c) > 1 and (c[0] == c[-1]).all():
            c = c[:-1]
        rings.append(c)
    sizes = np.array([len(r) for r in rings], dtype=np.int64)
    if not len(rings) or not sizes.sum():
        zero = np.zeros(len(rings))
        return zero, zero, sizes
    flat = np.concatenate(rings)
    starts = np.cumsum(sizes) - sizes
    nxt = np.arange(1, len(flat) + 1)
    ends = starts + sizes - 1
    nxt[ends[sizes > 0]] = starts[sizes > 0]  # each ring's last vertex joins its first
    y, x = flat[:, 0], flat[:, 1]
    cross = x * y[nxt] - y * x[nxt]
    step = np.hypot(y[nxt] - y, x[nxt] - x)
    owner = np.repeat(np.arange(len(rings)), sizes)
    twice_area = np.bincount(owner, weights=cross, minlength=len(rings))
    perimeter = np.bincount(owner, weights=step, minlength=len(rings))
    return twice_area, perimeter, sizes


def measurements(
    coords: Sequence[np.ndarray],
    labels: Sequence[str],
    region_ids: Sequence[int],
    mpp: float | None,
) -> pd.DataFrame:
    """One row per region: id, class, area (um^2), perimeter (um) and vertex count.

    ``coords`` are level-0 pixels; without a pixel size (``mpp`` None) the area and perimeter
    are in pixels and the columns are named ``area_px2`` and ``perimeter_px``.
    """
    twice_area, perimeter, sizes = _ring_sums(coords)
    area = np.abs(twice_area) / 2
    if mpp:
        area_name, length_name = "area_um2", "perimeter_um"
        area, perimeter = area * float(mpp) ** 2, perimeter * float(mpp)
    else:
        area_name, length_name = "area_px2", "perimeter_px"
    return pd.DataFrame(
        {
            "region_id": np.asarray(region_ids, dtype=np.int64).reshape(-1),
            "class": pd.Series([str(v) for v in labels], dtype=object),
            area_name: area,
            length_name: perimeter,
            "vertices": sizes,
        }
    )


def region_bounds(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) (row, col) corners of a region's vertices."""
    c = np.asarray(coords, dtype=np.float64)[:, -2:]
    return c.min(axis=0), c.max(axis=0)


def view_for(coords: np.ndarray, view_size: tuple[float, float], margin: float = 0.2):
    """Centre and zoom (screen pixels per level-0 pixel) that show a region with a margin
    in a view of ``view_size`` (height, width) screen pixels."""
    low, high = region_bounds(coords)
    extent = np.maximum((high - low) * (1 + 2 * margin), 1.0)
    zoom = float(np.min(np.asarray(view_size, dtype=float) / extent))
    return (low + high) / 2, zoom
