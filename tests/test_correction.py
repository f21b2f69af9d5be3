"""Correct and retrain (core): rounds, relabelled maps, retraining with corrected regions."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest

from napari_crystal import correction
from napari_crystal.correction import (
    Round,
    history_rows,
    patch_masks,
    regions_of_rows,
    relabel_map,
    retrain_on_annotation,
    round_path,
    score_round,
)
from napari_crystal.errors import Cancelled, DatasetError
from napari_crystal.io import read_annotation
from napari_crystal.patches import PatchTable
from napari_crystal.predictions import build_prediction_map
from napari_crystal.training import load_model


def small_map():
    table = PatchTable(
        slide=["s.svs"] * 3, region_id=[4, 9, 11], label=["dcis", "indc", "indc"],
        top=[0, 0, 20], left=[0, 20, 0], height=[10] * 3, width=[10] * 3, level=[0] * 3,
        kind=["region"] * 3, index=[0, 1, 2],
    )  # fmt: skip
    return build_prediction_map(table, ["nneo", "indc", "dcis"], ["dcis", "indc", "indc"])


def test_score_round_and_history_rows():
    pmap = small_map()
    r = score_round(pmap, 1, "m.skops")
    assert (r.n, r.wrong) == (3, 2) and r.accuracy == pytest.approx(1 / 3)
    assert r.recall == {"dcis": 0.0, "indc": 0.5}
    rows = history_rows([r, Round(2, "m-round2.skops", 3, 0, 1.0, {"indc": 1.0}, 2, "note")])
    assert rows[0] == ["1", "33.3%", "2 of 3", "0", "dcis 0%, indc 50%"]
    assert rows[1][:4] == ["2 (note)", "100.0%", "0 of 3", "2"]
    unlabelled = build_prediction_map(pmap.table, pmap.predicted, ["", "", ""])
    assert score_round(unlabelled, 1).n == 0
    assert history_rows([score_round(unlabelled, 1)])[0][1] == "n/a"


def test_relabel_map_moves_truth_and_errors():
    pmap = small_map()
    assert regions_of_rows(pmap, [0, 2]) == [4, 11]
    fixed = relabel_map(pmap, [4], "nneo")  # accept the prediction of region 4
    assert list(fixed.truth) == ["nneo", "indc", "indc"]
    assert list(fixed.wrong) == [False, False, True]
    assert list(pmap.truth) == ["dcis", "indc", "indc"]  # the original is left alone
    assert fixed.errors_map[0, 0] == 0 and fixed.truth_map[0, 0] == fixed.predicted_map[0, 0]
    assert fixed.errors_map[25, 5] != 0


def test_round_path():
    assert round_path("/a/model.skops", 2) == Path("/a/model-round2.skops")
    assert round_path("/a/model-round2.skops", 3) == Path("/a/model-round3.skops")


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """The train split as 32-px masks, a 5-tree model of it, and the eval split's dataset."""
    from napari_crystal.dataset import build_dataset
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.training import save_model

    out = tmp_path_factory.mktemp("correction")
    train = build_dataset(tiny_corpus, "train", out / "train.zarr", size=32, scheduler="sync")
    build_dataset(tiny_corpus, "eval", out / "eval.zarr", size=32, scheduler="sync")
    model = train_on_dataset(train, params={"n_estimators": 5, "random_state": 3})
    save_model(model, out / "model.skops")
    return out


def _slide(tiny_corpus, split):
    path = sorted((tiny_corpus / split).glob("*.svs"))[0]
    return path, read_annotation(path.with_suffix(".csv"))


def test_retrain_adds_the_corrected_region_and_evaluates_on_the_slide(
    trained, tiny_corpus, tmp_path
):
    slide, ann = _slide(tiny_corpus, "eval")
    fixed = copy.deepcopy(ann)
    fixed.regions[3].label = "norm"  # region 4 was indc
    out = tmp_path / "model-round2.skops"
    result = retrain_on_annotation(trained / "model.skops", slide, fixed, out, regions=[4])
    first = load_model(trained / "model.skops")
    assert result.added == 1 and result.n_train == first.meta["n_patches"] + 1
    saved = load_model(out)
    assert saved.params == first.params  # trees, seed... as the model's
    assert (saved.size, saved.method, saved.crystals) == (first.size, first.method, "merge")
    assert saved.meta["retrained"]["regions"] == [4]
    assert saved.class_counts["norm"] == first.class_counts["norm"] + 1
    report = result.run.reports[0]
    assert report.n == len(ann.regions)
    truth = dict(
        zip(result.pmap.table.region_id.tolist(), result.pmap.truth.tolist(), strict=True)
    )
    assert truth[4] == "norm"  # the new overlay scores against the corrected annotation
    assert any("optimistic" in w for w in result.warnings)


def test_a_train_slide_relabel_replaces_its_old_patch(trained, tiny_corpus, tmp_path):
    slide, ann = _slide(tiny_corpus, "train")
    fixed = copy.deepcopy(ann)
    old = fixed.regions[0].label
    fixed.regions[0].label = "indc" if old != "indc" else "dcis"
    result = retrain_on_annotation(trained / "model.skops", slide, fixed, tmp_path / "m.skops")
    first = load_model(trained / "model.skops")
    assert result.added == 1  # found by its changed label, no ids given
    assert result.n_train == first.meta["n_patches"]  # replaced, not added


def test_evaluate_on_a_dataset_file(trained, tiny_corpus, tmp_path):
    slide, ann = _slide(tiny_corpus, "eval")
    fixed = copy.deepcopy(ann)
    fixed.regions[3].label = "norm"
    out = tmp_path / "m.skops"
    result = retrain_on_annotation(
        trained / "model.skops", slide, fixed, out, regions=[4],
        evaluate_on=trained / "eval.zarr",
    )  # fmt: skip
    assert result.run.dataset_path == str(trained / "eval.zarr")
    assert result.run.reports[0].n > len(ann.regions)  # the whole evaluation dataset
    assert len(result.pmap.table) == len(ann.regions) and out.is_file()  # this slide's patches
    assert any("not independent" in w for w in result.warnings)


def test_one_class_left_is_refused_before_any_mask(trained, tiny_corpus, tmp_path, monkeypatch):
    import napari_crystal.dataset as ds

    slide, ann = _slide(tiny_corpus, "eval")
    one = copy.deepcopy(ann)
    for r in one.regions:
        r.label = "norm"
    monkeypatch.setattr(ds, "dataset_for_slide", lambda *a, **k: pytest.fail("masks were made"))
    out = tmp_path / "m.skops"
    with pytest.raises(DatasetError, match="at least 2 classes"):
        retrain_on_annotation(trained / "model.skops", slide, one, out, base=None)
    assert not out.exists()


def test_cancel_writes_no_model(trained, tiny_corpus, tmp_path):
    slide, ann = _slide(tiny_corpus, "eval")
    cancel = threading.Event()
    cancel.set()
    out = tmp_path / "m.skops"
    with pytest.raises(Cancelled):
        retrain_on_annotation(trained / "model.skops", slide, ann, out, regions=[1], cancel=cancel)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unreadable_recorded_dataset_trains_on_the_slide(trained, tiny_corpus, tmp_path):
    model = load_model(trained / "model.skops")
    model.meta = {**model.meta, "dataset": str(tmp_path / "gone.zarr")}
    slide, ann = _slide(tiny_corpus, "eval")
    result = retrain_on_annotation(model, slide, ann, tmp_path / "m.skops")
    assert result.added == len(ann.regions) == result.n_train
    assert any("could not be read" in w for w in result.warnings)
    assert correction.MODEL_DATASET == "model"


def test_patch_masks_follow_the_map_rows(trained, tiny_corpus):
    from napari_crystal.dataset import load_dataset
    from napari_crystal.experiment import evaluate_models, run_prediction_map

    slide, ann = _slide(tiny_corpus, "eval")
    run = evaluate_models([trained / "model.skops"], trained / "eval.zarr")
    pmap = run_prediction_map(run, slide, None, ann)
    masks = patch_masks(run, slide)
    data = load_dataset(trained / "eval.zarr")
    last = len(pmap.table) - 1
    mine = [i for i, s in enumerate(data.table.slide.tolist()) if Path(s).name == slide.name]
    assert int(data.table.region_id[mine[last]]) == int(pmap.table.region_id[last])
    assert (masks(last) == data.mask(mine[last])).all() and masks(last).shape == (32, 32)
