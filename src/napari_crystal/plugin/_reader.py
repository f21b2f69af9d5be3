"""napari reader for NEDC annotation files: a Shapes layer of the regions and a class raster.

:func:`annotation_layers` is also what the slide reader calls for the annotation beside a slide.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_crystal import palette
from napari_crystal.geometry import annotation_shape, raster_transform, rasterize_regions
from napari_crystal.io.annotation import Annotation, RegionColumns
from napari_crystal.io.formats import read_regions, sniff_annotation

FACE_ALPHA = 0.25
LABELS_OPACITY = 0.5
# Above this many vertices the regions are shown as closed outlines ("path" shapes) and their
# fill comes from the class raster: face triangulation is what makes huge layers slow.
OUTLINE_VERTICES = 200_000
# Above this many regions (cell-level annotations), a Shapes layer would take napari tens of
# seconds and gigabytes (one Python object and mesh per shape): the regions come as one point
# each, with the same features and colours, over the class raster.
MANY_REGIONS = 20_000

LayerData = tuple[Any, dict, str]


def get_annotation_reader(path: str | list[str]) -> Callable | None:
    """The reader for an annotation file (NEDC ``.csv``, ImageScope/NEDC/ASAP ``.xml``, QuPath
    ``.geojson``/``.json``); None (at once, from the first bytes) for anything else."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    suffixes = (".csv", ".xml", ".geojson", ".json")
    if not str(path).lower().endswith(suffixes) or sniff_annotation(path) is None:
        return None
    return read_annotation_layers


def read_annotation_layers(path: str | list[str]) -> list[LayerData]:
    """Read the file and return its layers; a bad file raises AnnotationError (a notification)."""
    if isinstance(path, list | tuple):
        path = path[0]
    return annotation_layers(read_regions(path), name=Path(path).stem)


def use_compiled_triangulation() -> str:
    """Let napari triangulate the reader's shapes with its compiled backend (bermuda).

    Pure-Python triangulation takes minutes for a slide's worth of polygons, and napari uses
    it when its settings say so (an old settings file) or before settings are loaded. The
    backend is switched with napari's non-persisting ``set_backend``: napari's settings are
    neither changed nor saved. In the GUI thread of a running Qt application the previous
    backend comes back on the next turn of the event loop, once napari has built the layers
    the reader returned; elsewhere (scripts, a headless ``ViewerModel``) the switch lasts for
    the process. Returns the backend in use.
    """
    from napari.utils.triangulation_backend import (
        TriangulationBackend,
        get_backend,
        set_backend,
    )

    try:
        import bermuda  # noqa: F401
    except ImportError:
        return str(get_backend())
    fast = TriangulationBackend.fastest_available
    if get_backend() == TriangulationBackend.pure_python:
        previous = set_backend(fast)
        _after_layers_are_built(lambda: get_backend() == fast and set_backend(previous))
    return str(get_backend())


def _after_layers_are_built(restore: Callable[[], Any]) -> None:
    """Run ``restore`` on the next turn of the Qt event loop when called in its thread."""
    try:
        from qtpy.QtCore import QCoreApplication, QThread, QTimer
    except ImportError:  # pragma: no cover - napari always brings a Qt binding here
        return
    app = QCoreApplication.instance()
    if app is not None and QThread.currentThread() == app.thread():
        QTimer.singleShot(0, restore)


def _display_vertices(coords: np.ndarray) -> np.ndarray:
    """Vertices for napari: no repeated neighbours and no closing vertex (napari closes
    polygons itself, and repeated vertices break the compiled triangulation)."""
    keep = np.ones(len(coords), dtype=bool)
    keep[1:] = (coords[1:] != coords[:-1]).any(axis=1)
    out = coords[keep]
    if len(out) > 3 and (out[-1] == out[0]).all():
        out = out[:-1]
    return out


def _display_data(coords: list[np.ndarray], outline: bool | None = None):
    """:func:`_display_vertices` of every region in a few numpy passes, as views into one array;
    with ``outline`` (default: above :data:`OUTLINE_VERTICES`) each closed by its first vertex.
    Returns the vertex arrays and whether they are outlines."""
    sizes = np.array([len(c) for c in coords], dtype=np.int64)
    if not len(coords) or sizes.min() < 1:
        data = [_display_vertices(c) for c in coords]
        n_vertices = sum(len(d) for d in data)
        outline = n_vertices > OUTLINE_VERTICES if outline is None else outline
        return ([np.vstack([d, d[:1]]) for d in data] if outline else data), outline
    flat = np.concatenate(coords).reshape(-1, 2)
    starts = np.cumsum(sizes) - sizes
    keep = np.empty(len(flat), dtype=bool)
    np.logical_or(flat[1:, 0] != flat[:-1, 0], flat[1:, 1] != flat[:-1, 1], out=keep[1:])
    keep[starts] = True  # a region's first vertex is always kept
    kept = np.flatnonzero(keep)
    first = np.searchsorted(kept, starts)  # position in ``kept`` of each region's first vertex
    counts = np.diff(np.append(first, len(kept)))
    last = kept[first + counts - 1]
    closing = (
        (counts > 3) & (flat[last, 0] == flat[starts, 0]) & (flat[last, 1] == flat[starts, 1])
    )
    keep[last[closing]] = False  # napari closes polygons itself
    counts -= closing
    outline = int(counts.sum()) > OUTLINE_VERTICES if outline is None else outline
    if outline:  # a closed outline: the first vertex again after the last
        keep = keep.astype(np.int64)
        keep[starts + sizes - 1] += 1  # marks where the first vertex is inserted
        index = np.repeat(np.arange(len(flat)), keep)
        counts += 1
        index[np.cumsum(counts) - 1] = starts
    else:
        index = np.flatnonzero(keep)
    kept_flat = np.take(flat, index, axis=0)
    ends = np.cumsum(counts).tolist()
    return [kept_flat[e - c : e] for e, c in zip(ends, counts.tolist(), strict=True)], outline


def annotation_metadata(annotation: Annotation | RegionColumns) -> dict:
    """What the writer needs to save the layer back with the same header."""
    return {
        "mpp": annotation.mpp,
        "width": annotation.width,
        "height": annotation.height,
        "bname": annotation.bname,
        "tissue": annotation.tissue,
        "source": annotation.source,
        "class_colors": dict(annotation.class_colors),
    }


def annotation_layers(
    annotation: Annotation | RegionColumns, name: str | None = None
) -> list[LayerData]:
    """A Labels layer (class raster, exactly under level 0) and a Shapes layer on top of it
    (:func:`region_layers` of the annotation's regions)."""
    if isinstance(annotation, Annotation):
        annotation = RegionColumns.from_annotation(annotation)
    return region_layers(annotation, name)


def region_layers(columns: RegionColumns, name: str | None = None) -> list[LayerData]:
    """A Labels layer (class raster, exactly under level 0) and a Shapes layer on top of it.

    Shapes: one polygon per region in file order, features ``label``, ``region_id``,
    ``tissue``, ``confidence``, ``depth``, palette colours, the label as text. Above
    :data:`MANY_REGIONS`, one point per region instead (:func:`_region_points`).
    """
    name = name or columns.bname or "annotation"
    use_compiled_triangulation()
    n = len(columns)
    sizes = columns.sizes
    many = n > MANY_REGIONS
    # Above OUTLINE_VERTICES, closed outlines (their first vertex repeated) as "path" shapes.
    polygons = [] if many or not n else np.split(columns.coords, columns.starts[1:])
    data, outline = ([], True) if many else _display_data(polygons)
    codes, colours = _region_colours(columns)
    edge = colours.reshape(-1, 4)[codes].reshape(-1, 4)
    face = edge.copy()
    face[:, 3] = 0.0 if outline else FACE_ALPHA
    first_depth = np.zeros(n, dtype=np.int64)
    if len(columns.depth):
        has = sizes > 0
        first_depth[has] = columns.depth[columns.starts[has]]
    colors = columns.colors
    features = pd.DataFrame(
        {
            "label": pd.Series(columns.labels, dtype=object),
            "region_id": pd.Series(columns.region_ids, dtype=np.int64),
            "tissue": pd.Series(columns.tissues, dtype=object),
            "confidence": pd.Series(columns.confidences, dtype=np.float64),
            "depth": pd.Series(first_depth, dtype=np.int64),
            "color": pd.Series(
                np.full(n, "", dtype=object)
                if colors is None
                else np.where(colors.astype(bool), colors, ""),
                dtype=object,
            ),
            "kind": pd.Series(
                np.full(n, "polygon", dtype=object) if columns.kinds is None else columns.kinds,
                dtype=object,
            ),
        }
    )
    metadata = annotation_metadata(columns)
    shape = annotation_shape(columns)
    edge_width = max(2.0, max(shape) / 2000)
    shapes_kwargs = {
        "name": name,
        "shape_type": "path" if outline else "polygon",
        "features": features,
        "face_color": face,
        "edge_color": edge,
        "edge_width": edge_width,
        "text": {
            "string": "{label}",
            "color": "white",
            "size": 10,
            "anchor": "center",
        },
        "metadata": metadata,
        "blending": "translucent",
    }
    if n:  # a shape drawn later copies the last region, but not its colour or kind
        shapes_kwargs["feature_defaults"] = {
            **{c: features[c].iloc[-1] for c in features.columns},
            "color": "",
            "kind": "",
        }
    if not n:  # napari rejects empty colour arrays; new shapes get the unknown colour
        shapes_kwargs["face_color"] = palette.rgba(palette.UNKNOWN, FACE_ALPHA)
        shapes_kwargs["edge_color"] = palette.rgba(palette.UNKNOWN)
    raster, downsample = rasterize_regions(columns.coords, sizes, columns.labels, shape)
    scale, translate = raster_transform(downsample)
    labels_kwargs = {
        "name": f"{name} classes",
        "scale": scale,
        "translate": translate,
        "colormap": _label_colormap(),
        "opacity": LABELS_OPACITY,
        "metadata": {**metadata, "downsample": downsample},
        "blending": "translucent",
    }
    if many:
        return [(raster, labels_kwargs, "labels"), _region_points(columns, shapes_kwargs)]
    return [(raster, labels_kwargs, "labels"), (data, shapes_kwargs, "shapes")]


def _region_colours(columns: RegionColumns) -> tuple[np.ndarray, np.ndarray]:
    """Each region's colour as a code into an (K, 4) RGBA array: the source's colours (the
    region's, then its class's) where it has them, else the palette's."""
    label_codes, label_names = pd.factorize(columns.labels)
    class_colors = columns.class_colors
    keys = np.array(
        [class_colors.get(label) or f"label:{label}" for label in label_names], dtype=object
    )[label_codes]
    if columns.colors is not None:
        own = columns.colors.astype(bool)
        keys[own] = columns.colors[own]
    codes, names = pd.factorize(keys)
    colours = np.array(
        [
            [*palette_rgb(k), 1.0] if k.startswith("#") else palette.rgba(k[len("label:") :])
            for k in names
        ],
        dtype=np.float64,
    )
    return codes, colours


def _region_points(columns: RegionColumns, shapes_kwargs: dict) -> LayerData:
    """One point per region (its vertex mean), sized like a typical region, with the features
    and colours the Shapes layer would have had; a warning says why (napari notification)."""
    import warnings

    sizes, flat, starts = columns.sizes, columns.coords, columns.starts
    centres = np.add.reduceat(flat, starts) / sizes[:, None]
    extent = np.maximum.reduceat(flat, starts) - np.minimum.reduceat(flat, starts)
    size = max(float(np.median(extent.max(axis=1))), 1.0)
    warnings.warn(
        f"{len(columns):,} regions: shown as one point per region over the class raster "
        f"(napari cannot edit that many shapes at once)",
        stacklevel=3,
    )
    kwargs = {
        "name": shapes_kwargs["name"],
        "features": shapes_kwargs["features"],
        "face_color": shapes_kwargs["edge_color"],
        "border_width": 0,
        "size": size,
        "metadata": {**shapes_kwargs["metadata"], "regions_as_points": True},
        "blending": "translucent",
    }
    return (centres, kwargs, "points")


def palette_rgb(color: str) -> list[float]:
    """``"#rrggbb"`` as three floats in 0..1."""
    return [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]


def _label_colormap():
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=palette.label_colormap(alpha=1.0))
