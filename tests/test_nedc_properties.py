"""Property tests: random valid annotations survive csv -> xml -> csv and xml -> csv -> xml."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_crystal.io.annotation import UnknownLabelWarning, collinear
from napari_crystal.io.nedc import (
    Annotation,
    Region,
    format_csv,
    read_annotation,
    region_tissues,
    write_annotation,
)
from napari_crystal.palette import LABELS

label = st.one_of(
    st.sampled_from(LABELS), st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
)
tissue = st.sampled_from(["breast", "lymph node", "skin"])
coord = st.integers(min_value=0, max_value=200_000)


@st.composite
def region_coords(draw):
    n = draw(st.integers(3, 30))
    pts = draw(st.lists(st.tuples(coord, coord), min_size=n, max_size=n))
    arr = np.array(pts, dtype=np.float64)
    if len(np.unique(arr, axis=0)) < 3 or collinear(arr):  # no area: refused by the reader
        arr = np.array([[0, 0], [0, 5], [5, 5]], dtype=np.float64)
    if draw(st.booleans()):
        arr = np.vstack([arr, arr[:1]])  # closed, as in real files
    return arr


@st.composite
def annotations(draw):
    n = draw(st.integers(0, 6))
    regions = []
    for i in range(n):
        coords = draw(region_coords())
        depth = draw(st.sampled_from([0, 0, 1, 7]))
        regions.append(
            Region(
                index=i,
                region_id=draw(st.integers(1, 10_000)),
                label=draw(label),
                tissue=draw(tissue),
                coords=coords,
                depth=np.full(len(coords), depth, dtype=np.int64),
                confidence=1.0,
            )
        )
    mpp = draw(st.one_of(st.sampled_from([0.2527, 0.5022, 0.25]), st.floats(0.05, 2.0)))
    return Annotation(
        regions,
        mpp=mpp,
        width=draw(st.integers(1, 200_000)),
        height=draw(st.integers(1, 200_000)),
        bname=draw(st.text("abcdefghij0123456789_", min_size=1, max_size=40)),
        tissue=region_tissues(regions),
    )


def _read(path: Path) -> Annotation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownLabelWarning)
        return read_annotation(path)


SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(ann=annotations())
def test_csv_xml_csv_is_byte_identical(tmp_path, ann):
    write_annotation(ann, tmp_path / "a.csv")
    first = (tmp_path / "a.csv").read_bytes()
    write_annotation(_read(tmp_path / "a.csv"), tmp_path / "b.xml")
    write_annotation(_read(tmp_path / "b.xml"), tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_bytes() == first
    assert _read(tmp_path / "c.csv") == ann


@SETTINGS
@given(ann=annotations())
def test_xml_csv_xml_keeps_regions(tmp_path, ann):
    write_annotation(ann, tmp_path / "a.xml")
    first = _read(tmp_path / "a.xml")
    write_annotation(first, tmp_path / "b.csv")
    write_annotation(_read(tmp_path / "b.csv"), tmp_path / "c.xml")
    again = _read(tmp_path / "c.xml")
    assert again.regions == first.regions == ann.regions
    assert (again.mpp, again.width, again.height, again.bname) == (
        ann.mpp,
        ann.width,
        ann.height,
        ann.bname,
    )
    assert (tmp_path / "c.xml").read_bytes() == (tmp_path / "a.xml").read_bytes()


@SETTINGS
@given(ann=annotations(), crlf=st.booleans(), final_newline=st.booleans())
def test_line_endings_do_not_matter(tmp_path, ann, crlf, final_newline):
    text = format_csv(ann)
    if not final_newline:
        text = text.rstrip("\n")
    if crlf:
        text = text.replace("\n", "\r\n")
    (tmp_path / "x.csv").write_bytes(text.encode())
    assert _read(tmp_path / "x.csv") == ann
