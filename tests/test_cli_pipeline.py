"""The study from the shell: dataset, train, evaluate, compare and experiment on the tiny corpus."""

from __future__ import annotations

import json
import pickle

import pytest

from napari_crystal.cli import main

FAST = ["--trees", "8", "--quiet"]


@pytest.fixture(scope="module")
def built(tiny_corpus, tmp_path_factory):
    """Datasets (32 x 32 masks) and two models made through the CLI, shared by the tests."""
    out = tmp_path_factory.mktemp("cli")
    for split in ("train", "eval"):
        args = ["dataset", str(tiny_corpus), "--split", split, "--out", str(out / f"{split}.zarr")]
        assert main([*args, "--size", "32", "--quiet"]) == 0
    for crystals in ("merge", "drop"):
        model = out / f"{crystals}.skops"
        args = ["train", str(out / "train.zarr"), "--out", str(model), "--crystals", crystals]
        assert main([*args, *FAST]) == 0
    return out


def test_dataset_and_train_print_counts(built, capsys, tiny_corpus):
    out = built / "again.zarr"
    assert (
        main(
            [
                "dataset",
                str(tiny_corpus),
                "--split",
                "dev",
                "--out",
                str(out),
                "--size",
                "32",
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "patches, 32x32 threshold masks" in text and out.exists()


def test_evaluate_writes_reports(built, capsys):
    report = built / "report-eval"
    assert (
        main(
            [
                "evaluate",
                str(built / "merge.skops"),
                str(built / "eval.zarr"),
                "--out",
                str(report),
                "--quiet",
            ]
        )
        == 0
    )
    assert "correct, accuracy" in capsys.readouterr().out
    doc = json.loads((report / "report.json").read_text())
    r = doc["reports"][0]
    assert r["correct"] + r["incorrect"] == r["n"] > 0
    assert sum(map(sum, r["confusion"])) == r["n"]
    assert (report / "report.md").read_text().startswith("# Evaluation")
    assert list(report.glob("confusion-*.png"))


def test_compare_reports_ci_and_mcnemar(built, capsys):
    report = built / "report-compare"
    args = [
        "compare",
        str(built / "merge.skops"),
        str(built / "drop.skops"),
        str(built / "eval.zarr"),
    ]
    assert main([*args, "--out", str(report), "--quiet"]) == 0
    line = capsys.readouterr().out
    assert "McNemar p" in line and "95% CI Wald" in line and "merge 1" not in line
    cmp = json.loads((report / "report.json").read_text())["comparisons"][0]
    lo, hi = cmp["wald_ci"]
    assert lo <= cmp["difference"] <= hi
    assert cmp["b"] + cmp["c"] + cmp["both_correct"] + cmp["both_wrong"] == cmp["n"]


def test_model_with_other_mask_size_is_refused(built, tiny_corpus, capsys):
    big = built / "eval64.zarr"
    assert (
        main(
            [
                "dataset",
                str(tiny_corpus),
                "--split",
                "eval",
                "--out",
                str(big),
                "--size",
                "64",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    status = main(
        ["evaluate", str(built / "merge.skops"), str(big), "--out", str(built / "x"), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("napari-crystal: error: ") and "64x64" in err
    assert len(err.splitlines()) == 1 and not (built / "x").exists()


def test_pickle_posing_as_model_is_refused(built, tmp_path, capsys):
    fake = tmp_path / "model.skops"
    fake.write_bytes(pickle.dumps({"estimator": "not really"}))
    status = main(["evaluate", str(fake), str(built / "eval.zarr"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and str(fake) in err and "Traceback" not in err


def test_corpus_without_annotations_fails_up_front(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.svs").write_bytes(b"")
    status = main(
        [
            "dataset",
            str(tmp_path),
            "--split",
            "train",
            "--out",
            str(tmp_path / "d.zarr"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "napari-crystal: error:" in err and not (tmp_path / "d.zarr").exists()


def test_experiment_on_tiny_corpus(tiny_corpus, tmp_path, capsys):
    """The whole study with the paper's settings (100 trees, 256 x 256 masks)."""
    out = tmp_path / "study"
    assert main(["experiment", str(tiny_corpus), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "with crystals" in text and "McNemar p" in text and "patient bootstrap" in text
    assert "training patches: with crystals 67; without crystals 50; matched data 67" in text
    report = (out / "report.md").read_text()
    for heading in ("## Methods", "## Test set: eval", "patient bootstrap CI", "Brier score"):
        assert heading in report
    doc = json.loads((out / "report.json").read_text())
    names = ["with crystals", "without crystals", "matched data"]
    assert [r["name"] for r in doc["reports"]] == names
    methods = doc["meta"]["methods"]
    assert set(methods["training_counts"]) == set(names)
    assert methods["synthetic"]["preset"] == "tiny" and methods["seeds"]["forest"] == 42
    assert set(methods["versions"]) >= {"scikit-learn", "imbalanced-learn", "scikit-image"}
    assert len(list(out.glob("reliability-*.png"))) == 3
    assert (out / "models" / "with-crystals.skops").is_file()
    assert set(json.loads((out / "timings.json").read_text())) >= {
        "dataset train",
        "train with crystals",
    }


def test_evaluate_with_dask_tasks_gives_the_same_report(built):
    reports = {}
    for scheduler in (None, "processes"):
        out = built / f"report-{scheduler}"
        args = [
            "evaluate",
            str(built / "merge.skops"),
            str(built / "eval.zarr"),
            "--out",
            str(out),
        ]
        if scheduler:
            args += ["--scheduler", scheduler]
        assert main([*args, "--quiet"]) == 0
        reports[scheduler] = json.loads((out / "report.json").read_text())["reports"][0]
    assert reports[None]["confusion"] == reports["processes"]["confusion"]
