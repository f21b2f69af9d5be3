"""napari reader for whole slides: a multiscale RGB image plus the NEDC annotation beside it."""

from __future__ import annotations

import warnings
from pathlib import Path

from napari_crystal.io.formats import find_annotation
from napari_crystal.io.slide import (
    SLIDE_ONLY_SUFFIXES,
    SLIDE_SUFFIXES,
    Slide,
    display_levels,
    is_slide,
    open_slide,
)


def get_slide_reader(path):
    """The reader for a slide file or DICOM slide folder, or ``None`` (fast) for anything else,
    plain TIFFs included.

    Vendor-only suffixes (``.svs``, ``.ndpi``, ``.mrxs``...) are claimed even when broken, so
    the user gets our one-line error.
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        return read_slide if is_slide(p) else None
    suffix = p.suffix.lower()
    if suffix not in SLIDE_SUFFIXES or not p.is_file():
        return None
    if is_slide(p) or suffix in SLIDE_ONLY_SUFFIXES:
        return read_slide
    return None


def slide_layer(slide: Slide, name: str | None = None):
    """LayerData of a slide: its lazy levels as one multiscale RGB image in level-0 pixels.

    A damaged tile area shows black with one warning (`io.slide.DisplayLevel`).
    """
    levels = display_levels(slide)
    data = levels if len(levels) > 1 else levels[0]
    meta = {
        "name": name or slide.path.stem,
        "rgb": True,
        "multiscale": len(slide.levels) > 1,
        "contrast_limits": (0, 255),
        "metadata": {
            "path": str(slide.path),
            "mpp": slide.mpp,
            "downsamples": list(slide.downsamples),
            "shape": list(slide.shape),
            "backend": slide.backend,
            "vendor": slide.vendor,
            "objective_power": slide.objective_power,
        },
    }
    return (data, meta, "image")


def blank_annotation_layer(slide: Slide) -> tuple:
    """An empty Shapes layer with the slide's header, so regions drawn on it save as NEDC files."""
    from napari_crystal.io.nedc import Annotation
    from napari_crystal.plugin._reader import annotation_layers

    rows, cols = slide.shape
    blank = Annotation([], slide.mpp, int(cols), int(rows), slide.path.stem, "breast")
    return annotation_layers(blank, name=f"{slide.path.stem} annotation")[-1]


def annotation_for(slide: Slide) -> list:
    """Annotation layers of the NEDC file beside the slide; a broken one warns and gives none.

    A slide with no annotation beside it gets an empty annotation Shapes layer to draw on.
    """
    from napari_crystal.errors import CrystalError, reason_first
    from napari_crystal.io.annotation import check_annotation_bounds
    from napari_crystal.io.formats import read_regions

    path, shape = slide.path, slide.shape
    ann_path = find_annotation(path)
    if ann_path is None:
        return [blank_annotation_layer(slide)]
    try:
        ann = read_regions(ann_path)  # as the annotation reader takes them
        check_annotation_bounds(ann, shape, path.name)
    except (CrystalError, OSError, ValueError, OverflowError, MemoryError) as exc:
        warnings.warn(
            f"annotation not loaded ({reason_first(exc)}); the slide opened without it",
            stacklevel=2,
        )
        return []
    if ann.width and ann.height and (ann.height, ann.width) != tuple(shape):
        warnings.warn(
            f"{ann_path}: annotation is for a {ann.width} x {ann.height} slide, "
            f"{path.name} is {shape[1]} x {shape[0]}; shown at level-0 pixels anyway",
            stacklevel=2,
        )
    from napari_crystal.plugin._reader import annotation_layers

    return list(annotation_layers(ann, name=f"{path.stem} annotation"))


def read_slide(path) -> list:
    """Layers of a slide file: the image, then the annotation layers of the file beside it."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    slide = open_slide(path)
    try:
        return [slide_layer(slide), *annotation_for(slide)]
    except BaseException:
        slide.close()  # the layers never got the file: do not leave it open
        raise
