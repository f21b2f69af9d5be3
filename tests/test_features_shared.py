"""Feature sets made together from one read of each region: the same datasets as one by one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_crystal.features import FeatureSpec, sets
from napari_crystal.features.build import (
    _boxes,
    _polygons,
    build_feature_dataset,
    build_feature_datasets,
    feature_spec,
)
from napari_crystal.features.extract import feature_rows_of_sets, features_of_crop, region_crop
from napari_crystal.features.stain import StainError

SETS = ("texture", "colour", "morphology", "multiscale")


def _attributes(path) -> dict:
    """A saved dataset's metadata as written, with the record of its files' SHA-256 digests."""
    return json.loads((path / "zarr.json").read_text())["attributes"]


def _rows_one_crop_at_a_time(folder, spec: FeatureSpec) -> np.ndarray:
    """Each region read on its own and measured by the set's function (NaN when skipped)."""
    from napari_crystal import dataset as _ds
    from napari_crystal.io.slide import open_slide

    rows = []
    for slide, _, annotation, table in _ds._plan(folder, 256):
        polygons = _polygons(table, annotation.regions)
        with open_slide(slide) as opened:
            for (top, left, h, w), polygon in zip(_boxes(table), polygons, strict=True):
                rgb, inside, um = region_crop(opened, top, left, h, w, polygon, spec.mpp)
                row = np.full(len(spec.names), np.nan)
                try:
                    row = features_of_crop(spec, rgb, inside, um)
                except (sets.TooSmall, StainError):
                    pass
                rows.append(row)
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("stain", [None, "macenko"])
def test_sets_made_together_equal_each_set_made_alone(tiny_corpus, tmp_path, stain):
    from napari_crystal.dataset import slide_files

    reference = slide_files(tiny_corpus / "train")[0] if stain else None
    specs = {fs: feature_spec(fs, stain=stain, reference=reference) for fs in SETS}
    together = build_feature_datasets(
        tiny_corpus, "eval", {tmp_path / f"{fs}-all.zarr": specs[fs] for fs in SETS}
    )
    for fs, shared in zip(SETS, together, strict=True):
        alone = build_feature_dataset(
            tiny_corpus, "eval", tmp_path / f"{fs}-alone.zarr", specs[fs]
        )
        assert shared.feature_set == fs
        # same rows, table, settings, skip counts, inputs hash and file digests
        assert _attributes(tmp_path / f"{fs}-all.zarr") == _attributes(
            tmp_path / f"{fs}-alone.zarr"
        )
        got = np.asarray(shared.packed[:])
        assert np.array_equal(got, np.asarray(alone.packed[:]), equal_nan=True)
        want = _rows_one_crop_at_a_time(tiny_corpus / "eval", specs[fs])
        assert np.array_equal(got, want, equal_nan=True), fs
        assert np.isfinite(got).all(axis=1).sum() > len(got) // 2


def test_a_rerun_makes_only_the_sets_whose_dataset_is_missing(tiny_corpus, tmp_path):
    targets = {tmp_path / f"{fs}.zarr": FeatureSpec(fs) for fs in ("colour", "morphology")}
    first = build_feature_datasets(tiny_corpus, "train", targets)
    stamp = (tmp_path / "colour.zarr" / "zarr.json").stat().st_mtime_ns
    import shutil

    shutil.rmtree(tmp_path / "morphology.zarr")
    again = build_feature_datasets(tiny_corpus, "train", targets)
    assert (tmp_path / "colour.zarr" / "zarr.json").stat().st_mtime_ns == stamp  # not rewritten
    assert _attributes(tmp_path / "morphology.zarr")["inputs_hash"] == first[1].meta["inputs_hash"]
    assert np.array_equal(np.asarray(again[1].packed[:]), np.asarray(first[1].packed[:]),
                          equal_nan=True)  # fmt: skip


def test_sets_read_differently_are_not_made_together():
    with pytest.raises(ValueError, match="share mpp"):
        feature_rows_of_sets(None, np.zeros((0, 4)), [], [FeatureSpec("colour", mpp=1.0),
                                                           FeatureSpec("texture", mpp=2.0)])  # fmt: skip


def test_pooled_multiscale_equals_skimage_multiscale_basic_features():
    from skimage.feature import multiscale_basic_features

    rng = np.random.default_rng(5)
    for shape in ((9, 9), (23, 40), (64, 31)):
        img = rng.random(shape, dtype=np.float32)
        inside = rng.random(shape) < 0.7
        feats = multiscale_basic_features(
            img, intensity=True, edges=True, texture=True, workers=1, **sets.MULTISCALE
        )
        picked = feats[inside].astype(np.float64)
        want = np.concatenate([picked.mean(axis=0), picked.std(axis=0)])
        assert np.array_equal(sets.pooled_multiscale(img, inside), want), shape
