"""``napari-crystal info SLIDE``: levels, pixel size, vendor and objective power of a slide."""

from __future__ import annotations

from pathlib import Path

from napari_crystal.io.slide import SLIDE_SUFFIXES, open_slide


def is_slide_path(path) -> bool:
    """Whether ``info`` should treat ``path`` as a slide (by suffix, or a DICOM folder)."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in SLIDE_SUFFIXES


def slide_summary(path) -> dict:
    """What ``info`` prints for a slide, as a dict (also the ``--json`` output)."""
    with open_slide(path) as slide:
        return {
            "path": str(path),
            "vendor": slide.vendor,
            "backend": slide.backend,
            "mpp": slide.mpp,
            "objective_power": slide.objective_power,
            "width": slide.shape[1],
            "height": slide.shape[0],
            "levels": [
                {
                    "level": i,
                    "width": slide.level_shape(i)[1],
                    "height": slide.level_shape(i)[0],
                    "downsample": slide.downsamples[i],
                }
                for i in range(slide.level_count)
            ],
        }


def format_slide_summary(summary: dict) -> str:
    """The human-readable ``info`` block for one slide."""
    mpp = "unknown" if summary["mpp"] is None else f"{summary['mpp']:.4f} um/px"
    power = summary["objective_power"]
    lines = [
        summary["path"],
        f"  vendor:          {summary['vendor'] or 'unknown'} (read with {summary['backend']})",
        f"  pixel size:      {mpp}",
        f"  objective power: {'unknown' if power is None else f'{power:g}x'}",
        f"  levels:          {len(summary['levels'])}",
        f"  {'level':>7}{'width':>10}{'height':>10}{'downsample':>12}",
    ]
    for lv in summary["levels"]:
        lines.append(
            f"  {lv['level']:>7}{lv['width']:>10}{lv['height']:>10}{lv['downsample']:>12.4g}"
        )
    return "\n".join(lines)
