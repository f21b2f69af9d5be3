"""Aperio ImageScope XML as ImageScope writes it (NEDC's XML is a narrow dialect of it).

Region types: 0 free-hand polygon, 1 rectangle, 2 ellipse (two bounding-box corners, read as
a closed 128-gon), anything else (arrows, rulers, types we do not know) skipped and counted
in one warning. Vertices are kept as floats. Every ``Annotation`` layer is read: a region
with an empty ``Text`` takes the layer's ``Name`` as its class; the layer's ``LineColor``
(0xBBGGRR) is the region's colour. ``NegativeROA="1"`` regions become holes of the region
they lie in. Polygons are closed (first vertex repeated), as NEDC's are.

A file in which every region is a labelled polygon (``Type`` 0 or absent, ``Text`` set, no
negative regions) is NEDC's dialect and is read by :mod:`napari_crystal.io.nedc` exactly as
before (integer-truncated vertices, its errors), plus the layers' colours.
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path

import numpy as np

from napari_crystal.errors import AnnotationError
from napari_crystal.io._common import (
    bgr_int_color,
    check_size,
    closed,
    ellipse_polygon,
    flag_self_intersecting,
    gc_paused,
    open_vertices,
    parse_events,
    warn_skipped,
)
from napari_crystal.io.annotation import Annotation, Region, region_tissues

_ROOT = re.compile(rb"<Annotations[\s>/]")
TYPES = {"0": "polygon", "1": "rectangle", "2": "ellipse"}
SKIPPED = {"3": "arrow(s)", "4": "ruler(s)"}


def sniff(head: bytes) -> bool:
    """Whether the start of a file is ImageScope-style XML (root ``<Annotations>``)."""
    from napari_crystal.io.nedc import _sniff_bytes

    return _sniff_bytes(head) == "xml"


class _Target:
    """expat target: layers, regions and vertices, without an element tree."""

    def __init__(self, path: Path):
        self.path = path
        self.parser = None
        self.stack: list[str] = []
        self.mpp: float | None = None
        self.attrs: dict[str, str] = {}
        self.layer: dict = {}
        self.region: dict | None = None
        self.regions: list[dict] = []
        self.xs: list[str] = []
        self.ys: list[str] = []
        self.zs: list[str] = []
        self.nedc = True  # every region so far is a labelled plain polygon

    def line(self) -> int | None:
        return None if self.parser is None else self.parser.parser.CurrentLineNumber

    def error(self, message: str, line: int | None = None) -> AnnotationError:
        return AnnotationError(self.path, message, line if line is not None else self.line())

    def start(self, tag: str, attrib: dict) -> None:
        # Vertices are nearly every element: taken first, and kept off the element stack
        # (``end`` skips them too), since a vertex has no children we read.
        if tag == "Vertex":
            if self.region is not None and self.stack[-1] == "Vertices":
                self.xs.append(attrib.get("X"))
                self.ys.append(attrib.get("Y"))
                self.zs.append(attrib.get("Z", "0"))
            elif not self.stack:
                raise self.error("root element is <Vertex>, expected <Annotations>")
            return
        parent = self.stack[-1] if self.stack else None
        if parent is None and tag != "Annotations":
            raise self.error(f"root element is <{tag}>, expected <Annotations> (ImageScope XML)")
        if tag == "Region" and parent == "Regions":
            kind = attrib.get("Type", "0").strip() or "0"
            text = attrib.get("Text", "").strip()
            negative = attrib.get("NegativeROA", "0").strip() == "1"
            if kind != "0" or not text or negative:
                self.nedc = False
            self.region = {
                "id": attrib.get("Id"),
                "type": kind,
                "text": text,
                "negative": negative,
                "tissue": None,
                "line": self.line(),
                "layer": self.layer,
            }
            self.xs, self.ys, self.zs = [], [], []
        elif tag == "Attribute" and self.stack[-2:] == ["Region", "Attributes"]:
            if self.region is not None and self.region["tissue"] is None:
                self.region["tissue"] = attrib.get("Value", "")
        elif tag == "Attribute" and self.stack[-2:] == ["Annotation", "Attributes"]:
            name = attrib.get("Name", "").strip().lower()
            if name and name not in self.attrs:
                self.attrs[name] = attrib.get("Value", "")
        elif tag == "Annotation" and parent == "Annotations":
            self.layer = {
                "name": attrib.get("Name", "").strip(),
                "color": attrib.get("LineColor"),
                "id": attrib.get("Id"),
            }
        elif tag == "Annotations" and parent is None:
            self.mpp = _finite(attrib.get("MicronsPerPixel"))
        self.stack.append(tag)

    def end(self, tag: str) -> None:
        if tag == "Vertex":
            return
        self.stack.pop()
        if tag == "Region" and self.region is not None and self.stack[-1:] == ["Regions"]:
            self.region.update(xs=self.xs, ys=self.ys, zs=self.zs)
            self.regions.append(self.region)
            self.region = None

    def data(self, text: str) -> None:
        pass

    def close(self) -> None:
        return None


def _finite(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def read(path: str | PathLike) -> Annotation:
    """Read an ImageScope XML file (NEDC's dialect through :mod:`napari_crystal.io.nedc`)."""
    from napari_crystal.io import nedc

    path = Path(path)
    check_size(path)
    data = path.read_bytes()
    target = _Target(path)
    try:
        with gc_paused():
            parse_events(path, data, target)
    except AnnotationError:
        if target.nedc:  # an NEDC-looking file keeps NEDC's own error
            nedc._parse_xml(path, data)
        raise
    if target.nedc:
        ann = nedc._parse_xml(path, data)
        _add_layer_colors(ann, target)
        return ann
    return _build(path, target)


def _add_layer_colors(ann: Annotation, target: _Target) -> None:
    """Colours of the NEDC dialect's layers: not read by NEDC's reader, carried all the same."""
    if len(ann.regions) != len(target.regions):
        return
    for region, raw in zip(ann.regions, target.regions, strict=True):
        color = _layer_color(raw["layer"])
        if color is not None:
            region.color = color
            ann.class_colors.setdefault(region.label, color)


def _layer_color(layer: dict) -> str | None:
    text = layer.get("color")
    if text is None:
        return None
    try:
        return bgr_int_color(int(float(text)))
    except (ValueError, OverflowError):
        return None


def _vertices(path: Path, raw: dict) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) float vertices and integer depths of a region; a bad number names its line."""
    try:
        x = np.array(raw["xs"], dtype=np.float64)
        y = np.array(raw["ys"], dtype=np.float64)
        zs = raw["zs"]  # "0" nearly always: a third of the conversion saved
        z = np.zeros(len(zs)) if zs.count("0") == len(zs) else np.array(zs, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(
            path, f'<Region Id="{raw["id"]}"> has a vertex X/Y/Z that is not a number', raw["line"]
        ) from None
    if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(z).all()):
        raise AnnotationError(
            path, f'<Region Id="{raw["id"]}"> has a vertex that is not finite', raw["line"]
        )
    if np.abs(z).max(initial=0) >= 2**62:
        raise AnnotationError(
            path, f'<Region Id="{raw["id"]}"> has an out-of-range Z', raw["line"]
        )
    return np.column_stack([y, x]), np.trunc(z).astype(np.int64)


def _three_distinct(rc: np.ndarray) -> bool:
    """Whether a ring has at least three distinct vertices (two passes, no sort)."""
    if len(rc) < 3:
        return False
    d0 = (rc != rc[0]).any(axis=1)
    if not d0.any():
        return False
    d1 = d0 & (rc != rc[int(np.argmax(d0))]).any(axis=1)
    return bool(d1.any())


def _build(path: Path, target: _Target) -> Annotation:
    skipped: dict[str, int] = {}
    positives: list[Region] = []
    negatives: list[tuple[np.ndarray, dict]] = []
    class_colors: dict[str, str] = {}
    for raw in target.regions:
        kind = TYPES.get(raw["type"])
        if kind is None:
            what = SKIPPED.get(raw["type"], f"region(s) of unknown Type {raw['type'][:20]!r}")
            skipped[what] = skipped.get(what, 0) + 1
            continue
        rc, depth = _vertices(path, raw)
        if kind == "ellipse":
            if len(rc) < 2:
                skipped["ellipse(s) without two corners"] = (
                    skipped.get("ellipse(s) without two corners", 0) + 1
                )
                continue
            (y0, x0), (y1, x1) = rc[0], rc[1]
            rc = ellipse_polygon(min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1))
            depth = np.full(len(rc), depth[0], dtype=np.int64)
        elif not _three_distinct(rc) or open_vertices(rc) < 3:
            skipped["degenerate polygon(s) (fewer than 3 distinct vertices)"] = (
                skipped.get("degenerate polygon(s) (fewer than 3 distinct vertices)", 0) + 1
            )
            continue
        else:
            if not (rc[0] == rc[-1]).all():
                rc, depth = closed(rc), np.append(depth, depth[:1])
        if kind == "ellipse" and len(np.unique(np.round(rc, 6), axis=0)) < 3:
            skipped["degenerate ellipse(s)"] = skipped.get("degenerate ellipse(s)", 0) + 1
            continue
        if raw["negative"]:
            negatives.append((rc, raw))
            continue
        layer = raw["layer"]
        label = raw["text"] or layer.get("name", "")
        color = _layer_color(layer)
        if color is not None and label:
            class_colors.setdefault(label, color)
        try:
            region_id = int(float(raw["id"])) if raw["id"] is not None else len(positives) + 1
        except (ValueError, OverflowError):
            raise AnnotationError(
                path, f"<Region> Id={raw['id']!r} is not a number", raw["line"]
            ) from None
        extra = {"layer": layer.get("name", "")} if layer.get("name") else {}
        positives.append(
            Region(
                index=len(positives),
                region_id=region_id,
                label=label,
                tissue=raw["tissue"] or "",
                coords=rc,
                depth=depth,
                color=color,
                kind=kind,
                extra=extra,
            )
        )
    orphans = _attach_holes(positives, negatives)
    if orphans:
        skipped["negative region(s) lying in no region"] = orphans
    warn_skipped(path, skipped)
    flag_self_intersecting(path, positives)
    attrs = target.attrs
    return Annotation(
        positives,
        mpp=target.mpp,
        width=_size(path, attrs, "width"),
        height=_size(path, attrs, "height"),
        bname=attrs.get("bname", path.stem),
        tissue=region_tissues(positives),
        class_colors=class_colors,
    )


def _size(path: Path, attrs: dict[str, str], name: str) -> int | None:
    if name not in attrs:
        return None
    value = _finite(attrs[name])
    if value is None or value < 0 or value >= 2**62:
        raise AnnotationError(path, f"{name} attribute {attrs[name][:40]!r} is not a size")
    return int(value)


def _attach_holes(positives: list[Region], negatives: list) -> int:
    """Give each negative region to the smallest region that contains it (same layer first);
    returns how many lie in none."""
    if not negatives:
        return 0
    import shapely

    if not positives:
        return len(negatives)
    sizes = [len(r.coords) for r in positives]
    rings = shapely.linearrings(
        np.concatenate([r.coords[:, ::-1] for r in positives]),
        indices=np.repeat(np.arange(len(positives)), sizes),
    )
    shells = shapely.polygons(rings)
    tree = shapely.STRtree(shells)
    areas = shapely.area(shells)
    orphans = 0
    for rc, raw in negatives:
        hole = shapely.Polygon(rc[:, ::-1])
        point = shapely.Point(*rc[0, ::-1])
        candidates = [
            int(i)
            for i in tree.query(hole)
            if shapely.covers(shells[i], point) or shapely.contains(shells[i], hole)
        ]
        if not candidates:
            orphans += 1
            continue
        same = [
            i for i in candidates if positives[i].extra.get("layer") == raw["layer"].get("name")
        ]
        best = min(same or candidates, key=lambda i: areas[i])
        positives[best].holes.append(rc)
    return orphans
