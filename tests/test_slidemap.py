"""Whole-slide maps: files that read back, tissue frames only, and the refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_crystal.cli import main
from napari_crystal.errors import ModelError, SlideError
from napari_crystal.slidemap import (
    model_frames,
    predict_slide_map,
    read_probability_tiff,
    tissue_fraction,
)

SHAPE = (1536, 2048)


def _tissue_source(top, left, h, w):
    """Pink tissue in the left half with dark dots, white glass elsewhere."""
    rr, cc = np.mgrid[top : top + h, left : left + w]
    out = np.full((h, w, 3), 244, np.uint8)
    tissue = cc < SHAPE[1] // 2
    out[tissue] = (230, 160, 200)
    dots = tissue & ((rr % 40 < 8) & (cc % 40 < 8))
    out[dots] = (80, 40, 130)
    return out


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from napari_crystal.synthetic.pyramid import write_pyramid

    root = tmp_path_factory.mktemp("slidemap")
    half = write_pyramid(root / "half.svs", _tissue_source, SHAPE, 0.5, min_side=256)
    blank = write_pyramid(
        root / "blank.svs", lambda t, c, h, w: np.full((h, w, 3), 244, np.uint8), SHAPE, 0.5,
        min_side=256,
    )  # fmt: skip
    return half, blank


@pytest.fixture(scope="module")
def models(tiny_corpus, tmp_path_factory):
    from napari_crystal.dataset import build_dataset
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.features import FeatureSpec
    from napari_crystal.features.build import build_feature_dataset
    from napari_crystal.training import save_model

    root = tmp_path_factory.mktemp("slidemap-models")
    spec = FeatureSpec("colour", mpp=2.0)
    colour = build_feature_dataset(tiny_corpus, "train", root / "colour.zarr", spec)
    masks = build_dataset(tiny_corpus, "train", root / "masks.zarr", size=16)
    params = {"n_estimators": 6}
    paths = {}
    for name, ds in (("colour", colour), ("mask", masks)):
        paths[name] = save_model(train_on_dataset(ds, params=params), root / f"{name}.skops")
    return paths


def test_tissue_fraction_of_half_a_slide(slides):
    from napari_crystal.io.slide import open_slide

    with open_slide(slides[0]) as slide:
        share = tissue_fraction(slide, 128, 256)
    assert share.shape == (12, 16)
    assert share[1:-1, 1:6].min() > 0.9 and share[:, 10:].max() == 0  # edges stick out


@pytest.mark.parametrize("kind", ["colour", "mask"])
def test_predict_writes_maps_that_read_back(slides, models, tmp_path, kind):
    from napari_crystal.training import load_model

    model = load_model(models[kind])
    out = tmp_path / "maps"
    result = predict_slide_map(slides[0], model, out, frame=128, window=256, chunk=20)
    assert result.grid == (12, 16) and 0 < result.n_tissue < result.n_frames
    with open(out / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == result.n_tissue
    assert all(int(r["left"]) < SHAPE[1] // 2 + 256 for r in rows)  # tissue frames only
    probs = np.array([[float(r[f"p_{c}"]) for c in model.classes] for r in rows])
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-3)
    assert [r["class"] for r in rows] == [model.classes[i] for i in probs.argmax(axis=1)]
    doc = json.loads((out / "tiles.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == result.n_tissue
    first = doc["features"][0]
    assert first["geometry"]["type"] == "Polygon"
    assert first["properties"]["objectType"] == "tile"
    assert first["properties"]["classification"]["name"] == rows[0]["class"]
    x0, y0 = first["geometry"]["coordinates"][0][0]
    assert (y0, x0) == (int(rows[0]["top"]), int(rows[0]["left"]))
    assert set(first["properties"]["measurements"]) >= {f"p_{c}" for c in model.classes}
    from napari_crystal.io import read_annotation

    tiles = read_annotation(out / "tiles.geojson", detections=True)  # the project's own reader
    assert len(tiles.regions) == result.n_tissue
    assert [r.label for r in tiles.regions] == [r["class"] for r in rows]
    assert tiles.regions[0].coords.min(axis=0).tolist() == [
        int(rows[0]["top"]),
        int(rows[0]["left"]),
    ]
    got = tiles.regions[0].extra["measurements"]
    assert all(abs(got[f"p_{c}"] - float(rows[0][f"p_{c}"])) < 1e-3 for c in model.classes)
    for k, c in enumerate(model.classes):
        levels = read_probability_tiff(out / f"prob-{c}.tif")
        assert levels[0].shape == (12, 16) and levels[0].dtype == np.uint8
        r, cc = int(rows[0]["grid_row"]), int(rows[0]["grid_col"])
        assert abs(int(levels[0][r, cc]) - probs[0, k] * 255) <= 1
    assert read_probability_tiff(out / "classes.tif")[0].shape == (12, 16)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_tissue"] == result.n_tissue


def test_predict_tiff_is_a_pyramid(tmp_path):
    from napari_crystal.slidemap import write_probability_tiff

    img = (np.arange(300 * 200) % 256).astype(np.uint8).reshape(300, 200)
    write_probability_tiff(tmp_path / "p.tif", img, 64.0, min_side=64)
    levels = read_probability_tiff(tmp_path / "p.tif")
    assert [lv.shape for lv in levels] == [(300, 200), (150, 100), (75, 50), (38, 25)]
    assert np.array_equal(levels[1], img[::2, ::2])


def test_slide_without_tissue_is_refused_and_writes_nothing(slides, models, tmp_path, capsys):
    out = tmp_path / "none"
    with pytest.raises(SlideError, match="no tissue"):
        predict_slide_map(slides[1], models["colour"], out)
    assert not out.exists() or not any(out.iterdir())
    status = main(["predict", str(slides[1]), str(models["colour"]), "--out", str(out), "--quiet"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-crystal: error:") and "blank.svs" in err and "no tissue" in err
    assert not out.exists() or not any(out.iterdir())


def test_frame_size_other_than_the_models_is_refused(models):
    from napari_crystal.training import load_model

    model = load_model(models["colour"])
    assert model_frames(model, None, None) == (128, 256)
    assert model_frames(model, 250, 500) == (250, 500)
    model.meta = {**model.meta, "frame": 250, "window": 500}
    assert model_frames(model, None, None) == (250, 500)
    with pytest.raises(ModelError, match="128/256 px .* asked.*trained on 250/500"):
        model_frames(model, 128, 256)


def test_stain_reference_other_than_the_models_is_refused(slides, models, tmp_path):
    from napari_crystal.features import fit_stain_on_slide

    reference = fit_stain_on_slide("reinhard", slides[0])
    with pytest.raises(ModelError, match="stain reference reinhard .* trained with no stain"):
        predict_slide_map(slides[0], models["colour"], tmp_path / "x", stain_reference=reference)
    assert not (tmp_path / "x").exists()


def test_cli_predict_with_a_preset(slides, models, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["predict", str(slides[0]), str(models["colour"]), "--out", str(out), "--quiet"]
    assert main([*args, "--preset", "student"]) == 0
    text = capsys.readouterr().out
    assert "(250/500 px)" in text and (out / "tiles.geojson").is_file()


@pytest.mark.parametrize("name", ["colour", "texture", "morphology", "multiscale"])
@pytest.mark.parametrize("mpp", [2.0, 3.0])
def test_windows_cut_from_a_strip_equal_windows_read_one_by_one(slides, name, mpp):
    """A slide map's rows (all windows of a strip at once) are the rows training makes from
    each window read alone (`region_crop` + `features_of_crop`), and those of the one-window-
    at-a-time path: 2 um/px is a whole number of level-0 pixels (block means), 3 um/px not."""
    from types import SimpleNamespace

    from napari_crystal.features import FeatureSpec
    from napari_crystal.features.extract import features_of_crop, region_crop
    from napari_crystal.io.slide import open_slide
    from napari_crystal.slidemap import _Rows

    spec = FeatureSpec(name, mpp=mpp)
    model = SimpleNamespace(meta={"features": spec.settings(), "feature_names": spec.names})
    tops, lefts = np.array([-64, -64, 64, 576, 640]), np.array([-64, 192, 448, 832, 960])
    with open_slide(slides[0]) as slide:
        rows = _Rows(slide, model, 128, 256)
        got, ok = rows.rows(tops, lefts)
        assert ok.all() and got.shape == (len(tops), len(spec.names))
        rows.batched = False
        one_by_one, _ = rows.rows(tops, lefts)
        assert np.allclose(got, one_by_one, rtol=1e-5, atol=1e-6)
        if mpp == 3.0:  # resized strips and resized windows differ at the edges: not compared
            return
        for i in range(len(tops)):
            rgb, inside, um = region_crop(slide, tops[i], lefts[i], 256, 256, None, rows.spec.mpp)
            want = features_of_crop(rows.spec, rgb, inside, um)
            assert np.allclose(got[i], want, rtol=1e-5, atol=1e-5), i


def test_cli_predict_many_slides_as_dask_tasks(slides, models, tmp_path, capsys):
    import shutil

    other = tmp_path / "other.svs"
    shutil.copy(slides[0], other)
    out = tmp_path / "many"
    args = ["predict", str(slides[0]), str(other), str(models["colour"]), "--out", str(out),
            "--scheduler", "threads", "--quiet"]  # fmt: skip
    assert main(args) == 0
    for stem in ("half", "other"):
        assert (out / stem / "tiles.geojson").is_file() and (out / stem / "frames.csv").is_file()
    a = (out / "half" / "frames.csv").read_text()
    assert a == (out / "other" / "frames.csv").read_text()  # same pixels, same maps
    # a blank slide among them is refused before any work
    bad = ["predict", str(slides[0]), str(slides[1]), str(models["colour"]), "--out",
           str(tmp_path / "bad"), "--quiet"]  # fmt: skip
    assert main(bad) == 2
    assert "no tissue" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
