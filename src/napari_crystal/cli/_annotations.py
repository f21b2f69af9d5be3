"""``napari-crystal info`` and ``napari-crystal convert``: NEDC annotation files from the shell."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_crystal.errors import AnnotationError
from napari_crystal.io.nedc import Annotation, read_annotation, write_annotation


def register(subparsers) -> None:
    """Add the ``info`` and ``convert`` commands."""
    info = subparsers.add_parser(
        "info",
        help="annotation files: pixel size, slide size, regions and area per label; "
        "slides: levels, pixel size, vendor, objective power",
    )
    info.add_argument(
        "paths", nargs="+", metavar="PATH", help="NEDC .csv or .xml files, or slides"
    )
    info.add_argument("--json", action="store_true", help="one JSON object per file")
    info.set_defaults(func=run_info)
    convert = subparsers.add_parser("convert", help="convert between NEDC .csv and .xml")
    convert.add_argument("src", metavar="SRC", help="NEDC .csv or .xml file")
    convert.add_argument("dst", metavar="DST", help="output file; .csv or .xml picks the format")
    convert.set_defaults(func=run_convert)


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
        summary = summarize(read_annotation(path))
        print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Read SRC and write DST atomically in the format its suffix names."""
    dst = Path(args.dst)
    if dst.suffix.lower() not in (".csv", ".xml"):
        raise AnnotationError(dst, "output must end in .csv or .xml")
    ann = read_annotation(args.src)
    write_annotation(ann, dst)
    print(f"{args.src} -> {dst}: {len(ann.regions)} regions")
    return 0
