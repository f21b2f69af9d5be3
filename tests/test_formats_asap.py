"""ASAP XML (CAMELYON16/17): polygons, rectangles, splines as regions; dots skipped once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from format_samples import asap_sample, asap_xml
from napari_crystal.errors import AnnotationError
from napari_crystal.io import (
    ConversionWarning,
    read_annotation,
    sniff_annotation,
    write_annotation,
)

pytestmark = pytest.mark.filterwarnings("ignore::napari_crystal.io.UnknownLabelWarning")


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "tumor_009.xml"
    path.write_bytes(asap_sample())
    return path


def test_reads_groups_types_order_and_colours(sample):
    assert sniff_annotation(sample) == "asap"
    with pytest.warns(ConversionWarning, match=r"skipped 2 dot\(s\)/point set\(s\)") as rec:
        ann = read_annotation(sample)
    assert sum("skipped" in str(w.message) for w in rec) == 1
    assert [r.label for r in ann.regions] == ["metastasis", "metastasis", "Exclusion", "_2", ""]
    assert [r.kind for r in ann.regions] == [
        "polygon",
        "polygon",
        "rectangle",
        "polygon",
        "polygon",
    ]
    assert ann.class_colors == {"metastasis": "#ff0000", "Exclusion": "#00ff00", "_2": "#0000ff"}
    assert ann.regions[0].color == "#f4fa58"
    first = ann.regions[0].coords
    # Order is honoured although the file lists coordinates backwards; floats kept; closed
    np.testing.assert_array_equal(first[0], [6275.82031, 4844.49268])
    np.testing.assert_array_equal(first[1], [6275.0, 4900.0])
    np.testing.assert_array_equal(first[-1], first[0])
    assert ann.regions[3].extra["asap_type"] == "Spline"
    assert ann.mpp is None and ann.bname == "tumor_009"


def test_asap_written_and_read_back(sample, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        ann = read_annotation(sample)
        out = write_annotation(ann, tmp_path / "out.xml", fmt="asap")
    assert sniff_annotation(out) == "asap"
    again = read_annotation(out)
    assert [r.label for r in again.regions] == [r.label for r in ann.regions]
    for a, b in zip(ann.regions, again.regions, strict=True):
        np.testing.assert_array_equal(a.coords, b.coords)
        assert a.color == b.color
    assert again.class_colors == ann.class_colors


def test_bad_coordinate_is_one_error_with_line(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_bytes(asap_xml([("a", "Polygon", "g", "#000000", [(1, 2), ("x", 3), (4, 5)])], []))
    with pytest.raises(
        AnnotationError, match=r"bad\.xml:4: <Annotation Name='a'> has a coordinate"
    ):
        read_annotation(path)
    path.write_bytes(
        asap_xml([("a", "Polygon", "g", "#000000", [(1, 2), ("nan", 3), (4, 5)])], [])
    )
    with pytest.raises(AnnotationError, match="not finite"):
        read_annotation(path)


def test_entities_refused(tmp_path):
    path = tmp_path / "evil.xml"
    path.write_bytes(b'<!DOCTYPE ASAP_Annotations [<!ENTITY x "y">]><ASAP_Annotations/>')
    with pytest.raises(AnnotationError, match="DTDs and entities are not allowed"):
        read_annotation(path)
