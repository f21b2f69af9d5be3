"""The reader takes an NEDC CSV as region columns (no Region object per region): its layers
equal those made from the file's Regions, as points (above MANY_REGIONS) and as shapes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_crystal import palette
from napari_crystal.errors import AnnotationError
from napari_crystal.geometry import rasterize_annotation
from napari_crystal.io import annotation as annotation_module
from napari_crystal.io import nedc
from napari_crystal.io.annotation import (
    Annotation,
    Region,
    RegionColumns,
    check_annotation_bounds,
)
from napari_crystal.io.formats import read_annotation, read_annotation_columns
from napari_crystal.plugin import _reader

pytestmark = pytest.mark.filterwarnings(
    "ignore::napari_crystal.io.annotation.UnknownLabelWarning"  # "mystery", on purpose
)
LABELS = ["indc", "norm", "dcis", "mystery", "bckg"]


def _write(path: Path, n: int, header_size: bool = True, shape=(1900, 2000)) -> Annotation:
    """Regions of 3 to 9 vertices (some closed), varied labels (one unknown), ids, depths and
    confidences, on a slide of ``shape``; without ``header_size`` the file has no width/height
    line."""
    rng = np.random.default_rng(11)
    regions = []
    for i in range(n):
        k = int(rng.integers(3, 10))
        t = np.linspace(0, 2 * np.pi, k, endpoint=False)
        radius = rng.uniform(3, 40)
        centre = rng.uniform(50, np.array(shape) - 50)
        coords = np.column_stack([np.sin(t), np.cos(t)]) * radius + centre
        if i % 3 == 0:
            coords = np.vstack([coords, coords[:1]])
        depth = np.full(len(coords), i % 4)
        label = LABELS[int(rng.integers(len(LABELS)))]
        conf = 0.5 if i % 5 == 0 else 1.0
        regions.append(Region(i, 3 * i + 7, label, "breast", coords.round(), depth, conf))
    nedc.write_annotation(Annotation(regions, 0.25, shape[1], shape[0], "cells", "breast"), path)
    if not header_size:
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if not line.startswith("# width")))
    return nedc.read_annotation(path)


def _same(a, b, where: str) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            if key != "colormap":  # a new napari object each time
                _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{k}]")
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == np.asarray(b).dtype and np.array_equal(a, b), where
    else:
        assert type(a) is type(b) and a == b, where


@pytest.mark.parametrize("header_size", [True, False])
@pytest.mark.parametrize("many", [True, False])
def test_column_layers_equal_region_layers(tmp_path, monkeypatch, many, header_size):
    monkeypatch.setattr(_reader, "MANY_REGIONS", 50 if many else 1000)
    path = tmp_path / "cells.csv"
    ann = _write(path, 120, header_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_columns = _reader.read_annotation_layers(str(path))
        from_regions = _reader.annotation_layers(read_annotation(path), name="cells")
    assert [kind for _, _, kind in from_columns] == ["labels", "points" if many else "shapes"]
    _same(from_columns, from_regions, "layers")

    # ... and both are what the regions themselves say.
    raster, labels_kwargs, _ = from_columns[0]
    shape = (1900, 2000) if header_size else None
    expected, downsample = rasterize_annotation(ann, shape=shape)
    np.testing.assert_array_equal(raster, expected)
    assert labels_kwargs["metadata"]["downsample"] == downsample
    data, kwargs, _ = from_columns[1]
    features = kwargs["features"]
    assert list(features["label"]) == [r.label for r in ann.regions]
    assert list(features["region_id"]) == [r.region_id for r in ann.regions]
    assert list(features["depth"]) == [int(r.depth[0]) for r in ann.regions]
    assert list(features["confidence"]) == [r.confidence for r in ann.regions]
    colours = kwargs["face_color"] if many else kwargs["edge_color"]
    np.testing.assert_array_equal(colours, [palette.rgba(r.label) for r in ann.regions])
    if many:
        np.testing.assert_allclose(data, [r.coords.mean(axis=0) for r in ann.regions])
        extents = [np.ptp(r.coords, axis=0).max() for r in ann.regions]
        assert kwargs["size"] == pytest.approx(np.median(extents))
    else:
        assert [len(d) for d in data] == [
            len(_reader._display_vertices(r.coords)) for r in ann.regions
        ]


def _refuse(*args, **kwargs):
    raise AssertionError("a Region was built")


def test_many_regions_make_no_region_objects(tmp_path, monkeypatch):
    """Above MANY_REGIONS, opening an NEDC CSV builds no Region (what made it slow)."""
    path = tmp_path / "cells.csv"
    _write(path, 60)

    monkeypatch.setattr(_reader, "MANY_REGIONS", 50)
    monkeypatch.setattr(annotation_module, "Region", _refuse)
    monkeypatch.setattr(nedc, "Region", _refuse)
    with pytest.warns(UserWarning, match="60 regions: shown as one point per region"):
        layers = _reader.read_annotation_layers(str(path))
    assert [kind for _, _, kind in layers] == ["labels", "points"]
    assert len(layers[1][0]) == 60


def test_columns_round_trip_an_annotation(tmp_path):
    """RegionColumns.from_annotation and .annotation() keep every region field but holes."""
    ann = _write(tmp_path / "cells.csv", 30)
    ann.regions[4].color = "#123456"
    ann.regions[5].kind = "ellipse"
    ann.class_colors = {"norm": "#abcdef"}
    back = RegionColumns.from_annotation(ann).annotation()
    assert back == ann
    assert [r.line for r in back.regions] == [r.line for r in ann.regions]
    assert back.source == ann.source


def test_columns_of_other_formats_are_none(tmp_path):
    """XML is not read as columns (NEDC CSV and GeoJSON are); XML keeps its readers."""
    ann = _write(tmp_path / "cells.csv", 5)
    xml = tmp_path / "cells.xml"
    nedc.write_annotation(ann, xml)
    assert read_annotation_columns(xml) is None
    columns = read_annotation_columns(tmp_path / "cells.csv")
    assert len(columns) == 5 and columns.source == str(tmp_path / "cells.csv")
    assert columns.annotation() == ann


def test_empty_csv_opens_like_its_annotation(tmp_path):
    path = tmp_path / "empty.csv"
    nedc.write_annotation(Annotation([], 0.25, 300, 200, "empty", "breast"), path)
    layers = _reader.read_annotation_layers(str(path))
    assert [kind for _, _, kind in layers] == ["labels", "shapes"] and layers[1][0] == []
    _same(layers, _reader.annotation_layers(read_annotation(path), name="empty"), "layers")


def test_bounds_check_names_the_same_region_from_columns(tmp_path):
    path = tmp_path / "cells.csv"
    ann = _write(path, 40)
    columns = read_annotation_columns(path)
    errors = []
    for regions in (ann, columns):
        with pytest.raises(AnnotationError, match="outside the slide s.svs") as info:
            check_annotation_bounds(regions, (300, 2000), "s.svs")
        errors.append(info.value)
    assert str(errors[0]) == str(errors[1]) and errors[0].line is not None
    check_annotation_bounds(columns, (1900, 2000))  # on its own slide: nothing to say


def test_slide_with_a_cell_level_csv_beside_it(tiny_corpus, tmp_path, monkeypatch):
    """Opening a slide takes the NEDC CSV beside it as columns too: points, no Region."""
    import shutil

    from napari_crystal.io.slide import open_slide
    from napari_crystal.plugin._slide_reader import read_slide

    svs = shutil.copy(sorted((tiny_corpus / "train").glob("*.svs"))[0], tmp_path / "case.svs")
    shape = tuple(open_slide(svs).shape)
    _write(tmp_path / "case.csv", 60, shape=shape)
    monkeypatch.setattr(_reader, "MANY_REGIONS", 50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _reader.annotation_layers(
            read_annotation(tmp_path / "case.csv"), name="case annotation"
        )
        monkeypatch.setattr(annotation_module, "Region", _refuse)
        monkeypatch.setattr(nedc, "Region", _refuse)
        layers = read_slide(str(svs))
    assert [kind for _, _, kind in layers] == ["image", "labels", "points"]
    _same(layers[1:], expected, "layers")
