"""The napari slide reader and sample data: multiscale image, annotation beside it, fast refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_crystal.errors import SlideError
from napari_crystal.io import write_annotation
from napari_crystal.io.nedc import read_annotation
from napari_crystal.plugin._slide_reader import get_slide_reader, read_slide


def _first_train_slide(corpus):
    return sorted((corpus / "train").glob("*.svs"))[0]


def test_non_slides_return_none(tmp_path):
    plain = tmp_path / "photo.tif"
    tifffile.imwrite(plain, np.zeros((32, 48), np.uint8))
    assert get_slide_reader(str(plain)) is None
    assert get_slide_reader(str(tmp_path / "missing.tif")) is None
    notes = tmp_path / "notes.csv"
    notes.write_text("a,b\n")
    assert get_slide_reader(str(notes)) is None
    assert get_slide_reader([str(plain), str(plain)]) is None


def test_real_svs_layer(real_svs):
    reader = get_slide_reader(str(real_svs))
    assert reader is not None
    layers = reader(str(real_svs))
    assert len(layers) == 2  # the slide and an empty annotation layer to draw on
    data, meta, kind = layers[0]
    assert kind == "image" and meta["rgb"] and meta["name"] == "CMU-1-small-region"
    assert meta["metadata"]["mpp"] == pytest.approx(0.499)
    assert data.shape == (2967, 2220, 3)
    shapes, shapes_meta, shapes_kind = layers[1]
    assert shapes_kind == "shapes" and len(shapes) == 0
    assert shapes_meta["name"] == "CMU-1-small-region annotation"
    header = shapes_meta["metadata"]
    assert (header["width"], header["height"]) == (2220, 2967)
    assert header["mpp"] == pytest.approx(0.499)


def test_synthetic_slide_opens_with_its_annotation(tiny_corpus):
    svs = _first_train_slide(tiny_corpus)
    layers = get_slide_reader(str(svs))(str(svs))
    data, meta, kind = layers[0]
    assert kind == "image" and meta["multiscale"] and len(data) >= 3
    assert meta["name"] == svs.stem
    assert data[0].shape[:2] == tuple(meta["metadata"]["shape"])
    kinds = [k for _, _, k in layers[1:]]
    assert "shapes" in kinds
    shapes_data = next(d for d, _, k in layers[1:] if k == "shapes")
    ann = read_annotation(svs.with_suffix(".csv"))
    assert len(shapes_data) == len(ann.regions)
    # aligned: same level-0 (row, col) vertices as the file, inside the image
    np.testing.assert_allclose(
        np.asarray(shapes_data[0])[:, -2:].min(axis=0), ann.regions[0].coords.min(axis=0)
    )
    for poly in shapes_data:
        pts = np.asarray(poly)[:, -2:]
        assert (
            (pts >= 0).all()
            and (pts[:, 0] < data[0].shape[0]).all()
            and (pts[:, 1] < data[0].shape[1]).all()
        )


def test_broken_annotation_warns_and_slide_still_opens(tiny_corpus, tmp_path):
    svs = shutil.copy(_first_train_slide(tiny_corpus), tmp_path / "case.svs")
    (tmp_path / "case.csv").write_text("# version = csv_v1.0.0\nthis is not, an annotation\n")
    with pytest.warns(UserWarning, match="case.csv"):
        layers = read_slide(str(svs))
    assert [k for _, _, k in layers] == ["image"]


def test_broken_svs_is_claimed_and_explained(tmp_path):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 10)
    reader = get_slide_reader(str(bad))
    assert reader is not None
    with pytest.raises(SlideError, match="broken.svs"):
        reader(str(bad))


def test_sample_data_generates_once(tmp_path, monkeypatch):
    from napari_crystal.plugin import _sample_data

    monkeypatch.setenv("NAPARI_CRYSTAL_CACHE", str(tmp_path))
    monkeypatch.setattr(_sample_data, "SAMPLE_SHAPE", (1536, 2048))
    monkeypatch.setattr(_sample_data, "SAMPLE_PER_CLASS", 1)
    layers = _sample_data.synthetic_slide()
    path = _sample_data.sample_slide_path()
    mtime = path.stat().st_mtime_ns
    assert layers[0][2] == "image" and layers[0][1]["multiscale"]
    assert {k for _, _, k in layers[1:]} >= {"shapes"}
    ann = read_annotation(path.with_suffix(".xml"))
    assert len(ann.regions) == 12
    _sample_data.synthetic_slide()
    assert path.stat().st_mtime_ns == mtime  # cached, not regenerated


@pytest.mark.viewer
def test_viewer_opens_slide_with_annotations(make_napari_viewer, tiny_corpus):
    viewer = make_napari_viewer()
    svs = _first_train_slide(tiny_corpus)
    layers = viewer.open(str(svs), plugin="napari-crystal")
    image = layers[0]
    assert image.multiscale and image.rgb and image.name == svs.stem
    assert len(viewer.layers) >= 2
    shapes = next(layer for layer in viewer.layers if layer._type_string == "shapes")
    assert shapes.nshapes == len(read_annotation(svs.with_suffix(".csv")).regions)
    # the image and the annotation share level-0 coordinates
    lo, hi = image.extent.world
    assert (shapes.extent.world[0] >= lo - 1).all() and (shapes.extent.world[1] <= hi + 1).all()


@pytest.mark.viewer
def test_viewer_open_real_svs(make_napari_viewer, real_svs):
    viewer = make_napari_viewer()
    viewer.open(str(real_svs), plugin="napari-crystal")
    assert viewer.layers[0].data.shape == (2967, 2220, 3)
    assert viewer.layers[0].metadata["mpp"] == pytest.approx(0.499)


def test_slide_opens_with_a_qupath_geojson_beside_it(tiny_corpus, tmp_path):
    """A GeoJSON beside the slide (read as region columns) gives the layers its NEDC CSV gives."""
    source = _first_train_slide(tiny_corpus)
    svs = shutil.copy(source, tmp_path / "case.svs")
    write_annotation(read_annotation(source.with_suffix(".csv")), tmp_path / "case.geojson")
    from_geojson = read_slide(str(svs))
    shutil.copy(source.with_suffix(".csv"), tmp_path / "case.csv")  # found first from now on
    from_csv = read_slide(str(svs))
    assert [k for _, _, k in from_geojson] == [k for _, _, k in from_csv]
    for (a, a_meta, kind), (b, b_meta, _) in zip(from_geojson[1:], from_csv[1:], strict=True):
        if kind == "shapes":
            assert len(a) == len(b) and all(map(np.array_equal, a, b))
            pd.testing.assert_frame_equal(a_meta["features"], b_meta["features"])
        else:
            np.testing.assert_array_equal(a, b)
