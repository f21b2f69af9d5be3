"""ASAP XML annotations (``<ASAP_Annotations>``), as ASAP writes them and CAMELYON16/17 ship them.

``Polygon``, ``Rectangle`` and ``Spline`` annotations are regions (a spline by its control
points, as most tools read it); ``Dot``/``PointSet`` and unknown types are skipped, said once.
``PartOfGroup`` is the class (``None``: unclassified); an annotation's ``Color`` is the region's
colour and a group's ``Color`` its class colour. Vertices follow ``Order``; X is the column.
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path

import numpy as np

from napari_crystal.errors import AnnotationError
from napari_crystal.io._common import (
    check_size,
    closed,
    flag_self_intersecting,
    hex_color,
    open_vertices,
    parse_events,
    warn_skipped,
)
from napari_crystal.io.annotation import Annotation, Region
from napari_crystal.io.imagescope import _three_distinct

_ROOT = re.compile(rb"<ASAP_Annotations[\s>/]")
KINDS = {"polygon": "polygon", "rectangle": "rectangle", "spline": "spline"}
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def sniff(head: bytes) -> bool:
    """Whether the start of a file is ASAP XML (root ``<ASAP_Annotations>``)."""
    text = head.lstrip()
    while text.startswith((b"<?", b"<!--")):
        end = text.find(b"?>" if text.startswith(b"<?") else b"-->")
        if end < 0:
            return False
        text = text[end + (2 if text.startswith(b"<?") else 3) :].lstrip()
    return _ROOT.match(text) is not None


def _color(text) -> str | None:
    m = _HEX.fullmatch((text or "").strip())
    return None if m is None else f"#{m[1].lower()}"


class _Target:
    def __init__(self, path: Path):
        self.path = path
        self.parser = None
        self.stack: list[str] = []
        self.items: list[dict] = []
        self.item: dict | None = None
        self.groups: dict[str, str | None] = {}

    def line(self) -> int | None:
        return None if self.parser is None else self.parser.parser.CurrentLineNumber

    def start(self, tag: str, attrib: dict) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is None and tag != "ASAP_Annotations":
            raise AnnotationError(
                self.path, f"root element is <{tag}>, expected <ASAP_Annotations>", self.line()
            )
        if tag == "Coordinate" and parent == "Coordinates" and self.item is not None:
            self.item["coords"].append((attrib.get("Order"), attrib.get("X"), attrib.get("Y")))
        elif tag == "Annotation" and parent == "Annotations":
            self.item = {
                "name": attrib.get("Name", ""),
                "type": attrib.get("Type", ""),
                "group": attrib.get("PartOfGroup", "None"),
                "color": _color(attrib.get("Color")),
                "line": self.line(),
                "coords": [],
            }
        elif tag == "Group" and parent == "AnnotationGroups":
            self.groups.setdefault(attrib.get("Name", ""), _color(attrib.get("Color")))
        self.stack.append(tag)

    def end(self, tag: str) -> None:
        self.stack.pop()
        if tag == "Annotation" and self.item is not None and self.stack[-1:] == ["Annotations"]:
            self.items.append(self.item)
            self.item = None

    def data(self, text: str) -> None:
        pass

    def close(self) -> None:
        return None


def read(path: str | PathLike) -> Annotation:
    """Read an ASAP XML file into regions (points skipped, said once)."""
    path = Path(path)
    check_size(path)
    target = _Target(path)
    parse_events(path, path.read_bytes(), target)
    skipped: dict[str, int] = {}
    regions: list[Region] = []
    for item in target.items:
        kind = KINDS.get(item["type"].strip().lower())
        if kind is None:
            what = (
                "dot(s)/point set(s)"
                if item["type"].strip().lower() in ("dot", "pointset")
                else f"annotation(s) of Type {item['type'][:20]!r}"
            )
            skipped[what] = skipped.get(what, 0) + 1
            continue
        rc = _coords(path, item)
        if open_vertices(rc) < 3 or not _three_distinct(rc):
            skipped["degenerate polygon(s) (fewer than 3 distinct vertices)"] = (
                skipped.get("degenerate polygon(s) (fewer than 3 distinct vertices)", 0) + 1
            )
            continue
        group = item["group"].strip()
        label = "" if group in ("", "None") else group
        extra = {"name": item["name"]} if item["name"] else {}
        regions.append(
            Region(
                index=len(regions),
                region_id=len(regions) + 1,
                label=label,
                tissue="",
                coords=closed(rc),
                depth=None,
                color=item["color"],
                kind="polygon" if kind == "spline" else kind,
                extra={**extra, "asap_type": item["type"]} if kind == "spline" else extra,
            )
        )
    warn_skipped(path, skipped)
    flag_self_intersecting(path, regions)
    class_colors = {name: c for name, c in target.groups.items() if name and c}
    return Annotation(regions, bname=path.stem, class_colors=class_colors)


def _coords(path: Path, item: dict) -> np.ndarray:
    try:
        table = np.array(
            [(o if o is not None else k, x, y) for k, (o, x, y) in enumerate(item["coords"])],
            dtype=np.float64,
        ).reshape(-1, 3)
    except (TypeError, ValueError):
        raise AnnotationError(
            path,
            f"<Annotation Name={item['name'][:40]!r}> has a coordinate that is not a number",
            item["line"],
        ) from None
    if not np.isfinite(table).all():
        raise AnnotationError(
            path,
            f"<Annotation Name={item['name'][:40]!r}> has a coordinate that is not finite",
            item["line"],
        )
    table = table[np.argsort(table[:, 0], kind="stable")]
    return table[:, [2, 1]].copy()


def format_asap(ann: Annotation) -> str:
    """ASAP XML of the annotation's regions (holes cannot be carried: ASAP has none)."""
    from xml.sax.saxutils import quoteattr

    out = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    for i, r in enumerate(ann.regions):
        group = r.label or "None"
        color = r.color or ann.class_colors.get(r.label) or "#F4FA58"
        kind = "Rectangle" if r.kind == "rectangle" else "Polygon"
        name = r.extra.get("name") or f"Annotation {i}"
        out.append(
            f'\t\t<Annotation Name={quoteattr(str(name))} Type="{kind}" '
            f'PartOfGroup={quoteattr(group)} Color="{color.upper()}">'
        )
        out.append("\t\t\t<Coordinates>")
        ring = r.coords
        if len(ring) > 3 and (ring[0] == ring[-1]).all():
            ring = ring[:-1]
        out.extend(
            f'\t\t\t\t<Coordinate Order="{k}" X="{x!r}" Y="{y!r}" />'
            for k, (y, x) in enumerate(ring.tolist())
        )
        out += ["\t\t\t</Coordinates>", "\t\t</Annotation>"]
    out += ["\t</Annotations>", "\t<AnnotationGroups>"]
    for name in dict.fromkeys(r.label for r in ann.regions if r.label):
        color = ann.class_colors.get(name) or hex_color((255, 0, 0))
        out.append(
            f'\t\t<Group Name={quoteattr(name)} PartOfGroup="None" Color="{color.upper()}">'
        )
        out += ["\t\t\t<Attributes />", "\t\t</Group>"]
    out += ["\t</AnnotationGroups>", "</ASAP_Annotations>"]
    return "\n".join(out) + "\n"
