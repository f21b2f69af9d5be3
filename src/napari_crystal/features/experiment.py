"""The crystal study over several feature sets: each trained with and without crystals,
evaluated on the same patches, and compared with the flattened-mask baseline.

`run_feature_experiment` loops over the sets around the steps of `napari_crystal.experiment`
(dataset, train, evaluate, compare), so every set gets the same statistics; comparisons with
``mask`` are paired on the patches the set could measure (skipped ones are counted).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_crystal._atomic import atomic_path, atomic_write
from napari_crystal.dataset import build_dataset
from napari_crystal.errors import DatasetError
from napari_crystal.features.build import build_feature_datasets
from napari_crystal.features.extract import (
    DEFAULT_MAX_SIDE,
    DEFAULT_MPP,
    FEATURE_SETS,
    FeatureSpec,
)
from napari_crystal.features.stain import StainNormaliser, fit_stain_on_slide

TOP_FEATURES = 10


def parse_feature_sets(text: str | Sequence[str]) -> list[str]:
    """``"mask,texture"`` -> ``["mask", "texture"]``; ``mask`` always first (the baseline)."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    bad = [n for n in names if n not in FEATURE_SETS]
    if bad:
        raise ValueError(f"unknown feature set(s) {', '.join(bad)}; expected {FEATURE_SETS}")
    rest = [n for n in dict.fromkeys(names) if n != "mask"]
    return ["mask", *rest]


def importance_summary(model, top: int = TOP_FEATURES) -> list[tuple[str, float]]:
    """The forest's ``top`` most important features by name (mask pixels as ``px(row,col)``)."""
    imp = np.asarray(model.estimator.feature_importances_, dtype=float)
    names = (model.meta or {}).get("feature_names")
    if not (model.meta or {}).get("features") or not names:
        size = int(model.size)
        names = None
    order = np.argsort(imp)[::-1][:top]
    out = []
    for i in order:
        name = names[i] if names is not None else f"px({i // size},{i % size})"
        out.append((str(name), float(imp[i])))
    return out


def _restrict(evaluation, rows: np.ndarray | None):
    """An evaluation of all rows cut to ``rows`` (for a paired comparison on shared patches)."""
    from napari_crystal.experiment import Evaluation

    if rows is None:
        return evaluation
    patients = None if evaluation.patients is None else evaluation.patients[rows]
    return Evaluation(
        evaluation.report, evaluation.predicted[rows], evaluation.proba[rows],
        evaluation.truth[rows], rows, evaluation.scoring, evaluation.classes, patients,
    )  # fmt: skip


def run_feature_experiment(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    features: Sequence[str] | str = ("mask", "texture"),
    *,
    external: str | os.PathLike | None = None,
    method: str = "threshold",
    size: int = 256,
    mpp: float = DEFAULT_MPP,
    max_side: int = DEFAULT_MAX_SIDE,
    stain: str | None = None,
    stain_reference: str | os.PathLike | None = None,
    params: dict[str, Any] | None = None,
    scheduler: Any = None,
    n_jobs: int | None = None,
    chunk: int = 1024,
    progress=None,
    seed: int | None = None,
    matched: str = "auto",
    n_boot: int = 2000,
):
    """Datasets, models with and without crystals, evaluation and comparisons for each set.

    Every set also gets the matched-data control arm (``matched`` as in
    `experiment.run_experiment`, drawn by `study.matched_dataset` from that set's own rows):
    without crystals plus as many plain parents as the crystals added, so each set's
    "with - matched" separates the crystals from the extra data. ``seed`` seeds the forests
    (else ``params``' ``random_state``, else 42), the matched draw and the patient bootstrap
    (``n_boot`` resamples).

    ``stain`` ("macenko" or "reinhard") is fitted once on ``stain_reference`` (a slide; default
    the first training slide) and applied before colour, texture and multiscale features.
    Outputs in ``out``: ``datasets/<set>-<split>.zarr`` (mask: ``<split>.zarr``),
    ``models/<set>-with-crystals.skops`` etc., ``report.md``/``report.json`` (Methods, every
    model, comparisons, a feature-set section with importances) and ``timings.json``. The
    feature sets' datasets of a split are made together, each region read once for all of
    them (one timing step, e.g. ``dataset texture,colour eval``).
    """
    from napari_crystal.dataset import dependence_warning
    from napari_crystal.experiment import (
        MATCHED,
        WITH,
        WITHOUT,
        ExperimentResult,
        _slug,
        compare_evaluations,
        eval_folder,
        evaluate_model,
        train_on_dataset,
        write_reports,
    )
    from napari_crystal.palette import CRYSTAL_PARENT
    from napari_crystal.parallel import scheduler_kind
    from napari_crystal.study import MATCHED_MODES, matched_dataset, methods_record
    from napari_crystal.training import save_model

    corpus, out = Path(corpus), Path(out)
    sets_ = parse_feature_sets(features)
    if matched not in MATCHED_MODES:
        raise ValueError(f"matched must be one of {MATCHED_MODES}, not {matched!r}")
    if matched == "pool" and not (corpus / "matched").is_dir():
        raise DatasetError(corpus, "corpus has no matched/ folder for --matched pool")
    params = dict(params or {})
    if seed is not None:
        params["random_state"] = int(seed)
    seed = int(params.get("random_state", 42))
    for split in ("train", "eval"):
        if not (corpus / split).is_dir():
            raise DatasetError(
                corpus, f"corpus has no {split}/ folder (expected train/, dev/, eval/)"
            )
    if external is not None and not Path(external).is_dir():
        raise DatasetError(external, "external corpus is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(step_name: str, fn, /, *args, **kwargs):
        start = time.perf_counter()
        cb = None if progress is None else (lambda d, t: progress(step_name, d, t))
        result = fn(*args, **kwargs, progress=cb)
        timings[step_name] = round(time.perf_counter() - start, 3)
        return result

    normaliser: StainNormaliser | None = None
    if stain:
        from napari_crystal.dataset import slide_files

        ref = stain_reference or next(iter(slide_files(corpus / "train")), None)
        if ref is None:
            raise DatasetError(corpus / "train", "no slide to fit the stain normalisation on")
        normaliser = fit_stain_on_slide(stain, ref)

    tests_at = {"eval": (corpus, "eval")}
    if external is not None:
        tests_at[Path(external).name or "external"] = eval_folder(Path(external))

    feature_sets = [fs for fs in sets_ if fs != "mask"]
    built: dict[tuple[str, str], Any] = {}  # (set, name) -> dataset

    def one(fs: str, root, split, name):
        """The ``fs`` dataset of ``root/split``, saved as ``datasets/[<fs>-]<name>.zarr``;
        the feature sets' are made together, reading each region once for all of them."""
        if fs == "mask":
            return timed(
                f"dataset mask {name}", build_dataset, root, split,
                out / "datasets" / f"{_slug(name)}.zarr", method=method, size=size,
                scheduler=scheduler,
            )  # fmt: skip
        if (fs, name) not in built:
            targets = {
                out / "datasets" / f"{f}-{_slug(name)}.zarr": FeatureSpec(
                    f, mpp=mpp, max_side=max_side, stain=normaliser
                )
                for f in feature_sets
            }
            made = timed(
                f"dataset {','.join(feature_sets)} {name}", build_feature_datasets, root,
                split, targets, scheduler=scheduler,
            )  # fmt: skip
            built.update({(f, name): ds for f, ds in zip(feature_sets, made, strict=True)})
        return built[fs, name]

    def datasets(fs: str):
        train = one(fs, corpus, "train", "train")
        return train, {n: one(fs, r, s, n) for n, (r, s) in tests_at.items()}

    def matched_arm(fs: str, train):
        """This set's matched-data training set and its record (None: no arm)."""
        if matched == "none" or not np.isin(train.labels, list(CRYSTAL_PARENT)).any():
            return None, None
        pool = None
        if matched in ("auto", "pool") and (corpus / "matched").is_dir():
            pool = one(fs, corpus, "matched", "matched")
        return matched_dataset(train, pool, seed)

    reports, comparisons, summary = [], [], []
    evals_by: dict[tuple[str, str, str], Any] = {}
    all_models: dict[str, Any] = {}
    matched_by_set: dict[str, Any] = {}
    warnings: list[str] = []
    mask_train = None
    pairs = [(WITH, WITHOUT), (WITH, MATCHED), (MATCHED, WITHOUT)]
    predict_scheduler = None if scheduler_kind(scheduler) == "threads" else scheduler
    for fs in sets_:
        train, tests = datasets(fs)
        if fs == "mask":
            mask_train = train
            warnings = [
                w
                for name, ds in tests.items()
                for w in [dependence_warning(train, ds, ("train", name))]
                if w is not None
            ]
        arms = [(WITH, "merge", train), (WITHOUT, "drop", train)]
        matched_train, matched_info = matched_arm(fs, train)
        if matched_train is not None:
            arms.append((MATCHED, "drop", matched_train))
            matched_by_set[fs] = matched_info
        models = {}
        for crystal, policy, data in arms:
            name = f"{fs} {crystal}"
            model = timed(
                f"train {name}", train_on_dataset, data, crystals=policy, params=params,
                n_jobs=n_jobs,
            )  # fmt: skip
            save_model(model, out / "models" / f"{fs}-{_slug(crystal)}.skops")
            models[crystal] = model
            all_models[name] = model
        for test_name, ds in tests.items():
            for crystal, model in models.items():
                name = f"{fs} {crystal}"
                ev = timed(
                    f"evaluate {name} on {test_name}", evaluate_model, model, ds, name=name,
                    test_set=test_name, chunk=chunk, n_jobs=n_jobs,
                    scheduler=None if fs != "mask" else predict_scheduler,
                )  # fmt: skip
                evals_by[(fs, crystal, test_name)] = ev
                reports.append(ev.report)
            for a, b in pairs:
                if a not in models or b not in models:
                    continue
                comparisons.append(
                    compare_evaluations(
                        evals_by[(fs, a, test_name)], evals_by[(fs, b, test_name)],
                        names=(f"{fs} {a}", f"{fs} {b}"), test_set=test_name, n_boot=n_boot,
                        seed=seed,
                    )
                )  # fmt: skip
            if fs != "mask":
                for crystal in (WITH, WITHOUT):
                    mine = evals_by[(fs, crystal, test_name)]
                    base = _restrict(evals_by[("mask", crystal, test_name)], mine.rows)
                    comparisons.append(
                        compare_evaluations(
                            mine, base, names=(f"{fs} {crystal}", f"mask {crystal}"),
                            test_set=test_name, n_boot=n_boot, seed=seed,
                        )
                    )  # fmt: skip
        summary.append(
            {
                "feature_set": fs,
                "n_features": int(models[WITH].estimator.n_features_in_),
                "settings": (train.meta or {}).get("features"),
                "skipped": {
                    "train": (train.meta or {}).get("skipped"),
                    **{n: (d.meta or {}).get("skipped") for n, d in tests.items()},
                },
                "importance": {c: importance_summary(m) for c, m in models.items()},
                "matched": matched_info,
            }
        )
    from napari_crystal.study import synthetic_info

    evaluations: dict[str, dict[str, Any]] = {}
    for (fs, crystal, test_name), ev in evals_by.items():
        evaluations.setdefault(test_name, {})[f"{fs} {crystal}"] = ev
    methods = methods_record(
        corpus=corpus, train=mask_train, models=all_models, evaluations=evaluations, seed=seed,
        n_boot=n_boot, matched=matched_by_set.get("mask"), warnings=warnings,
    )  # fmt: skip
    methods["feature_sets"] = {
        item["feature_set"]: {"settings": item["settings"], "matched": item["matched"]}
        for item in summary
    }
    meta = {
        "corpus": str(corpus),
        "synthetic": synthetic_info(corpus),
        "methods": methods,
        "external": None if external is None else str(external),
        "method": method,
        "size": size,
        "feature_sets": sets_,
        "mpp": mpp,
        "stain": None if normaliser is None else normaliser.to_dict(),
        "feature_summary": summary,
        "timings_s": timings,
    }
    files = write_reports(
        out, reports, comparisons, title="Crystal experiment: feature sets", meta=meta
    )
    from napari_crystal.reports import feature_sets_markdown

    section = feature_sets_markdown(summary, reports, comparisons)
    md = files["markdown"]
    text = md.read_text()
    with atomic_path(md) as tmp:
        tmp.write_text(text.rstrip("\n") + "\n\n" + section)
    files["timings"] = out / "timings.json"
    atomic_write(files["timings"], (json.dumps(timings, indent=1) + "\n").encode())
    return ExperimentResult(out, reports, comparisons, files, timings, meta, warnings)
