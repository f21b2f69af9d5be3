"""Annotation and slide files: read into the core's model, written back, never loaded whole.

``annotation`` is the format-neutral model; ``nedc`` reads and writes NEDC CSV and XML;
``imagescope``, ``asap`` and ``geojson`` the other tools' files; ``formats`` is the one entry
point for all of them (``read_annotation`` and friends, exported here);
``slide`` opens whole slides lazily (tifffile + zarr, OpenSlide where tifffile cannot).
"""

from napari_crystal.io.annotation import (
    Annotation,
    ConversionWarning,
    Region,
    UnknownLabelWarning,
)
from napari_crystal.io.formats import (
    find_annotation,
    map_labels,
    read_annotation,
    read_label_map,
    sniff_annotation,
    write_annotation,
)
from napari_crystal.io.slide import Slide, is_slide, open_slide

__all__ = [
    "Annotation",
    "ConversionWarning",
    "Region",
    "Slide",
    "UnknownLabelWarning",
    "find_annotation",
    "is_slide",
    "map_labels",
    "open_slide",
    "read_label_map",
    "read_annotation",
    "sniff_annotation",
    "write_annotation",
]
