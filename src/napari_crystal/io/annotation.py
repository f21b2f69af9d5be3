"""The annotation model every reader returns and every writer takes: a slide's labelled regions.

Coordinates are level-0 (row, column) pixels, as :mod:`napari_crystal.geometry` defines them.
Format modules (``nedc``, and others beside it) only translate files to and from this model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from napari_crystal.errors import AnnotationError, shorten
from napari_crystal.geometry import polygon_area, polygon_length
from napari_crystal.palette import LABELS

# Coordinates are float64: integers up to 2**53 are exact, anything larger is not a pixel.
MAX_COORDINATE = 2**53
# How far a vertex may lie outside the slide it is drawn on, as a fraction of the slide's side
# (ImageScope lets a stroke run a little past the edge); at least BOUNDS_MARGIN_MIN pixels.
BOUNDS_TOLERANCE = 0.10
BOUNDS_MARGIN_MIN = 256


class UnknownLabelWarning(UserWarning):
    """A region label outside the palette: kept as it is, because corpora grow."""


class ConversionWarning(UserWarning):
    """Something a file holds that the target format cannot carry, or a reader had to skip."""


@dataclass(eq=False, slots=True)
class Region:
    """One labelled polygon: ``coords`` (N, 2) float64 row/col level-0 pixels, ``depth`` (N,).

    ``label`` is the class name as the source file spells it (``dcis``, ``Tumor``...);
    ``holes`` are inner rings ((K, 2) row/col arrays); ``color`` is ``"#rrggbb"`` or None;
    ``kind`` is the shape the source drew (``polygon``, ``rectangle``, ``ellipse``); ``extra``
    keeps what a format carries beside the geometry (ids, measurements, names) and is not
    compared.
    """

    index: int
    region_id: int
    label: str
    tissue: str
    coords: np.ndarray
    depth: np.ndarray
    confidence: float = 1.0
    holes: list[np.ndarray] = field(default_factory=list)
    color: str | None = None
    kind: str = "polygon"
    extra: dict = field(default_factory=dict)
    line: int | None = field(default=None, compare=False)  # where it starts in its file

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
        if self.holes:
            self.holes = [np.asarray(h, dtype=np.float64).reshape(-1, 2) for h in self.holes]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Region):
            return NotImplemented
        return (
            (self.index, self.region_id, self.label, self.tissue, self.confidence)
            == (other.index, other.region_id, other.label, other.tissue, other.confidence)
            and (self.color, self.kind) == (other.color, other.kind)
            and np.array_equal(self.coords, other.coords)
            and np.array_equal(self.depth, other.depth)
            and len(self.holes) == len(other.holes)
            and all(np.array_equal(a, b) for a, b in zip(self.holes, other.holes, strict=True))
        )

    @property
    def area(self) -> float:
        """Polygon area in square level-0 pixels (shoelace; closed or not), holes taken out."""
        return polygon_area(self.coords) - sum(polygon_area(h) for h in self.holes)

    @property
    def length(self) -> float:
        """Perimeter of the closed polygon in level-0 pixels."""
        return polygon_length(self.coords)


@dataclass
class Annotation:
    """A slide's regions and the header: pixel size (microns), level-0 size, base name, tissue.

    ``class_colors`` maps a class name to ``"#rrggbb"`` where the source gives class colours
    (QuPath classifications, ASAP groups, ImageScope layers).
    """

    regions: list[Region] = field(default_factory=list)
    mpp: float | None = None
    width: int | None = None
    height: int | None = None
    bname: str = ""
    tissue: str = ""
    source: str | None = field(default=None, compare=False)
    class_colors: dict[str, str] = field(default_factory=dict)

    def color_of(self, region: Region) -> str | None:
        """The region's own colour, else its class colour, else None."""
        return region.color or self.class_colors.get(region.label)


@dataclass(eq=False)
class RegionColumns:
    """An annotation's regions as columns: all vertices in one array, one entry per region in
    the others. What a reader gives for cell-level files (100,000s of regions), where one
    :class:`Region` object each would cost seconds; header fields as in :class:`Annotation`.

    Region ``k`` has vertices ``coords[starts[k]:starts[k + 1]]`` (the last: to the end);
    ``lines`` is each region's first line in its file (None: not known); ``colors`` is
    ``"#rrggbb"`` or None per region and ``kinds`` the shape drawn (None: no region has a
    colour; all polygons). Holes and ``extra`` are not carried.
    """

    coords: np.ndarray  # (V, 2) float64
    depth: np.ndarray  # (V,) int64
    starts: np.ndarray  # (R,) int64
    indices: np.ndarray  # (R,) int64, the file's region index
    region_ids: np.ndarray  # (R,) int64
    labels: np.ndarray  # (R,) object (str)
    tissues: np.ndarray  # (R,) object (str)
    confidences: np.ndarray  # (R,) float64
    lines: np.ndarray | None = None  # (R,) int64
    colors: np.ndarray | None = None  # (R,) object
    kinds: np.ndarray | None = None  # (R,) object
    mpp: float | None = None
    width: int | None = None
    height: int | None = None
    bname: str = ""
    tissue: str = ""
    source: str | None = None
    class_colors: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def sizes(self) -> np.ndarray:
        """Vertices per region."""
        return np.diff(np.append(self.starts, len(self.coords)))

    def region(self, k: int) -> Region:
        """Region ``k`` as a :class:`Region` (its arrays are views into the columns)."""
        s, e = int(self.starts[k]), int(self.starts[k]) + int(self.sizes[k])
        return Region(
            int(self.indices[k]),
            int(self.region_ids[k]),
            self.labels[k],
            self.tissues[k],
            self.coords[s:e],
            self.depth[s:e],
            float(self.confidences[k]),
            color=None if self.colors is None else self.colors[k],
            kind="polygon" if self.kinds is None else self.kinds[k],
            line=None if self.lines is None else int(self.lines[k]),
        )

    def annotation(self) -> Annotation:
        """The :class:`Annotation` of these regions (one :class:`Region` each, in order)."""
        n = len(self.starts)
        ends = (self.starts + self.sizes).tolist()
        starts = self.starts.tolist()
        coords, depth = self.coords, self.depth
        lines = [None] * n if self.lines is None else self.lines.tolist()
        colors = [None] * n if self.colors is None else self.colors.tolist()
        kinds = ["polygon"] * n if self.kinds is None else self.kinds.tolist()
        regions = [
            Region(i, rid, label, tissue, coords[s:e], depth[s:e], conf, color=c, kind=k, line=ln)
            for i, rid, label, tissue, s, e, conf, c, k, ln in zip(
                self.indices.tolist(),
                self.region_ids.tolist(),
                self.labels.tolist(),
                self.tissues.tolist(),
                starts,
                ends,
                self.confidences.tolist(),
                colors,
                kinds,
                lines,
                strict=True,
            )
        ]
        return Annotation(
            regions,
            self.mpp,
            self.width,
            self.height,
            self.bname,
            self.tissue,
            self.source,
            dict(self.class_colors),
        )

    @classmethod
    def from_annotation(cls, ann: Annotation) -> RegionColumns:
        """The columns of an annotation's regions (holes and ``extra`` left out)."""
        regions = ann.regions
        sizes = np.fromiter((len(r.coords) for r in regions), dtype=np.int64, count=len(regions))

        def column(values, dtype=object) -> np.ndarray:
            if dtype is not object:
                return np.fromiter(values, dtype=dtype, count=len(regions))
            out = np.empty(len(regions), dtype=object)
            out[:] = list(values)
            return out

        return cls(
            np.concatenate([r.coords for r in regions]) if regions else np.zeros((0, 2)),
            np.concatenate([r.depth for r in regions]) if regions else np.zeros(0, np.int64),
            np.cumsum(sizes) - sizes,
            column((r.index for r in regions), np.int64),
            column((r.region_id for r in regions), np.int64),
            column(r.label for r in regions),
            column(r.tissue for r in regions),
            column((r.confidence for r in regions), np.float64),
            None
            if any(r.line is None for r in regions)
            else column((r.line for r in regions), np.int64),
            column(r.color for r in regions),
            column(r.kind for r in regions),
            ann.mpp,
            ann.width,
            ann.height,
            ann.bname,
            ann.tissue,
            ann.source,
            dict(ann.class_colors),
        )


def region_tissues(regions: list[Region]) -> str:
    """The distinct tissue values in file order, joined by ", " as the CSV header has them."""
    return join_tissues(r.tissue for r in regions)


def join_tissues(tissues: Iterable[str]) -> str:
    """:func:`region_tissues` of the regions' tissue values (columns hold no regions)."""
    return ", ".join(dict.fromkeys(t for t in tissues if t))


def collinear(coords: np.ndarray) -> bool:
    """Whether all vertices lie on one line (a polygon without area). A figure-eight whose
    lobes cancel in the shoelace sum is not: it still covers pixels."""
    d = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    d = d - d[0]
    far = d[np.argmax(np.abs(d).sum(axis=1))]
    return bool((d[:, 0] * far[1] == d[:, 1] * far[0]).all())


def _where(region: Region, pos: int | None = None) -> str:
    label = shorten(repr(region.label), 40)
    return f"region {region.region_id} ({label}{'' if pos is None else f', #{pos}'})"


def _collinear_regions(coords: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per region (rows ``starts[k]:starts[k+1]`` of ``coords``): all vertices on one line?
    `collinear` for every region at once (a slide can carry 200,000 regions)."""
    counts = np.diff(np.append(starts, len(coords)))
    region_of_row = np.repeat(np.arange(len(starts)), counts)
    d = coords - coords[starts][region_of_row]
    norm = np.abs(d).sum(axis=1)
    top = np.maximum.reduceat(norm, starts)
    is_top = np.flatnonzero(norm == top[region_of_row])
    far = d[is_top[np.searchsorted(is_top, starts)]]  # first farthest vertex of each region
    cross = d[:, 0] * far[region_of_row, 1] != d[:, 1] * far[region_of_row, 0]
    return ~np.logical_or.reduceat(cross, starts)


def check_regions(path, ann: Annotation | RegionColumns) -> None:
    """What every reader checks before returning: a positive pixel size, finite coordinates
    within ``MAX_COORDINATE``, and polygons with an area (not all vertices on one line)."""
    if ann.mpp is not None and not (np.isfinite(ann.mpp) and ann.mpp > 0):
        raise AnnotationError(path, f"MicronsPerPixel must be positive, got {ann.mpp:g}")
    coords, starts, where = _vertices(ann)
    if not len(starts):
        return
    ok = np.isfinite(coords) & (np.abs(coords) <= MAX_COORDINATE)
    if not ok.all():
        row = int(np.flatnonzero(~ok.all(axis=1))[0])
        region, pos = where(int(np.searchsorted(starts, row, side="right")) - 1)
        bad = coords[row][~ok[row]][0]
        raise AnnotationError(
            path,
            f"{_where(region, pos)} has a coordinate {bad:g} beyond +-2**53 pixels",
            getattr(region, "line", None),
        )
    flat = np.flatnonzero(_collinear_regions(coords, starts))
    if flat.size:
        region, pos = where(int(flat[0]))
        raise AnnotationError(
            path,
            f"{_where(region, pos)} has no area (all its vertices lie on one line)",
            getattr(region, "line", None),
        )


def _vertices(ann: Annotation | RegionColumns):
    """The vertices of the regions that have any, in one array; each one's first row; and
    ``where(k)``: region ``k`` of those and its position in the file, to name it."""
    if isinstance(ann, RegionColumns):
        return ann.coords, ann.starts, lambda k: (ann.region(k), k)
    positions = [pos for pos, r in enumerate(ann.regions) if len(r.coords)]
    if not positions:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.intp), None
    regions = [ann.regions[pos] for pos in positions]
    sizes = np.array([len(r.coords) for r in regions], dtype=np.intp)
    return (
        np.concatenate([r.coords for r in regions]),
        np.cumsum(sizes) - sizes,
        lambda k: (regions[k], positions[k]),
    )


def check_annotation_bounds(annotation: Annotation | RegionColumns, shape, slide=None) -> None:
    """Refuse regions reaching beyond a slide of level-0 ``shape`` (rows, cols) by more than
    ``BOUNDS_TOLERANCE`` of its side: an annotation for another slide, or a garbage vertex
    that would make mask work huge. Names the region and its line."""
    rows, cols = int(shape[0]), int(shape[1])
    margin = np.array(
        [
            max(BOUNDS_MARGIN_MIN, BOUNDS_TOLERANCE * rows),
            max(BOUNDS_MARGIN_MIN, BOUNDS_TOLERANCE * cols),
        ]
    )
    lo, hi = -margin, np.array([rows, cols]) + margin
    coords, starts, where = _vertices(annotation)
    outside = ((coords < lo) | (coords > hi)).any(axis=1)
    if outside.any():
        row = int(np.argmax(outside))
        region, pos = where(int(np.searchsorted(starts, row, side="right")) - 1)
        r, c = coords[row]
        on = f" {slide}" if slide else ""
        raise AnnotationError(
            annotation.source,
            f"{_where(region, pos)} has a vertex at (row {r:.0f}, column {c:.0f}), outside "
            f"the slide{on} ({rows} x {cols} pixels) by more than "
            f"{100 * BOUNDS_TOLERANCE:g}% of its size",
            getattr(region, "line", None),
        )


def _warn_unknown(path, regions: list[Region] = (), labels=None) -> None:
    """Warn once about labels outside the palette: the regions' (or ``labels``, any iterable)."""
    names = {r.label for r in regions} if labels is None else set(labels)
    unknown = sorted(names - set(LABELS))
    if unknown:
        shown = [shorten(repr(u), 80) for u in unknown[:10]]
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        names = ", ".join(shown) + more
        warnings.warn(
            f"{path}: unknown label(s) {names} kept as they are", UnknownLabelWarning, stacklevel=3
        )
