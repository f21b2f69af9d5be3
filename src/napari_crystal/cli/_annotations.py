"""``napari-crystal info`` and ``napari-crystal convert``: annotation files from the shell.

Every format :mod:`napari_crystal.io.formats` reads: NEDC CSV, ImageScope/NEDC XML, ASAP XML
and QuPath GeoJSON. Warnings (skipped shapes, what a conversion cannot carry, unknown labels)
are printed as ``napari-crystal: warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from napari_crystal.errors import AnnotationError
from napari_crystal.io.annotation import Annotation
from napari_crystal.io.formats import FORMATS, SUFFIXES, read_annotation, write_annotation

FORMAT_HELP = "NEDC .csv, ImageScope/NEDC .xml, ASAP .xml or QuPath .geojson/.json"


def add_labels_option(p: argparse.ArgumentParser) -> None:
    """``--labels MAP.csv``: foreign class names to NEDC labels, for every annotation read."""
    p.add_argument(
        "--labels",
        type=Path,
        metavar="MAP.csv",
        help="label map CSV (name,label rows): rename foreign classes (Tumor, Stroma...) "
        "to NEDC labels",
    )


def register(subparsers) -> None:
    """Add the ``info`` and ``convert`` commands."""
    info = subparsers.add_parser(
        "info",
        help="annotation files: pixel size, slide size, regions and area per label; "
        "slides: levels, pixel size, vendor, objective power",
    )
    info.add_argument("paths", nargs="+", metavar="PATH", help=f"{FORMAT_HELP} files, or slides")
    info.add_argument("--json", action="store_true", help="one JSON object per file")
    info.add_argument(
        "--detections", action="store_true", help="GeoJSON: count detections/cells too"
    )
    add_labels_option(info)
    info.set_defaults(func=run_info)
    convert = subparsers.add_parser(
        "convert", help="convert between NEDC CSV/XML, ImageScope XML, ASAP XML, QuPath GeoJSON"
    )
    convert.add_argument("src", metavar="SRC", help=FORMAT_HELP)
    convert.add_argument(
        "dst", metavar="DST", help="output file; .csv, .xml, .geojson or .json picks the format"
    )
    convert.add_argument(
        "--to", choices=sorted(FORMATS), help="output format (default: from DST's suffix)"
    )
    convert.add_argument(
        "--slide",
        type=Path,
        metavar="SLIDE",
        help="take pixel size and slide size from this slide where SRC has none "
        "(QuPath/ASAP files into NEDC CSV/XML)",
    )
    convert.add_argument(
        "--detections", action="store_true", help="GeoJSON: read detections/cells too"
    )
    add_labels_option(convert)
    convert.set_defaults(func=run_convert)


@contextmanager
def _warnings_as_lines():
    """Warnings raised inside as one ``napari-crystal: warning:`` line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    print(f"napari-crystal: warning: {text}", file=sys.stderr)


def summarize(ann: Annotation) -> dict:
    """Per-label region count and area (square microns when the pixel size is known)."""
    labels: dict[str, dict] = {}
    for region in ann.regions:
        entry = labels.setdefault(region.label, {"regions": 0, "area_px2": 0.0})
        entry["regions"] += 1
        entry["area_px2"] += region.area
    for entry in labels.values():
        entry["area_um2"] = None if ann.mpp is None else entry["area_px2"] * ann.mpp**2
    return {
        "path": ann.source,
        "bname": ann.bname,
        "mpp": ann.mpp,
        "width": ann.width,
        "height": ann.height,
        "regions": len(ann.regions),
        "labels": dict(sorted(labels.items())),
    }


def format_summary(summary: dict) -> str:
    """The human-readable ``info`` block for one file."""
    mpp = "unknown" if summary["mpp"] is None else f"{summary['mpp']:.6f} um/px"
    size = (
        "unknown"
        if summary["width"] is None
        else f"{summary['width']} x {summary['height']} px (width x height)"
    )
    lines = [
        f"{summary['path']}",
        f"  pixel size: {mpp}",
        f"  slide size: {size}",
        f"  regions:    {summary['regions']}",
        f"  {'label':<8}{'regions':>8}{'area (um^2)':>16}",
    ]
    for label, entry in summary["labels"].items():
        area = "n/a" if entry["area_um2"] is None else f"{entry['area_um2']:.1f}"
        lines.append(f"  {label:<8}{entry['regions']:>8}{area:>16}")
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    """Print a summary of every file; the first bad file stops with its error."""
    from napari_crystal.cli._slides import format_slide_summary, is_slide_path, slide_summary

    for path in args.paths:
        if is_slide_path(path):  # a slide: levels, pixel size, vendor, objective power
            summary = slide_summary(path)
            print(json.dumps(summary) if args.json else format_slide_summary(summary))
            continue
        with _warnings_as_lines():
            ann = read_annotation(path, detections=args.detections, labels=args.labels)
        summary = summarize(ann)
        print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def _fill_header(ann: Annotation, slide_path: Path) -> None:
    """Pixel size and level-0 size from a slide, where the annotation has none."""
    from napari_crystal.io.slide import open_slide

    slide = open_slide(slide_path)
    try:
        rows, cols = slide.shape
        if ann.mpp is None:
            ann.mpp = slide.mpp
        if ann.width is None or ann.height is None:
            ann.width, ann.height = int(cols), int(rows)
        if not ann.tissue:
            ann.tissue = "breast"
    finally:
        slide.close()


def run_convert(args: argparse.Namespace) -> int:
    """Read SRC and write DST atomically in the format its suffix (or ``--to``) names."""
    dst = Path(args.dst)
    fmt = args.to or SUFFIXES.get(dst.suffix.lower())
    if fmt is None:
        raise AnnotationError(
            dst, "output must end in .csv, .xml, .geojson or .json (or use --to)"
        )
    with _warnings_as_lines():
        ann = read_annotation(args.src, detections=args.detections, labels=args.labels)
        if args.slide is not None:
            _fill_header(ann, args.slide)
        write_annotation(ann, dst, fmt=fmt)
    print(f"{args.src} -> {dst} ({FORMATS[fmt]}): {len(ann.regions)} regions")
    return 0
