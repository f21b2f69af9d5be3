"""The annotation model every reader returns and every writer takes: a slide's labelled regions.

Coordinates are level-0 (row, column) pixels, as :mod:`napari_crystal.geometry` defines them.
Format modules (``nedc``, and others beside it) only translate files to and from this model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from napari_crystal.geometry import polygon_area, polygon_length
from napari_crystal.palette import LABELS


class UnknownLabelWarning(UserWarning):
    """A region label outside the palette: kept as it is, because corpora grow."""


@dataclass(eq=False)
class Region:
    """One labelled polygon: ``coords`` (N, 2) float64 row/col level-0 pixels, ``depth`` (N,)."""

    index: int
    region_id: int
    label: str
    tissue: str
    coords: np.ndarray
    depth: np.ndarray
    confidence: float = 1.0

    def __post_init__(self) -> None:
        coords, depth = self.coords, self.depth
        # Readers pass arrays of the right kind already (a slide can have 200,000 regions).
        if not (
            type(coords) is np.ndarray and coords.dtype == np.float64 and coords.shape[1:] == (2,)
        ):
            coords = self.coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        if depth is None:
            self.depth = np.zeros(len(coords), dtype=np.int64)
        elif not (type(depth) is np.ndarray and depth.dtype == np.int64 and depth.ndim == 1):
            self.depth = np.asarray(depth, dtype=np.int64).reshape(-1)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Region):
            return NotImplemented
        return (
            (self.index, self.region_id, self.label, self.tissue, self.confidence)
            == (other.index, other.region_id, other.label, other.tissue, other.confidence)
            and np.array_equal(self.coords, other.coords)
            and np.array_equal(self.depth, other.depth)
        )

    @property
    def area(self) -> float:
        """Polygon area in square level-0 pixels (shoelace; closed or not)."""
        return polygon_area(self.coords)

    @property
    def length(self) -> float:
        """Perimeter of the closed polygon in level-0 pixels."""
        return polygon_length(self.coords)


@dataclass
class Annotation:
    """A slide's regions and the header: pixel size (microns), level-0 size, base name, tissue."""

    regions: list[Region] = field(default_factory=list)
    mpp: float | None = None
    width: int | None = None
    height: int | None = None
    bname: str = ""
    tissue: str = ""
    source: str | None = field(default=None, compare=False)


def region_tissues(regions: list[Region]) -> str:
    """The distinct tissue values in file order, joined by ", " as the CSV header has them."""
    return ", ".join(dict.fromkeys(r.tissue for r in regions if r.tissue))


def _warn_unknown(path, regions: list[Region]) -> None:
    unknown = sorted({r.label for r in regions} - set(LABELS))
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        warnings.warn(
            f"{path}: unknown label(s) {names} kept as they are", UnknownLabelWarning, stacklevel=3
        )
