"""One ``read_annotation`` / ``write_annotation`` / ``sniff_annotation`` for every format.

Formats: ``csv`` (NEDC ``csv_v1.0.0``), ``xml`` (Aperio ImageScope XML, NEDC's dialect
included), ``asap`` (ASAP/CAMELYON XML) and ``geojson`` (QuPath GeoJSON). Reading decides the
format by content first, then by suffix; writing by suffix (``.csv``, ``.xml``, ``.geojson``,
``.json``) or ``fmt``. What a target format cannot carry is reported as a
:class:`~napari_crystal.io.annotation.ConversionWarning`. Class names are kept as the source
spells them; a label map (``foreign name -> NEDC label``) renames them on request.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import numpy as np

from napari_crystal.errors import AnnotationError
from napari_crystal.io import asap, geojson, imagescope, nedc
from napari_crystal.io._common import check_size, read_head
from napari_crystal.io.annotation import (
    Annotation,
    ConversionWarning,
    RegionColumns,
    UnknownLabelWarning,
    _warn_unknown,
    check_regions,
)
from napari_crystal.palette import LABELS

FORMATS = {
    "csv": "NEDC CSV",
    "xml": "ImageScope / NEDC XML",
    "asap": "ASAP XML",
    "geojson": "QuPath GeoJSON",
}
SUFFIXES = {".csv": "csv", ".xml": "xml", ".geojson": "geojson", ".json": "geojson"}
ANNOTATION_SUFFIXES = (".csv", ".CSV", ".xml", ".XML", ".geojson", ".json")


def sniff_bytes(head: bytes) -> str | None:
    """The format the start of a file shows (``csv``, ``xml``, ``asap``, ``geojson``) or None."""
    head = head.removeprefix(b"\xef\xbb\xbf")
    kind = nedc._sniff_bytes(head[: nedc.SNIFF_BYTES])
    if kind is not None:
        return kind
    if asap.sniff(head):
        return "asap"
    if geojson.sniff(head):
        return "geojson"
    return None


def sniff_annotation(path: str | PathLike) -> str | None:
    """The annotation format of a file from its first bytes, or None (fast) if it is not one."""
    return sniff_bytes(read_head(path))


def find_annotation(slide_path: str | PathLike) -> Path | None:
    """The annotation beside a slide (same stem): ``.csv`` first, then ``.xml``, ``.geojson``,
    ``.json``; a file of that name that is not an annotation is passed over."""
    slide_path = Path(slide_path)
    for suffix in ANNOTATION_SUFFIXES:
        candidate = slide_path.with_suffix(suffix)
        if candidate.is_file() and sniff_annotation(candidate) is not None:
            return candidate
    return None


def read_annotation(
    path: str | PathLike,
    *,
    detections: bool = False,
    labels: Mapping[str, str] | str | PathLike | None = None,
) -> Annotation:
    """Read an annotation file of any supported format into the model.

    Parameters
    ----------
    path
        The file; its format is sniffed from its content, else taken from its suffix.
    detections
        QuPath GeoJSON only: also read detection/cell/tile objects (skipped by default: a
        slide can hold millions).
    labels
        A label map (a mapping or a mapping CSV's path) applied after reading; unknown labels
        then warn once for the file.
    """
    path = Path(path)
    kind = _format_of(path)
    mapping = read_label_map(labels) if isinstance(labels, str | PathLike) else labels
    with warnings.catch_warnings():
        if mapping is not None:  # the labels are judged after mapping, not before
            warnings.simplefilter("ignore", UnknownLabelWarning)
        if kind == "csv":
            ann = nedc.read_annotation(path)
        else:
            if kind == "xml":
                ann = imagescope.read(path)
            elif kind == "asap":
                ann = asap.read(path)
            else:
                ann = geojson.read(path, detections=detections)
            check_regions(path, ann)  # pixel size > 0, coordinates in range, regions with area
            if mapping is None:
                _warn_unknown(path, ann.regions)
    ann.source = str(path)
    if mapping is not None:
        map_labels(ann, mapping, path, source=labels if not isinstance(labels, Mapping) else None)
    return ann


def read_annotation_columns(path: str | PathLike) -> RegionColumns | None:
    """An NEDC CSV's or a QuPath GeoJSON's regions as columns (:func:`nedc.read_columns`,
    :func:`geojson.read_columns`: the same checks, errors and warnings as
    :func:`read_annotation`, no Region objects); None for the other formats."""
    path = Path(path)
    kind = _format_of(path)
    if kind == "csv":
        return nedc.read_columns(path)
    if kind != "geojson":
        return None
    columns = geojson.read_columns(path)
    check_regions(path, columns)
    _warn_unknown(path, labels=columns.labels)
    return columns


def read_regions(path: str | PathLike) -> Annotation | RegionColumns:
    """A file's regions as a viewer shows them: as columns where the format gives them
    (:func:`read_annotation_columns`; cell-level files hold 100,000s of regions), else as
    the :class:`Annotation`; the same checks, errors and warnings either way."""
    columns = read_annotation_columns(path)
    return read_annotation(path) if columns is None else columns


def _format_of(path: Path) -> str:
    """The file's format: sniffed from its content, else from its suffix."""
    check_size(path)
    kind = sniff_annotation(path) or SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise AnnotationError(
            path,
            "not an annotation file (NEDC CSV, ImageScope/NEDC XML, ASAP XML or QuPath GeoJSON)",
            1,
        )
    return kind


# ------------------------------------------------------------------------------ label maps


def read_label_map(path: str | PathLike) -> dict[str, str]:
    """A label map CSV: ``name,label`` rows (foreign class name, NEDC label); an optional
    header row, ``#`` comment lines and blank lines are allowed."""
    path = Path(path)
    check_size(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise AnnotationError(path, "label map is not UTF-8 text") from None
    mapping: dict[str, str] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2:
            raise AnnotationError(
                path, f"label map rows are 'name,label' (2 fields), found {len(row)}", lineno
            )
        name, label = row[0].strip(), row[1].strip()
        if lineno == 1 and label.lower() in ("label", "nedc", "nedc_label", "to"):
            continue  # a header row
        if not name or not label:
            raise AnnotationError(path, "label map row with an empty name or label", lineno)
        if name in mapping and mapping[name] != label:
            raise AnnotationError(
                path, f"{name!r} is mapped twice ({mapping[name]!r} and {label!r})", lineno
            )
        mapping[name] = label
    if not mapping:
        raise AnnotationError(path, "label map holds no 'name,label' rows")
    return mapping


def map_labels(
    ann: Annotation,
    mapping: Mapping[str, str],
    path: str | PathLike | None = None,
    source: str | PathLike | None = None,
) -> Annotation:
    """Rename region classes through ``mapping`` (exact name first, then case-insensitive), in
    place; the original name stays in ``extra["source_label"]``. Labels the map does not know
    and that are not NEDC labels warn once for the file."""
    folded = {k.casefold(): v for k, v in mapping.items()}
    unknown: set[str] = set()
    new_colors: dict[str, str] = {}
    for region in ann.regions:
        name = region.label
        target = mapping.get(name, folded.get(name.casefold()))
        if target is None:
            if name not in LABELS:
                unknown.add(name)
            continue
        region.extra.setdefault("source_label", name)
        region.label = target
        if name in ann.class_colors:
            new_colors.setdefault(target, ann.class_colors[name])
    for name, color in new_colors.items():
        ann.class_colors.setdefault(name, color)
    if unknown:
        names = ", ".join(repr(u) for u in sorted(unknown))
        where = f" in {source}" if source is not None else ""
        warnings.warn(
            f"{path or ann.source or '<annotation>'}: label(s) {names} not in the label map"
            f"{where} nor NEDC labels, kept as they are",
            UnknownLabelWarning,
            stacklevel=2,
        )
    return ann


# --------------------------------------------------------------------------------- writing


def losses(ann: Annotation, fmt: str) -> list[str]:
    """What of ``ann`` a file of format ``fmt`` cannot carry, one phrase per kind of loss."""
    regions = ann.regions
    lost: list[str] = []

    def count(what: str, n: int) -> None:
        if n:
            lost.append(f"{what} of {n} region(s)")

    if fmt in ("csv", "xml", "asap"):
        count("holes", sum(1 for r in regions if r.holes))
        count(
            "measurements/names",
            sum(1 for r in regions if {"measurements", "name"} & set(r.extra)),
        )
    if fmt in ("csv", "xml"):
        count(
            "sub-pixel coordinates (rounded)",
            sum(1 for r in regions if not np.array_equal(r.coords, np.rint(r.coords))),
        )
    if fmt == "csv":
        count("colours", sum(1 for r in regions if ann.color_of(r)))
        count("shape kinds (ellipse/rectangle: kept as polygons)",
              sum(1 for r in regions if r.kind != "polygon"))  # fmt: skip
    if fmt == "xml":
        count("ellipse marks (kept as polygons)", sum(1 for r in regions if r.kind == "ellipse"))
    if fmt == "asap":
        count("tissue/confidence/depth/region ids", sum(1 for r in regions if r.tissue))
        if ann.mpp is not None or ann.width is not None:
            lost.append("the header (pixel size, slide size)")
    return lost


def write_annotation(
    ann: Annotation, path: str | PathLike, fmt: str | None = None, warn: bool = True
) -> Path:
    """Write ``ann`` atomically as ``fmt`` (default: from the suffix: ``.csv``, ``.xml``,
    ``.geojson``/``.json``; ``asap`` only when asked), warning once about what is lost."""
    path = Path(path)
    fmt = fmt or SUFFIXES.get(path.suffix.lower())
    if fmt not in FORMATS:
        raise AnnotationError(
            path, "cannot write: the file name must end in .csv, .xml, .geojson or .json"
        )
    if fmt in ("csv", "xml"):
        nedc._check_writable(ann, path)  # refuse before warning about details
    if warn:
        lost = losses(ann, fmt)
        if lost:
            warnings.warn(
                f"{path}: {FORMATS[fmt]} cannot carry {'; '.join(lost)}: written without them",
                ConversionWarning,
                stacklevel=2,
            )
    if fmt in ("csv", "xml"):
        return nedc.write_annotation(ann, path, fmt=fmt)
    if fmt == "geojson":
        return geojson.write(ann, path)
    from napari_crystal._atomic import atomic_write

    atomic_write(path, asap.format_asap(ann).encode("utf-8"), make_parents=False)
    return path
