"""Annotation and slide files: read into the core's model, written back, never loaded whole.

``annotation`` is the format-neutral model; ``nedc`` reads and writes NEDC CSV and XML;
``slide`` opens whole slides lazily (tifffile + zarr, OpenSlide where tifffile cannot).
"""

from napari_crystal.io.annotation import Annotation, Region, UnknownLabelWarning
from napari_crystal.io.nedc import (
    find_annotation,
    read_annotation,
    sniff_annotation,
    write_annotation,
)
from napari_crystal.io.slide import Slide, is_slide, open_slide

__all__ = [
    "Annotation",
    "Region",
    "Slide",
    "UnknownLabelWarning",
    "find_annotation",
    "is_slide",
    "open_slide",
    "read_annotation",
    "sniff_annotation",
    "write_annotation",
]
