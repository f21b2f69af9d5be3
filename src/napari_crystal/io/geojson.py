"""QuPath GeoJSON annotations, read and written.

Read: a ``FeatureCollection``, a bare list of features (QuPath 0.2/0.3) or a bare geometry;
``classification`` as ``{name, color}``, ``{name, colorRGB}`` (signed ARGB), ``{names}`` or a
plain string; ``objectType``/``object_type`` annotation as regions (detections, cells and tiles
only when asked); ``measurements`` as a dict or a list of ``{name, value}``; Polygon holes;
MultiPolygon as one region per part; ``isEllipse``. Written: what QuPath >= 0.4 imports
(FeatureCollection, UUID ids, ``objectType: annotation``, classification name and colour,
closed rings, level-0 (x, y) pixels), plus a ``napari-crystal`` member that carries the NEDC
fields (header, region ids, tissue, confidence, depth) so NEDC files survive the trip.
Coordinates in files are (x, y) = (column, row); the model's are (row, column).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from itertools import chain
from os import PathLike
from pathlib import Path

import msgspec
import numpy as np

from napari_crystal import palette
from napari_crystal._atomic import atomic_write
from napari_crystal.errors import AnnotationError
from napari_crystal.io._common import (
    argb_int_color,
    check_size,
    closed,
    flag_self_intersecting,
    gc_paused,
    hex_color,
    invalid_polygons,
    rgb_of,
    warn_invalid,
    warn_skipped,
)
from napari_crystal.io.annotation import Annotation, Region, RegionColumns, join_tissues

OWN = "napari-crystal"  # our member in written files (QuPath ignores unknown members)
GEOMETRY_TYPES = (
    "Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "MultiLineString",
    "GeometryCollection",
)  # fmt: skip
_TYPE = re.compile(
    rb'"type"\s*:\s*"(FeatureCollection|Feature|Polygon|MultiPolygon|GeometryCollection)"'
)
_REGION_TYPES = {"annotation"}
_OBJECT_IDS = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathTileObject": "tile",
    "TMACoreObject": "tmaCore",
}


def sniff(head: bytes) -> bool:
    """Whether the start of a file looks like GeoJSON with regions (JSON of other kinds: no)."""
    text = head.lstrip()
    if text[:1] not in (b"{", b"["):
        return False
    return _TYPE.search(text) is not None


# --------------------------------------------------------------------------------- reading


def read(path: str | PathLike, detections: bool = False) -> Annotation:
    """Read a QuPath GeoJSON file; ``detections`` also reads detection/cell/tile objects."""
    return _read(path, detections, _Reader.annotation)


def read_columns(path: str | PathLike, detections: bool = False) -> RegionColumns:
    """The file's regions as columns, with :func:`read`'s checks and warnings but no
    :class:`Region` objects (a detections export holds 100,000s). Columns carry the outer
    rings only: holes and ``extra`` (ids, measurements) are left out."""
    return _read(path, detections, _Reader.columns)


def _read(path, detections: bool, build):
    path = Path(path)
    check_size(path)
    data = path.read_bytes()
    if not data or data.isspace():  # (strip() would copy the whole file)
        raise AnnotationError(path, "empty file", 1)
    with gc_paused():
        # The parsed document is dropped before collection resumes: a collection with its
        # millions of objects alive would walk them all (a second on 100,000 features).
        result = build(_Reader(path, detections), _parse(path, data))
    return result


def _parse(path: Path, data: bytes):
    """The JSON document, parsed by msgspec (twice the standard library's speed on large
    files). What msgspec refuses goes to the standard library's parser, which reads NaN and
    Infinity (QuPath writes NaN in measurements; coordinates are checked to be finite ring
    by ring) and words the error with its line; the two agree on everything else."""
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, f"not valid JSON: {exc.msg}", exc.lineno) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise AnnotationError(path, f"not valid JSON: {type(exc).__name__}") from None


def _color_list(value) -> str | None:
    """``[r, g, b]`` (0..255 numbers) as ``"#rrggbb"``; anything else None."""
    if type(value) is not list or len(value) < 3:
        return None
    r, g, b = value[:3]
    if type(r) is int and type(g) is int and type(b) is int:
        if 0 <= r <= 255 and 0 <= g <= 255 and 0 <= b <= 255:
            return f"#{r:02x}{g:02x}{b:02x}"
        return hex_color(max(0, min(255, v)) for v in (r, g, b))
    try:
        if all(type(v) in (int, float) and math.isfinite(v) for v in (r, g, b)):
            return hex_color((r, g, b))
    except OverflowError:
        pass
    return None


class _Reader:
    """Walks the parsed document; every problem names the feature it is in.

    Rings are gathered as the JSON lists they are and turned into arrays all at once at the
    end (one ``np.array`` for every vertex of the file), so 100,000 features cost a few numpy
    calls rather than 100,000; only a file with a bad ring is looked at ring by ring.
    """

    def __init__(self, path: Path, detections: bool):
        self.path = path
        self.detections = detections
        self.class_colors: dict[str, str] = {}
        self.skipped: dict[str, int] = {}
        self.pending: list[tuple] = []  # per region: (label, color, extra, own, n_rings, where)
        self.rings: list[list] = []

    def error(self, where: str, message: str) -> AnnotationError:
        return AnnotationError(self.path, f"{where}: {message}")

    def skip(self, what: str, n: int = 1) -> None:
        self.skipped[what] = self.skipped.get(what, 0) + n

    def walk(self, doc) -> dict:
        """Read every feature into ``pending`` and ``rings``; returns our header member."""
        header = {}
        if isinstance(doc, list):
            features = doc
        elif isinstance(doc, dict):
            kind = doc.get("type")
            if kind == "FeatureCollection":
                features = doc.get("features")
                if not isinstance(features, list):
                    raise AnnotationError(self.path, "FeatureCollection without a features list")
                header = doc.get(OWN) if isinstance(doc.get(OWN), dict) else {}
            elif kind == "Feature":
                features = [doc]
            elif kind in GEOMETRY_TYPES:
                features = [{"type": "Feature", "geometry": doc, "properties": {}}]
            else:
                raise AnnotationError(
                    self.path, f"not GeoJSON: top-level type is {str(kind)[:40]!r}"
                )
        else:
            raise AnnotationError(self.path, "not GeoJSON: neither an object nor a list")
        for k, feature in enumerate(features):
            self.feature(k, feature)
        return header

    def warn_skipped(self) -> None:
        if self.skipped:
            hint = (
                ""
                if self.detections
                or not any(k.startswith(("detection", "cell", "tile")) for k in self.skipped)
                else "; read detections with detections=True"
            )
            warn_skipped(self.path, self.skipped, hint)

    def header(self, header: dict, tissues) -> dict:
        """Annotation's header fields: our member's, else defaults (tissues: the regions')."""
        return {
            "mpp": _number(header.get("mpp")),
            "width": _integer(header.get("width")),
            "height": _integer(header.get("height")),
            "bname": str(header.get("bname") or self.path.stem),
            "tissue": str(header.get("tissue") or join_tissues(tissues)),
            "class_colors": self.class_colors,
        }

    def annotation(self, doc) -> Annotation:
        header = self.walk(doc)
        regions = self.regions()
        self.warn_skipped()
        flag_self_intersecting(self.path, regions)
        return Annotation(regions, **self.header(header, (r.tissue for r in regions)))

    def columns(self, doc) -> RegionColumns:
        """The regions' outer rings and fields as :class:`RegionColumns`."""
        header = self.walk(doc)
        rc, starts, ends = self.vertices()
        n = len(self.pending)
        n_rings = np.fromiter((p[4] for p in self.pending), dtype=np.int64, count=n)
        shell = np.cumsum(n_rings) - n_rings  # each region's outer ring
        sizes = ends[shell] - starts[shell]
        coords = rc
        if len(shell) != len(starts):  # holes: only the outer rings' vertices
            is_shell = np.zeros(len(starts), dtype=bool)
            is_shell[shell] = True
            coords = rc[np.repeat(is_shell, ends - starts)]
        first = np.cumsum(sizes) - sizes
        depth = np.zeros(len(coords), dtype=np.int64)
        region_ids = np.arange(1, n + 1, dtype=np.int64)
        tissues = np.full(n, "", dtype=object)
        confidences = np.ones(n, dtype=np.float64)
        kinds = np.full(n, "polygon", dtype=object)
        holes = {}
        for k, (_, _, _, own, n_ring, _) in enumerate(self.pending):
            if own is not None:
                s, size = int(first[k]), int(sizes[k])
                region_ids[k], tissues[k], depth[s : s + size], confidences[k], kinds[k] = (
                    _own_fields(own, k, size)
                )
            if n_ring > 1:
                r = int(shell[k])
                holes[k] = [rc[starts[h] : ends[h]] for h in range(r + 1, r + n_ring)]
        labels = np.empty(n, dtype=object)
        labels[:] = [p[0] for p in self.pending]
        colors = np.empty(n, dtype=object)
        colors[:] = [p[1] for p in self.pending]
        self.warn_skipped()
        warn_invalid(self.path, invalid_polygons(coords, sizes, holes) if n else [])
        return RegionColumns(
            coords,
            depth,
            first,
            np.arange(n, dtype=np.int64),
            region_ids,
            labels,
            tissues,
            confidences,
            colors=colors,
            kinds=kinds,
            source=str(self.path),
            **self.header(header, tissues),
        )

    def classification(self, where, props: dict) -> tuple[str, str | None]:
        value = props.get("classification")
        if value is None:
            return "", None
        if isinstance(value, str):
            return value, None
        if not isinstance(value, dict):
            raise self.error(where(), "classification is neither an object nor a string")
        name = value.get("name")
        if name is None and isinstance(value.get("names"), list):
            name = ": ".join(str(n) for n in value["names"])  # QuPath's derived-class name
        name = "" if name is None else str(name)
        color = _color_list(value.get("color"))
        rgb = value.get("colorRGB")
        if color is None and type(rgb) is int:
            color = argb_int_color(rgb)
        if color is not None and name and name not in self.class_colors:
            if palette.COLORS.get(name) != color:  # a palette colour tells nothing new
                self.class_colors[name] = color
        return name, color

    def feature(self, k: int, feature) -> None:
        def where() -> str:
            return f"feature {k}"

        if not isinstance(feature, dict):
            raise self.error(where(), "is not a JSON object")
        ftype = feature.get("type")
        if ftype != "Feature":
            if ftype in GEOMETRY_TYPES:  # a bare geometry in a list
                feature = {"type": "Feature", "geometry": feature, "properties": {}}
            else:
                raise self.error(where(), f"type is {str(ftype)[:40]!r}, not 'Feature'")
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise self.error(where(), "properties is not an object")
        kind = props.get("objectType") or props.get("object_type")
        if kind is None:
            kind = _OBJECT_IDS.get(str(feature.get("id")), "annotation")
        kind = str(kind)
        if kind not in _REGION_TYPES and not (
            self.detections and kind in ("detection", "cell", "tile")
        ):
            self.skip(f"{kind} object(s)")
            return
        label, class_color = self.classification(where, props)
        color = _color_list(props["color"]) if "color" in props else None
        if color is None and class_color:
            established = self.class_colors.get(label) or palette.COLORS.get(label)
            if class_color != established:
                color = class_color  # a class colour that differs from the class's first one
        extra: dict = {"objectType": kind}
        fid = feature.get("id")
        if isinstance(fid, str) and fid not in _OBJECT_IDS:
            extra["id"] = fid
        if isinstance(props.get("name"), str):
            extra["name"] = props["name"]
        measurements = props.get("measurements")
        if measurements is not None:
            extra["measurements"] = self.measurements(where(), measurements)
        own = props.get(OWN) if isinstance(props.get(OWN), dict) else None
        region_id = _integer(own.get("region_id")) if own else None
        if region_id is not None and not -(2**63) <= region_id < 2**63:
            raise self.error(where(), f"{OWN} region_id {region_id} is out of range")
        if props.get("isEllipse") is True:
            own = {**(own or {}), "kind": "ellipse"}
        polygons = self.polygons(where, feature.get("geometry"))
        for part, (part_where, rings) in enumerate(polygons):
            region_extra = extra
            if len(polygons) > 1:
                region_extra = dict(extra, part=part)
                region_extra.setdefault("id", str(fid) if fid is not None else f"feature {k}")
            self.pending.append((label, color, region_extra, own, len(rings), part_where))
            self.rings += rings

    def measurements(self, where: str, value) -> dict:
        if isinstance(value, dict):
            return value
        if isinstance(value, list):
            out = {}
            for m in value:
                if not isinstance(m, dict) or "name" not in m:
                    raise self.error(where, "measurements list entry is not {name, value}")
                out[str(m["name"])] = m.get("value")
            return out
        raise self.error(where, "measurements is neither an object nor a list")

    def polygons(self, where, geometry) -> list[tuple]:
        """Each polygon of the geometry as (where, [shell, *holes] JSON rings); others skipped."""
        if geometry is None:
            self.skip("object(s) without geometry")
            return []
        if not isinstance(geometry, dict):
            raise self.error(where(), "geometry is not an object")
        kind = geometry.get("type")
        coords = geometry.get("coordinates")
        if kind == "Polygon":
            return [(where, self.polygon(where, coords))]
        if kind == "MultiPolygon":
            if not isinstance(coords, list):
                raise self.error(where(), "MultiPolygon coordinates are not a list of polygons")
            out = []
            for i, p in enumerate(coords):
                part_where = _Where(where, f"part {i}")
                out.append((part_where, self.polygon(part_where, p)))
            return out
        if kind == "GeometryCollection":
            parts = geometry.get("geometries")
            if not isinstance(parts, list):
                raise self.error(where(), "GeometryCollection without a geometries list")
            out = []
            for i, g in enumerate(parts):
                out += self.polygons(_Where(where, f"geometry {i}"), g)
            return out
        if kind in GEOMETRY_TYPES:
            self.skip(f"{kind}(s)")
            return []
        raise self.error(where(), f"unknown geometry type {str(kind)[:40]!r}")

    def polygon(self, where, rings) -> list:
        if not isinstance(rings, list) or not rings:
            raise self.error(where(), "Polygon coordinates are not a list of rings")
        for i, ring in enumerate(rings):
            if not isinstance(ring, list) or not ring:
                raise self.error(_hole_where(where, i), "ring is not a list of [x, y] positions")
        return rings

    def ring_error(self, r: int, message: str) -> AnnotationError:
        n_rings = np.fromiter((p[4] for p in self.pending), dtype=np.int64)
        k = int(np.searchsorted(np.cumsum(n_rings), r, side="right"))  # the ring's region
        where, hole = self.pending[k][5], r - int(n_rings[:k].sum())
        return self.error(_hole_where(where, hole), message)

    def vertices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every ring's (row, col) vertices in one array, checked; each ring's start and end."""
        rings = self.rings
        if not rings:
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros((0, 2)), empty, empty
        lens = np.fromiter((len(r) for r in rings), dtype=np.int64, count=len(rings))
        xy = None
        try:
            xy = np.array(list(chain.from_iterable(rings)), dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            pass
        if xy is None or xy.ndim != 2 or xy.shape[1] not in (2, 3):
            for r, ring in enumerate(rings):  # find the ring at fault
                try:
                    one = np.array(ring, dtype=np.float64)
                except (ValueError, TypeError, OverflowError):
                    one = None
                if one is None or one.ndim != 2 or one.shape[1] not in (2, 3):
                    raise self.ring_error(r, "ring is not a list of [x, y] positions")
            raise AnnotationError(self.path, "positions mix [x, y] and [x, y, z]")
        ends = np.cumsum(lens)
        starts = ends - lens
        finite = np.isfinite(xy).all(axis=1)
        if not finite.all():
            r = int(np.searchsorted(ends, int(np.argmin(finite)), side="right"))
            raise self.ring_error(r, "coordinates are not finite (NaN or infinity)")
        rc = np.ascontiguousarray(xy[:, 1::-1])  # (x, y[, z]) -> (row, col)
        closed_ = (lens > 1) & (rc[starts] == rc[ends - 1]).all(axis=1)
        points = lens - closed_
        short = np.flatnonzero(points < 3)
        if short.size:
            r = int(short[0])
            raise self.ring_error(r, f"ring has {int(points[r])} point(s): 3 or more needed")
        return rc, starts, ends

    def regions(self) -> list[Region]:
        """The regions, their rings as views into the one array of :meth:`vertices`."""
        rc, starts, ends = self.vertices()
        arrays = [rc[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        zeros = np.zeros(len(rc), dtype=np.int64)  # depths of regions without our member
        regions: list[Region] = []
        r = 0
        for label, color, extra, own, n_rings, _ in self.pending:
            shell, holes = arrays[r], arrays[r + 1 : r + n_rings]
            index = len(regions)
            if own is None:
                start = int(starts[r])
                depth = zeros[start : start + len(shell)]
                region = Region(index, index + 1, label, "", shell, depth, 1.0, holes, color)
            else:
                region_id, tissue, depth, confidence, kind = _own_fields(own, index, len(shell))
                region = Region(
                    index, region_id, label, tissue, shell, depth, confidence, holes, color, kind
                )
            region.extra = extra
            regions.append(region)
            r += n_rings
        return regions


class _Where:
    """A feature's place in the file, spelled out only when an error needs it."""

    def __init__(self, parent, part: str):
        self.parent, self.part = parent, part

    def __call__(self) -> str:
        return f"{self.parent()} {self.part}"


def _hole_where(where, hole: int) -> str:
    return where() if hole == 0 else f"{where()} hole {hole}"


def _own_fields(own: dict, index: int, n: int) -> tuple[int, str, np.ndarray, float, str]:
    """Region id, tissue, vertex depths, confidence and kind from our member of a feature
    (``index``: the region's place, ``n``: its vertices); defaults where one is missing."""
    return (
        _integer(own.get("region_id")) or index + 1,
        str(own.get("tissue") or ""),
        _depth(own.get("depth"), n),
        _number(own.get("confidence")) or 1.0,
        str(own.get("kind") or "polygon"),
    )


def _number(value) -> float | None:
    if type(value) in (int, float):
        try:
            if math.isfinite(value):
                return float(value)
        except OverflowError:
            pass
    return None


def _integer(value) -> int | None:
    number = _number(value)
    return None if number is None or number != int(number) else int(number)


def _finite_or_not_number(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _depth(value, n: int) -> np.ndarray:
    if isinstance(value, list) and len(value) == n:
        try:
            return np.asarray(value, dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            pass
    depth = _integer(value) or 0
    if not -(2**63) <= depth < 2**63:  # unreadable as a depth, as a list of another length is
        depth = 0
    return np.full(n, depth, dtype=np.int64)


# --------------------------------------------------------------------------------- writing


def _xy(rc: np.ndarray) -> list:
    """A closed (x, y) ring as JSON lists, integers where every value is one."""
    ring = closed(rc)[:, ::-1]
    if np.array_equal(ring, np.round(ring)) and np.abs(ring).max(initial=0) < 2**53:
        return ring.astype(np.int64).tolist()
    return ring.tolist()


def _uuid(value) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(uuid.uuid4())


def features(ann: Annotation) -> list[dict]:
    """The QuPath features of an annotation; MultiPolygon parts read from one file are joined
    back into one feature."""
    out: list[dict] = []
    groups: list[list[Region]] = []
    for r in ann.regions:
        prev = groups[-1][-1] if groups else None
        if (
            prev is not None
            and "part" in r.extra
            and "part" in prev.extra
            and r.extra.get("id") == prev.extra.get("id")
            and r.label == prev.label
        ):
            groups[-1].append(r)
        else:
            groups.append([r])
    for group in groups:
        r = group[0]
        class_color = (
            ann.class_colors.get(r.label)
            or r.color
            or (palette.COLORS[r.label] if r.label in palette.COLORS else None)
        )
        props: dict = {"objectType": "annotation"}
        if r.label:
            props["classification"] = {
                "name": r.label,
                "color": rgb_of(class_color or palette.COLORS[palette.UNKNOWN]),
            }
        if r.color and r.color != class_color:
            props["color"] = rgb_of(r.color)
        if "name" in r.extra:
            props["name"] = r.extra["name"]
        if r.kind == "ellipse":
            props["isEllipse"] = True
        if isinstance(r.extra.get("measurements"), dict):
            props["measurements"] = {
                str(k): v if _finite_or_not_number(v) else None
                for k, v in r.extra["measurements"].items()
            }
        depth = r.depth.tolist()
        own: dict = {"region_id": r.region_id, "tissue": r.tissue, "confidence": r.confidence}
        own["depth"] = depth[0] if depth and depth.count(depth[0]) == len(depth) else depth
        if r.kind not in ("polygon", "ellipse"):
            own["kind"] = r.kind
        props[OWN] = own
        polygons = [[_xy(g.coords)] + [_xy(h) for h in g.holes] for g in group]
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        out.append(
            {
                "type": "Feature",
                "id": _uuid(r.extra.get("id")),
                "geometry": geometry,
                "properties": props,
            }
        )
    return out


def format_geojson(ann: Annotation) -> str:
    """The GeoJSON text of an annotation (one line per feature)."""
    header = {
        "mpp": ann.mpp,
        "width": ann.width,
        "height": ann.height,
        "bname": ann.bname,
        "tissue": ann.tissue,
    }
    lines = [json.dumps(f, separators=(",", ":"), allow_nan=False) for f in features(ann)]
    body = ",\n".join(lines)
    return (
        '{"type":"FeatureCollection",'
        f'"{OWN}":{json.dumps(header, allow_nan=False)},\n"features":[\n{body}\n]}}\n'
    )


def write(ann: Annotation, path: str | PathLike) -> Path:
    """Write the annotation as QuPath GeoJSON, atomically."""
    path = Path(path)
    try:
        text = format_geojson(ann)
    except ValueError as exc:  # NaN or infinity somewhere
        raise AnnotationError(path, f"cannot write: {exc}") from None
    atomic_write(path, text.encode("utf-8"), make_parents=False)
    return path
