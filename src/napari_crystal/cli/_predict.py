"""``predict``: a model over the tissue of a whole slide, written as maps (CSV, GeoJSON, TIFF)."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_crystal.cli import _args
from napari_crystal.cli._progress import progress_bar


def register(subparsers) -> None:
    """Add the ``predict`` command."""
    from napari_crystal.slidemap import MIN_TISSUE, PRESETS

    p = subparsers.add_parser(
        "predict", help="whole-slide probability maps: a model over every tissue frame"
    )
    p.add_argument(
        "slides", type=Path, nargs="+", metavar="SLIDE",
        help="one slide, or several (maps in DIR/<slide stem>/, one dask task per slide)",
    )  # fmt: skip
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument(
        "--preset", choices=tuple(PRESETS),
        help="frame/window sizes: nedc = 128/256, student = 250/500 (default: the model's "
        "frames, else nedc)",
    )  # fmt: skip
    p.add_argument("--frame", type=_args.positive_int, help="frame step in level-0 pixels")
    p.add_argument(
        "--window",
        type=_args.positive_int,
        help="window side in level-0 pixels (default 2 x frame)",
    )
    p.add_argument(
        "--min-tissue", type=_args.fraction, default=MIN_TISSUE,
        help=f"share of tissue a frame's window needs to be predicted (default {MIN_TISSUE:g})",
    )  # fmt: skip
    p.add_argument(
        "--stain-reference", type=Path, metavar="SLIDE",
        help="check the model's stain normalisation was fitted on this slide (refused if not)",
    )  # fmt: skip
    p.add_argument(
        "--chunk", type=_args.positive_int, default=2048, help="frames per chunk (default 2048)"
    )
    p.add_argument(
        "--jobs", type=_args.jobs, default=-1, help="threads for the forest (default all)"
    )
    p.add_argument(
        "--scheduler", type=_args.scheduler, default=None,
        help="several slides: dask scheduler (threads, processes, sync or tcp://host:port)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from napari_crystal.slidemap import PRESETS, predict_slide_map
    from napari_crystal.training import load_model

    model = load_model(args.model)
    frame, window = args.frame, args.window
    if args.preset:
        pf, pw = PRESETS[args.preset]
        frame, window = frame or pf, window or pw
    reference = None
    if args.stain_reference is not None:
        from napari_crystal.features import fit_stain_on_slide

        stain = ((model.meta or {}).get("features") or {}).get("stain") or {}
        reference = fit_stain_on_slide(stain.get("method") or "macenko", args.stain_reference)
    if len(args.slides) > 1:
        from napari_crystal.slidemap import predict_slide_maps

        with progress_bar("predict slides", "slide", args.quiet) as progress:
            results = predict_slide_maps(
                args.slides, args.model, args.out, frame=frame, window=window,
                min_tissue=args.min_tissue, stain_reference=reference,
                scheduler=args.scheduler, progress=progress,
            )  # fmt: skip
        for r in results:
            print(
                f"{r['slide']}: {r['n_tissue']} tissue frames of {r['n_frames']} "
                f"({r['frame']}/{r['window']} px), {r['skipped']} skipped, {r['seconds']:.1f}s"
            )
        print(f"maps: {args.out}/<slide stem>/")
        return 0
    args.slide = args.slides[0]
    with progress_bar(f"predict {args.slide.name}", "frame", args.quiet) as progress:
        result = predict_slide_map(
            args.slide, model, args.out, frame=frame, window=window,
            min_tissue=args.min_tissue, stain_reference=reference, chunk=args.chunk,
            n_jobs=args.jobs, progress=progress,
        )  # fmt: skip
    print(
        f"{args.slide}: {result.n_tissue} tissue frames of {result.n_frames} "
        f"({result.frame}/{result.window} px), {result.skipped} skipped, {result.seconds:.1f}s"
    )
    print(f"maps: {result.out} (frames.csv, tiles.geojson, prob-<class>.tif, classes.tif)")
    return 0
