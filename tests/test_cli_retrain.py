"""``napari-crystal retrain``: one correct-and-retrain round from the shell, and its refusals."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from napari_crystal.cli import main
from napari_crystal.io import read_annotation, write_annotation
from napari_crystal.training import load_model


@pytest.fixture(scope="module")
def built(tiny_corpus, tmp_path_factory):
    """32-px datasets of train and eval and a 5-tree model, made through the CLI."""
    out = tmp_path_factory.mktemp("cli-retrain")
    for split in ("train", "eval"):
        args = ["dataset", str(tiny_corpus), "--split", split, "--out", str(out / f"{split}.zarr")]
        assert main([*args, "--size", "32", "--quiet"]) == 0
    args = ["train", str(out / "train.zarr"), "--out", str(out / "model.skops")]
    assert main([*args, "--trees", "5", "--seed", "3", "--quiet"]) == 0
    return out


def _slide(tiny_corpus, split="eval"):
    return sorted((tiny_corpus / split).glob("*.svs"))[0]


def _corrected(tiny_corpus, tmp_path, label="norm", all_regions=False):
    slide = _slide(tiny_corpus)
    ann = copy.deepcopy(read_annotation(slide.with_suffix(".csv")))
    for r in ann.regions if all_regions else ann.regions[3:4]:
        r.label = label
    path = tmp_path / "fixed.csv"
    write_annotation(ann, path)
    return slide, path


def _model(built, tmp_path) -> Path:
    model = tmp_path / "model.skops"
    shutil.copy(built / "model.skops", model)
    return model


def test_retrain_writes_round2_with_the_old_settings(built, tiny_corpus, tmp_path, capsys):
    model = _model(built, tmp_path)
    slide, fixed = _corrected(tiny_corpus, tmp_path)
    report = tmp_path / "report"
    args = ["retrain", str(model), str(slide), str(fixed), "--report", str(report), "--quiet"]
    assert main(args) == 0
    captured = capsys.readouterr()
    out = tmp_path / "model-round2.skops"
    first, new = load_model(model), load_model(out)
    assert new.params == first.params
    assert (new.size, new.method, new.crystals) == (first.size, first.method, first.crystals)
    assert new.meta["retrained"]["slide"] == str(slide)
    # a slide the model was not trained on: all its regions join the training set
    n_regions = len(read_annotation(fixed).regions)
    assert new.meta["n_patches"] == first.meta["n_patches"] + n_regions
    assert f"({n_regions} from fixed.csv)" in captured.out
    assert f"{slide.name}: " in captured.out and "accuracy" in captured.out
    assert "optimistic" in captured.out  # scored on the slide it was just trained on
    assert "optimistic" in captured.err  # and the widget's warning, on stderr
    assert (report / "report.md").is_file()

    # a second run refuses to overwrite, --force replaces; a round-2 model gives round 3
    assert main(args) == 2
    assert "exists; use --force" in capsys.readouterr().err
    again = ["retrain", str(out), str(slide), str(fixed), "--quiet", "--regions", "4"]
    assert main(again) == 0
    assert (tmp_path / "model-round3.skops").is_file()


def test_retrain_evaluates_on_datasets(built, tiny_corpus, tmp_path, capsys):
    model = _model(built, tmp_path)
    slide, fixed = _corrected(tiny_corpus, tmp_path)
    out = tmp_path / "new.skops"
    args = ["retrain", str(model), str(slide), str(fixed), "--out", str(out), "--quiet"]
    evals = [str(built / "eval.zarr"), str(built / "train.zarr")]
    assert main([*args, "--regions", "4", "--eval", *evals]) == 0
    text = capsys.readouterr().out
    assert f"{built / 'eval.zarr'}: " in text and f"{built / 'train.zarr'}: " in text
    assert "(1 from fixed.csv)" in text
    assert load_model(out).meta["retrained"]["regions"] == [4]


def _refused(args, capsys, *needles) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-crystal: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_bad_inputs_are_refused_before_any_work(built, tiny_corpus, tmp_path, capsys, monkeypatch):
    import napari_crystal.correction as correction

    monkeypatch.setattr(
        correction, "retrain_on_annotation", lambda *a, **k: pytest.fail("work started")
    )
    model = _model(built, tmp_path)
    slide, fixed = _corrected(tiny_corpus, tmp_path)
    run = ["retrain", str(model), str(slide), str(fixed), "--quiet"]
    _refused(["retrain", str(tmp_path / "no.skops"), str(slide), str(fixed)], capsys, "no.skops")
    _refused([*run[:3], str(tmp_path / "none.csv")], capsys, "none.csv", "no such file")
    not_a_model = tmp_path / "fake.skops"
    not_a_model.write_bytes(b"not a zip")
    _refused(["retrain", str(not_a_model), *run[2:]], capsys, "fake.skops")
    # an annotation of another (bigger) slide
    ann = read_annotation(fixed)
    ann.regions[0].coords = ann.regions[0].coords + 100_000
    other = tmp_path / "other.csv"
    write_annotation(ann, other)
    _refused([*run[:3], str(other)], capsys, "other.csv", "outside the slide")
    _refused([*run, "--regions", "999"], capsys, "fixed.csv", "no region with id 999")
    _refused([*run, "--out", str(model)], capsys, "is the model being retrained")
    _refused([*run, "--eval", str(fixed)], capsys, "fixed.csv")
    assert not list(tmp_path.glob("*round*"))


def test_one_class_left_is_refused(built, tiny_corpus, tmp_path, capsys):
    model = _model(built, tmp_path)
    slide, fixed = _corrected(tiny_corpus, tmp_path, all_regions=True)
    args = ["retrain", str(model), str(slide), str(fixed), "--slide-only", "--quiet"]
    _refused(args, capsys, "fixed.csv", "at least 2 classes")
    assert not (tmp_path / "model-round2.skops").exists()
