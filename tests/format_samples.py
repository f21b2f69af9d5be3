"""Sample annotation files written the way each tool writes them (not by our writers).

ImageScope: the attribute set and CRLF line ends of ImageScope 12's files, float vertices,
LineColor as decimal 0xBBGGRR, ellipses as two bounding-box corners. ASAP: tab-indented, as
ASAP 1.9 and the CAMELYON16 files. QuPath: 0.4+ FeatureCollection (two-space indent, UUIDs,
``objectType``, ``classification.color``), 0.3 bare list (``object_type``, ``colorRGB``,
measurements as a list), 0.2 bare list (``"id": "PathAnnotationObject"``).
"""

from __future__ import annotations

import json
import uuid

# --------------------------------------------------------------------------------- ImageScope

_LAYER = (
    '<Annotation Id="{id}" Name="{name}" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" '
    'Incremental="0" Type="4" LineColor="{color}" Visible="1" Selected="{selected}" '
    'MarkupImagePath="" MacroName="">'
)
_REGION = (
    '<Region Id="{id}" Type="{type}" Zoom="0.042188" Selected="0" ImageLocation="" '
    'ImageFocus="-1" Length="0.0" Area="0.0" LengthMicrons="0.0" AreaMicrons="0.0" '
    'Text="{text}" NegativeROA="{negative}" InputRegionId="0" Analyze="1" DisplayId="{id}">'
)


def imagescope_region(rid, type_, vertices, text="", negative=0) -> list[str]:
    """One ImageScope ``Region``: ``vertices`` as (x, y) pairs, written as ImageScope floats."""
    lines = [_REGION.format(id=rid, type=type_, text=text, negative=negative), "<Attributes/>"]
    lines.append("<Vertices>")
    lines += [f'<Vertex X="{x:.6f}" Y="{y:.6f}" Z="0"/>' for x, y in vertices]
    lines += ["</Vertices>", "</Region>"]
    return lines


def imagescope_xml(layers, mpp: float = 0.2521) -> bytes:
    """An ImageScope file: ``layers`` is a list of (name, line_color, [region lines...])."""
    out = [f'<Annotations MicronsPerPixel="{mpp:.6f}">']
    for i, (name, color, regions) in enumerate(layers, start=1):
        out.append(_LAYER.format(id=i, name=name, color=color, selected=int(i == 1)))
        out += [
            "<Attributes>",
            '<Attribute Name="Description" Id="0" Value=""/>',
            "</Attributes>",
            "<Regions>",
            "<RegionAttributeHeaders>",
            '<AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>',
            '<AttributeHeader Id="9997" Name="Length" ColumnWidth="-1"/>',
            '<AttributeHeader Id="9996" Name="Area" ColumnWidth="-1"/>',
            '<AttributeHeader Id="9998" Name="Text" ColumnWidth="-1"/>',
            '<AttributeHeader Id="1" Name="Description" ColumnWidth="-1"/>',
            "</RegionAttributeHeaders>",
            *regions,
            "</Regions>",
            "<Plots/>",
            "</Annotation>",
        ]
    out.append("</Annotations>")
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


def imagescope_sample() -> bytes:
    """Two layers: Tumor (green) with a freehand polygon, an ellipse, a rectangle, a negative
    region inside the polygon, an arrow and a ruler; Stroma (red, 255 = 0x0000FF) with a
    freehand polygon whose Text names it otherwise."""
    polygon = [(1000.5, 2000.25), (1800.75, 2000.25), (1800.75, 2600.5), (1000.5, 2600.5)]
    tumor = [
        *imagescope_region(1, 0, polygon),
        *imagescope_region(2, 2, [(3000.0, 4000.0), (3400.0, 4200.0)]),
        *imagescope_region(3, 1, [(500, 500), (700, 500), (700, 650), (500, 650)]),
        *imagescope_region(4, 0, [(1200, 2100), (1300, 2100), (1300, 2200)], negative=1),
        *imagescope_region(5, 3, [(10, 10), (60, 60)]),
        *imagescope_region(6, 4, [(100, 100), (400, 100)]),
    ]
    stroma = imagescope_region(7, 0, [(5000, 5000), (5600, 5000), (5300, 5500)], text="fibrous")
    return imagescope_xml([("Tumor", 65280, tumor), ("Stroma", 255, stroma)])


# --------------------------------------------------------------------------------- ASAP


def asap_xml(annotations, groups) -> bytes:
    """ASAP XML: ``annotations`` (name, type, group, color, [(x, y)...]); ``groups`` (name,
    color). Coordinates are written in reverse ``Order`` to check the reader sorts them."""
    out = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    for name, type_, group, color, coords in annotations:
        out.append(
            f'\t\t<Annotation Name="{name}" Type="{type_}" PartOfGroup="{group}" Color="{color}">'
        )
        out.append("\t\t\t<Coordinates>")
        for order in reversed(range(len(coords))):
            x, y = coords[order]
            out.append(f'\t\t\t\t<Coordinate Order="{order}" X="{x}" Y="{y}" />')
        out += ["\t\t\t</Coordinates>", "\t\t</Annotation>"]
    out += ["\t</Annotations>", "\t<AnnotationGroups>"]
    for name, color in groups:
        out.append(f'\t\t<Group Name="{name}" PartOfGroup="None" Color="{color}">')
        out += ["\t\t\t<Attributes />", "\t\t</Group>"]
    out += ["\t</AnnotationGroups>", "</ASAP_Annotations>"]
    return ("\n".join(out) + "\n").encode("utf-8")


def asap_sample() -> bytes:
    """CAMELYON16-like: two metastasis polygons, a rectangle, a spline, two dots, an ungrouped
    polygon; groups with their colours."""
    return asap_xml(
        [
            (
                "_0",
                "Polygon",
                "metastasis",
                "#F4FA58",
                [(4844.49268, 6275.82031), (4900.0, 6275.0), (4950.5, 6400.25), (4840.0, 6390.0)],
            ),
            ("_1", "Polygon", "metastasis", "#F4FA58", [(100, 100), (200, 100), (150, 180)]),
            (
                "Annotation 2",
                "Rectangle",
                "Exclusion",
                "#64FE2E",
                [(10, 10), (50, 10), (50, 40), (10, 40)],
            ),
            ("Annotation 3", "Spline", "_2", "#F4FA58", [(300, 300), (400, 320), (350, 420)]),
            ("Annotation 4", "Dot", "metastasis", "#F4FA58", [(5, 5)]),
            ("Annotation 5", "Dot", "None", "#F4FA58", [(6, 6)]),
            ("Annotation 6", "Polygon", "None", "#F4FA58", [(0, 0), (9, 0), (0, 9)]),
        ],  # fmt: skip
        [("metastasis", "#ff0000"), ("Exclusion", "#00ff00"), ("_2", "#0000ff")],
    )


# --------------------------------------------------------------------------------- QuPath


def qupath_feature(
    coords, name=None, color=None, object_type="annotation", geometry=None, **props
) -> dict:
    """A QuPath >= 0.4 feature: ``coords`` are GeoJSON polygon rings of (x, y)."""
    properties = {"objectType": object_type}
    if name is not None:
        properties["classification"] = {"name": name, "color": color or [255, 0, 0]}
    properties.update(props)
    geometry = geometry or {"type": "Polygon", "coordinates": coords}
    return {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": geometry,
        "properties": properties,
    }


def qupath_04(features) -> bytes:
    """A QuPath >= 0.4 export: a FeatureCollection, pretty-printed."""
    return json.dumps({"type": "FeatureCollection", "features": features}, indent=2).encode()


def qupath_sample_04() -> bytes:
    """Tumor square with a hole, an ellipse (isEllipse), a MultiPolygon Stroma of two parts, a
    detection and a cell (skipped unless asked), a point annotation (skipped)."""
    square = [[[1000, 2000], [1256, 2000], [1256, 2256], [1000, 2256], [1000, 2000]],
              [[1100, 2100], [1150, 2100], [1150, 2150], [1100, 2100]]]  # fmt: skip
    ellipse = [[[100.0 + 50 * c, 100.0 + 20 * s] for c, s in _circle(32)]]
    multi = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[0, 0], [10, 0], [10, 10], [0, 0]]],
            [[[20, 20], [30, 20], [30, 30], [20, 20]]],
        ],
    }
    return qupath_04(
        [
            qupath_feature(square, "Tumor", [200, 0, 0], measurements={"Area px^2": 65536.0}),
            qupath_feature(ellipse, "Tumor", [200, 0, 0], isEllipse=True),
            qupath_feature(None, "Stroma", [150, 200, 150], geometry=multi),
            qupath_feature([[[5, 5], [6, 5], [6, 6], [5, 5]]], "Tumor", object_type="detection"),
            qupath_feature([[[7, 7], [8, 7], [8, 8], [7, 7]]], None, object_type="cell"),
            qupath_feature(None, "Tumor", geometry={"type": "Point", "coordinates": [3, 4]}),
        ]
    )


def _circle(n):
    import math

    pts = [(math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)) for k in range(n)]
    return pts + pts[:1]


def qupath_sample_03() -> bytes:
    """QuPath 0.3: a bare list, ``object_type``, ``colorRGB`` (signed ARGB), measurement list."""
    return json.dumps(
        [
            {
                "type": "Feature",
                "id": "PathAnnotationObject",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[10, 10], [90, 10], [90, 70], [10, 10]]],
                },
                "properties": {
                    "object_type": "annotation",
                    "classification": {"name": "Tumor", "colorRGB": -3670016},
                    "isLocked": False,
                    "measurements": [{"name": "Num Detections", "value": 12.0}],
                },
            }
        ],
        indent=2,
    ).encode()


def qupath_sample_02() -> bytes:
    """QuPath 0.2: a bare list, ``"id": "PathAnnotationObject"``, no objectType."""
    return json.dumps(
        [
            {
                "type": "Feature",
                "id": "PathAnnotationObject",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[1, 1], [9, 1], [9, 9], [1, 9], [1, 1]]],
                },
                "properties": {"classification": {"name": "Stroma", "colorRGB": -6895466}},
            },
            {
                "type": "Feature",
                "id": "PathDetectionObject",
                "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 1]]]},
                "properties": {"classification": {"name": "Tumor", "colorRGB": -3670016}},
            },
        ]
    ).encode()
