"""Fuzzing the foreign-format readers: any bytes give an Annotation or a CrystalError, nothing else.

Examples per test: 200 by default (bounded for CI); ``CRYSTAL_FUZZ_EXAMPLES`` raises it for a
longer hunt.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path
from unittest import mock

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from format_samples import (
    asap_sample,
    imagescope_sample,
    qupath_sample_03,
    qupath_sample_04,
)
from napari_crystal.errors import CrystalError
from napari_crystal.io import Annotation, asap, geojson, imagescope, read_annotation

FUZZ = settings(
    max_examples=int(os.environ.get("CRYSTAL_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=bool(os.environ.get("CI")),
)
READERS = {
    "imagescope": (imagescope.read, ".xml", imagescope_sample),
    "asap": (asap.read, ".xml", asap_sample),
    "geojson": (geojson.read, ".geojson", qupath_sample_04),
    "geojson-0.3": (geojson.read, ".json", qupath_sample_03),
}
_DIR = Path(tempfile.mkdtemp(prefix="crystal-fuzz-"))


def _check(reader, suffix: str, data: bytes) -> None:
    path = _DIR / f"f{suffix}"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for read in (reader, read_annotation):
            try:
                result = read(path)
            except CrystalError as exc:
                assert str(path) in str(exc) and "\n" not in str(exc)
            else:
                assert isinstance(result, Annotation)
                for r in result.regions:
                    assert r.coords.ndim == 2 and r.coords.shape[1] == 2


@st.composite
def mutated(draw, sample: bytes):
    """A valid file with a few bytes flipped, cut, inserted or duplicated."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup", "digit"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(
                st.sampled_from(
                    [b"<", b">", b'"', b"{", b"]", b",", b"NaN", b"-", b"e9999", b"&x;"]
                )
            )
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
        else:
            data[at] = draw(st.sampled_from(b"0123456789.-e"))
    return bytes(data)


@pytest.mark.parametrize("name", sorted(READERS))
@FUZZ
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes(name, data):
    reader, suffix, sample = READERS[name]
    _check(reader, suffix, data)


@pytest.mark.parametrize("name", sorted(READERS))
@FUZZ
@given(st.data())
def test_mutated_valid_files(name, data):
    reader, suffix, sample = READERS[name]
    _check(reader, suffix, data.draw(mutated(sample())))


GEOJSON_DOCS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "features",
                    "geometry",
                    "coordinates",
                    "properties",
                    "classification",
                    "objectType",
                    "measurements",
                    "name",
                    "color",
                    "colorRGB",
                    "geometries",
                    "id",
                    "napari-crystal",
                    "isEllipse",
                    "names",
                    "value",
                ]  # fmt: skip
            ),
            inner
            | st.sampled_from(
                [
                    "Feature",
                    "FeatureCollection",
                    "Polygon",
                    "MultiPolygon",
                    "annotation",
                    "detection",
                    "GeometryCollection",
                ]
            ),  # fmt: skip
            max_size=6,
        )
    ),
    max_leaves=40,
)


@FUZZ
@given(GEOJSON_DOCS)
def test_geojson_structures(doc):
    _check(geojson.read, ".geojson", json.dumps(doc).encode())


def _plain(value):
    """Arrays as lists of Python numbers (exact reprs), in whatever they are nested in."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _outcome(path) -> str:
    """What reading gives, spelled out exactly (every field, extras included), or the error."""
    try:
        ann = geojson.read(path)
    except CrystalError as exc:
        return str(exc)
    regions = [[_plain(getattr(r, f.name)) for f in fields(r)] for r in ann.regions]
    header = [getattr(ann, f.name) for f in fields(ann) if f.name != "regions"]
    return repr((regions, header))


def _same_with_either_parser(data: bytes) -> None:
    """msgspec's parse reads as ``json.loads`` does (the path NaN, Infinity and errors take)."""
    path = _DIR / "same.geojson"
    path.write_bytes(data)
    refused = mock.patch.object(geojson.msgspec.json, "decode", side_effect=msgspec.DecodeError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = _outcome(path)
        with refused:
            slow = _outcome(path)
    assert fast == slow


@FUZZ
@given(GEOJSON_DOCS)
def test_geojson_fast_parser_reads_structures_as_the_standard_library(doc):
    _same_with_either_parser(json.dumps(doc).encode())  # integers past 64 bits, NaN...


@pytest.mark.parametrize("sample", [qupath_sample_04, qupath_sample_03])
@FUZZ
@given(st.data())
def test_geojson_fast_parser_reads_damaged_files_as_the_standard_library(sample, data):
    _same_with_either_parser(data.draw(mutated(sample())))


@pytest.mark.parametrize("nan", ["", "NaN", "Infinity"])
def test_geojson_fast_parser_reads_big_integers_and_odd_numbers_as_the_standard_library(nan):
    """Integers past 64 bits stay exact integers (a colour, an id, a measurement), floats are
    rounded alike; a NaN or Infinity anywhere takes the standard library's path."""
    big = 2**64 + 5
    ring = [[0, 0], [1e3, 0.1], [12.000000000000000001, 1e-320], [-0.0, 3.5e2], [0, 0]]
    feature = {
        "type": "Feature",
        "id": big,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": "annotation",
            "classification": {"name": "Tumor", "colorRGB": -big},
            "measurements": {"big": big, "neg": -(2**70), "small": 1.5, "odd": "NAN"},
            "napari-crystal": {"region_id": big * 3, "depth": 2**63, "confidence": 2**80},
        },
    }
    text = json.dumps({"type": "FeatureCollection", "features": [feature, feature]})
    _same_with_either_parser(text.replace('"NAN"', nan or '"NAN"').encode())


def _same_as_columns(data: bytes) -> None:
    """The napari reader's column path reads what ``read`` reads: the same error, or the
    same regions (outer rings; columns carry no holes) and the same warnings."""
    path = _DIR / "columns.geojson"
    path.write_bytes(data)
    outcomes = []
    for read in (geojson.read, geojson.read_columns):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = read(path)
            except CrystalError as exc:
                result = str(exc)
        outcomes.append((result, [str(w.message) for w in caught]))
    (ann, ann_warnings), (columns, columns_warnings) = outcomes
    assert columns_warnings == ann_warnings
    if isinstance(ann, str):
        assert columns == ann
        return
    for r in ann.regions:
        r.holes = []
    assert columns.annotation() == ann


@FUZZ
@given(GEOJSON_DOCS)
def test_geojson_columns_read_structures_as_regions(doc):
    _same_as_columns(json.dumps(doc).encode())


@pytest.mark.parametrize("sample", [qupath_sample_04, qupath_sample_03])
@FUZZ
@given(st.data())
def test_geojson_columns_read_damaged_files_as_regions(sample, data):
    _same_as_columns(data.draw(mutated(sample())))
