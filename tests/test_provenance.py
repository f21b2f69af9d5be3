"""Models record their training slides and patients; evaluating on any of them is flagged."""

from __future__ import annotations

import dataclasses

import pytest

from napari_crystal.experiment import (
    NOT_RECORDED,
    evaluate_models,
    evaluate_models_on_slide,
    train_on_dataset,
)
from napari_crystal.training import load_model, save_model


@pytest.fixture(scope="module")
def made(tiny_corpus, tmp_path_factory):
    """16-px datasets of train and eval, a 10-tree model, and the same model without a record."""
    from napari_crystal.dataset import build_dataset

    out = tmp_path_factory.mktemp("provenance")
    train = build_dataset(tiny_corpus, "train", out / "train.zarr", size=16, scheduler="sync")
    build_dataset(tiny_corpus, "eval", out / "eval.zarr", size=16, scheduler="sync")
    model = train_on_dataset(train, params={"n_estimators": 10}, n_jobs=1)
    save_model(model, out / "m.skops")
    old_meta = {k: v for k, v in model.meta.items() if k != "training"}
    save_model(dataclasses.replace(model, meta=old_meta), out / "old.skops")
    return out


def test_training_records_its_slides_and_patients(made, tiny_corpus):
    record = load_model(made / "m.skops").meta["training"]
    stems = sorted(p.stem for p in (tiny_corpus / "train").glob("*.svs"))
    assert record == {"slides": stems, "patients": ["00000001"]}


def test_evaluating_on_training_slides_warns_and_methods_say_so(made):
    run = evaluate_models([made / "m.skops"], made / "train.zarr")
    (shared,) = run.warnings
    assert shared.startswith("optimistic figures: m was trained on 3 of these slide(s)")
    assert "1 of these patient(s) (00000001)" in shared
    methods = run.methods()
    assert methods["warnings"] == [shared]
    assert (
        "3 slide(s) and 1 patient(s) of them are in the evaluation data"
        in (methods["models"]["m"]["training"])
    )
    clean = evaluate_models([made / "m.skops"], made / "eval.zarr")
    assert clean.warnings == []
    assert clean.methods()["models"]["m"]["training"] == (
        "trained on 3 slide(s) of 1 patient(s); none of them is in the evaluation data"
    )


def test_a_shared_patient_alone_is_flagged(made):
    model = load_model(made / "m.skops")
    model.meta["training"] = {"slides": ["elsewhere"], "patients": ["00000003"]}
    run = evaluate_models([model], made / "eval.zarr", names=["p"])
    assert run.warnings == [
        "optimistic figures: p was trained on none of these slides and 1 of these patient(s) "
        "(00000003), so these patches are not independent of its training data"
    ]


def test_old_model_files_give_no_warning_but_methods_say_not_recorded(made, tmp_path):
    from napari_crystal.experiment import write_reports

    run = evaluate_models([made / "old.skops", made / "m.skops"], made / "train.zarr")
    assert len(run.warnings) == 1 and run.warnings[0].startswith("optimistic figures: m ")
    assert run.methods()["models"]["old"]["training"] == NOT_RECORDED
    files = write_reports(tmp_path, run.reports, [run.comparison], meta={"methods": run.methods()})
    text = files["markdown"].read_text()
    assert "## Methods" in text and f"training data: {NOT_RECORDED}" in text
    assert f"**Warning**: {run.warnings[0]}" in text


def test_open_slide_of_the_training_data_is_flagged(made, tiny_corpus):
    from napari_crystal.io.nedc import read_annotation

    trained = sorted((tiny_corpus / "train").glob("*.svs"))[0]
    ann = read_annotation(trained.with_suffix(".csv"))
    run = evaluate_models_on_slide([made / "m.skops"], trained, ann)
    (shared,) = run.warnings
    assert f"1 of these slide(s) ({trained.stem})" in shared
    unseen = sorted((tiny_corpus / "eval").glob("*.svs"))[0]
    run = evaluate_models_on_slide(
        [made / "m.skops"], unseen, read_annotation(unseen.with_suffix(".csv"))
    )
    assert run.warnings == []


def test_cli_evaluate_prints_the_warning_and_writes_methods(made, tmp_path, capsys):
    from napari_crystal.cli import main

    out = tmp_path / "r"
    assert main(["evaluate", str(made / "m.skops"), str(made / "train.zarr"), "--out",
                 str(out), "--quiet"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "napari-crystal: warning: optimistic figures: m was trained on 3" in err
    text = (out / "report.md").read_text()
    assert "3 slide(s) and 1 patient(s) of them are in the evaluation data" in text
    assert main(["compare", str(made / "old.skops"), str(made / "m.skops"),
                 str(made / "eval.zarr"), "--out", str(tmp_path / "c"), "--quiet"]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().err
    assert f"training data: {NOT_RECORDED}" in (tmp_path / "c" / "report.md").read_text()
