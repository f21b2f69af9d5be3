"""napari writers: a Shapes layer saved as NEDC ``.csv``, ImageScope ``.xml`` or QuPath ``.geojson``.

:func:`shapes_to_annotation` is the one conversion from layer data to an :class:`Annotation`;
widgets reuse it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from napari_crystal.errors import AnnotationError
from napari_crystal.io._common import ellipse_polygon
from napari_crystal.io.annotation import Annotation, Region, region_tissues
from napari_crystal.io.formats import write_annotation

SAVABLE = ("polygon", "rectangle", "path", "ellipse")
DEFAULT_TISSUE = "breast"


def _column(features: Any, name: str, n: int) -> list | None:
    """A features column as a list of ``n`` values, or None when the layer has none."""
    if features is None:
        return None
    try:
        values = features[name]
    except (KeyError, IndexError, TypeError):
        return None
    values = list(values.tolist() if hasattr(values, "tolist") else values)
    return values if len(values) == n else None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def shapes_to_annotation(
    data: Sequence[np.ndarray],
    features: Any,
    metadata: Mapping | None,
    shape_types: Sequence[str] | str | None,
    round_coords: bool = True,
) -> Annotation:
    """Shapes layer content to an :class:`Annotation` (closed polygons; rounded to integer
    level-0 pixels unless ``round_coords`` is False; ellipses as 128-gons).

    ``label`` must be set for every shape; ``region_id``, ``tissue``, ``confidence``,
    ``depth``, ``color`` (``#rrggbb``) and ``kind`` are taken from the features where present.
    Header fields and class colours come from ``metadata`` (as the reader stores them).
    """
    metadata = dict(metadata or {})
    n = len(data)
    if isinstance(shape_types, str) or shape_types is None:
        shape_types = [shape_types or "polygon"] * n
    labels = _column(features, "label", n)
    if n and labels is None:
        raise AnnotationError(
            None, "the layer has no 'label' feature: give every shape a label (e.g. dcis)"
        )
    ids = _column(features, "region_id", n) or [None] * n
    tissues = _column(features, "tissue", n) or [None] * n
    confidences = _column(features, "confidence", n) or [None] * n
    depths = _column(features, "depth", n) or [None] * n
    colors = _column(features, "color", n) or [None] * n
    kinds = _column(features, "kind", n) or [None] * n
    default_tissue = (metadata.get("tissue") or DEFAULT_TISSUE).split(",")[0].strip()
    used = {int(i) for i in ids if not _missing(i)}
    next_id = max(used, default=0) + 1
    regions = []
    for i, (coords, kind) in enumerate(zip(data, shape_types, strict=True)):
        if kind not in SAVABLE:
            raise AnnotationError(
                None,
                f"shape {i} is a {kind}: only polygons, rectangles and ellipses can be saved",
            )
        if _missing(labels[i]):
            raise AnnotationError(
                None, f"shape {i} has no label: set the 'label' feature of every shape"
            )
        rc = np.asarray(coords, dtype=np.float64)[:, -2:]
        if kind == "ellipse":  # napari keeps an ellipse as its bounding box's corners
            (top, left), (bottom, right) = rc.min(axis=0), rc.max(axis=0)
            rc = ellipse_polygon(top, left, bottom, right)
        if round_coords:
            rc = np.rint(rc)
        if len(np.unique(rc, axis=0)) < 3:
            raise AnnotationError(None, f"shape {i} has fewer than 3 distinct vertices")
        if not (rc[0] == rc[-1]).all():
            rc = np.vstack([rc, rc[:1]])  # NEDC polygons are closed
        if _missing(ids[i]):
            region_id, next_id = next_id, next_id + 1
        else:
            region_id = int(ids[i])
        depth = 0 if _missing(depths[i]) else int(depths[i])
        regions.append(
            Region(
                index=i,
                region_id=region_id,
                label=str(labels[i]).strip(),
                tissue=default_tissue if _missing(tissues[i]) else str(tissues[i]),
                coords=rc,
                depth=np.full(len(rc), depth, dtype=np.int64),
                confidence=1.0 if _missing(confidences[i]) else float(confidences[i]),
                color=_hex_or_none(colors[i]),
                kind=str(kinds[i]) if not _missing(kinds[i]) else _KINDS.get(kind, "polygon"),
            )
        )
    width, height = metadata.get("width"), metadata.get("height")
    return Annotation(
        regions,
        mpp=None if metadata.get("mpp") is None else float(metadata["mpp"]),
        width=None if width is None else int(width),
        height=None if height is None else int(height),
        bname=str(metadata.get("bname") or ""),
        tissue=region_tissues(regions),
        source=metadata.get("source"),
        class_colors={
            str(k): c
            for k, v in dict(metadata.get("class_colors") or {}).items()
            if (c := _hex_or_none(v)) is not None
        },
    )


_KINDS = {"rectangle": "rectangle", "ellipse": "ellipse"}


def _hex_or_none(value: Any) -> str | None:
    """A ``#rrggbb`` colour feature, or None for anything else (a new shape's blank)."""
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            int(value[1:], 16)
        except ValueError:
            return None
        return value.lower()
    return None


def _write(path: str, data: Any, meta: dict, fmt: str) -> list[str]:
    meta = meta or {}
    metadata = dict(meta.get("metadata") or {})
    try:
        ann = shapes_to_annotation(
            data,
            meta.get("features"),
            metadata,
            meta.get("shape_type", "polygon"),
            round_coords=fmt in ("csv", "xml"),
        )
        if not ann.bname:
            from pathlib import Path

            ann.bname = Path(path).stem
        missing = [k for k in ("mpp", "width", "height") if metadata.get(k) is None]
        if missing and fmt in ("csv", "xml"):  # NEDC files need the header; GeoJSON does not
            raise AnnotationError(
                None,
                f"the layer's metadata has no {', '.join(missing)}: open the slide or "
                "annotation it belongs to, or set layer.metadata"
                f"[{missing[0]!r}]",
            )
    except AnnotationError as exc:
        raise AnnotationError(path, exc.message, exc.line) from None
    write_annotation(ann, path, fmt=fmt)
    return [str(path)]


def write_csv(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Shapes layer as an NEDC ``csv_v1.0.0`` file."""
    return _write(path, data, meta, "csv")


def write_xml(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Shapes layer as an ImageScope XML annotation."""
    return _write(path, data, meta, "xml")


def write_geojson(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Shapes layer as QuPath GeoJSON (classes and colours kept)."""
    return _write(path, data, meta, "geojson")
