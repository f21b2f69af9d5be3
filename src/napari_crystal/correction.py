"""Correct and retrain: relabelled regions back into training, a new model, a score per round.

The prediction overlay's loop: a user corrects the true class of patches' regions on the slide,
then `retrain_on_annotation` trains the model again with the model's own settings, the
corrected regions in its training set, and evaluates it where the overlay came from. `Round`
holds each round's figures as plain data (`score_round`, `history_rows`), so the widget only
shows them. Napari-free, like the rest of the core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_crystal.dataset import Dataset
from napari_crystal.errors import Cancelled, DatasetError
from napari_crystal.experiment import (
    EvaluationRun,
    evaluate_models,
    evaluate_models_on_slide,
    run_prediction_map,
    subjects_of,
)
from napari_crystal.predictions import PredictionMap, class_indices, rows_of_slide
from napari_crystal.training import Model, map_labels, save_model, train_model

Progress = Callable[[int, int], None] | None

#: ``base`` of `retrain_on_annotation`: the dataset the model records it was trained on.
MODEL_DATASET = "model"


# ----------------------------------------------------------------- rounds


@dataclass
class Round:
    """One round of the loop: a model's score on the overlay's labelled patches.

    ``recall`` is per true class; ``corrections`` counts the regions relabelled before this
    round's model was trained (0 for the first model); ``note`` a short caveat.
    """

    number: int
    model: str
    n: int
    wrong: int
    accuracy: float
    recall: dict[str, float] = field(default_factory=dict)
    corrections: int = 0
    note: str = ""


def score_round(
    pmap: PredictionMap, number: int, model: str = "", corrections: int = 0, note: str = ""
) -> Round:
    """The `Round` of a prediction map: accuracy and per-class recall of its labelled patches
    (``n`` 0 and accuracy NaN when none is labelled)."""
    from napari_crystal.evaluation import evaluate

    labelled = pmap.truth != ""
    if not labelled.any():
        return Round(number, model, 0, 0, float("nan"), {}, corrections, note)
    report = evaluate(pmap.truth[labelled], pmap.predicted[labelled])
    recall = {c: float(s.recall) for c, s in report.per_class.items() if s.support}
    return Round(
        number, model, report.n, report.incorrect, report.accuracy, recall, corrections, note
    )


HISTORY_COLUMNS = ("round", "accuracy", "wrong", "corrections", "recall")


def history_rows(rounds: Sequence[Round]) -> list[list[str]]:
    """The rounds as table rows of `HISTORY_COLUMNS` (text, recall as whole percents)."""
    rows = []
    for r in rounds:
        accuracy = "n/a" if not r.n else f"{100 * r.accuracy:.1f}%"
        recall = ", ".join(f"{c} {100 * v:.0f}%" for c, v in r.recall.items())
        rows.append(
            [
                str(r.number) + (f" ({r.note})" if r.note else ""),
                accuracy,
                f"{r.wrong} of {r.n}",
                str(r.corrections),
                recall,
            ]
        )
    return rows


# ----------------------------------------------------------------- relabelling


def regions_of_rows(pmap: PredictionMap, rows: Iterable[int]) -> list[int]:
    """Region ids of the region patches among ``rows`` (frames have none of their own)."""
    rows = np.asarray(list(rows), dtype=np.int64)
    kinds = np.asarray(pmap.table.kind, dtype=str)[rows]
    return [int(r) for r in np.asarray(pmap.table.region_id)[rows][kinds == "region"]]


def relabel_map(pmap: PredictionMap, region_ids: Iterable[int], label: str) -> PredictionMap:
    """The map with the region patches of ``region_ids`` given the true class ``label``:
    truth, truth map and error map follow (the predictions are unchanged)."""
    t = pmap.table
    hit = (np.asarray(t.kind, dtype=str) == "region") & np.isin(t.region_id, list(region_ids))
    truth = np.where(hit, str(label), pmap.truth).astype(str)
    t_idx = class_indices(truth)
    wrong = (truth != "") & (pmap.predicted != truth)
    e_idx = np.where(wrong, t_idx, 0).astype(np.uint8)

    def gather(values):
        lut = np.zeros(len(values) + 1, dtype=np.uint8)
        lut[:-1] = values
        return lut[pmap.raster.index]

    return replace(pmap, truth=truth, truth_map=gather(t_idx), errors_map=gather(e_idx))


def patch_masks(
    run: EvaluationRun, slide_file: str | os.PathLike, shape: Sequence[int] | None = None
) -> Callable[[int], np.ndarray] | None:
    """The mask the model saw for row ``i`` of the run's prediction map (`run_prediction_map`
    of the same slide), read when asked; None when the run holds feature rows, not masks."""
    if run.slide:
        dataset = run.slide[0].dataset
        rows = np.arange(len(dataset))
    else:
        dataset = run.dataset
        if dataset is None:
            return None
        rows = np.flatnonzero(rows_of_slide(dataset.table, slide_file, shape))
    if dataset is None or not dataset.size:
        return None
    return lambda i: dataset.mask(int(rows[int(i)]))


# ----------------------------------------------------------------- retraining


@dataclass
class RetrainSetup:
    """What a prediction overlay needs to retrain and re-evaluate its model.

    ``model`` is the model file; ``dataset`` the evaluation dataset file (None: the slide
    itself with its annotation, patches made with ``slide_options``, the keywords of
    `experiment.evaluate_models_on_slide`: patches, frame, window, threshold, tissue).
    """

    model: str
    dataset: str | None = None
    slide_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Retrained:
    """A retrained model, where it was saved, its evaluation and the overlay's new map."""

    model: Model
    path: Path
    run: EvaluationRun
    pmap: PredictionMap
    n_train: int
    added: int
    warnings: list[str] = field(default_factory=list)


def round_path(model_path: str | os.PathLike, number: int) -> Path:
    """Where round ``number``'s model goes: ``<stem>-round<number>.skops`` beside the first
    (a ``-roundK`` suffix of the given file is replaced, so rounds do not pile up)."""
    path = Path(model_path)
    stem = path.stem
    head, sep, tail = stem.rpartition("-round")
    if sep and tail.isdigit():
        stem = head
    return path.with_name(f"{stem}-round{int(number)}{path.suffix or '.skops'}")


def _base_dataset(model: Model, base, warnings: list[str]) -> Dataset | None:
    from napari_crystal.dataset import load_dataset

    if isinstance(base, Dataset) or base is None:
        return base
    if base != MODEL_DATASET:
        return load_dataset(base)
    recorded = (model.meta or {}).get("dataset")
    if not recorded:
        return None
    try:
        return load_dataset(recorded)
    except DatasetError:
        warnings.append(
            f"the model's training dataset {Path(str(recorded)).name} could not be read: "
            "retrained on this slide's regions only"
        )
        return None


def _share(progress: Progress, start: float, width: float) -> Progress:
    """Progress of one step, reported as a part [start, start + width) of 1000."""
    if progress is None:
        return None
    return lambda d, t: progress(int(1000 * (start + width * d / max(t, 1))), 1000)


def retrain_on_annotation(
    model: Model | str | os.PathLike,
    slide: str | os.PathLike,
    annotation,
    out: str | os.PathLike,
    *,
    regions: Iterable[int] | None = None,
    base: Dataset | str | os.PathLike | None = MODEL_DATASET,
    evaluate_on: str | os.PathLike | None = None,
    shape: Sequence[int] | None = None,
    slide_options: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> Retrained:
    """Train ``model`` again with the corrected ``annotation`` of ``slide`` and evaluate it.

    The training set is ``base`` (by default the dataset the model records, when it can be
    read) with the slide's corrected regions in it: the regions ``regions`` (ids) and every
    region whose label differs from ``base``'s patch of it; those replace ``base``'s patches
    of the same regions. Without a base, all the annotation's regions are the training set
    (what Generate masks makes of an open slide). Masks or feature rows are made the
    model's way (method, size, channel or feature set), and the forest has the model's
    settings (trees, seed, crystal policy...).

    The new model is evaluated on ``evaluate_on`` (a dataset file) or else on the slide with
    its corrected annotation (``slide_options`` as `experiment.evaluate_models_on_slide`),
    and the overlay's `PredictionMap` is rebuilt. It is saved to ``out`` only once all of
    this succeeded.

    Raises
    ------
    DatasetError
        The training set would hold fewer than two classes (checked before any mask is made).
    errors.Cancelled
        ``cancel`` was set.
    """
    from napari_crystal.io.slide import open_slide
    from napari_crystal.patches import PatchTable, region_patches
    from napari_crystal.training import load_model

    model = model if isinstance(model, Model) else load_model(model)
    warnings: list[str] = []
    base_ds = _base_dataset(model, base, warnings)
    features = (model.meta or {}).get("features")
    size = int(model.size) if not features else 256
    slide = Path(slide)
    where = getattr(annotation, "source", None) or slide
    with open_slide(slide) as opened:
        table = region_patches(opened, annotation, size)
        ids = np.asarray(table.region_id, dtype=np.int64)
        if base_ds is None:
            added = set(ids.tolist())
            keep = np.zeros(0, dtype=bool)
        else:
            names = np.asarray([Path(s).name for s in base_ds.table.slide.tolist()])
            mine = names == slide.name
            bt = base_ds.table
            old = dict(zip(bt.region_id[mine].tolist(), bt.label[mine].tolist(), strict=True))
            now = dict(zip(ids.tolist(), table.label.astype(str).tolist(), strict=True))
            added = {int(r) for r in (regions or ())} & set(now)
            added |= {r for r, label in now.items() if r in old and old[r] != label}
            keep = ~(mine & np.isin(base_ds.table.region_id, list(added)))
        new_table = table[np.isin(ids, list(added))]
        labels = np.asarray(new_table.label, dtype=str)
        if base_ds is not None:
            labels = np.concatenate([np.asarray(base_ds.labels, dtype=str)[keep], labels])
        classes = np.unique(map_labels(labels, model.crystals)[0])
        if len(classes) < 2:
            found = ", ".join(classes) if len(classes) else "none"
            raise DatasetError(
                where,
                f"retraining needs at least 2 classes (crystals={model.crystals!r}), the "
                f"corrected training set has {found}: nothing was trained",
            )
        if features:
            from napari_crystal.features.build import feature_dataset_for_slide
            from napari_crystal.features.extract import FeatureSpec

            new = feature_dataset_for_slide(
                opened, annotation, FeatureSpec.from_settings(features), patches=new_table,
                progress=_share(progress, 0.0, 0.3), cancel=cancel,
            )  # fmt: skip
        else:
            from napari_crystal.dataset import dataset_for_slide

            channel = (model.meta or {}).get("channel") or "grey"
            new = dataset_for_slide(
                opened, annotation, model.method or "threshold", size,
                progress=_share(progress, 0.0, 0.3), cancel=cancel, channel=channel,
                patches=new_table,
            )  # fmt: skip
        if shape is None:
            shape = opened.shape
    if base_ds is not None:
        packed = np.concatenate([np.asarray(base_ds.take(keep)), np.asarray(new.packed)])
        train_table = PatchTable.concat([base_ds.table[keep], new_table])
        meta = dict(base_ds.meta or {})
    else:
        packed, train_table, meta = np.asarray(new.packed), new_table, dict(new.meta or {})
    training = Dataset(train_table, packed, new.size, new.method, meta)
    model_meta = {
        **(model.meta or {}),
        "n_patches": len(training),
        "training": subjects_of(training),  # so evaluations warn when they share its slides
        "retrained": {
            "from": model.path,
            "slide": str(slide),
            "regions": sorted(added),
            "base": None if base_ds is None else (base_ds.meta or {}).get("path"),
        },
    }
    retrained = train_model(
        training.packed, training.labels, model.size, crystals=model.crystals,
        params=dict(model.params), meta=model_meta, progress=_share(progress, 0.3, 0.5),
        cancel=cancel, n_jobs=n_jobs,
    )  # fmt: skip
    retrained.path = str(out)
    name = Path(out).stem
    if evaluate_on is not None:
        run = evaluate_models(
            [retrained], evaluate_on, names=[name], progress=_share(progress, 0.8, 0.2),
            cancel=cancel,
        )  # fmt: skip
        try:
            pmap = run_prediction_map(run, slide, shape, annotation)
        except DatasetError:  # corrected labels differ from the dataset's: boxes, not polygons
            pmap = run_prediction_map(run, slide, shape, None)
    else:
        run = evaluate_models_on_slide(
            [retrained], slide, annotation, shape=shape, names=[name],
            progress=_share(progress, 0.8, 0.2), cancel=cancel, **(slide_options or {}),
        )  # fmt: skip
        pmap = run_prediction_map(run, slide, shape, annotation)
    warnings += run.warnings  # e.g. evaluated on slides the new model was trained on
    if cancel is not None and cancel.is_set():
        raise Cancelled("retraining cancelled")
    path = save_model(retrained, out)
    if progress is not None:
        progress(1000, 1000)
    return Retrained(retrained, path, run, pmap, len(training), len(added), warnings)
