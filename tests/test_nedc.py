"""NEDC annotation model: reading both formats, exact writing, round trips, atomic writes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_crystal.io import nedc
from napari_crystal.io.annotation import UnknownLabelWarning
from napari_crystal.io.nedc import (
    Annotation,
    Region,
    find_annotation,
    format_csv,
    read_annotation,
    sniff_annotation,
    write_annotation,
)

DATA = Path(__file__).parent / "data"
CSV = DATA / "example.csv"
XML = DATA / "example.xml"


def test_read_csv_example():
    ann = read_annotation(CSV)
    assert (ann.mpp, ann.width, ann.height) == (0.5022, 60120, 35840)
    assert ann.bname == "00000042_s000_0hne_0000_a001_lvl001_t000"
    assert ann.tissue == "breast"
    assert [r.label for r in ann.regions] == ["dcis", "bckg"]
    assert [r.region_id for r in ann.regions] == [1, 2]
    assert [r.index for r in ann.regions] == [0, 1]
    first = ann.regions[0]
    np.testing.assert_array_equal(
        first.coords, [[12040, 30510], [12010, 30644], [12122, 30700], [12040, 30510]]
    )
    assert first.coords.dtype == np.float64 and first.depth.dtype == np.int64
    assert first.confidence == 1.0 and first.tissue == "breast"


def test_read_xml_example_maps_x_to_column_and_y_to_row():
    ann = read_annotation(XML)
    assert (ann.mpp, ann.width, ann.height) == (0.5022, 60120, 35840)
    (region,) = ann.regions
    assert (region.label, region.region_id, region.tissue, region.index) == (
        "dcis",
        1,
        "breast",
        0,
    )
    np.testing.assert_array_equal(region.coords, [[12040, 30510], [12010, 30644], [12122, 30700]])
    assert ann.bname == "example"  # no bname attribute: the file's stem


def test_csv_writer_reproduces_the_example_to_the_character():
    assert format_csv(read_annotation(CSV)) == CSV.read_text()


def test_csv_xml_csv_is_the_same_file(tmp_path):
    write_annotation(read_annotation(CSV), tmp_path / "a.xml")
    write_annotation(read_annotation(tmp_path / "a.xml"), tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_bytes() == CSV.read_bytes()


def test_xml_csv_xml_keeps_regions(tmp_path):
    original = read_annotation(XML)
    write_annotation(original, tmp_path / "a.csv")
    write_annotation(read_annotation(tmp_path / "a.csv"), tmp_path / "b.xml")
    again = read_annotation(tmp_path / "b.xml")
    assert again.regions == original.regions
    assert (again.mpp, again.width, again.height) == (
        original.mpp,
        original.width,
        original.height,
    )


def test_xml_writer_computes_length_and_area(tmp_path):
    square = Region(0, 7, "indc", "breast", [[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]], None)
    write_annotation(Annotation([square], 0.5, 100, 100, "sq", "breast"), tmp_path / "s.xml")
    text = (tmp_path / "s.xml").read_text()
    assert 'Length="40.0" Area="100.0" LengthMicrons="20.0" AreaMicrons="25.0"' in text
    assert '<Region Id="7" Text="indc"' in text
    assert '<Attribute Name="Tissue Value" Value="breast"/>' in text
    assert text.startswith(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Annotations MicronsPerPixel="0.500000">'
    )


def test_crlf_blank_lines_and_no_final_newline_are_read(tmp_path):
    text = CSV.read_text().replace("1,2,breast,bckg,0", "\n1,2,breast,bckg,0")
    path = tmp_path / "crlf.csv"
    path.write_bytes(text.rstrip("\n").replace("\n", "\r\n").encode())
    ann = read_annotation(path)
    assert ann.regions == read_annotation(CSV).regions


def test_null_label_stays_a_string_and_unknown_labels_warn(tmp_path):
    text = CSV.read_text().replace("dcis", "null").replace("bckg", "zzzz")
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.warns(UnknownLabelWarning, match="'zzzz'"):
        ann = read_annotation(path)
    assert [r.label for r in ann.regions] == ["null", "zzzz"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_annotation(CSV)  # known labels: no warning


def test_xml_reads_every_annotation_layer_and_truncates_decimals(tmp_path):
    region = (
        '<Region Id="{id}" Text="{label}"><Attributes><Attribute Name="Tissue Value" '
        'Value="breast"/><Attribute Name="Other" Value="x"/></Attributes><Vertices>'
        '<Vertex X="10.7" Y="20.2"/><Vertex X="30" Y="20" Z="0"/><Vertex X="30" Y="40.9" Z="0"/>'
        "</Vertices></Region>"
    )
    xml = (
        '<?xml version="1.0"?><Annotations MicronsPerPixel="0.25" Extra="1">'
        '<Annotation Id="1" LineColor="255"><Attributes><Attribute Name="WIDTH" Value="100"/>'
        '<Attribute Name="Height" Value="50"/></Attributes><Regions>'
        + region.format(id=1, label="norm")
        + '</Regions></Annotation><Annotation Id="2"><Regions>'
        + region.format(id=5, label="infl")
        + "</Regions></Annotation></Annotations>"
    )
    path = tmp_path / "layers.xml"
    path.write_text(xml)
    ann = read_annotation(path)
    assert (ann.mpp, ann.width, ann.height) == (0.25, 100, 50)
    assert [(r.index, r.region_id, r.label) for r in ann.regions] == [
        (0, 1, "norm"),
        (1, 5, "infl"),
    ]
    np.testing.assert_array_equal(ann.regions[0].coords, [[20, 10], [20, 30], [40, 30]])
    assert ann.regions[0].tissue == "breast"


def test_decimal_csv_coordinates_are_truncated(tmp_path):
    path = tmp_path / "dec.csv"
    path.write_text(CSV.read_text().replace(",12040,30510,", ",12040.7,30510.2,"))
    np.testing.assert_array_equal(read_annotation(path).regions[0].coords[0], [12040, 30510])


def test_sniff_reads_only_the_start(tmp_path):
    assert sniff_annotation(CSV) == "csv"
    assert sniff_annotation(XML) == "xml"
    plain = tmp_path / "plain.csv"
    plain.write_text("a,b,c\n1,2,3\n")
    assert sniff_annotation(plain) is None
    other = tmp_path / "other.xml"
    other.write_text('<?xml version="1.0"?>\n<!-- note -->\n<svg></svg>')
    assert sniff_annotation(other) is None
    big = tmp_path / "big.csv"
    big.write_bytes(CSV.read_bytes() + b"garbage that is never read\n" * 10000)
    assert sniff_annotation(big) == "csv"
    assert sniff_annotation(tmp_path / "missing.csv") is None


def test_find_annotation_prefers_csv(tmp_path):
    slide = tmp_path / "s1.svs"
    slide.write_bytes(b"")
    assert find_annotation(slide) is None
    (tmp_path / "s1.xml").write_bytes(XML.read_bytes())
    assert find_annotation(slide) == tmp_path / "s1.xml"
    (tmp_path / "s1.csv").write_bytes(CSV.read_bytes())
    assert find_annotation(slide) == tmp_path / "s1.csv"


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    target.write_text("previous content\n")
    ann = read_annotation(CSV)

    from napari_crystal import _atomic

    calls = []

    def broken_replace(src, dst):
        calls.append(Path(dst))
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_annotation(ann, target)
    assert target.read_text() == "previous content\n"
    assert calls == [target]  # the writer really went through the atomic rename
    assert os.listdir(tmp_path) == ["out.csv"]  # no temporary file left behind
    monkeypatch.undo()
    write_annotation(ann, target)
    assert target.read_bytes() == CSV.read_bytes()
    assert os.listdir(tmp_path) == ["out.csv"]


def test_writer_refuses_what_it_cannot_write(tmp_path):
    ann = read_annotation(CSV)
    with pytest.raises(nedc.AnnotationError, match="must end in .csv or .xml"):
        write_annotation(ann, tmp_path / "a.txt")
    ann.regions[0].label = ""
    with pytest.raises(nedc.AnnotationError, match="has no label"):
        write_annotation(ann, tmp_path / "a.csv")
    ann.regions[0].label = "dc,is"
    with pytest.raises(nedc.AnnotationError, match="comma"):
        write_annotation(ann, tmp_path / "a.csv")
    ann = read_annotation(CSV)
    ann.mpp = None
    with pytest.raises(nedc.AnnotationError, match="mpp"):
        write_annotation(ann, tmp_path / "a.csv")
    assert not (tmp_path / "a.csv").exists()


def test_region_area_and_length():
    r = Region(0, 1, "dcis", "breast", [[0, 0], [0, 4], [3, 4], [3, 0]], None)
    assert r.area == 12.0
    assert r.length == 14.0
