"""Feature sets against hand computations, stain normalisation, feature datasets and models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_crystal.errors import ModelError, SlideError
from napari_crystal.features import FeatureSpec, feature_rows, fit_stain, same_settings, sets
from napari_crystal.features.stain import StainError, StainNormaliser

# --------------------------------------------------------------------------- hand computations


def test_glcm_of_a_tiny_image_matches_the_hand_count():
    levels = np.array([[0, 0, 1], [0, 1, 1]], dtype=np.uint8)
    # horizontal pairs (symmetric): (0,0) (0,1) | (0,1) (1,1) -> P = 1/4 everywhere
    got = sets.glcm_features(levels, np.ones((2, 3), bool), 2, distances=(1,), angles=(0.0,))
    want = {"contrast": 0.5, "dissimilarity": 0.5, "homogeneity": 0.75, "energy": 0.5,
            "correlation": 0.0, "ASM": 0.25}  # fmt: skip
    assert got == pytest.approx([want[p] for p in sets.GLCM_PROPS])


def test_glcm_counts_only_pairs_inside_the_region():
    levels = np.array([[0, 0, 1], [0, 1, 1]], dtype=np.uint8)
    inside = np.array([[1, 1, 0], [1, 1, 0]], bool)
    # pairs left: (0,0) and (0,1): P00 = 1/2, P01 = P10 = 1/4
    got = sets.glcm_features(levels, inside, 2, distances=(1,), angles=(0.0,))
    assert got[sets.GLCM_PROPS.index("contrast")] == pytest.approx(0.5)
    assert got[sets.GLCM_PROPS.index("ASM")] == pytest.approx(0.25 + 2 * 0.0625)


def test_lbp_histogram_of_a_dark_and_a_bright_centre():
    img = np.full((3, 3), 9, np.uint8)
    img[1, 1] = 5  # every neighbour >= centre: uniform code P = 8
    centre = np.zeros((3, 3), bool)
    centre[1, 1] = True
    hist = sets.lbp_histogram(img, centre, 8, 1)
    assert len(hist) == 10 and hist[8] == 1 and hist.sum() == 1
    img = np.full((3, 3), 5, np.uint8)
    img[1, 1] = 9  # no neighbour >= centre: code 0
    assert sets.lbp_histogram(img, centre, 8, 1)[0] == 1


def test_channel_stats_by_hand():
    got = sets.channel_stats(np.array([0.05, 0.15, 0.25, 0.35, 0.9]), 0.0, 0.4, bins=4)
    v = np.array([0.05, 0.15, 0.25, 0.35, 0.9])  # 0.9 is clipped into the last bin
    z = (v - v.mean()) / v.std()
    want = [0.2, 0.2, 0.2, 0.4, v.mean(), v.std(), (z**3).mean(), (z**4).mean() - 3]
    assert got == pytest.approx(want)


def test_dark_components_by_hand():
    grey = np.full((6, 6), 0.9)
    grey[1:3, 1:3] = 0.1  # 4 px = 16 um2 at 2 um/px
    grey[4, 4] = 0.2  # 1 px = 4 um2
    got = sets.dark_components(grey, np.ones((6, 6), bool), 2.0)
    area = 36 * 4.0
    want = [2 / area * 1e6, 20 / area, 10.0, 16.0, 0.0, (4 * 0.9 + 0.8) / 5, 0.9]
    assert got == pytest.approx(want)
    assert sets.dark_components(np.ones((4, 4)), np.ones((4, 4), bool), 1.0).sum() == 0


def test_region_shape_of_a_rectangle():
    inside = np.zeros((6, 8), bool)
    inside[1:5, 1:7] = True  # 4 x 6
    got = dict(zip(sets.SHAPE_NAMES, sets.region_shape(inside, 0.5), strict=True))
    assert got["area_um2"] == pytest.approx(24 * 0.25)
    assert got["extent"] == pytest.approx(1.0) and got["solidity"] == pytest.approx(1.0)
    assert got["major_axis_um"] == pytest.approx(0.5 * 4 * np.sqrt((36 - 1) / 12))
    assert got["minor_axis_um"] == pytest.approx(0.5 * 4 * np.sqrt((16 - 1) / 12))


def test_multiscale_of_a_constant_image():
    img = np.full((12, 12), 0.5, np.float32)
    got = sets.pooled_multiscale(img, np.ones((12, 12), bool))
    names = sets.multiscale_names()
    assert len(got) == len(names)
    for name, value in zip(names, got, strict=True):
        want = 0.5 if name.startswith("mean_intensity") else 0.0
        assert value == pytest.approx(want, abs=1e-6), name


@pytest.mark.parametrize("name", list(sets.SETS))
def test_every_set_has_a_fixed_length_whatever_the_region_size(name):
    names, fn = sets.SETS[name]
    rng = np.random.default_rng(0)
    lengths = set()
    for side in (12, 40, 97):
        rgb = rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)
        v = fn(rgb, np.ones((side, side + 3), bool), 1.0)
        assert np.isfinite(v).all()
        lengths.add(len(v))
    assert lengths == {len(names())}


def test_too_small_region_is_refused_by_every_set():
    inside = np.zeros((20, 20), bool)
    inside[5:8, 5:15] = True  # 3 px high: under the texture distances
    rgb = np.full((20, 20, 3), 128, np.uint8)
    for _, fn in sets.SETS.values():
        with pytest.raises(sets.TooSmall):
            fn(rgb, inside, 1.0)


# --------------------------------------------------------------------------- stain


def _stain_image(he: np.ndarray, n: int = 4000, seed: int = 0) -> np.ndarray:
    """RGB pixels made from a known stain matrix (3 x 2 OD unit columns), torchstain's model."""
    rng = np.random.default_rng(seed)
    c = rng.gamma(2.0, 0.35, (2, n))
    c[1, : n // 4] *= 0.02  # nearly pure haematoxylin
    c[0, n // 4 : n // 2] *= 0.02  # nearly pure eosin
    od = he @ c
    rgb = 240 * np.exp(-od) - 1
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8).T.reshape(40, n // 40, 3)


def test_macenko_recovers_a_known_stain_matrix():
    he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
    he /= np.linalg.norm(he, axis=0)
    fitted = fit_stain("macenko", _stain_image(he))
    got = np.asarray(fitted.params["stain_matrix"])
    assert got.shape == (3, 2)
    for k in range(2):
        cos = abs(float(got[:, k] @ he[:, k]))
        assert cos > 0.995, (k, got[:, k], he[:, k])


def test_normalisation_maps_an_image_onto_the_reference_stains():
    he_ref = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
    he_other = np.array([[0.50, 0.20], [0.80, 0.90], [0.35, 0.25]])
    he_ref /= np.linalg.norm(he_ref, axis=0)
    he_other /= np.linalg.norm(he_other, axis=0)
    ref = fit_stain("macenko", _stain_image(he_ref))
    moved = ref.apply(_stain_image(he_other, seed=1))
    again = np.asarray(fit_stain("macenko", moved).params["stain_matrix"])
    assert abs(float(again[:, 0] @ he_ref[:, 0])) > 0.99
    reinhard = fit_stain("reinhard", _stain_image(he_ref))
    out = reinhard.apply(_stain_image(he_other, seed=1))
    assert out.shape == (40, 100, 3) and out.dtype == np.uint8


def test_stain_normaliser_round_trips_and_refuses_blank_input():
    he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
    he /= np.linalg.norm(he, axis=0)
    st = fit_stain("macenko", _stain_image(he), reference="ref.svs")
    back = StainNormaliser.from_dict(st.to_dict())
    assert back.fingerprint() == st.fingerprint() and "ref.svs" in back.describe()
    with pytest.raises(StainError):
        st.apply(np.full((30, 30, 3), 250, np.uint8))
    with pytest.raises(StainError):
        fit_stain("reinhard", np.full((30, 30, 3), 250, np.uint8))


# --------------------------------------------------------------------------- reading and rows


class _FakeSlide:
    """A two-level slide in memory: level 1 is level 0 averaged over 2 x 2 blocks."""

    def __init__(self, rgb: np.ndarray, mpp: float = 0.5):
        self.path = Path("fake.svs")
        self.mpp = mpp
        h, w = rgb.shape[:2]
        self.data = [rgb, rgb.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).astype(np.uint8)]
        self.downsamples = [1.0, 2.0]

    def level_for_downsample(self, d):
        return 1 if d >= 2 else 0

    def read_region(self, level, top, left, h, w):
        ds = self.downsamples[level]
        t, c = int(top // ds), int(left // ds)
        out = np.full((h, w, 3), 255, np.uint8)
        src = self.data[level][max(t, 0) : t + h, max(c, 0) : c + w]
        out[max(-t, 0) : max(-t, 0) + src.shape[0], max(-c, 0) : max(-c, 0) + src.shape[1]] = src
        return out


def test_feature_rows_read_at_the_asked_resolution_and_count_skips():
    rng = np.random.default_rng(1)
    slide = _FakeSlide(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    boxes = np.array([[0, 0, 40, 40], [10, 10, 40, 40], [0, 0, 6, 40]])
    spec = FeatureSpec("colour", mpp=1.0)  # 2 level-0 px per pixel: level 1 as it is
    rows, skipped = feature_rows(slide, boxes, [None, None, None], spec)
    assert rows.shape == (3, len(spec.names)) and rows.dtype == np.float32
    assert np.isfinite(rows[:2]).all() and np.isnan(rows[2]).all()
    assert skipped.too_small == 1 and skipped.total == 1
    from napari_crystal.features.extract import region_crop

    rgb, inside, um = region_crop(slide, 0, 0, 40, 40, None, 1.0)
    assert rgb.shape == (20, 20, 3) and um == 1.0
    assert np.array_equal(rgb, slide.data[1][:20, :20])
    slide.mpp = None
    with pytest.raises(SlideError, match="pixel size"):
        feature_rows(slide, boxes[:1], [None], spec)


def test_settings_compare_set_resolution_and_stain():
    a = FeatureSpec("texture", mpp=1.0).settings()
    assert same_settings(a, FeatureSpec("texture", mpp=1.0).settings())
    assert not same_settings(a, FeatureSpec("texture", mpp=2.0).settings())
    assert not same_settings(a, FeatureSpec("colour", mpp=1.0).settings())
    assert not same_settings(a, None)
    he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
    stained = FeatureSpec("texture", mpp=1.0, stain=fit_stain("macenko", _stain_image(he)))
    assert not same_settings(a, stained.settings())
    with pytest.raises(ValueError, match="unknown feature set"):
        FeatureSpec("haralick")


# --------------------------------------------------------------------------- datasets and models


@pytest.fixture(scope="module")
def texture_data(tiny_corpus, tmp_path_factory):
    from napari_crystal.features.build import build_feature_dataset

    out = tmp_path_factory.mktemp("features")
    spec = FeatureSpec("texture", mpp=1.0)
    train = build_feature_dataset(tiny_corpus, "train", out / "train.zarr", spec)
    evals = build_feature_dataset(tiny_corpus, "eval", out / "eval.zarr", spec)
    return out, train, evals


def test_feature_dataset_round_trip(texture_data, tiny_corpus):
    from napari_crystal.dataset import build_dataset, load_dataset
    from napari_crystal.features.build import build_feature_dataset

    out, train, _ = texture_data
    again = load_dataset(out / "train.zarr")
    assert again.feature_set == "texture" and again.size == 0
    assert again.packed.dtype == np.float32
    assert again.packed.shape == (len(again), len(FeatureSpec("texture").names))
    assert again.meta["features"]["mpp"] == 1.0 and "skipped" in again.meta
    masks = build_dataset(tiny_corpus, "train", out / "masks.zarr", size=16)
    assert masks.feature_set == "mask" and "features" not in masks.meta
    assert np.array_equal(masks.labels, again.labels)  # rows pair with the mask baseline's
    cached = build_feature_dataset(
        tiny_corpus, "train", out / "train.zarr", FeatureSpec("texture", mpp=1.0)
    )
    assert np.array_equal(
        np.asarray(cached.packed[:]), np.asarray(train.packed[:]), equal_nan=True
    )


def test_model_on_features_and_its_refusals(texture_data, tiny_corpus, tmp_path):
    from napari_crystal.dataset import build_dataset
    from napari_crystal.experiment import evaluate_model, train_on_dataset
    from napari_crystal.features.build import build_feature_dataset
    from napari_crystal.training import load_model, save_model

    out, train, evals = texture_data
    model = train_on_dataset(train, params={"n_estimators": 8})
    save_model(model, tmp_path / "m.skops")
    model = load_model(tmp_path / "m.skops")
    assert model.meta["features"]["feature_set"] == "texture"
    assert len(model.meta["feature_names"]) == model.estimator.n_features_in_
    ev = evaluate_model(model, evals)
    assert ev.report.n == len(ev.rows) <= len(evals)
    masks = build_dataset(tiny_corpus, "eval", out / "masks-eval.zarr", size=16)
    with pytest.raises(ModelError, match="made with mask.*trained on texture"):
        evaluate_model(model, masks)
    other = build_feature_dataset(
        tiny_corpus, "eval", out / "eval-2um.zarr", FeatureSpec("texture", mpp=2.0)
    )
    with pytest.raises(ModelError, match="texture at 2 um/px.*texture at 1 um/px"):
        evaluate_model(model, other)


def test_nan_rows_are_left_out_of_training(texture_data):
    from napari_crystal.dataset import Dataset
    from napari_crystal.experiment import train_on_dataset

    _, train, _ = texture_data
    rows = np.asarray(train.packed[:]).copy()
    rows[:5] = np.nan
    ds = Dataset(train.table, rows, 0, train.method, dict(train.meta))
    model = train_on_dataset(ds, params={"n_estimators": 4})
    assert sum(model.class_counts.values()) == len(ds) - 5


def test_colour_batch_equals_colour_per_window():
    rng = np.random.default_rng(3)
    windows = rng.integers(0, 256, (5, 9, 9, 3), dtype=np.uint8)
    windows[2] = 200  # a flat window: moments 0
    stains = np.stack([sets.hed(w) for w in windows]).reshape(5, 81, 3)
    one = np.stack([sets.colour(w, np.ones((9, 9), bool), 1.0) for w in windows])
    assert np.allclose(sets.colour_batch(stains), one, atol=1e-9)


def test_experiment_compares_feature_sets_with_the_mask_baseline(tiny_corpus, tmp_path, capsys):
    import json

    from napari_crystal.cli import main

    out = tmp_path / "exp"
    args = ["experiment", str(tiny_corpus), "--out", str(out), "--features", "colour,mask",
            "--mpp", "2", "--stain", "reinhard", "--trees", "5", "--jobs", "1", "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "(synthetic tiny (seed 42, effect" in printed  # never "(real)" for a synthetic corpus
    assert "matched-data control: +" in printed  # the Methods summary, matched arm included
    text = (out / "report.md").read_text()
    assert "## Feature sets against the mask baseline" in text
    assert "| colour | with crystals | eval |" in text and "stain reinhard" in text
    assert "top features (with crystals): " in text
    doc = json.loads((out / "report.json").read_text())
    pairs = {(c["name_a"], c["name_b"]) for c in doc["comparisons"]}
    assert ("colour with crystals", "mask with crystals") in pairs
    assert ("colour without crystals", "mask without crystals") in pairs
    assert ("colour with crystals", "colour without crystals") in pairs
    assert (out / "models" / "colour-with-crystals.skops").is_file()
    # the matched-data arm: as many extra plain parents per class as the crystals added
    assert ("colour with crystals", "colour matched data") in pairs
    assert ("colour matched data", "colour without crystals") in pairs
    from napari_crystal.training import load_model

    counts = {a: load_model(out / "models" / f"colour-{a}.skops").class_counts
              for a in ("with-crystals", "without-crystals", "matched-data")}  # fmt: skip
    added = doc["meta"]["methods"]["feature_sets"]["colour"]["matched"]["added"]
    assert added and all(n > 0 for n in added.values())
    for parent, n in added.items():
        assert counts["with-crystals"][parent] - counts["without-crystals"][parent] == n
        assert counts["matched-data"][parent] - counts["without-crystals"][parent] == n
    assert counts["matched-data"] == counts["with-crystals"]
    assert "### Crystals against data volume" in text and "| colour | eval |" in text
    assert main(["experiment", str(tiny_corpus), "--out", str(out), "--features", "haralick"]) == 2
    assert "unknown feature set" in capsys.readouterr().err


def test_colour_from_block_sums_equals_colour_per_window():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (24, 36, 3), dtype=np.uint8)
    img[:8, :8] = 180  # a flat window
    stains = sets.hed(img)
    sums = sets.colour_sums(stains, 4)
    assert sums.shape == (6, 9, 3, sets.COLOUR_BINS + 4)
    for top, left in ((0, 0), (4, 8), (16, 28)):
        acc = sums[top // 4 : top // 4 + 2, left // 4 : left // 4 + 2].sum(axis=(0, 1))
        got = sets.colour_from_sums(acc[None], 64)[0]
        want = sets.colour(img[top : top + 8, left : left + 8], np.ones((8, 8), bool), 1.0)
        assert np.allclose(got, want, atol=1e-6), (top, left)


# --------------------------------------------------------------------------- many windows at once


def _windows(rng, k, h, w, n_levels):
    """Random grey-level windows with a constant one and a sparse one (edge cases)."""
    lv = rng.integers(0, n_levels, (k, h, w)).astype(np.uint8)
    lv[1] = n_levels // 2
    lv[2] = (rng.random((h, w)) < 0.05) * (n_levels - 1)
    return lv


def test_glcm_counts_of_many_windows_equal_graycomatrix_of_each():
    from skimage.feature import graycomatrix

    lv = _windows(np.random.default_rng(5), 6, 9, 11, 5)
    got = sets.glcm_counts_windows(lv, 5)
    for i in range(len(lv)):
        want = graycomatrix(lv[i], list(sets.GLCM_DISTANCES), list(sets.GLCM_ANGLES), levels=5,
                            symmetric=True)  # fmt: skip
        assert np.array_equal(got[i], np.moveaxis(want, (0, 1), (2, 3))), i


def test_glcm_properties_equal_graycoprops():
    from skimage.feature import graycomatrix, graycoprops

    lv = _windows(np.random.default_rng(6), 5, 8, 7, 6)
    counts = sets.glcm_counts_windows(lv, 6)
    counts[3] = 0  # an empty matrix: zeros, correlation 1
    got = sets.glcm_properties(counts)
    for i in range(len(lv)):
        glcm = graycomatrix(lv[i], list(sets.GLCM_DISTANCES), list(sets.GLCM_ANGLES), levels=6,
                            symmetric=True, normed=True) * (i != 3)  # fmt: skip
        want = [graycoprops(glcm, p).mean(axis=1) for p in sets.GLCM_PROPS]
        assert np.allclose(got[i], np.concatenate(want), rtol=1e-12, atol=1e-12), i


def test_texture_of_many_windows_equals_texture_of_each():
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (6, 12, 13, 3), dtype=np.uint8)
    rgb[1] = (120, 60, 150)  # a flat window
    rgb[2, 3:6, 4:9] = 255
    got = sets.texture_windows(np.stack([sets.texture_levels(w) for w in rgb]), 1.0)
    want = np.stack([sets.texture(w, np.ones((12, 13), bool), 1.0) for w in rgb])
    assert np.allclose(got, want, rtol=1e-10, atol=1e-10)


def test_lbp_of_many_windows_sees_a_zero_border_not_the_next_window():
    from skimage.feature import local_binary_pattern

    lv = _windows(np.random.default_rng(8), 4, 6, 5, 32)
    for points, radius in sets.LBP_SETTINGS:
        got = sets.lbp_windows(lv, points, radius)
        for i, w in enumerate(lv):
            codes = local_binary_pattern(w, points, radius, method="uniform").astype(int)
            want = np.bincount(codes.ravel(), minlength=points + 2) / w.size
            assert np.allclose(got[i], want), (points, i)


def test_morphology_of_many_windows_equals_morphology_of_each():
    rng = np.random.default_rng(9)
    grey = rng.random((6, 10, 12))
    grey[1] = 1.0  # no dark component
    grey[2] = 0.1  # one component covering the window
    grey[3] = np.where(rng.random((10, 12)) < 0.3, 0.2, 0.9)  # many, ties for the largest
    grey[4, :, 6] = 0.1  # a dark column touching the next window's side in a naive mosaic
    for um in (1.0, 4.0):
        got = sets.morphology_windows(grey, um)
        ones = np.ones((10, 12), bool)
        want = [np.concatenate([sets.region_shape(ones, um), sets.dark_components(g, ones, um)])
                for g in grey]  # fmt: skip
        assert np.allclose(got, np.stack(want), rtol=1e-12, atol=1e-12), um


def test_multiscale_of_many_windows_equals_multiscale_of_each():
    rng = np.random.default_rng(10)
    img = rng.random((4, 17, 20)).astype(np.float32)
    img[1] = 0.5
    img[2, 5:9, 3:11] = 1.0
    got = sets.multiscale_windows(img, 1.0)
    want = np.stack([sets.pooled_multiscale(w, np.ones(w.shape, bool)) for w in img])
    assert np.allclose(got, want, rtol=1e-6, atol=1e-7)
