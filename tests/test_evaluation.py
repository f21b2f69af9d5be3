"""Chunked prediction, per-class reports and the report files."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from napari_crystal.errors import Cancelled, ModelError
from napari_crystal.evaluation import (
    Report,
    compare,
    evaluate,
    model_truth,
    predict_chunked,
)
from napari_crystal.palette import label_order
from napari_crystal.reports import (
    plot_confusion,
    read_report_json,
    report_markdown,
    save_confusion_png,
    write_report_json,
    write_report_markdown,
)
from napari_crystal.training import train_model

SIZE = 32


@pytest.fixture(scope="module")
def model_and_data():
    rng = np.random.default_rng(1)
    n = 150
    labels = np.array(["nneo", "dcis", "indc", "cidc"])[rng.integers(0, 4, n)]
    masks = rng.random((n, SIZE, SIZE)) < 0.25
    for i, label in enumerate(labels):
        masks[i, : 4 * (1 + "nneo dcis indc cidc".split().index(label))] = True
    packed = np.packbits(masks.reshape(n, -1), axis=1)
    model = train_model(packed, labels, SIZE, crystals="keep", params={"n_estimators": 4})
    test = np.packbits((rng.random((203, SIZE * SIZE)) < 0.4), axis=1)
    return model, test, labels


def test_chunked_prediction_equals_one_shot(model_and_data):
    model, packed, _ = model_and_data
    X = np.unpackbits(packed, axis=1, count=SIZE * SIZE).astype(np.float32)
    proba_ref = model.estimator.predict_proba(X)
    pred_ref = model.estimator.predict(X)
    for chunk in (1, 50, 203, 1024):
        pred, proba = predict_chunked(model, packed, chunk=chunk)
        assert proba.dtype == np.float32 and proba.shape == (203, len(model.classes))
        np.testing.assert_array_equal(pred, pred_ref)
        np.testing.assert_allclose(proba, proba_ref.astype(np.float32))


def test_prediction_progress_cancel_and_empty(model_and_data):
    model, packed, _ = model_and_data
    seen = []
    predict_chunked(model, packed, chunk=100, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 203), (100, 203), (200, 203), (203, 203)]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        predict_chunked(model, packed, cancel=cancel)
    pred, proba = predict_chunked(model, packed[:0])
    assert pred.shape == (0,) and proba.shape == (0, len(model.classes))


def test_prediction_refuses_other_mask_size(model_and_data):
    model, _, _ = model_and_data
    other = np.zeros((3, 16 * 16 // 8), dtype=np.uint8)
    with pytest.raises(ModelError, match="another mask size"):
        predict_chunked(model, other)


def test_model_truth_follows_the_models_mapping(model_and_data):
    model, _, _ = model_and_data
    assert model.crystals == "keep"
    assert model_truth(model, ["cidc", "cnno"]).tolist() == ["cidc", "cnno"]
    model_merge = type(model)(**{**model.__dict__, "crystals": "merge"})
    assert model_truth(model_merge, ["cidc", "cnno"]).tolist() == ["indc", "nneo"]


def test_label_order_is_palette_then_unknown_sorted():
    assert label_order(["indc", "zeta", "bckg", "cidc", "alpha", "nneo"]) == [
        "bckg", "nneo", "indc", "cidc", "alpha", "zeta",
    ]  # fmt: skip


def test_evaluate_by_hand():
    truth = ["dcis", "dcis", "dcis", "indc", "indc", "nneo", "nneo", "nneo", "nneo", "weird"]
    pred = ["dcis", "dcis", "indc", "indc", "dcis", "nneo", "nneo", "nneo", "dcis", "nneo"]
    r = evaluate(truth, pred, classes=["bckg"])
    assert r.classes == ["bckg", "nneo", "dcis", "indc", "weird"]
    assert (r.n, r.correct, r.incorrect, r.accuracy) == (10, 6, 4, 0.6)
    assert r.confusion == [
        [0, 0, 0, 0, 0],  # bckg: only from `classes`
        [0, 3, 1, 0, 0],  # nneo
        [0, 0, 2, 1, 0],  # dcis
        [0, 0, 1, 1, 0],  # indc
        [0, 1, 0, 0, 0],  # weird (unknown label, never predictable)
    ]
    dcis = r.per_class["dcis"]
    # dcis: 3 true, 4 predicted, 2 right -> recall 2/3, precision 2/4, F1 = 2*(1/2*2/3)/(7/6) = 4/7
    assert (dcis.support, dcis.predicted, dcis.correct) == (3, 4, 2)
    assert dcis.accuracy == dcis.recall == pytest.approx(2 / 3)
    assert dcis.precision == pytest.approx(0.5)
    assert dcis.f1 == pytest.approx(4 / 7)
    nneo = r.per_class["nneo"]  # 4 true, 4 predicted, 3 right
    assert (nneo.precision, nneo.recall, nneo.f1) == pytest.approx((0.75, 0.75, 0.75))
    bckg = r.per_class["bckg"]
    assert (bckg.support, bckg.precision, bckg.recall, bckg.f1) == (0, 0.0, 0.0, 0.0)
    weird = r.per_class["weird"]
    assert (weird.support, weird.predicted, weird.accuracy) == (1, 0, 0.0)
    # macro over the 4 classes with support: recalls 3/4, 2/3, 1/2, 0
    assert r.macro["recall"] == pytest.approx((0.75 + 2 / 3 + 0.5 + 0) / 4)


def test_evaluate_matches_sklearn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(5)
    labels = np.array(["bckg", "nneo", "dcis", "indc", "susp"])
    truth, pred = labels[rng.integers(0, 5, 500)], labels[rng.integers(0, 5, 500)]
    r = evaluate(truth, pred)
    p, rc, f, s = precision_recall_fscore_support(truth, pred, labels=r.classes, zero_division=0)
    assert [r.per_class[c].precision for c in r.classes] == pytest.approx(p)
    assert [r.per_class[c].recall for c in r.classes] == pytest.approx(rc)
    assert [r.per_class[c].f1 for c in r.classes] == pytest.approx(f)
    assert [r.per_class[c].support for c in r.classes] == s.tolist()
    assert r.confusion == confusion_matrix(truth, pred, labels=r.classes).tolist()


def test_evaluate_rejects_bad_input():
    with pytest.raises(ValueError):
        evaluate(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        evaluate([], [])


@pytest.fixture
def reports():
    truth = ["nneo"] * 6 + ["dcis"] * 6 + ["indc"] * 8
    a = ["nneo"] * 5 + ["dcis"] + ["dcis"] * 5 + ["indc"] + ["indc"] * 7 + ["dcis"]
    b = ["nneo"] * 3 + ["indc"] * 3 + ["dcis"] * 3 + ["nneo"] * 3 + ["indc"] * 4 + ["nneo"] * 4
    return compare(truth, a, b, names=("with crystals", "without crystals"), test_set="eval")


def test_json_round_trip(reports, tmp_path):
    comp = reports
    path = write_report_json([comp.report_a, comp.report_b], tmp_path / "r.json", [comp])
    loaded, comparisons = read_report_json(path)
    assert loaded == [comp.report_a, comp.report_b]
    assert comparisons[0]["mcnemar_p"] == comp.mcnemar_p
    assert comparisons[0]["wald_ci"] == list(comp.wald_ci)
    assert json.loads(path.read_text())["reports"][0]["per_class"]["dcis"]["recall"] == 5 / 6


def test_markdown_has_the_study_tables(reports, tmp_path):
    comp = reports
    text = report_markdown([comp.report_a, comp.report_b], [comp], title="Crystal study")
    assert text.startswith("# Crystal study")
    # one table per test set, models as columns: A 17/20, B 10/20
    assert "## Test set: eval (20 patches)" in text
    assert "| | with crystals | without crystals |" in text
    assert "| correct | 17 | 10 |" in text and "| accuracy | 85.0% | 50.0% |" in text
    # per-class accuracy (recall) of indc, dcis, nneo: A 7/8, 5/6, 5/6; B 4/8, 3/6, 3/6
    assert "| indc accuracy (n=8) | 87.5% | 50.0% |" in text
    assert "| dcis | 6 | 7 | 0.714 | 0.833 | 0.769 |" in text  # A: 5 of 7 dcis calls right
    # b = 7, c = 0: exact p = 2/2^7; Wald se = sqrt(.85*.15/20 + .5*.5/20) = 0.137386,
    # paired se = sqrt(7 - 49/20)/20 = 0.106654; two decimals, in percentage points
    assert (
        "| with crystals - without crystals | +35.00 | [+8.07, +61.93] | [+14.10, +55.90] | - "
        "| 7 | 0 | 0.000 | 0.0156 | exact binomial |"
    ) in text
    # per-class difference on indc: 7/8 - 4/8 = +37.50 pp
    assert "| with crystals - without crystals | indc | 8 | 87.5% | 50.0% | +37.50 |" in text
    out = write_report_markdown([comp.report_a], tmp_path / "r.md", [comp])
    assert out.read_text().count("A - B | difference") == 1


def test_confusion_png_and_figure(reports, tmp_path):
    report = reports.report_a
    path = save_confusion_png(report, tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]
    fig = plot_confusion(report, dark=True)
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(str(v) for row in report.confusion for v in row)
    assert [t.get_text() for t in ax.get_xticklabels()] == report.classes
    from matplotlib.figure import Figure

    other = Figure()
    assert plot_confusion(report, ax=other.add_subplot()) is other


def test_report_from_dict_round_trip(reports):
    report = reports.report_b
    assert Report.from_dict(report.to_dict()) == report
