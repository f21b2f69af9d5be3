"""The crystal study as reusable steps: train on a dataset, evaluate, compare, run it all.

The CLI commands and the napari widgets call these same functions, so both give the same
numbers for the same inputs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_crystal._atomic import atomic_write
from napari_crystal.dataset import Dataset, build_dataset
from napari_crystal.errors import DatasetError
from napari_crystal.evaluation import (
    Comparison,
    Report,
    calibration,
    compare,
    evaluate,
    model_truth,
    predict_chunked,
    score_space,
)
from napari_crystal.palette import CRYSTAL_PARENT
from napari_crystal.parallel import scheduler_kind
from napari_crystal.predictions import (
    MAX_SIDE,
    PredictionMap,
    build_prediction_map,
    check_classes,
    region_polygons,
    rows_of_slide,
)
from napari_crystal.reports import (
    save_confusion_png,
    save_reliability_png,
    write_report_json,
    write_report_markdown,
)
from napari_crystal.training import (
    Model,
    check_compatible,
    map_labels,
    save_model,
    train_model,
)

Progress = Callable[[int, int], None] | None
#: ``step_progress(step, done, total)``: one callback for every step of a multi-step run.
StepProgress = Callable[[str, int, int], None] | None

WITH, WITHOUT = "with crystals", "without crystals"
#: The matched-data control: without crystals, as many extra plain parents as crystals added.
MATCHED = "matched data"


def dataset_meta(dataset: Dataset) -> dict[str, Any]:
    """What a model must remember about the dataset it was trained on."""
    meta = dict(dataset.meta or {})
    out = {
        "method": dataset.method,
        "size": int(dataset.size),
        "level_rule": meta.get("level_rule"),
        "channel": meta.get("channel"),
        "dataset": meta.get("path") or meta.get("corpus"),
        "n_patches": len(dataset),
        "training": subjects_of(dataset),
    }
    if meta.get("features"):  # a feature dataset: the model must make its rows the same way
        out.update(features=meta["features"], feature_names=list(meta["feature_names"]))
    return out


def subjects_of(dataset: Dataset) -> dict[str, list[str]]:
    """The slides (file stems) and patients a dataset holds: what a model records of its
    training data, and what an evaluation compares it with (`training_overlap`)."""
    from napari_crystal.dataset import patient_of

    slides = np.unique(np.asarray(dataset.table.slide, dtype=str)).tolist()
    stems = {Path(s).stem for s in slides} - {""}
    recorded = (dataset.meta or {}).get("patients") or {}  # as `Dataset.patients` reads them
    return {
        "slides": sorted(stems),
        "patients": sorted({recorded.get(s, patient_of(s)) for s in stems}),
    }


def train_on_dataset(
    dataset: Dataset,
    *,
    crystals: str = "merge",
    params: dict[str, Any] | None = None,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    n_jobs: int | None = None,
) -> Model:
    """Train a balanced random forest on a dataset's packed masks (the paper's defaults),
    in sub-forests with progress and Cancel (see `training.train_model`)."""
    return train_model(
        dataset.packed,
        dataset.labels,
        dataset.size,
        crystals=crystals,
        params=params,
        meta=dataset_meta(dataset),
        progress=progress,
        cancel=cancel,
        n_jobs=n_jobs,
    )


@dataclass
class Evaluation:
    """A model's predictions on a dataset and the report they give.

    ``truth``/``predicted`` are as scored (``scoring``: a keep model's crystal predictions
    merged into their parents when the truth has no crystal classes); ``proba`` is the
    model's, columns ``classes``; ``patients`` the patient of each patch.
    """

    report: Report
    predicted: np.ndarray
    proba: np.ndarray
    truth: np.ndarray
    rows: np.ndarray | None = None  # dataset rows evaluated (None: all; feature sets skip some)
    scoring: str = ""
    classes: tuple[str, ...] = ()
    patients: np.ndarray | None = None


def _fit_checks(size: int, method: str, meta: dict | None) -> dict[str, Any]:
    """`check_compatible`'s keywords for data of this mask size, method and metadata: the
    threshold channel counts for threshold masks only."""
    features = (meta or {}).get("features")
    threshold = method == "threshold" and not features
    channel = (meta or {}).get("channel") if threshold else None
    return {"size": size, "method": method, "features": features, "channel": channel}


def check_evaluation_inputs(
    models: Sequence[str | os.PathLike], dataset: str | os.PathLike
) -> None:
    """Refuse (`ModelError`/`DatasetError`) model files that do not fit a dataset file, the
    way `evaluate_model` would, from the metadata alone: a widget's check of its fields
    before any work starts."""
    from napari_crystal.dataset import read_dataset_meta
    from napari_crystal.training import model_header

    meta = read_dataset_meta(dataset)
    checks = _fit_checks(meta.get("size"), meta.get("method"), meta)
    for path in models:
        check_compatible(model_header(path), path=str(dataset), **checks)


def evaluate_model(
    model: Model,
    dataset: Dataset,
    *,
    name: str = "",
    test_set: str = "",
    chunk: int = 1024,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    n_jobs: int | None = None,
    scheduler: Any = None,
) -> Evaluation:
    """Check the model fits the dataset, predict in chunks, and report against the truth.

    ``scheduler`` runs the chunks as dask tasks (a saved dataset is read by the tasks
    themselves); None predicts here with ``n_jobs`` threads.
    """
    where = (dataset.meta or {}).get("path")
    features = (dataset.meta or {}).get("features")
    check_compatible(model, path=where, **_fit_checks(dataset.size, dataset.method, dataset.meta))
    if features:  # feature rows: patches skipped at extraction (NaN rows) are not scored
        from napari_crystal.training import finite_rows

        rows = np.flatnonzero(finite_rows(dataset.packed))
        block = np.asarray(dataset.packed[:], dtype=np.float32)[rows]
        pred, proba = predict_chunked(
            model, block, chunk=chunk, progress=progress, cancel=cancel, n_jobs=n_jobs
        )
        labels = np.asarray(dataset.labels)[rows]
        truth, pred, scored, classes, scoring = score_space(model, labels, pred, proba)
        report = evaluate(truth, pred, classes, name=name, test_set=test_set)
        report.meta["scoring"] = scoring
        report.meta["calibration"] = calibration(truth, scored, classes)
        return Evaluation(
            report, pred, proba, truth, rows, scoring=scoring, classes=tuple(model.classes),
            patients=np.asarray(dataset.patients)[rows],
        )  # fmt: skip
    pred, proba = predict_chunked(
        model, dataset.packed, chunk=chunk, progress=progress, cancel=cancel, n_jobs=n_jobs,
        scheduler=scheduler, source=None if isinstance(dataset.packed, np.ndarray) else where,
    )  # fmt: skip
    truth, pred, scored, classes, scoring = score_space(model, dataset.labels, pred, proba)
    report = evaluate(truth, pred, classes, name=name, test_set=test_set)
    report.meta["scoring"] = scoring
    report.meta["calibration"] = calibration(truth, scored, classes)
    return Evaluation(
        report, pred, proba, truth, scoring=scoring, classes=tuple(model.classes),
        patients=np.asarray(dataset.patients),
    )  # fmt: skip


def compare_evaluations(
    a: Evaluation,
    b: Evaluation,
    *,
    names: tuple[str, str] = ("A", "B"),
    level: float = 0.95,
    test_set: str = "",
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare two models on the same patches, in a label space both share.

    A model that keeps crystal classes apart is compared with one that merges them after
    merging its predictions too, so a crystal region predicted as its parent counts as right.
    When the patients are known, a patient-level bootstrap interval (``n_boot``, ``seed``)
    is added.
    """
    if len(a.truth) != len(b.truth):
        raise ValueError("the two evaluations are not of the same patches")
    truth_a, truth_b = a.truth, b.truth
    pa, pb = a.predicted, b.predicted
    if not np.array_equal(truth_a, truth_b):
        truth_a = map_labels(truth_a, "merge")[0]
        pa = map_labels(pa, "merge")[0]
        pb = map_labels(pb, "merge")[0]
    clusters = a.patients if a.patients is not None and len(a.patients) == len(pa) else None
    if clusters is not None and len(np.unique(clusters)) < 2:
        clusters = None  # one patient: no between-patient variation to resample
    return compare(
        truth_a, pa, pb, level=level, names=names, test_set=test_set, clusters=clusters,
        n_boot=n_boot, seed=seed,
    )  # fmt: skip


def write_reports(
    out: str | os.PathLike,
    reports: list[Report],
    comparisons: list[Comparison] = (),
    *,
    title: str = "Evaluation",
    meta: dict[str, Any] | None = None,
    reliability: bool = False,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and one confusion-matrix PNG per report, and with
    ``reliability`` a reliability-diagram PNG per report that has calibration figures; as a
    whole: all of them replace the old report, or none does (`_atomic.atomic_files`)."""
    from napari_crystal._atomic import atomic_files

    out = Path(out)
    files = {"json": out / "report.json", "markdown": out / "report.md"}
    with atomic_files(out, stale=("confusion-*.png", "reliability-*.png")) as stage:
        write_report_json(reports, stage(files["json"]), comparisons, meta)
        write_report_markdown(reports, stage(files["markdown"]), comparisons, title, meta)
        for r in reports:
            stem = "-".join(filter(None, [_slug(r.name), _slug(r.test_set)])) or "model"
            files[f"confusion {stem}"] = out / f"confusion-{stem}.png"
            save_confusion_png(r, stage(files[f"confusion {stem}"]))
            if reliability and r.meta.get("calibration"):
                files[f"reliability {stem}"] = out / f"reliability-{stem}.png"
                save_reliability_png(r, stage(files[f"reliability {stem}"]))
    return files


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


@dataclass
class ExperimentResult:
    """Where the study's outputs are, its headline numbers and the time each step took."""

    out: Path
    reports: list[Report]
    comparisons: list[Comparison]
    files: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def eval_folder(corpus: Path) -> tuple[Path, str | None]:
    """The evaluation split of a corpus: ``eval/`` when present, else the whole corpus."""
    return (corpus, "eval") if (corpus / "eval").is_dir() else (corpus, None)


def run_experiment(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    *,
    external: str | os.PathLike | None = None,
    method: str = "threshold",
    size: int = 256,
    params: dict[str, Any] | None = None,
    scheduler: Any = None,
    n_jobs: int | None = None,
    chunk: int = 1024,
    progress: StepProgress = None,
    features: Sequence[str] | None = None,
    feature_options: dict[str, Any] | None = None,
    labels=None,
    seed: int | None = None,
    matched: str = "auto",
    n_boot: int = 2000,
) -> ExperimentResult:
    """Datasets for train and eval, models with and without crystals, evaluation, comparison.

    ``features`` other than just ``mask`` runs these steps for every feature set and compares
    each with the mask baseline (`features.experiment.run_feature_experiment`, which takes
    ``feature_options``: mpp, max_side, stain, stain_reference; every set gets the same
    matched-data arm, seed and bootstrap).

    ``scheduler`` (see `parallel.run_tasks`) runs dataset building and, unless it is local
    threads (where the forest's own threads serve better), prediction as dask tasks.
    ``seed`` seeds the forests (else ``params``' ``random_state``, else 42) and the patient
    bootstrap (``n_boot`` resamples). ``matched`` adds the matched-data control arm (see
    `study.matched_dataset`): ``auto`` uses the corpus's ``matched/`` pool when there is one
    and resamples train's plain parents otherwise; ``pool``, ``resample`` or ``none``.

    Everything lands in ``out``: ``datasets/`` (reused on a rerun when inputs are unchanged),
    ``models/``, ``report.md``/``report.json`` laid out like the study's tables with a
    Methods section, confusion and reliability PNGs and ``timings.json``.
    """
    if features is not None and list(features) != ["mask"] and labels is not None:
        where = labels if isinstance(labels, str | os.PathLike) else None
        raise DatasetError(where, "a label map is not yet applied to feature-set experiments")
    if features is not None and list(features) != ["mask"]:  # several sets: the same steps
        from napari_crystal.features.experiment import run_feature_experiment  # per set

        return run_feature_experiment(
            corpus, out, features, external=external, method=method, size=size,
            params=params, scheduler=scheduler, n_jobs=n_jobs, chunk=chunk, progress=progress,
            seed=seed, matched=matched, n_boot=n_boot, **(feature_options or {}),
        )  # fmt: skip
    from napari_crystal.dataset import dependence_warning
    from napari_crystal.study import MATCHED_MODES, matched_dataset, methods_record

    corpus, out = Path(corpus), Path(out)
    if matched not in MATCHED_MODES:
        raise ValueError(f"matched must be one of {MATCHED_MODES}, not {matched!r}")
    if not (corpus / "train").is_dir():
        raise DatasetError(corpus, "corpus has no train/ folder (expected train/, dev/, eval/)")
    if not (corpus / "eval").is_dir():
        raise DatasetError(corpus, "corpus has no eval/ folder (expected train/, dev/, eval/)")
    if matched == "pool" and not (corpus / "matched").is_dir():
        raise DatasetError(corpus, "corpus has no matched/ folder for --matched pool")
    if external is not None and not Path(external).is_dir():
        raise DatasetError(external, "external corpus is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    params = dict(params or {})
    if seed is not None:
        params["random_state"] = int(seed)
    seed = int(params.get("random_state", 42))

    def step(name: str):
        return None if progress is None else (lambda done, total: progress(name, done, total))

    def timed(step_name: str, fn, /, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs, progress=step(step_name))
        timings[step_name] = round(time.perf_counter() - start, 3)
        return result

    sets = {"eval": (corpus, "eval")}
    if external is not None:
        sets[Path(external).name or "external"] = eval_folder(Path(external))
    data_opts = {"method": method, "size": size, "scheduler": scheduler, "labels": labels}
    train = timed(
        "dataset train",
        build_dataset,
        corpus,
        "train",
        out / "datasets" / "train.zarr",
        **data_opts,
    )
    tests = {
        name: timed(
            f"dataset {name}",
            build_dataset,
            root,
            split,
            out / "datasets" / f"{_slug(name)}.zarr",
            **data_opts,
        )  # fmt: skip
        for name, (root, split) in sets.items()
    }
    arms = [(WITH, "merge", train), (WITHOUT, "drop", train)]
    matched_info = None
    if matched != "none" and np.isin(train.labels, list(CRYSTAL_PARENT)).any():
        pool = None
        if matched in ("auto", "pool") and (corpus / "matched").is_dir():
            pool = timed(
                "dataset matched", build_dataset, corpus, "matched",
                out / "datasets" / "matched.zarr", **data_opts,
            )  # fmt: skip
        matched_train, matched_info = matched_dataset(train, pool, seed)
        arms.append((MATCHED, "drop", matched_train))
    warnings = [
        w
        for name, ds in tests.items()
        for w in [dependence_warning(train, ds, ("train", name))]
        if w is not None
    ]

    models = {}
    for name, crystals, data in arms:
        model = timed(
            f"train {name}", train_on_dataset, data, crystals=crystals, params=params,
            n_jobs=n_jobs,
        )  # fmt: skip
        save_model(model, out / "models" / f"{_slug(name)}.skops")
        models[name] = model

    pairs = [(WITH, WITHOUT)]
    if MATCHED in models:
        pairs += [(WITH, MATCHED), (MATCHED, WITHOUT)]
    reports, comparisons, all_evals = [], [], {}
    for test_name, dataset in tests.items():
        evals = {
            name: timed(
                f"evaluate {name} on {test_name}",
                evaluate_model,
                model,
                dataset,
                name=name,
                test_set=test_name,
                chunk=chunk,
                n_jobs=n_jobs,
                scheduler=None if scheduler_kind(scheduler) == "threads" else scheduler,
            )  # fmt: skip
            for name, model in models.items()
        }
        all_evals[test_name] = evals
        reports += [e.report for e in evals.values()]
        comparisons += [
            compare_evaluations(
                evals[a], evals[b], names=(a, b), test_set=test_name, n_boot=n_boot, seed=seed
            )
            for a, b in pairs
        ]
    methods = methods_record(
        corpus=corpus, train=train, models=models, evaluations=all_evals, seed=seed,
        n_boot=n_boot, matched=matched_info, warnings=warnings,
    )  # fmt: skip
    meta = {
        "corpus": str(corpus),
        "external": None if external is None else str(external),
        "method": method,
        "size": size,
        "train_patches": len(train),
        "train_class_counts": dict(models[WITH].class_counts),
        "test_patches": {name: len(ds) for name, ds in tests.items()},
        "timings_s": timings,
        "methods": methods,
    }
    files = write_reports(
        out, reports, comparisons, title="Crystal experiment", meta=meta, reliability=True
    )
    files["timings"] = out / "timings.json"
    atomic_write(files["timings"], (json.dumps(timings, indent=1) + "\n").encode())
    return ExperimentResult(out, reports, comparisons, files, timings, meta, warnings)


# ----------------------------------------------------------------- predictions on one slide


@dataclass
class SlidePredictions:
    """A model run on one open slide: its patches, predictions and, where labelled, report."""

    dataset: object
    predicted: np.ndarray
    proba: np.ndarray
    truth: np.ndarray
    evaluation: object | None
    missing: list[str]
    frame: int | None = None


def predict_slide(
    model,
    slide,
    annotation,
    *,
    patches: str = "regions",
    frame: int = 250,
    window: int = 500,
    threshold: float = 0.5,
    name: str = "",
    chunk: int = 1024,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    n_jobs: int | None = None,
    dataset=None,
    tissue: bool = False,
) -> SlidePredictions:
    """Masks of a slide's patches made the model's way, predicted, and evaluated where labelled.

    ``patches="regions"``: one patch per annotated region. ``"frames"``: NEDC frames over the
    whole slide; frames no region labels are predicted but not scored (no report when none is
    labelled); with ``tissue`` only frames on tissue (`tissue.tissue_mask`), not blank glass.
    ``slide`` is an open ``Slide`` or a path; ``annotation`` an ``Annotation``.
    ``dataset``: masks already made for this slide the same way (a second model's run).
    A model of an engineered feature set gets that set's rows instead of masks; patches too
    small for it (`features.sets.TOO_SMALL_RULE`) are left out.
    """
    from napari_crystal.dataset import Dataset, dataset_for_slide
    from napari_crystal.evaluation import model_truth, predict_chunked
    from napari_crystal.io.slide import open_slide
    from napari_crystal.patches import frame_patches

    if patches not in ("regions", "frames"):
        raise ValueError(f"patches must be 'regions' or 'frames', not {patches!r}")
    owned = isinstance(slide, (str, os.PathLike)) and dataset is None
    opened = open_slide(slide) if owned else slide
    try:
        if dataset is not None:
            if dataset.size != model.size or (model.method and dataset.method != model.method):
                raise ValueError("the given dataset's masks were not made the model's way")
        elif patches == "regions" and not annotation.regions:
            raise DatasetError(
                getattr(annotation, "source", None) or opened.path,
                "the annotation has no regions: use frames for an unannotated slide",
            )
        table = None
        if dataset is None and patches == "frames":
            mask = None
            if tissue:
                from napari_crystal.tissue import tissue_mask

                mask = tissue_mask(opened)
            table = frame_patches(
                annotation, opened.shape, frame, window, threshold, slide=str(opened.path),
                downsamples=list(opened.downsamples), size=model.size or 256, tissue=mask,
            )  # fmt: skip
        method = model.method or "threshold"
        channel = (model.meta or {}).get("channel") or "grey"
        steps = 2

        def step(k):
            if progress is None:
                return None
            return lambda done, total: progress(k * total + done, steps * total)

        features = (model.meta or {}).get("features")
        if dataset is None and features:
            from napari_crystal.features.build import feature_dataset_for_slide
            from napari_crystal.features.extract import FeatureSpec
            from napari_crystal.training import finite_rows

            dataset = feature_dataset_for_slide(
                opened, annotation, FeatureSpec.from_settings(features), patches=table,
                progress=step(0), cancel=cancel,
            )  # fmt: skip
            kept = finite_rows(dataset.packed)
            if not kept.all():
                dataset = Dataset(
                    dataset.table[kept], dataset.packed[kept], 0, dataset.method, dataset.meta
                )
        elif dataset is None:
            dataset = dataset_for_slide(
                opened, annotation, method, model.size, progress=step(0), cancel=cancel,
                channel=channel, patches=table,
            )  # fmt: skip
    finally:
        if owned:
            opened.close()
    truth_all = model_truth(model, dataset.labels)
    labelled = np.asarray(dataset.labels, dtype=str) != ""
    slide_name = getattr(opened, "path", slide)
    missing = check_classes(model, truth_all[labelled], where=slide_name)
    n = len(dataset)
    predicted = np.empty(n, dtype=object)
    proba = np.zeros((n, len(model.classes)), dtype=np.float32)
    evaluation = None
    if labelled.any():
        sub = Dataset(
            dataset.table[labelled], dataset.packed[labelled], dataset.size, dataset.method,
            dataset.meta,
        )  # fmt: skip
        evaluation = evaluate_model(
            model, sub, name=name, test_set=Path(str(slide_name)).stem, chunk=chunk,
            progress=step(1), cancel=cancel, n_jobs=n_jobs,
        )  # fmt: skip
        predicted[labelled] = evaluation.predicted
        proba[labelled] = evaluation.proba
    if (~labelled).any():
        pred, pr = predict_chunked(
            model, dataset.packed[~labelled], chunk=chunk, cancel=cancel, n_jobs=n_jobs
        )
        predicted[~labelled] = pred
        proba[~labelled] = pr
    if progress is not None:
        progress(1, 1)
    truth = np.where(labelled, truth_all, "")
    return SlidePredictions(
        dataset, predicted.astype(str), proba, truth, evaluation, missing,
        frame if patches == "frames" else None,
    )  # fmt: skip


def dataset_prediction_map(
    model,
    dataset,
    slide_path: str | os.PathLike,
    shape: Sequence[int] | None = None,
    annotation=None,
    *,
    evaluation=None,
    frame: int | None = None,
    max_side: int = MAX_SIDE,
    chunk: int = 1024,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    n_jobs: int | None = None,
) -> PredictionMap:
    """The `PredictionMap` of one slide's patches in a saved dataset.

    Uses ``evaluation`` (an `experiment.Evaluation` of the whole dataset) when given, else
    predicts this slide's patches with `experiment.evaluate_model`. Region patches get their
    polygons from ``annotation`` (checked to be the dataset's), else their boxes are filled.
    """
    from napari_crystal.dataset import Dataset

    where = (dataset.meta or {}).get("path") or (dataset.meta or {}).get("corpus")
    mine = rows_of_slide(dataset.table, slide_path, shape, dataset=where)
    rows, table = np.flatnonzero(mine), dataset.table[mine]
    if evaluation is None:
        from napari_crystal.evaluation import model_truth

        check_classes(model, model_truth(model, table.label), where=where)
        sub = Dataset(table, dataset.take(mine), dataset.size, dataset.method, dataset.meta)
        evaluation = evaluate_model(
            model, sub, chunk=chunk, progress=progress, cancel=cancel, n_jobs=n_jobs
        )
        n_rows, of_dataset = len(sub), np.arange(len(rows))
    else:
        n_rows, of_dataset = len(dataset), rows
    # a feature set's skipped patches (NaN rows) have no prediction: left out of the map
    measured = np.arange(n_rows) if evaluation.rows is None else np.asarray(evaluation.rows)
    if len(evaluation.predicted) != len(measured) or (len(measured) and measured[-1] >= n_rows):
        raise ValueError("the evaluation is not of this dataset")
    at = np.full(n_rows, -1, dtype=np.int64)
    at[measured] = np.arange(len(measured))
    pos = at[of_dataset]
    keep = pos >= 0
    not_measured = int((~keep).sum())
    table, pos = table[keep], pos[keep]
    predicted, truth = evaluation.predicted[pos], evaluation.truth[pos]
    proba = evaluation.proba[pos]
    polygons = None
    if annotation is not None and set(np.unique(table.kind).tolist()) == {"region"}:
        polygons = region_polygons(table, annotation)
    pmap = build_prediction_map(
        table, predicted, truth, proba, model.classes, polygons, shape,
        max_side=max_side, frame=frame,
    )  # fmt: skip
    pmap.not_measured = not_measured
    return pmap


# ------------------------------------------------ one or two models evaluated (CLI and widgets)


def model_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Display names of models from their files: the stems, ``stem (A)``/``stem (B)`` when
    two share one (as the report's A and B columns)."""
    names = [Path(p).stem for p in paths]
    if len(names) == 2 and names[0] == names[1]:
        names = [f"{n} ({ab})" for n, ab in zip(names, "AB", strict=True)]
    return names


def coverage_warning(name: str, missing: Sequence[str]) -> str:
    """The warning for data holding classes a model cannot predict (see `check_classes`)."""
    return (
        f"{name} cannot predict {', '.join(missing)} (not among its classes): "
        "those patches are all counted wrong"
    )


#: Said in an evaluation's Methods for a model file made before models recorded their data.
NOT_RECORDED = "training slides not recorded"


def training_overlap(model: Model, slides, patients) -> dict[str, Any] | None:
    """The evaluation data's slides and patients that ``model`` was trained on (from the
    record `train_on_dataset` stores), with the record's sizes; None when not recorded."""
    record = (model.meta or {}).get("training")
    if not isinstance(record, dict) or "slides" not in record:
        return None
    mine_s, mine_p = set(record.get("slides") or []), set(record.get("patients") or [])
    return {
        "slides": sorted(mine_s & ({str(s) for s in slides} - {""})),
        "patients": sorted(mine_p & ({str(p) for p in patients} - {""})),
        "n_slides": len(mine_s),
        "n_patients": len(mine_p),
    }


def _first(items: Sequence[str], k: int = 3) -> str:
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def training_overlap_warning(name: str, overlap: dict[str, Any] | None) -> str | None:
    """One line, reason first, when a model is evaluated on slides or patients it was
    trained on (its figures there are optimistic); else None."""
    if not overlap or not (overlap["slides"] or overlap["patients"]):
        return None
    s, p = overlap["slides"], overlap["patients"]
    where = f"{len(s)} of these slide(s) ({_first(s, 2)})" if s else "none of these slides"
    return (
        f"optimistic figures: {name} was trained on {where} and {len(p)} of these "
        f"patient(s) ({_first(p)}), so these patches are not independent of its training data"
    )


def _training_note(overlap: dict[str, Any] | None) -> str:
    """The Methods line of a model's training data against the evaluation data."""
    if overlap is None:
        return NOT_RECORDED
    seen = f"trained on {overlap['n_slides']} slide(s) of {overlap['n_patients']} patient(s)"
    if not (overlap["slides"] or overlap["patients"]):
        return f"{seen}; none of them is in the evaluation data"
    return (
        f"{seen}; {len(overlap['slides'])} slide(s) and {len(overlap['patients'])} patient(s) "
        "of them are in the evaluation data"
    )


@dataclass
class EvaluationRun:
    """One or two models evaluated on the same data: per model its evaluation (on a slide
    also its predictions) and, for two, their comparison."""

    names: list[str]
    models: list[Model]
    evaluations: list[Evaluation | None]
    comparison: Comparison | None = None
    missing: list[list[str]] = field(default_factory=list)
    dataset: Dataset | None = None
    dataset_path: str | None = None
    slide: list[SlidePredictions] = field(default_factory=list)
    annotation: Any = None
    slide_file: str | None = None
    shape: tuple[int, int] | None = None
    overlap: list[dict[str, Any] | None] = field(default_factory=list)

    @property
    def reports(self) -> list[Report]:
        """Reports of the models that could be scored."""
        return [e.report for e in self.evaluations if e is not None]

    @property
    def warnings(self) -> list[str]:
        """Per model, a `training_overlap_warning` when the data share slides or patients with
        its training data, and a `coverage_warning` when it cannot predict some classes."""
        shared = [
            training_overlap_warning(n, o) for n, o in zip(self.names, self.overlap, strict=False)
        ]
        return [w for w in shared if w] + [
            coverage_warning(n, m) for n, m in zip(self.names, self.missing, strict=True) if m
        ]

    def methods(self) -> dict[str, Any]:
        """The Methods record of this evaluation (`reports` renders it): data, each model's
        training data against it, scoring, versions, date and the warnings."""
        import datetime as _dt

        from napari_crystal.features import describe
        from napari_crystal.training import library_versions

        overlap = self.overlap or [None] * len(self.models)
        return {
            "kind": "evaluation",
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "data": self.dataset_path or self.slide_file,
            "models": {
                name: {
                    "file": model.path,
                    "crystals": model.crystals,
                    "features": describe((model.meta or {}).get("features"))
                    if (model.meta or {}).get("features")
                    else f"{model.method} masks {model.size}x{model.size}",
                    "training": _training_note(o),
                }
                for name, model, o in zip(self.names, self.models, overlap, strict=True)
            },
            "scoring": {
                n: e.scoring
                for n, e in zip(self.names, self.evaluations, strict=True)
                if e is not None and e.scoring
            },  # fmt: skip
            "versions": library_versions(),
            "warnings": self.warnings,
        }


def _load_models(models: Sequence[Model | str | os.PathLike], names: Sequence[str] | None):
    from napari_crystal.training import load_model

    loaded = [m if isinstance(m, Model) else load_model(m) for m in models]
    if not 1 <= len(loaded) <= 2:
        raise ValueError("evaluate one model or compare two")
    if names is None:
        names = model_names([m.path or f"model {k + 1}" for k, m in enumerate(loaded)])
    return loaded, list(names)


def _share(progress: Progress, k: int, n: int) -> Progress:
    """Progress of the ``k``-th of ``n`` equal parts, reported as progress of the whole."""
    return None if progress is None else (lambda d, t: progress(k * t + d, n * t))


def evaluate_models(
    models: Sequence[Model | str | os.PathLike],
    dataset: Dataset | str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    test_set: str | None = None,
    level: float = 0.95,
    chunk: int = 1024,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    n_jobs: int | None = None,
    scheduler: Any = None,
) -> EvaluationRun:
    """Evaluate one model, or compare two, on a dataset (what ``evaluate``/``compare`` run).

    Every model is checked against the data (mask size and method, classes in common) before
    the long work; ``missing`` lists the data's classes each model cannot predict. Models are
    files or loaded `Model`\\ s, named by `model_names` unless ``names`` are given.
    """
    from napari_crystal.dataset import load_dataset

    models, names = _load_models(models, names)
    path = None if isinstance(dataset, Dataset) else str(dataset)
    if path is not None:
        dataset = load_dataset(path)
    where = path or (dataset.meta or {}).get("path")
    if test_set is None:
        test_set = Path(str(where)).stem if where else ""
    missing = []
    for model in models:
        check_compatible(
            model, path=where, **_fit_checks(dataset.size, dataset.method, dataset.meta)
        )
        missing.append(check_classes(model, model_truth(model, dataset.labels), where))
    evaluations = [
        evaluate_model(
            model,
            dataset,
            name=name,
            test_set=test_set,
            chunk=chunk,
            progress=_share(progress, k, len(models)),
            cancel=cancel,
            n_jobs=n_jobs,
            scheduler=scheduler,
        )  # fmt: skip
        for k, (model, name) in enumerate(zip(models, names, strict=True))
    ]
    comparison = None
    if len(evaluations) == 2:
        comparison = compare_evaluations(
            *evaluations, names=tuple(names), level=level, test_set=test_set
        )
    seen = subjects_of(dataset)
    overlap = [training_overlap(m, seen["slides"], seen["patients"]) for m in models]
    return EvaluationRun(
        names, models, evaluations, comparison, missing, dataset, path, overlap=overlap
    )


def evaluate_models_on_slide(
    models: Sequence[Model | str | os.PathLike],
    slide_file: str | os.PathLike,
    annotation=None,
    *,
    shape: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    patches: str = "regions",
    frame: int = 250,
    window: int = 500,
    threshold: float = 0.5,
    level: float = 0.95,
    tissue: bool = False,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> EvaluationRun:
    """`predict_slide` for one or two models on one slide, scored where labelled, compared.

    Without an ``annotation`` the slide's NEDC frames are predicted (none is scored). Two
    models whose masks are made the same way share them. ``tissue``: frames on tissue only.
    """
    from napari_crystal.io.annotation import Annotation
    from napari_crystal.io.slide import open_slide

    models, names = _load_models(models, names)
    if annotation is None:
        annotation, patches = Annotation(regions=[], source=str(slide_file)), "frames"
    runs: list[SlidePredictions] = []
    with open_slide(slide_file) as slide:
        for k, (model, name) in enumerate(zip(models, names, strict=True)):
            same = [r for r, m in zip(runs, models, strict=False)
                    if (m.size, m.method) == (model.size, model.method)
                    and _same_rows(m, model)]  # fmt: skip
            runs.append(
                predict_slide(
                    model,
                    slide,
                    annotation,
                    patches=patches,
                    frame=frame,
                    window=window,
                    threshold=threshold,
                    name=name,
                    progress=_share(progress, k, len(models)),
                    cancel=cancel,
                    dataset=same[0].dataset if same else None,
                    tissue=tissue,
                )  # fmt: skip
            )
        if shape is None:
            shape = slide.shape
    evaluations = [r.evaluation for r in runs]
    comparison = None
    if len(runs) == 2 and all(e is not None for e in evaluations):
        if len(evaluations[0].truth) == len(evaluations[1].truth):
            comparison = compare_evaluations(
                *evaluations, names=tuple(names), level=level, test_set=Path(slide_file).stem
            )
    data = runs[0].dataset
    seen = subjects_of(data)
    overlap = [training_overlap(m, seen["slides"], seen["patients"]) for m in models]
    return EvaluationRun(
        names, models, evaluations, comparison, [r.missing for r in runs], data,
        None, runs, annotation, str(slide_file), (int(shape[0]), int(shape[1])), overlap,
    )  # fmt: skip


def _same_rows(a: Model, b: Model) -> bool:
    """Whether two models read patches the same way (mask channel, feature settings)."""
    from napari_crystal.features import same_settings

    ma, mb = a.meta or {}, b.meta or {}
    return ma.get("channel") == mb.get("channel") and same_settings(
        ma.get("features"), mb.get("features")
    )


def run_prediction_map(
    run: EvaluationRun,
    slide_file: str | os.PathLike,
    shape: Sequence[int] | None = None,
    annotation=None,
    *,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> PredictionMap:
    """The first model's `PredictionMap` on a slide, from an `EvaluationRun`.

    A slide run's own predictions are laid out directly; a dataset run's are those of the
    slide's patches in the dataset (see `dataset_prediction_map`).
    """
    model = run.models[0]
    if run.slide:
        pred = run.slide[0]
        table = pred.dataset.table
        polygons = None
        if annotation is not None and set(np.unique(table.kind).tolist()) == {"region"}:
            polygons = region_polygons(table, annotation)
        return build_prediction_map(
            table, pred.predicted, pred.truth, pred.proba, model.classes, polygons, shape,
            frame=pred.frame,
        )  # fmt: skip
    return dataset_prediction_map(
        model, run.dataset, slide_file, shape, annotation, evaluation=run.evaluations[0],
        progress=progress, cancel=cancel,
    )  # fmt: skip
