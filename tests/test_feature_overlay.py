"""The overlay of a feature dataset with skipped rows: those patches are left out and counted."""

from __future__ import annotations

import numpy as np

from napari_crystal.dataset import Dataset
from napari_crystal.experiment import dataset_prediction_map, evaluate_model, train_on_dataset
from napari_crystal.features.build import feature_dataset_for_slide, feature_spec
from napari_crystal.io import read_annotation


def test_skipped_feature_rows_are_left_out_of_the_overlay(tiny_corpus):
    slide = sorted((tiny_corpus / "eval").glob("*.svs"))[0]
    ann = read_annotation(slide.with_suffix(".csv"))
    ds = feature_dataset_for_slide(slide, ann, feature_spec("morphology"))
    packed = np.array(ds.packed, dtype=np.float32)
    packed[2] = np.nan  # the patch a feature set skipped (too small to measure)
    ds = Dataset(ds.table, packed, ds.size, ds.method, ds.meta)
    model = train_on_dataset(ds, params={"n_estimators": 3, "random_state": 1})
    evaluation = evaluate_model(model, ds)
    assert len(evaluation.predicted) == len(ds) - 1

    pmap = dataset_prediction_map(model, ds, slide, None, ann, evaluation=evaluation)
    assert pmap.not_measured == 1
    assert len(pmap.table) == len(ds) - 1
    skipped = int(ds.table.region_id[2])
    assert skipped not in pmap.table.region_id.tolist()
    measured = np.flatnonzero(np.arange(len(ds)) != 2)
    assert list(pmap.predicted) == list(evaluation.predicted)
    assert pmap.table.region_id.tolist() == ds.table.region_id[measured].tolist()

    again = dataset_prediction_map(model, ds, slide, None, ann)  # predicted here, same rows
    assert again.not_measured == 1 and list(again.predicted) == list(pmap.predicted)
