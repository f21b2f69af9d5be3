"""ImageScope XML in full: region types, layers, colours, negative regions; NEDC's dialect as before."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from format_samples import imagescope_region, imagescope_sample, imagescope_xml
from napari_crystal.errors import AnnotationError
from napari_crystal.io import ConversionWarning, read_annotation, sniff_annotation
from napari_crystal.io import nedc as nedc_io

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.filterwarnings("ignore::napari_crystal.io.UnknownLabelWarning")


@pytest.fixture
def sample(tmp_path) -> Path:
    path = tmp_path / "slide.xml"
    path.write_bytes(imagescope_sample())
    return path


def test_layers_types_colours_and_holes(sample):
    with pytest.warns(ConversionWarning, match=r"skipped 1 arrow\(s\), 1 ruler\(s\)") as rec:
        ann = read_annotation(sample)
    assert sum("skipped" in str(w.message) for w in rec) == 1  # said once
    assert ann.mpp == pytest.approx(0.2521)
    assert [(r.label, r.kind) for r in ann.regions] == [
        ("Tumor", "polygon"),
        ("Tumor", "ellipse"),
        ("Tumor", "rectangle"),
        ("fibrous", "polygon"),
    ]
    # LineColor 65280 = 0x00FF00 (green); 255 = red in the low byte
    assert [r.color for r in ann.regions] == ["#00ff00"] * 3 + ["#ff0000"]
    assert ann.class_colors == {"Tumor": "#00ff00", "fibrous": "#ff0000"}
    polygon = ann.regions[0]
    # float vertices kept, (row, col) order, closed
    np.testing.assert_array_equal(polygon.coords[0], [2000.25, 1000.5])
    np.testing.assert_array_equal(polygon.coords[-1], polygon.coords[0])
    # the negative region is a hole of the polygon it lies in
    assert len(polygon.holes) == 1
    np.testing.assert_array_equal(polygon.holes[0][:3], [[2100, 1200], [2100, 1300], [2200, 1300]])
    outer = 800.25 * 600.25
    assert polygon.area == pytest.approx(outer - 100 * 100 / 2)
    assert ann.regions[2].region_id == 3 and ann.regions[3].region_id == 7


def test_ellipse_area_within_one_percent(sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        ellipse = read_annotation(sample).regions[1]
    a, b = 400 / 2, 200 / 2  # corners (3000, 4000) and (3400, 4200)
    assert abs(ellipse.area - np.pi * a * b) / (np.pi * a * b) < 0.01
    rows, cols = ellipse.coords.T
    assert (rows.min(), rows.max()) == pytest.approx((4000, 4200))
    assert (cols.min(), cols.max()) == pytest.approx((3000, 3400))


def test_ellipse_corners_in_any_order(tmp_path):
    path = tmp_path / "e.xml"
    region = imagescope_region(1, 2, [(300, 50), (100, 10)])
    path.write_bytes(imagescope_xml([("Layer 1", 16711680, region)]))
    ann = read_annotation(path)
    assert ann.regions[0].area == pytest.approx(np.pi * 100 * 20, rel=0.01)
    assert ann.regions[0].color == "#0000ff"


def test_unknown_types_and_degenerate_regions_skip_not_refuse(tmp_path):
    regions = [
        *imagescope_region(1, 0, [(0, 0), (10, 0), (10, 10)]),
        *imagescope_region(2, 9, [(0, 0), (10, 0), (10, 10)]),
        *imagescope_region(3, 0, [(0, 0), (10, 0)]),
    ]
    path = tmp_path / "odd.xml"
    path.write_bytes(imagescope_xml([("A", 0, regions)]))
    with pytest.warns(ConversionWarning) as rec:
        ann = read_annotation(path)
    text = " ".join(str(w.message) for w in rec)
    assert "unknown Type '9'" in text and "1 degenerate polygon" in text
    assert [r.region_id for r in ann.regions] == [1]


def test_orphan_negative_region_is_reported(tmp_path):
    regions = [
        *imagescope_region(1, 0, [(0, 0), (10, 0), (10, 10)]),
        *imagescope_region(2, 0, [(100, 100), (110, 100), (110, 110)], negative=1),
    ]
    path = tmp_path / "orphan.xml"
    path.write_bytes(imagescope_xml([("A", 0, regions)]))
    with pytest.warns(ConversionWarning, match="negative region"):
        ann = read_annotation(path)
    assert len(ann.regions) == 1 and not ann.regions[0].holes


def test_nedc_dialect_reads_exactly_as_before(tmp_path):
    for path in (DATA / "example.xml",):
        assert read_annotation(path) == nedc_io.read_annotation(path)
    # decimal vertices in NEDC's dialect are truncated, as NEDC's tool does
    text = (DATA / "example.xml").read_text().replace('X="30510"', 'X="30510.9"')
    path = tmp_path / "dec.xml"
    path.write_text(text)
    assert read_annotation(path).regions[0].coords[0, 1] == 30510
    # and its errors are NEDC's own
    bad = tmp_path / "bad.xml"
    bad.write_text(text.replace('X="30644"', 'X="30510.2" Y="12040"').replace('Y="12010"', ""))
    with pytest.raises(AnnotationError) as ours:
        read_annotation(bad)
    with pytest.raises(AnnotationError) as theirs:
        nedc_io.read_annotation(bad)
    assert str(ours.value) == str(theirs.value)


def test_same_layout_with_an_ellipse_is_imagescope(tmp_path):
    """The issue's case: one ellipse used to refuse the whole file."""
    regions = imagescope_region(1, 2, [(0, 0), (100, 50)], text="dcis")
    path = tmp_path / "one.xml"
    path.write_bytes(imagescope_xml([("", 255, regions)]))
    assert sniff_annotation(path) == "xml"
    ann = read_annotation(path)
    assert ann.regions[0].label == "dcis" and ann.regions[0].kind == "ellipse"


@pytest.mark.parametrize(
    "doc",
    [
        b'<?xml version="1.0"?>\n<!DOCTYPE Annotations [<!ENTITY x "y">]>\n<Annotations/>',
        b'<!DOCTYPE Annotations SYSTEM "http://example.com/a.dtd">\n<Annotations/>',
    ],
)
def test_entities_and_dtds_refused(tmp_path, doc):
    path = tmp_path / "evil.xml"
    path.write_bytes(doc)
    with pytest.raises(AnnotationError, match="DTDs and entities are not allowed"):
        read_annotation(path)


def test_bad_vertex_names_region_line(tmp_path):
    regions = imagescope_region(1, 2, [(0, 0), (10, 10)])
    regions[3] = '<Vertex X="abc" Y="1" Z="0"/>'
    path = tmp_path / "bad.xml"
    path.write_bytes(imagescope_xml([("A", 0, regions)]))
    with pytest.raises(AnnotationError, match=r'bad\.xml:\d+: <Region Id="1"> has a vertex'):
        read_annotation(path)
