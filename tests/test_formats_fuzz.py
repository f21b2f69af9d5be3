"""Fuzzing the foreign-format readers: any bytes give an Annotation or a CrystalError, nothing else.

Examples per test: 200 by default (bounded for CI); ``CRYSTAL_FUZZ_EXAMPLES`` raises it for a
longer hunt.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

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


@FUZZ
@given(
    st.recursive(
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
)
def test_geojson_structures(doc):
    import json

    _check(geojson.read, ".geojson", json.dumps(doc).encode())
