"""``dataset``, ``train``, ``evaluate``, ``compare`` and ``experiment``: the study from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_crystal.cli import _args, warn
from napari_crystal.cli._progress import StepBars, progress_bar
from napari_crystal.palette import count_by_class

SCHEDULER_HELP = (
    "dask scheduler: threads (default, all cores), processes, sync, or a dask.distributed "
    "address such as tcp://host:8786"
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _labels_option(p: argparse.ArgumentParser) -> None:
    from napari_crystal.cli._annotations import add_labels_option

    add_labels_option(p)


def _forest_params(args: argparse.Namespace) -> dict:
    params = {}
    if args.trees is not None:
        params["n_estimators"] = args.trees
    if args.max_depth is not None:
        params["max_depth"] = args.max_depth
    if args.seed is not None:
        params["random_state"] = args.seed
    return params


def _forest_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trees", type=_args.positive_int, help="number of trees (default 100, the paper's)"
    )
    p.add_argument("--max-depth", type=_args.positive_int, help="tree depth limit (default none)")
    p.add_argument("--seed", type=_args.seed, help="random seed (default 42)")
    p.add_argument(
        "--jobs", type=_args.jobs, default=-1, help="threads for the forest (default all)"
    )


def _feature_options(p: argparse.ArgumentParser, several: bool = False) -> None:
    from napari_crystal.features import DEFAULT_MPP, FEATURE_SETS
    from napari_crystal.features.extract import DEFAULT_MAX_SIDE

    if several:
        p.add_argument(
            "--features", default="mask", metavar="SET[,SET...]",
            help=f"feature sets to compare with the mask baseline ({', '.join(FEATURE_SETS)}); "
            "default mask only",
        )  # fmt: skip
    else:
        p.add_argument(
            "--features", choices=FEATURE_SETS, default="mask",
            help="feature set: mask (flattened packed masks, the study's; default) or an "
            "engineered set read at --mpp",
        )  # fmt: skip
    p.add_argument(
        "--mpp", type=_args.positive_float, default=DEFAULT_MPP,
        help=f"micrometres per pixel the regions are read at (default {DEFAULT_MPP:g})",
    )  # fmt: skip
    p.add_argument(
        "--max-side", type=_args.positive_int, default=DEFAULT_MAX_SIDE,
        help=f"largest crop side at --mpp; bigger regions use their centre (default {DEFAULT_MAX_SIDE})",
    )  # fmt: skip
    p.add_argument(
        "--stain", choices=("macenko", "reinhard"),
        help="stain normalisation applied before colour, texture and multiscale features",
    )  # fmt: skip
    p.add_argument(
        "--stain-reference", type=Path, metavar="SLIDE",
        help="slide the stain normalisation is fitted on (default: the first training slide)",
    )  # fmt: skip


def _feature_spec(args: argparse.Namespace, corpus: Path):
    """The FeatureSpec the options describe (None for mask), stain fitted on its reference."""
    from napari_crystal.dataset import slide_files
    from napari_crystal.features.build import feature_spec

    if args.features == "mask":
        return None
    ref = args.stain_reference or (next(iter(slide_files(corpus)), None) if args.stain else None)
    return feature_spec(
        args.features, mpp=args.mpp, max_side=args.max_side, stain=args.stain, reference=ref
    )


def _prediction_options(p) -> None:
    """--jobs and --scheduler of the commands that predict (evaluate, compare)."""
    p.add_argument(
        "--jobs", type=_args.jobs, default=-1, help="threads for prediction (default all)"
    )
    p.add_argument(
        "--scheduler",
        type=_args.scheduler,
        default=None,
        help="predict as dask tasks: " + SCHEDULER_HELP,
    )


def register(subparsers) -> None:
    """Add the pipeline commands."""
    p = subparsers.add_parser(
        "dataset", help="masks of every annotated region of a corpus split, packed in a dataset"
    )
    p.add_argument("corpus", type=Path, metavar="CORPUS")
    p.add_argument(
        "--split",
        type=_args.split_name,
        default="train",
        help="train, dev or eval (default train)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DATASET", help="dataset (.zarr)")
    p.add_argument("--method", choices=("threshold", "polygon"), default="threshold")
    p.add_argument(
        "--size", type=_args.mask_size, default=256, help="mask side in pixels (default 256)"
    )
    p.add_argument("--scheduler", type=_args.scheduler, default=None, help=SCHEDULER_HELP)
    _feature_options(p)
    _labels_option(p)
    _common(p)
    p.set_defaults(func=run_dataset)

    p = subparsers.add_parser("train", help="train a balanced random forest on a dataset")
    p.add_argument("dataset", type=Path, metavar="DATASET")
    p.add_argument(
        "--out", type=_args.output_file, required=True, metavar="MODEL", help="model (.skops)"
    )
    p.add_argument(
        "--crystals",
        choices=("merge", "keep", "drop"),
        default="merge",
        help="crystal labels: merged into their parents (default), kept apart, or dropped",
    )
    _forest_options(p)
    _common(p)
    p.set_defaults(func=run_train)

    p = subparsers.add_parser("evaluate", help="per-class evaluation of a model on a dataset")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("dataset", type=Path, metavar="DATASET")
    p.add_argument("--out", type=_args.new_folder, required=True, metavar="REPORT_DIR")
    _prediction_options(p)
    _common(p)
    p.set_defaults(func=run_evaluate)

    p = subparsers.add_parser("compare", help="compare two models on the same dataset")
    p.add_argument("model_a", type=Path, metavar="MODEL_A")
    p.add_argument("model_b", type=Path, metavar="MODEL_B")
    p.add_argument("dataset", type=Path, metavar="DATASET")
    p.add_argument("--out", type=_args.new_folder, required=True, metavar="REPORT_DIR")
    p.add_argument(
        "--level", type=_args.level, default=0.95, help="confidence level (default 0.95)"
    )
    _prediction_options(p)
    _common(p)
    p.set_defaults(func=run_compare)

    p = subparsers.add_parser(
        "experiment", help="the whole crystal study: datasets, two models, evaluation, comparison"
    )
    p.add_argument("corpus", type=Path, metavar="CORPUS")
    p.add_argument("--out", type=_args.new_folder, required=True, metavar="REPORT_DIR")
    p.add_argument("--external", type=Path, metavar="CORPUS2", help="external test corpus")
    p.add_argument("--method", choices=("threshold", "polygon"), default="threshold")
    p.add_argument("--size", type=_args.mask_size, default=256)
    p.add_argument("--scheduler", type=_args.scheduler, default=None, help=SCHEDULER_HELP)
    _feature_options(p, several=True)
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat over N seeds (forest, bootstrap and, for a synthetic corpus, the corpus "
        "itself); OUT gets seed-*/ and summary.md (default 1)",
    )
    p.add_argument(
        "--matched",
        choices=("auto", "pool", "resample", "none"),
        default="auto",
        help="matched-data control arm: the corpus's matched/ pool (auto when present), "
        "train's plain parents resampled, or none (default auto)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=2000, help="patient bootstrap resamples (default 2000)"
    )
    _forest_options(p)
    _labels_option(p)
    _common(p)
    p.set_defaults(func=run_experiment_cmd)


def run_dataset(args: argparse.Namespace) -> int:
    from napari_crystal.dataset import build_dataset

    spec = _feature_spec(args, args.corpus / args.split if args.split else args.corpus)
    if spec is not None:
        from napari_crystal.features.build import build_feature_dataset
        from napari_crystal.features.extract import describe

        with progress_bar(f"{spec.name} {args.split}", "patch", args.quiet) as progress:
            ds = build_feature_dataset(
                args.corpus, args.split, args.out, spec, progress=progress,
                scheduler=args.scheduler, labels=args.labels,
            )  # fmt: skip
        skipped = ds.meta.get("skipped") or {}
        print(f"{args.out}: {len(ds)} patches, {describe(ds.meta['features'])}")
        print(f"  {ds.packed.shape[1]} features; skipped: {sum(skipped.values())} {skipped}")
        print("  " + ", ".join(f"{k} {v}" for k, v in count_by_class(ds.labels).items()))
        return 0
    with progress_bar(f"dataset {args.split}", "patch", args.quiet) as progress:
        ds = build_dataset(
            args.corpus,
            args.split,
            args.out,
            method=args.method,
            size=args.size,
            progress=progress,
            scheduler=args.scheduler,
            labels=args.labels,
        )
    counts = count_by_class(ds.labels)
    print(f"{args.out}: {len(ds)} patches, {args.size}x{args.size} {args.method} masks")
    print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from napari_crystal.dataset import load_dataset
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.training import save_model

    ds = load_dataset(args.dataset)
    with progress_bar(f"train ({args.crystals})", "tree", args.quiet) as progress:
        model = train_on_dataset(
            ds, crystals=args.crystals, params=_forest_params(args), progress=progress,
            n_jobs=args.jobs,
        )  # fmt: skip
    save_model(model, args.out)
    print(
        f"{args.out}: {len(model.classes)} classes, trained on {sum(model.class_counts.values())} patches"
    )
    print("  " + ", ".join(f"{k} {v}" for k, v in model.class_counts.items()))
    return 0


def _evaluate_models(paths: list[Path], args: argparse.Namespace, **kwargs):
    """`experiment.evaluate_models` with a progress bar; coverage warnings printed first."""
    from napari_crystal.experiment import evaluate_models, model_names

    names = model_names(paths)
    with progress_bar(f"predict {' and '.join(names)}", "patch", args.quiet) as progress:
        run = evaluate_models(
            paths, args.dataset, names=names, progress=progress, n_jobs=args.jobs,
            scheduler=args.scheduler, **kwargs,
        )  # fmt: skip
    for text in run.warnings:
        warn(text)
    return run


def run_evaluate(args: argparse.Namespace) -> int:
    from napari_crystal.experiment import write_reports

    run = _evaluate_models([args.model], args)
    files = write_reports(
        args.out, run.reports, title=f"Evaluation of {args.model.name}",
        meta={"methods": run.methods()},
    )  # fmt: skip
    r = run.reports[0]
    print(f"{r.correct}/{r.n} correct, accuracy {100 * r.accuracy:.1f}%")
    print(f"report: {files['markdown']}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from napari_crystal.experiment import write_reports
    from napari_crystal.reports import comparison_text

    run = _evaluate_models([args.model_a, args.model_b], args, level=args.level)
    name_a, name_b = run.names
    files = write_reports(
        args.out, run.reports, [run.comparison], title=f"{name_a} against {name_b}",
        meta={"methods": run.methods()},
    )  # fmt: skip
    print(comparison_text(run.comparison))
    print(f"report: {files['markdown']}")
    return 0


def run_experiment_cmd(args: argparse.Namespace) -> int:
    from napari_crystal.cli import fail
    from napari_crystal.features.experiment import parse_feature_sets
    from napari_crystal.reports import comparison_text, methods_summary

    try:
        features = parse_feature_sets(args.features)
    except ValueError as exc:
        return fail(str(exc))
    if args.seeds < 1:
        return fail(f"--seeds must be at least 1, got {args.seeds}")
    if args.bootstrap < 1:
        return fail(f"--bootstrap must be at least 1, got {args.bootstrap}")
    feature_options = {"mpp": args.mpp, "max_side": args.max_side, "stain": args.stain,
                       "stain_reference": args.stain_reference}  # fmt: skip
    options = {
        "external": args.external,
        "method": args.method,
        "size": args.size,
        "params": _forest_params(args),
        "scheduler": args.scheduler,
        "n_jobs": args.jobs,
        "matched": args.matched,
        "n_boot": args.bootstrap,
        "features": None if features == ["mask"] else features,
        "feature_options": None if features == ["mask"] else feature_options,
        "labels": args.labels,
    }
    if args.seeds > 1:
        from napari_crystal.study import run_seeds

        if args.seed is not None:
            return fail("--seed and --seeds together: --seeds takes its seeds from the corpus")
        options["params"].pop("random_state", None)
        with StepBars(args.quiet) as bars:
            result = run_seeds(args.corpus, args.out, args.seeds, progress=bars, **options)
        for w in sorted({w for run in result.runs for w in run.warnings}):
            warn(w)
        for line in methods_summary(result.summary.get("methods") or {}):
            print(line)
        for note in result.notes:
            print(f"note: {note}")
        for test, t in result.summary["tests"].items():
            for key, e in t["comparisons"].items():
                d = e["difference"]
                print(
                    f"{test}: {key}: mean {100 * d['mean']:+.2f} pp (SD {100 * d['sd']:.2f}, "
                    f"{len(result.seeds)} seeds), 95% interval of the mean "
                    f"[{100 * d['lo']:+.2f}, {100 * d['hi']:+.2f}]"
                )
        print(f"summary: {result.files['markdown']}")
        return 0
    from napari_crystal.experiment import run_experiment

    with StepBars(args.quiet) as bars:
        result = run_experiment(args.corpus, args.out, progress=bars, **options)
    for w in result.warnings:
        warn(w)
    if result.meta.get("methods"):
        for line in methods_summary(result.meta["methods"]):
            print(line)
    else:  # a feature-set run records its settings in the report, not a Methods record
        syn = result.meta.get("synthetic")
        kind = f"synthetic {syn.get('preset')}, effect {syn.get('effect')}" if syn else "real"
        print(f"corpus: {result.meta.get('corpus')} ({kind})")
    for r in result.reports:
        print(
            f"{r.test_set}: {r.name}: {r.correct}/{r.n} correct, accuracy {100 * r.accuracy:.1f}%"
        )
    for c in result.comparisons:
        print(comparison_text(c))
    print("steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    print(f"report: {result.files['markdown']}")
    return 0
