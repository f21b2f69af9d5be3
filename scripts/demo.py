"""``make demo``: build the small synthetic corpus if missing, run the crystal experiment on it,
and save a view of a slide with its annotations.

The view is a napari screenshot when a screen is available (or Xvfb can be started), else a
matplotlib rendering of the slide's coarsest level with the regions drawn in the palette.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from napari_crystal.cli._progress import StepBars, progress_bar


def overview_png(slide_path: Path, out: Path, max_side: int = 1600) -> Path:
    """The slide's coarsest level that fits ``max_side`` with its regions outlined (napari-free)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch as LegendPatch
    from matplotlib.patches import Polygon

    from napari_crystal import palette
    from napari_crystal.io.nedc import find_annotation, read_annotation
    from napari_crystal.io.slide import open_slide

    slide = open_slide(slide_path)
    try:
        level = next(
            (i for i, lv in enumerate(slide.levels) if max(lv.shape[:2]) <= max_side),
            len(slide.levels) - 1,
        )
        h, w = slide.levels[level].shape[:2]
        image = slide.read_region(level, 0, 0, h, w)
        ds = slide.downsamples[level]
    finally:
        slide.close()
    fig = Figure(figsize=(10, 10 * h / w + 0.8), dpi=120)
    ax = fig.add_subplot()
    ax.imshow(image)
    seen = {}
    ann_path = find_annotation(slide_path)
    if ann_path is not None:
        for region in read_annotation(ann_path).regions:
            rc = region.coords / ds
            colour = palette.rgba(region.label)
            ax.add_patch(
                Polygon(rc[:, ::-1], closed=True, fill=False, edgecolor=colour, linewidth=1.2)
            )
            seen[region.label] = colour
    ax.set_axis_off()
    ax.set_title(f"{slide_path.name} (level {level}, downsample {ds:g})")
    if seen:
        handles = [LegendPatch(color=seen[lab], label=lab) for lab in palette.label_order(seen)]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def napari_screenshot(slide_path: Path, out: Path) -> Path | None:
    """A napari screenshot of the slide opened through the plugin; None when no screen works."""
    if not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None:
        return None
    from scripts._screen import screen

    with screen((1400, 1000)):
        try:
            import napari

            viewer = napari.Viewer(show=True)
            try:
                viewer.open(str(slide_path), plugin="napari-crystal")
                viewer.window._qt_window.resize(1400, 1000)
                viewer.reset_view()
                out.parent.mkdir(parents=True, exist_ok=True)
                viewer.screenshot(str(out), canvas_only=False)
            finally:
                viewer.close()
            return out
        except Exception as exc:  # a missing GL or Qt library: fall back to the matplotlib view
            print(f"napari view not available here ({exc}); saved the matplotlib view only")
            return None


def main(argv: list[str] | None = None) -> int:
    """Run the demo; print where the corpus, the report and the views are."""
    parser = argparse.ArgumentParser(prog="python -m scripts.demo")
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--preset", default="small", choices=("tiny", "small", "negative", "fcbr"))
    parser.add_argument("--no-napari", action="store_true", help="skip the napari screenshot")
    args = parser.parse_args(argv)

    from napari_crystal.dataset import slide_files
    from napari_crystal.experiment import run_experiment
    from napari_crystal.reports import methods_summary
    from napari_crystal.synthetic import generate_corpus

    start = time.perf_counter()
    corpus = args.out / f"corpus-{args.preset}"
    if not (corpus / "SYNTHETIC.json").is_file():
        with progress_bar(f"synthetic {args.preset} corpus", "strip") as progress:
            generate_corpus(corpus, preset=args.preset, seed=42, progress=progress)
        print(f"corpus: {corpus} (generated)")
    else:
        print(f"corpus: {corpus} (already there)")

    slide = slide_files(corpus / "eval")[0]
    views = [overview_png(slide, args.out / "slide-overview.png")]
    if not args.no_napari:
        shot = napari_screenshot(slide, args.out / "slide-in-napari.png")
        if shot is not None:
            views.append(shot)

    with StepBars() as bars:
        result = run_experiment(corpus, args.out / "experiment", progress=bars, n_jobs=-1)
    print()
    print("Methods")
    for line in methods_summary(result.meta.get("methods") or {}):
        print(f"  {line}")
    for w in result.warnings:
        print(f"  warning: {w}")
    print("Results")
    for r in result.reports:
        cal = r.meta.get("calibration") or {}
        print(
            f"  {r.test_set}: {r.name}: {r.correct}/{r.n} correct ({100 * r.accuracy:.1f}%), "
            f"Brier {cal.get('brier', float('nan')):.3f}, ECE {cal.get('ece', float('nan')):.3f}"
        )
    for c in result.comparisons:
        lo, hi = c.wald_ci
        boot = ""
        if c.cluster_ci is not None:
            boot = (
                f", patient bootstrap {100 * c.cluster_ci[0]:+.2f} to {100 * c.cluster_ci[1]:+.2f}"
            )
        print(
            f"  {c.test_set}: {c.name_a} - {c.name_b} = {100 * c.difference:+.2f} pp "
            f"(95% Wald CI {100 * lo:+.2f} to {100 * hi:+.2f}{boot}), McNemar p = {c.mcnemar_p:.3g}"
        )
    print(f"views: {', '.join(str(v) for v in views)}")
    print(f"report: {result.files['markdown']}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
