"""From napari layers to the core's inputs: slide files, level-0 shapes, annotations.

Every widget turns layers into core arguments through these, so all read a slide layer's file,
size and drawn regions the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_crystal.errors import DatasetError

#: Layer-metadata keys of a mask dataset shown in the viewer (the Generate masks gallery):
#: the `Dataset` itself and, once it is on disk, its file.
DATASET_KEY, DATASET_PATH_KEY = "crystal_dataset", "crystal_dataset_path"
#: ... and, for masks made from drawn layers, ``{slide stem: Annotation}`` of their regions.
ANNOTATIONS_KEY = "crystal_annotations"


def layers_of(viewer, kind: str) -> list[tuple[str, Any]]:
    """(name, layer) choices of the viewer's Image or Shapes layers, for combo boxes."""
    import napari.layers

    cls = {"image": napari.layers.Image, "shapes": napari.layers.Shapes}[kind]
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, cls)]


def is_slide_layer(layer) -> bool:
    """An Image layer opened from a slide file (the slide reader records its path)."""
    return bool((getattr(layer, "metadata", None) or {}).get("path"))


def is_annotation_layer(layer) -> bool:
    """A Shapes layer of labelled regions (a ``label`` feature column)."""
    features = getattr(layer, "features", None)
    return features is not None and "label" in getattr(features, "columns", ())


def preselect(combo, accept) -> None:
    """Choose the only layer of ``combo`` that ``accept`` takes, when none of those is chosen:
    an open slide and its annotation need no picking."""
    combo.reset_choices()
    if combo.value is not None and accept(combo.value):
        return
    matching = [v for v in combo.choices if v is not None and accept(v)]
    if len(matching) == 1:
        combo.value = matching[0]


def mask_dataset(viewer):
    """(dataset, file or None) of the mask dataset shown in ``viewer``, or (None, None).

    The Generate masks widget puts its dataset in its gallery layer's metadata, so any widget
    of the same viewer finds it, and it goes away with the gallery. The topmost one wins.
    """
    for layer in reversed(list(viewer.layers)):
        meta = getattr(layer, "metadata", None) or {}
        dataset = meta.get(DATASET_KEY)
        if dataset is not None:
            return getattr(dataset, "__wrapped__", dataset), meta.get(DATASET_PATH_KEY)
    return None, None


def mask_annotations(viewer) -> dict | None:
    """``{slide stem: Annotation}`` the shown mask dataset was made from (drawn layers), or
    None (a corpus dataset: its annotation files lie beside the slides)."""
    for layer in reversed(list(viewer.layers)):
        meta = getattr(layer, "metadata", None) or {}
        if meta.get(DATASET_KEY) is not None:
            return meta.get(ANNOTATIONS_KEY)
    return None


def slide_shape(layer) -> tuple[int, int]:
    """Level-0 (rows, cols) of a slide Image layer (reader metadata, else its largest level)."""
    meta = getattr(layer, "metadata", None) or {}
    if meta.get("shape"):
        return int(meta["shape"][0]), int(meta["shape"][1])
    data = layer.data[0] if layer.multiscale else layer.data
    shape = data.shape[:-1] if layer.rgb else data.shape
    return int(shape[-2]), int(shape[-1])


def slide_path(layer) -> Path:
    """The slide file an Image layer was opened from (reader metadata, else napari's source)."""
    meta = getattr(layer, "metadata", None) or {}
    for key in ("slide_path", "path", "source", "slide"):
        value = meta.get(key)
        if isinstance(value, (str, Path)) and str(value):
            return Path(value)
    source = getattr(getattr(layer, "source", None), "path", None)
    if source:
        return Path(source)
    raise DatasetError(
        None,
        f"image layer {layer.name!r} was not opened from a slide file: open the slide "
        "(.svs/.tif) with napari-crystal, or use a corpus folder",
    )


def shapes_annotation(shapes, image=None):
    """An ``nedc.Annotation`` of a Shapes layer, in the level-0 pixels of the ``image`` layer.

    The layer's vertices are mapped through its and the image's scale/translate, then
    converted by the writer's ``shapes_to_annotation`` (labels from the ``label`` feature);
    its errors come back naming the layer.
    """
    from napari_crystal.errors import AnnotationError
    from napari_crystal.plugin._writer import shapes_to_annotation

    if len(shapes.data) == 0:
        raise AnnotationError(None, f"Shapes layer {shapes.name!r} has no shapes")
    scale = np.asarray(shapes.scale[-2:], dtype=float)
    shift = np.asarray(shapes.translate[-2:], dtype=float)
    if image is not None:  # shapes data -> world -> the image's level-0 pixels
        shift = (shift - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])
        scale = scale / np.asarray(image.scale[-2:])
    data = [np.asarray(d, dtype=float)[:, -2:] * scale + shift for d in shapes.data]
    try:
        return shapes_to_annotation(data, shapes.features, shapes.metadata, shapes.shape_type)
    except AnnotationError as exc:
        raise AnnotationError(None, f"Shapes layer {shapes.name!r}: {exc.message}") from None
