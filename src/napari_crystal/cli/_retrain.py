"""``retrain``: a model trained again with a corrected annotation, then evaluated (one round of
the overlay's *Retrain and re-evaluate*, over the same `correction.retrain_on_annotation`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_crystal.cli import _args, fail, warn
from napari_crystal.cli._progress import progress_bar


def register(subparsers) -> None:
    """Add the ``retrain`` command."""
    p = subparsers.add_parser(
        "retrain",
        help="train a model again with a slide's corrected annotation, and evaluate it",
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="the model to retrain (.skops)")
    p.add_argument("slide", type=Path, metavar="SLIDE")
    p.add_argument(
        "annotation", type=Path, metavar="ANNOTATION",
        help="the slide's corrected annotation (NEDC CSV/XML, ImageScope, ASAP, GeoJSON)",
    )  # fmt: skip
    p.add_argument(
        "--out", type=_args.output_file, metavar="NEW_MODEL",
        help="where the new model goes (default MODEL's <stem>-round<N>.skops beside it)",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace NEW_MODEL if it exists")
    p.add_argument(
        "--eval", type=Path, nargs="+", metavar="DATASET",
        help="evaluate on these dataset files (default: SLIDE with the corrected annotation)",
    )  # fmt: skip
    p.add_argument(
        "--regions", type=_region_ids, metavar="ID[,ID...]",
        help="ids of the corrected regions (default: those whose label differs from the "
        "model's training data; every region of a slide it was not trained on)",
    )  # fmt: skip
    p.add_argument(
        "--slide-only", action="store_true",
        help="train on this slide's regions only, not the model's training dataset",
    )  # fmt: skip
    p.add_argument("--report", type=_args.new_folder, metavar="DIR", help="write a report")
    p.add_argument(
        "--jobs", type=_args.jobs, default=-1, help="threads for the forest (default all)"
    )
    from napari_crystal.cli._annotations import add_labels_option

    add_labels_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_retrain)


def _region_ids(text: str) -> list[int]:
    """``4,9,11``: region ids (whole numbers >= 0)."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts or not all(t.isdigit() for t in parts):
        raise argparse.ArgumentTypeError(f"must be region ids such as 4,9,11, got {text!r}")
    return sorted({int(t) for t in parts})


def next_round(model_path: Path) -> Path:
    """The default output: ``<stem>-round<N+1>`` for a round-N model, ``-round2`` for others."""
    from napari_crystal.correction import round_path

    head, sep, tail = model_path.stem.rpartition("-round")
    number = int(tail) + 1 if sep and tail.isdigit() else 2
    return round_path(model_path, number)


def run_retrain(args: argparse.Namespace) -> int:
    from napari_crystal.correction import MODEL_DATASET, retrain_on_annotation, score_round
    from napari_crystal.errors import AnnotationError
    from napari_crystal.io import read_annotation
    from napari_crystal.io.annotation import check_annotation_bounds
    from napari_crystal.io.slide import open_slide
    from napari_crystal.training import load_model

    for path in (args.model, args.slide, args.annotation, *(args.eval or ())):
        if not path.exists():
            return fail(f"{path}: no such file")
    out = args.out or next_round(args.model)
    if out.resolve() == args.model.resolve():
        return fail(f"{out}: is the model being retrained; give another --out")
    if out.exists() and not args.force:
        return fail(f"{out}: exists; use --force to replace it")
    model = load_model(args.model)  # ModelError: not a model
    if args.eval:
        from napari_crystal.dataset import load_dataset

        for path in args.eval:
            load_dataset(path)  # DatasetError: not a dataset
    annotation = read_annotation(args.annotation, labels=args.labels)
    with open_slide(args.slide) as opened:
        shape = opened.shape
    check_annotation_bounds(annotation, shape, args.slide.name)
    ids = sorted({int(r.region_id) for r in annotation.regions})
    if not ids:
        raise AnnotationError(args.annotation, "no regions: nothing to retrain with")
    regions = args.regions
    if regions is not None and not set(regions) <= set(ids):
        missing = ", ".join(str(r) for r in sorted(set(regions) - set(ids)))
        return fail(f"{args.annotation}: no region with id {missing}")
    trained_on = ((model.meta or {}).get("training") or {}).get("slides") or []
    if regions is None and not args.slide_only and args.slide.stem not in trained_on:
        regions = ids  # a slide new to the model: all its regions join the training set
    with progress_bar(f"retrain {args.model.name}", "step", args.quiet) as progress:
        result = retrain_on_annotation(
            model, args.slide, annotation, out, regions=regions,
            base=None if args.slide_only else MODEL_DATASET,
            evaluate_on=args.eval[0] if args.eval else None, shape=shape, n_jobs=args.jobs,
            progress=progress,
        )  # fmt: skip
    for text in result.warnings:
        warn(text)
    runs = [result.run]
    if args.eval and len(args.eval) > 1:
        from napari_crystal.experiment import evaluate_models

        for path in args.eval[1:]:
            with progress_bar(f"evaluate on {path.name}", "patch", args.quiet) as progress:
                run = evaluate_models([result.path], path, names=[out.stem], progress=progress)
            for text in run.warnings:
                warn(text)
            runs.append(run)
    print(
        f"{result.path}: {result.n_train} training patches ({result.added} from "
        f"{args.annotation.name})"
    )
    optimistic = any("optimistic" in w for w in result.warnings)
    r = score_round(result.pmap, 2, out.name, result.added, "optimistic" if optimistic else "")
    if r.n:
        note = f" ({r.note})" if r.note else ""
        print(f"{args.slide.name}: {r.n - r.wrong}/{r.n} correct, accuracy {100 * r.accuracy:.1f}%{note}")  # fmt: skip
    for path, run in zip(args.eval or (), runs, strict=False):
        rep = run.reports[0]
        print(f"{path}: {rep.correct}/{rep.n} correct, accuracy {100 * rep.accuracy:.1f}%")
    if args.report is not None:
        from napari_crystal.experiment import write_reports

        reports = [rep for run in runs for rep in run.reports]
        files = write_reports(
            args.report, reports, title=f"Evaluation of {out.name} (retrained)",
            meta={"methods": runs[0].methods()},
        )  # fmt: skip
        print(f"report: {files['markdown']}")
    return 0
