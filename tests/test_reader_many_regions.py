"""Cell-level annotations (more regions than napari can hold as shapes) open as one point per
region over the class raster, with the features and colours the shapes would have had."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_crystal import palette
from napari_crystal.io.nedc import Annotation, Region, write_annotation
from napari_crystal.plugin import _reader

pytestmark = pytest.mark.viewer


def _cells(path: Path, n: int) -> Annotation:
    rng = np.random.default_rng(5)
    labels = ["indc", "norm", "dcis"]
    regions = []
    for i in range(n):
        centre = rng.integers(100, 3900, size=2)
        square = centre + np.array([[-5, -5], [-5, 5], [5, 5], [5, -5]])
        regions.append(Region(i, i + 1, labels[i % 3], "breast", square, None))
    ann = Annotation(regions, 0.25, 4000, 4000, "cells", "breast")
    write_annotation(ann, path)
    return ann


def test_many_regions_open_as_points(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setattr(_reader, "MANY_REGIONS", 50)
    path = tmp_path / "cells.csv"
    ann = _cells(path, 60)
    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match="60 regions: shown as one point per region"):
        viewer.open(str(path), plugin="napari-crystal")
    kinds = [layer._type_string for layer in viewer.layers]
    assert kinds == ["labels", "points"]
    points = viewer.layers[-1]
    assert len(points.data) == 60
    np.testing.assert_allclose(points.data, [r.coords.mean(axis=0) for r in ann.regions])
    assert list(points.features["label"]) == [r.label for r in ann.regions]
    assert list(points.features["region_id"]) == list(range(1, 61))
    np.testing.assert_allclose(points.face_color[0], palette.rgba("indc"))
    np.testing.assert_allclose(points.face_color[1], palette.rgba("norm"))
    assert points.metadata["regions_as_points"] and points.metadata["mpp"] == 0.25
    assert points.size[0] == pytest.approx(10.0)  # a typical region's extent


def test_fewer_regions_stay_shapes(make_napari_viewer, tmp_path):
    path = tmp_path / "cells.csv"
    _cells(path, 60)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-crystal")
    assert [layer._type_string for layer in viewer.layers] == ["labels", "shapes"]
    assert viewer.layers[-1].nshapes == 60
