"""QuPath GeoJSON: the variants QuPath writes, round trips, written files, bad input."""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

from format_samples import (
    qupath_04,
    qupath_feature,
    qupath_sample_02,
    qupath_sample_03,
    qupath_sample_04,
)
from napari_crystal.errors import AnnotationError
from napari_crystal.io import (
    ConversionWarning,
    geojson,
    read_annotation,
    sniff_annotation,
    write_annotation,
)
from napari_crystal.io import _common as common
from napari_crystal.io import nedc as nedc_io
from napari_crystal.io.formats import read_annotation_columns
from napari_crystal.plugin import _reader
from test_reader_columns import _same

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.filterwarnings("ignore::napari_crystal.io.UnknownLabelWarning")


def _write(tmp_path, data: bytes, name="a.geojson") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_qupath_04_feature_collection(tmp_path):
    path = _write(tmp_path, qupath_sample_04())
    assert sniff_annotation(path) == "geojson"
    with pytest.warns(ConversionWarning) as rec:
        ann = read_annotation(path)
    skipped = [str(w.message) for w in rec if "skipped" in str(w.message)]
    assert len(skipped) == 1
    assert "1 detection object(s), 1 cell object(s), 1 Point(s)" in skipped[0]
    assert "detections=True" in skipped[0]
    assert [r.label for r in ann.regions] == ["Tumor", "Tumor", "Stroma", "Stroma"]
    assert ann.class_colors == {"Tumor": "#c80000", "Stroma": "#96c896"}
    square = ann.regions[0]
    # (x, y) in the file -> (row, col) in the model; ring stays closed; the hole is kept
    np.testing.assert_array_equal(square.coords[:2], [[2000, 1000], [2000, 1256]])
    assert len(square.holes) == 1 and square.holes[0].shape == (4, 2)
    assert square.area == 256 * 256 - 50 * 50 / 2
    assert square.extra["measurements"] == {"Area px^2": 65536.0}
    uuid.UUID(square.extra["id"])
    assert ann.regions[1].kind == "ellipse"
    # MultiPolygon: one region per part, same class and shared id
    a, b = ann.regions[2:]
    assert a.extra["id"] == b.extra["id"] and (a.extra["part"], b.extra["part"]) == (0, 1)


def test_detections_only_when_asked(tmp_path):
    path = _write(tmp_path, qupath_sample_04())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        ann = read_annotation(path, detections=True)
    kinds = [r.extra["objectType"] for r in ann.regions]
    assert kinds.count("detection") == 1 and kinds.count("cell") == 1
    assert ann.regions[-1].label == ""  # an unclassified cell


@pytest.mark.parametrize(
    ("sample", "label", "color", "measurements"),
    [
        (qupath_sample_03, "Tumor", "#c80000", {"Num Detections": 12.0}),
        (qupath_sample_02, "Stroma", "#96c896", None),
    ],
)
def test_older_qupath_lists(tmp_path, sample, label, color, measurements):
    path = _write(tmp_path, sample(), "old.json")
    assert sniff_annotation(path) == "geojson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        ann = read_annotation(path)
    assert [r.label for r in ann.regions] == [label]
    assert ann.class_colors == {label: color}
    assert ann.regions[0].extra.get("measurements") == measurements


def test_bare_geometry_and_plain_string_classification(tmp_path):
    geometry = {"type": "MultiPolygon", "coordinates": [[[[0, 0], [4, 0], [4, 4], [0, 0]]]]}
    ann = read_annotation(_write(tmp_path, json.dumps(geometry).encode()))
    assert len(ann.regions) == 1 and ann.regions[0].label == ""
    feature = qupath_feature([[[0, 0], [4, 0], [4, 4], [0, 0]]])
    feature["properties"]["classification"] = "Necrosis"
    ann = read_annotation(_write(tmp_path, json.dumps(feature).encode(), "f.geojson"))
    assert ann.regions[0].label == "Necrosis"
    feature["properties"]["classification"] = {"names": ["Tumor", "Positive"], "color": [1, 2, 3]}
    ann = read_annotation(_write(tmp_path, json.dumps(feature).encode(), "g.geojson"))
    assert ann.regions[0].label == "Tumor: Positive"


def test_nedc_csv_to_geojson_to_csv_is_identical(tmp_path):
    ann = read_annotation(DATA / "example.csv")
    write_annotation(ann, tmp_path / "a.geojson")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is lost on the way
        back = read_annotation(tmp_path / "a.geojson")
        write_annotation(back, tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_bytes() == (DATA / "example.csv").read_bytes()
    write_annotation(back, tmp_path / "b.xml")
    nedc_io.write_annotation(nedc_io.read_annotation(DATA / "example.csv"), tmp_path / "c.xml")
    assert (tmp_path / "b.xml").read_bytes() == (tmp_path / "c.xml").read_bytes()


def test_geojson_to_nedc_xml_to_geojson_keeps_classes_colours_vertices(tmp_path):
    features = [
        qupath_feature([[[10, 20], [50, 20], [50, 80], [10, 20]]], "Tumor", [200, 0, 0]),
        qupath_feature([[[100, 100], [150, 100], [150, 160], [100, 100]]], "Stroma", [0, 0, 255]),
        qupath_feature([[[300, 300], [350, 300], [350, 360], [300, 300]]], "Tumor", [200, 0, 0]),
    ]
    features[1]["properties"]["color"] = [10, 20, 30]  # an object colour of its own
    src = _write(tmp_path, qupath_04(features))
    original = read_annotation(src)
    original.mpp, original.width, original.height = 0.25, 1000, 1000  # NEDC XML needs a header
    write_annotation(original, tmp_path / "mid.xml")
    via_xml = read_annotation(tmp_path / "mid.xml")
    write_annotation(via_xml, tmp_path / "back.geojson")
    again = read_annotation(tmp_path / "back.geojson")
    assert [r.label for r in again.regions] == ["Tumor", "Stroma", "Tumor"]
    assert [again.color_of(r) for r in again.regions] == [
        original.color_of(r) for r in original.regions
    ]
    assert again.class_colors["Tumor"] == "#c80000"
    for a, b in zip(original.regions, again.regions, strict=True):
        np.testing.assert_array_equal(a.coords, b.coords)


def test_written_file_is_what_qupath_imports(tmp_path):
    src = _write(tmp_path, qupath_sample_04())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        ann = read_annotation(src)
    ann.regions[0].coords = ann.regions[0].coords[:-1]  # an open ring is closed on writing
    write_annotation(ann, tmp_path / "out.geojson")
    doc = json.loads((tmp_path / "out.geojson").read_text())
    assert doc["type"] == "FeatureCollection"
    feats = doc["features"]
    assert len(feats) == 3  # the two MultiPolygon parts are one feature again
    for f in feats:
        uuid.UUID(f["id"])
        props = f["properties"]
        assert props["objectType"] == "annotation"
        assert set(props["classification"]) == {"name", "color"}
        rings = (
            [f["geometry"]["coordinates"]]
            if f["geometry"]["type"] == "Polygon"
            else f["geometry"]["coordinates"]
        )
        for polygon in rings:
            for ring in polygon:
                assert ring[0] == ring[-1]
    first = feats[0]
    assert first["geometry"]["coordinates"][0][:2] == [[1000, 2000], [1256, 2000]]  # (x, y)
    assert first["properties"]["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert feats[1]["properties"]["isEllipse"] is True
    assert feats[2]["geometry"]["type"] == "MultiPolygon"
    assert first["id"] == ann.regions[0].extra["id"]  # QuPath's ids survive


def test_non_qupath_json_is_not_claimed(tmp_path):
    from napari_crystal.plugin._reader import get_annotation_reader

    for name, text in {
        "package.json": '{"name": "x", "version": "1.0"}',
        "list.json": "[1, 2, 3]",
        "points.json": '{"features": 3, "kind": "Polygon"}',
    }.items():
        path = _write(tmp_path, text.encode(), name)
        assert sniff_annotation(path) is None
        assert get_annotation_reader(str(path)) is None
    path = _write(tmp_path, qupath_sample_03(), "q.json")
    assert get_annotation_reader(str(path)) is not None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b'{"type": "FeatureCollection", "features": [', r"a\.geojson:1: not valid JSON"),
        (b'{"type": "FeatureCollection", "features": {}}', "without a features list"),
        (b'{"type": "FeatureCollection", "features": [3]}', "feature 0: is not a JSON object"),
        (
            b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[1, 2, 3]]}}',
            "feature 0: ring is not a list of",
        ),
        (
            b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0]'
            b", [1, NaN], [0, 0]]]}}",
            "feature 0: coordinates are not finite",
        ),
        (
            b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0]'
            b", [1, 1e999], [0, 0]]]}}",
            "coordinates are not finite",
        ),
        (
            b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0]'
            b", [0, 0]]]}}",
            r"feature 0: ring has 2 point\(s\): 3 or more needed",
        ),
        (
            b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [9, 0]'
            b", [9, 9], [0, 0]], [[1, 1], [2, 1]]]}}",
            "feature 0 hole 1: ring has 2 point",
        ),
        (b'{"type": "Feature", "geometry": {"type": "Blob"}}', "unknown geometry type 'Blob'"),
        (b'{"type": "Feature", "geometry": [1]}', "geometry is not an object"),
        (
            b'{"type": "Feature", "properties": {"measurements": 3}, "geometry": null}',
            "measurements is neither",
        ),
        (b'{"type": "Topology"}', "not GeoJSON: top-level type is 'Topology'"),
        (  # our own member, edited by hand: an id no region table can hold
            b'{"type": "Feature", "properties": {"napari-crystal": {"region_id": 9223372036854775808}},'
            b' "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]]]}}',
            "feature 0: napari-crystal region_id 9223372036854775808 is out of range",
        ),
    ],
)
def test_bad_input_is_one_error_with_path(tmp_path, doc, message):
    path = _write(tmp_path, doc)
    with pytest.raises(AnnotationError, match=message) as info:
        read_annotation(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    with pytest.raises(AnnotationError) as as_columns:  # the napari reader's way
        read_annotation_columns(path)
    assert str(as_columns.value) == str(info.value)


def test_self_intersecting_polygon_is_kept_and_flagged(tmp_path):
    bowtie = qupath_feature([[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]], "Tumor")
    path = _write(tmp_path, qupath_04([bowtie]))
    with pytest.warns(ConversionWarning, match="1 self-intersecting"):
        ann = read_annotation(path)
    assert ann.regions[0].extra["invalid"] is True and len(ann.regions[0].coords) == 5


def test_files_over_2_gib_are_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.geojson"
    with open(path, "wb") as fh:  # a sparse file: nothing is written
        fh.truncate(common.MAX_BYTES + 1)
    opened = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: opened.append(self) or b"")
    with pytest.raises(AnnotationError, match="over 2 GiB are refused"):
        read_annotation(path)
    assert not opened


def _cells(n: int) -> bytes:
    """A detections-export-like file with every feature the reader handles: classes with and
    without colours, a feature colour, an unclassified one, holes, a MultiPolygon, an
    ellipse, a self-intersecting polygon, our member (ids, tissue, depths), a skipped point."""
    rng = np.random.default_rng(5)
    features = []
    for i in range(n):
        k = int(rng.integers(4, 12))
        t = np.linspace(0, 2 * np.pi, k, endpoint=False)
        centre = rng.uniform(100, 3900, size=2)
        ring = (np.column_stack([np.cos(t), np.sin(t)]) * rng.uniform(5, 60) + centre).round(2)
        ring = [*ring.tolist(), ring[0].tolist()]
        name, color = [("Tumor", [200, 0, 0]), ("Stroma", None), ("Immune cells", [9, 9, 9])][
            i % 3
        ]
        feature = qupath_feature([ring], name if i % 17 else None, color)
        props = feature["properties"]
        if i % 11 == 0:
            props["color"] = [1, 2, 3]
        if i % 13 == 0:
            props["napari-crystal"] = {"region_id": 1000 + i, "tissue": "breast", "depth": 2}
        if i % 19 == 0:
            props["isEllipse"] = True
        if i % 23 == 0:  # a hole
            x, y = centre
            hole = [[x - 1, y - 1], [x + 1, y - 1], [x + 1, y + 1], [x - 1, y - 1]]
            feature["geometry"]["coordinates"].append(hole)
        if i % 29 == 0:
            feature["geometry"] = {
                "type": "MultiPolygon",
                "coordinates": [[ring], [[[0, 0], [9, 0], [9, 9], [0, 0]]]],
            }
        features.append(feature)
    bowtie = [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]
    features.append(qupath_feature(bowtie, "Tumor"))
    point = {"type": "Point", "coordinates": [3, 4]}
    features.append(qupath_feature(None, "Tumor", geometry=point))
    return qupath_04(features)


@pytest.mark.parametrize("many", [True, False])
def test_column_layers_equal_region_layers(tmp_path, monkeypatch, many):
    """The napari reader takes GeoJSON as columns: the same layers as from the file's
    Regions, and the same warnings (skipped objects, self-intersecting polygons)."""
    monkeypatch.setattr(_reader, "MANY_REGIONS", 50 if many else 1000)
    path = _write(tmp_path, _cells(120), "cells.geojson")
    with pytest.warns(ConversionWarning) as from_columns_warnings:
        from_columns = _reader.read_annotation_layers(str(path))
    with pytest.warns(ConversionWarning) as from_regions_warnings:
        from_regions = _reader.annotation_layers(read_annotation(path), name="cells")
    messages = [str(w.message) for w in from_regions_warnings if "points" not in str(w.message)]
    assert [str(w.message) for w in from_columns_warnings if "points" not in str(w.message)] == (
        messages
    )
    assert any("1 self-intersecting" in m for m in messages)
    assert [kind for _, _, kind in from_columns] == ["labels", "points" if many else "shapes"]
    _same(from_columns, from_regions, "layers")


def test_many_regions_make_no_region_objects(tmp_path, monkeypatch):
    """Above MANY_REGIONS, opening a GeoJSON file builds no Region (what made it slow)."""
    path = _write(tmp_path, _cells(60), "cells.geojson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        n = len(read_annotation(path).regions)  # MultiPolygon parts are regions of their own

    def refuse(*args, **kwargs):
        raise AssertionError("a Region was built")

    monkeypatch.setattr(_reader, "MANY_REGIONS", 50)
    monkeypatch.setattr(geojson, "Region", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        with pytest.warns(UserWarning, match=f"{n} regions: shown as one point per region"):
            layers = _reader.read_annotation_layers(str(path))
    assert [kind for _, _, kind in layers] == ["labels", "points"] and len(layers[1][0]) == n


def test_columns_are_the_regions_outer_rings(tmp_path):
    """Every field the columns carry is the Region's (holes and extras are not carried)."""
    path = _write(tmp_path, _cells(80), "cells.geojson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        ann = read_annotation(path)
        columns = read_annotation_columns(path)
    assert sum(bool(r.holes) for r in ann.regions) == 3  # feature 0 became a MultiPolygon
    for r in ann.regions:
        r.holes = []
    assert columns.annotation() == ann
    assert columns.source == ann.source == str(path)
