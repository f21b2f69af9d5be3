"""Patch tables: the crops of a slide that become masks (one per region, or NEDC frames).

A patch box is in level-0 pixels, (row, column) order; ``level`` is the pyramid level its crop
is read at (see ``LEVEL_RULE``). Frame labelling is exact polygon/window overlap
(:func:`napari_crystal.geometry.window_overlaps`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from napari_crystal.errors import DatasetError
from napari_crystal.geometry import frame_grid, polygon_area, window_overlaps

LEVEL_RULE = (
    "coarsest pyramid level at which the patch box is still at least `size` pixels on its "
    "shorter side (min(height, width) / downsample >= size); level 0 when no level qualifies"
)
# Memory a mask may take while it is made: about 40 bytes per crop pixel (RGB, float grey
# values, polygon fill counts, masks) plus 2 per output pixel. Work beyond the bound is refused
# before anything is allocated; NAPARI_CRYSTAL_MAX_PATCH_BYTES sets it (bytes, e.g. 8e9).
MAX_PATCH_BYTES_DEFAULT = 2 * 1024**3
BYTES_PER_CROP_PIXEL = 40
BYTES_PER_MASK_PIXEL = 2


def max_patch_bytes() -> int:
    """The bound on one patch's working memory (env NAPARI_CRYSTAL_MAX_PATCH_BYTES or 2 GiB)."""
    text = os.environ.get("NAPARI_CRYSTAL_MAX_PATCH_BYTES", "").strip()
    if not text:
        return MAX_PATCH_BYTES_DEFAULT
    try:
        value = int(float(text))
    except ValueError:
        raise DatasetError(
            None, f"NAPARI_CRYSTAL_MAX_PATCH_BYTES={text!r} is not a number of bytes"
        ) from None
    if value <= 0:
        raise DatasetError(None, f"NAPARI_CRYSTAL_MAX_PATCH_BYTES={text!r} must be positive")
    return value


def _gib(nbytes: float) -> str:
    return f"{nbytes / 1024**3:.1f} GiB" if nbytes >= 1024**3 else f"{nbytes / 1024**2:.0f} MiB"


def crop_shape(top: int, left: int, height: int, width: int, downsample: float):
    """(rows, cols) of a level-0 box read at ``downsample`` (the box's cover at that level)."""
    rows = math.ceil((top + height) / downsample) - math.floor(top / downsample)
    cols = math.ceil((left + width) / downsample) - math.floor(left / downsample)
    return max(1, rows), max(1, cols)


def check_patch_memory(source, what: str, crop: tuple[int, int], size: int) -> None:
    """Refuse a mask whose crop (at its level) and ``size`` output would exceed the bound."""
    need = crop[0] * crop[1] * BYTES_PER_CROP_PIXEL + size * size * BYTES_PER_MASK_PIXEL
    limit = max_patch_bytes()
    if need > limit:
        raise DatasetError(
            source,
            f"{what}: a {crop[0]} x {crop[1]} crop made into a {size} x {size} mask needs about "
            f"{_gib(need)}, more than the {_gib(limit)} allowed "
            "(NAPARI_CRYSTAL_MAX_PATCH_BYTES)",
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
    if hasattr(annotation, "source"):
        from napari_crystal.io.annotation import check_annotation_bounds

        check_annotation_bounds(annotation, shape, path)
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
        crop = crop_shape(top, left, height, width, float(downsamples[level]))
        check_patch_memory(_source(annotation, path), where, crop, size)
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
