"""The study's science: keep-model scoring, patient bootstrap, calibration, dependence, the
matched-data arm, the synthetic design knobs and repeated runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_crystal.dataset import Dataset, dependence_warning, patient_of, shared_subjects
from napari_crystal.errors import ModelError
from napari_crystal.evaluation import (
    SCORING_KEPT,
    SCORING_MERGED,
    calibration,
    cluster_bootstrap_difference_ci,
    merge_proba,
)
from napari_crystal.experiment import evaluate_model
from napari_crystal.training import Model

SIZE = 8


class _Fixed:
    """An estimator whose probabilities are given (one row per patch, in order)."""

    def __init__(self, proba):
        self.proba = np.asarray(proba, dtype=float)

    def predict_proba(self, x):
        return self.proba[: len(x)]


def _model(classes, proba, crystals="keep", channel="grey"):
    return Model(
        estimator=_Fixed(proba), classes=tuple(classes), crystals=crystals, size=SIZE,
        method="threshold", level_rule=None, params={}, versions={}, training_hash="",
        class_counts={}, meta={"channel": channel},
    )  # fmt: skip


def _dataset(labels, slides=None, channel="grey"):
    n = len(labels)
    ds = Dataset.from_packed(np.zeros((n, SIZE * SIZE // 8), np.uint8), labels, SIZE)
    if slides is not None:
        ds.table.slide = np.asarray(slides, dtype=str)
    ds.meta["channel"] = channel
    return ds


# ---------------------------------------------------------------- keep-model scoring


def test_keep_model_with_all_tissue_types_right_scores_one():
    """4/4 right tissue types: cidc on indc, cdcs on dcis, cnno on nneo, indc on indc."""
    classes = ("nneo", "dcis", "indc", "cnno", "cdcs", "cidc")  # predict_proba column order
    proba = np.zeros((4, 6))
    proba[0, 5] = proba[1, 4] = proba[2, 3] = proba[3, 2] = 1.0  # cidc, cdcs, cnno, indc
    ev = evaluate_model(_model(classes, proba), _dataset(["indc", "dcis", "nneo", "indc"]))
    assert ev.report.accuracy == 1.0 and ev.report.correct == 4
    assert ev.scoring == SCORING_MERGED and ev.report.meta["scoring"] == SCORING_MERGED
    assert list(ev.predicted) == ["indc", "dcis", "nneo", "indc"]
    assert ev.report.classes == ["nneo", "dcis", "indc"]  # no crystal rows when merged
    assert ev.report.meta["calibration"]["brier"] == pytest.approx(0.0)


def test_keep_model_on_crystal_truth_keeps_classes_apart():
    classes = ("indc", "cidc")
    proba = np.array([[0.0, 1.0], [1.0, 0.0]])
    ev = evaluate_model(_model(classes, proba), _dataset(["cidc", "cidc"]))
    assert ev.scoring == SCORING_KEPT and ev.report.correct == 1  # indc on a cidc is wrong


def test_merge_proba_adds_crystal_columns_to_parents():
    classes, p = merge_proba(["bckg", "cidc", "indc"], np.array([[0.2, 0.5, 0.3]]))
    assert classes == ["bckg", "indc"]
    np.testing.assert_allclose(p, [[0.2, 0.8]])


# ---------------------------------------------------------------- channel


def test_dataset_with_another_channel_is_refused():
    model = _model(("nneo", "dcis"), np.full((2, 2), 0.5), crystals="merge", channel="grey")
    ds = _dataset(["nneo", "dcis"], channel="haematoxylin")
    with pytest.raises(
        ModelError, match="'haematoxylin' channel but the model was trained on 'grey'"
    ):
        evaluate_model(model, ds)
    ds.method = "polygon"  # polygon masks do not depend on the channel
    model.method = "polygon"
    evaluate_model(model, ds)


# ---------------------------------------------------------------- bootstrap


def test_cluster_bootstrap_by_hand():
    """Patient A: 1 patch, A right and B wrong; patient B: 3 patches, both right.

    Difference = 1/4 (pooled over patches, not a mean of patient means). Resamples: AA ->
    2/2 = 1 (p 1/4), AB -> 1/4 (p 1/2), BB -> 0 (p 1/4): the 95% percentile interval is
    [0, 1].
    """
    a = [True, True, True, True]
    b = [False, True, True, True]
    d, lo, hi = cluster_bootstrap_difference_ci(a, b, ["A", "B", "B", "B"], n_boot=4000, seed=1)
    assert d == pytest.approx(0.25)
    assert (lo, hi) == (0.0, 1.0)
    # 50% interval: quartiles of {0: 1/4, 0.25: 1/2, 1: 1/4} are 0.25 and 0.25 (+ ties)
    _, lo50, hi50 = cluster_bootstrap_difference_ci(
        a, b, ["A", "B", "B", "B"], level=0.4, n_boot=4000, seed=1
    )
    assert lo50 == hi50 == pytest.approx(0.25)
    # seeded: the same seed, the same interval
    assert cluster_bootstrap_difference_ci(a, b, list("ABBB"), n_boot=300, seed=5) == (
        cluster_bootstrap_difference_ci(a, b, list("ABBB"), n_boot=300, seed=5)
    )


def test_cluster_bootstrap_one_patch_per_patient_is_near_the_paired_interval():
    from napari_crystal.evaluation import paired_difference_ci

    rng = np.random.default_rng(3)
    a = rng.random(800) < 0.6
    b = rng.random(800) < 0.5
    d, lo, hi = cluster_bootstrap_difference_ci(a, b, np.arange(800), n_boot=3000, seed=2)
    _, plo, phi = paired_difference_ci(int(np.sum(a & ~b)), int(np.sum(~a & b)), 800)
    assert d == pytest.approx(a.mean() - b.mean())
    assert lo == pytest.approx(plo, abs=0.012) and hi == pytest.approx(phi, abs=0.012)


def test_cluster_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        cluster_bootstrap_difference_ci([True], [True, False], [1, 2])
    with pytest.raises(ValueError):
        cluster_bootstrap_difference_ci([True], [False], [1], n_boot=0)


# ---------------------------------------------------------------- calibration


def test_brier_matches_sklearn_and_ece_by_hand():
    from sklearn.metrics import brier_score_loss

    classes = ["dcis", "indc", "nneo"]
    truth = ["indc", "indc", "dcis", "nneo", "dcis"]
    proba = np.array(
        [[0.1, 0.85, 0.05], [0.5, 0.45, 0.05], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.05, 0.9, 0.05]]
    )
    cal = calibration(truth, proba, classes, bins=10)
    expected = brier_score_loss(truth, proba, labels=classes, scale_by_half=False)
    assert cal["brier"] == pytest.approx(expected)
    # top-class confidences 0.85 (right), 0.5 (wrong), 0.7 (right), 0.4 (right), 0.9 (wrong)
    # bins (0.8, 0.9]: {0.85, 0.9} acc 1/2 conf 0.875; (0.4, 0.5]: {0.5} acc 0;
    # (0.6, 0.7]: {0.7} acc 1; (0.3, 0.4]: {0.4} acc 1
    ece = (2 / 5) * abs(0.5 - 0.875) + (1 / 5) * 0.5 + (1 / 5) * 0.3 + (1 / 5) * 0.6
    assert cal["ece"] == pytest.approx(ece)
    assert sum(b["n"] for b in cal["bins"]) == 5


# ---------------------------------------------------------------- dependence


def test_patients_from_nedc_stems_and_overlap_warning():
    assert patient_of("/x/eval/00000008_s002_0hne_0000_a001_lvl001_t000.svs") == "00000008"
    assert patient_of("CMU-1-small-region.svs") == "CMU-1-small-region"
    train = _dataset(
        ["nneo", "dcis"], ["/c/train/00000001_s001_t.svs", "/c/train/00000002_s001_t.svs"]
    )
    test = _dataset(
        ["nneo", "dcis"], ["/c/eval/00000002_s002_t.svs", "/c/eval/00000009_s001_t.svs"]
    )
    assert shared_subjects(train, test) == {"patients": ["00000002"], "slides": []}
    warning = dependence_warning(train, test)
    assert "share 1 patient(s) (00000002) and 0 slide(s)" in warning
    other = _dataset(["nneo"], ["/c/eval/00000005_s001_t.svs"])
    assert dependence_warning(train, other) is None


def test_experiment_warns_when_train_and_eval_share_a_patient(tiny_corpus, tmp_path, capsys):
    from napari_crystal.cli import main

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus, ignore=shutil.ignore_patterns("dev", "matched"))
    slide = sorted((corpus / "train").glob("*.svs"))[0]
    for suffix in (".svs", ".csv", ".xml"):
        shutil.copy(slide.with_suffix(suffix), corpus / "eval" / slide.with_suffix(suffix).name)
    argv = ["experiment", str(corpus), "--out", str(tmp_path / "o"), "--trees", "4", "--quiet"]
    assert main([*argv, "--matched", "resample", "--bootstrap", "50"]) == 0
    captured = capsys.readouterr()
    assert "napari-crystal: warning: train and eval share 1 patient(s)" in captured.err
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["meta"]["methods"]["matched"]["source"] == "resample"
    assert "**Warning**" in (tmp_path / "o" / "report.md").read_text()


# ---------------------------------------------------------------- matched arm


def test_matched_dataset_adds_what_the_crystals_added():
    from napari_crystal.palette import count_by_class
    from napari_crystal.study import matched_dataset

    train = _dataset(["nneo", "cnno", "cnno", "dcis", "cdcs", "bckg"])
    pool = _dataset(["nneo", "dcis", "dcis", "indc"])
    ds, record = matched_dataset(train, pool, seed=1)
    assert count_by_class(ds.labels) == {"bckg": 1, "nneo": 3, "dcis": 2}
    assert record["added"] == {"nneo": 2, "dcis": 1}
    assert record["from_pool"] == {"nneo": 1, "dcis": 1} and record["resampled"] == {"nneo": 1}
    assert record["source"] == "both"
    alone, rec = matched_dataset(train, None, seed=1)
    assert count_by_class(alone.labels) == {"bckg": 1, "nneo": 3, "dcis": 2}
    assert rec["source"] == "resample"


def test_matched_dataset_of_feature_rows_counts_only_measured_rows():
    """A feature set's skipped (NaN) crystal rows add nothing to the crystal model, so the
    matched arm adds only as many as were measured, and never draws a skipped pool row."""
    from napari_crystal.palette import count_by_class
    from napari_crystal.study import matched_dataset

    def rows(labels, nan_at=()):
        x = np.arange(len(labels) * 3, dtype=np.float32).reshape(-1, 3)
        x[list(nan_at)] = np.nan
        return Dataset.from_packed(x, labels, 0, "colour")

    train = rows(["nneo", "cnno", "cnno", "cnno", "dcis", "cdcs", "bckg"], nan_at=[3])
    pool = rows(["nneo", "nneo", "nneo", "dcis"], nan_at=[0, 1])
    ds, record = matched_dataset(train, pool, seed=3)
    assert record["added"] == {"nneo": 2, "dcis": 1}  # 3 cnno, one of them skipped
    assert record["from_pool"] == {"nneo": 1, "dcis": 1} and record["resampled"] == {"nneo": 1}
    assert ds.packed.dtype == np.float32  # feature rows stay features
    assert count_by_class(ds.labels) == {"bckg": 1, "nneo": 3, "dcis": 2}
    assert np.isfinite(ds.packed[-3:]).all()  # the three added rows: all measured


def test_seed_summary_of_feature_sets_by_hand():
    """Three seeds of one feature set's with / without / matched arms on 10 patches, with
    differences chosen by hand: mean, SD, t interval and per-class as computed below."""
    from types import SimpleNamespace

    from scipy import stats

    from napari_crystal.evaluation import compare, evaluate
    from napari_crystal.reports import seeds_markdown
    from napari_crystal.study import summarize_runs

    truth = ["indc"] * 5 + ["dcis"] * 5
    runs = []
    for k in (1, 2, 3):  # "with" gets k indc right; "without" none; "matched" one dcis
        pred = {
            "with crystals": ["indc"] * k + ["bckg"] * (10 - k),
            "without crystals": ["bckg"] * 10,
            "matched data": ["bckg"] * 5 + ["dcis"] + ["bckg"] * 4,
        }
        reports = [evaluate(truth, p, name=f"texture {a}", test_set="eval")
                   for a, p in pred.items()]  # fmt: skip
        comparisons = [
            compare(
                truth, pred[a], pred[b], names=(f"texture {a}", f"texture {b}"), test_set="eval"
            )  # fmt: skip
            for a, b in (
                ("with crystals", "without crystals"),
                ("with crystals", "matched data"),
                ("matched data", "without crystals"),
            )  # fmt: skip
        ]
        runs.append(SimpleNamespace(reports=reports, comparisons=comparisons))
    summary = summarize_runs(runs, [42, 43, 44])
    t = summary["tests"]["eval"]
    assert t["models"]["texture with crystals"]["accuracy"]["values"] == [0.1, 0.2, 0.3]
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    cmp = t["comparisons"]
    d = cmp["texture with crystals - texture without crystals"]["difference"]
    assert d["mean"] == pytest.approx(0.2) and d["sd"] == pytest.approx(0.1)
    assert (d["lo"], d["hi"]) == pytest.approx((0.2 - half, 0.2 + half))
    d = cmp["texture with crystals - texture matched data"]["difference"]
    assert d["mean"] == pytest.approx(0.1) and (d["lo"], d["hi"]) == pytest.approx(
        (0.1 - half, 0.1 + half)
    )
    d = cmp["texture matched data - texture without crystals"]["difference"]
    assert d["mean"] == pytest.approx(0.1) and d["sd"] == pytest.approx(0.0)
    indc = cmp["texture with crystals - texture without crystals"]["per_class"]["indc"]
    assert indc["mean"] == pytest.approx(0.4) and indc["sd"] == pytest.approx(0.2)
    assert (indc["lo"], indc["hi"]) == pytest.approx((0.4 - 2 * half, 0.4 + 2 * half))
    dcis = cmp["texture with crystals - texture matched data"]["per_class"]["dcis"]
    assert dcis["mean"] == pytest.approx(-0.2) and dcis["sd"] == pytest.approx(0.0)
    md = seeds_markdown(summary)
    assert (
        "| texture with crystals - texture matched data | +10.00 ± 10.00 | [-14.84, +34.84] | yes |"
        in md
    )


# ---------------------------------------------------------------- synthetic design


def test_effect_and_protocol_set_calcification_rates():
    from napari_crystal.synthetic import calcification_rates, design

    on = design("small")
    assert on.effect == 1.0 and on.protocol == "natural"
    assert calcification_rates(on, "train") == calcification_rates(on, "eval")
    assert calcification_rates(on, "eval")["bckg"] == 0 < calcification_rates(on, "eval")["dcis"]
    old = design("small", protocol="never")  # the former generator: never in train
    assert all(calcification_rates(old, "train")[k] == 0 for k in ("nneo", "dcis", "indc"))
    null = design("negative")
    assert null.effect == 0.0
    assert len(set(calcification_rates(null, "eval").values())) == 1  # same rate, every class
    assert set(calcification_rates(null, "matched").values()) == {1.0}
    assert design("tiny", protocol="0.25").protocol == 0.25
    for bad in ({"effect": 1.5}, {"protocol": "sometimes"}, {"protocol": "2"}):
        with pytest.raises(ValueError):
            design("tiny", **bad)


def test_plan_has_patients_with_several_slides_and_large_regions():
    from napari_crystal.synthetic import corpus_plan

    plan = corpus_plan("small", 42)
    patients = {split: [s.patient for s in slides] for split, slides in plan.items()}
    assert any(patients["eval"].count(p) > 1 for p in patients["eval"])
    assert not set(patients["train"]) & set(patients["eval"])
    sizes = [d for s in plan["eval"] for d in s.sizes if d]
    assert sizes and max(sizes) > 4096  # read from level 2 (downsample 16) at 256 x 256
    matched = [lab for s in plan["matched"] for lab in s.labels]
    assert sorted(set(matched)) == ["dcis", "indc", "nneo"] and len(matched) == 84


def test_tiny_corpus_reads_large_regions_from_a_coarser_level(tiny_corpus):
    from napari_crystal.dataset import _plan

    levels = np.concatenate([t.level for *_, t in _plan(tiny_corpus, 256)])
    assert (levels > 0).any() and (levels == 0).any()
    info = json.loads((tiny_corpus / "SYNTHETIC.json").read_text())
    assert info["effect"] == 1.0 and info["protocol"] == "natural"
    assert set(info["splits"]) == {"train", "dev", "eval", "matched"}


def test_synth_rejects_a_bad_effect(tmp_path, capsys):
    from napari_crystal.cli import main

    assert main(["synth", str(tmp_path / "x"), "--effect", "3", "--quiet"]) == 2
    assert "napari-crystal: error: effect must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- repeated runs


def test_mean_interval_is_the_t_interval():
    from scipy import stats

    from napari_crystal.study import mean_interval

    x = [0.01, 0.03, -0.02, 0.04, 0.02]
    got = mean_interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert got["lo"] == pytest.approx(lo) and got["hi"] == pytest.approx(hi)
    assert got["sd"] == pytest.approx(np.std(x, ddof=1))


def test_seeds_regenerate_the_corpus_and_summarise(tmp_path, monkeypatch, capsys):
    from napari_crystal import synthetic
    from napari_crystal.cli import main

    mini = synthetic.Preset(
        "tiny",
        {"train": {"nneo": 2, "cnno": 2, "bckg": 3}, "eval": {"nneo": 3, "bckg": 3}},
        slide_shape=(1024, 1280),
        cell=256,
        regions_per_slide=4,
        slides_per_patient=(1, 1),
    )
    monkeypatch.setitem(synthetic.PRESETS, "tiny", mini)
    corpus = synthetic.generate_corpus(tmp_path / "c", preset="tiny", seed=7)
    out = tmp_path / "runs"
    argv = ["experiment", str(corpus), "--out", str(out), "--seeds", "2", "--trees", "4"]
    assert main([*argv, "--bootstrap", "50", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "with crystals - matched data: mean" in text
    info = json.loads((out / "corpora" / "seed-8" / "SYNTHETIC.json").read_text())
    assert info["seed"] == 8 and info["preset"] == "tiny"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [7, 8]
    runs = summary["tests"]["eval"]["comparisons"]["with crystals - without crystals"]["seeds"]
    assert [r["seed"] for r in runs] == [7, 8]
    forest = [
        json.loads((out / f"seed-{s}" / "report.json").read_text())["meta"]["methods"]["seeds"]
        for s in (7, 8)
    ]
    assert [f["forest"] for f in forest] == [7, 8]
    md = (out / "summary.md").read_text()
    assert "interval of the mean" in md and "| 8 | with crystals - without crystals |" in md
