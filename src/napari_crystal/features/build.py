"""Feature datasets: the patch table of a corpus split plus float32 feature rows, in zarr.

Laid out like mask datasets (`napari_crystal.dataset`): same table, same metadata, a
``features`` array instead of ``packed``; ``meta["features"]`` holds the `FeatureSpec`
settings and ``meta["skipped"]`` the count of NaN rows by reason. A rebuild with unchanged
inputs and settings returns the saved dataset.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_crystal import dataset as _ds
from napari_crystal.dataset import Dataset
from napari_crystal.errors import DatasetError
from napari_crystal.features.extract import FeatureSpec, Skipped, feature_rows
from napari_crystal.parallel import run_tasks
from napari_crystal.patches import PatchTable

Progress = Callable[[int, int], None] | None


def _boxes(table: PatchTable) -> np.ndarray:
    return np.stack([table.top, table.left, table.height, table.width], axis=1)


def _polygons(table: PatchTable, regions) -> list:
    """Per patch, the polygon its features are restricted to (None for frames: the window)."""
    return [regions[p.index].coords if p.kind == "region" else None for p in table]


def feature_meta(spec: FeatureSpec, skipped: Skipped, **extra) -> dict:
    """Dataset metadata of feature rows made with ``spec``."""
    return {
        **_ds._meta(spec.name, 0, "n/a"),
        "features": spec.settings(),
        "feature_names": spec.names,
        "skipped": skipped.to_dict(),
        **extra,
    }


def feature_dataset_for_slide(
    slide,
    annotation,
    spec: FeatureSpec,
    *,
    patches: PatchTable | None = None,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> Dataset:
    """In-memory feature dataset of one slide (path or open ``Slide``): its regions, or
    ``patches`` (e.g. frames)."""
    from napari_crystal.io.slide import open_slide
    from napari_crystal.patches import region_patches

    owned = isinstance(slide, (str, os.PathLike))
    opened = open_slide(slide) if owned else slide
    try:
        table = region_patches(opened, annotation, 256) if patches is None else patches
        tick = None if progress is None else (lambda done: progress(done, len(table)))
        rows, skipped = feature_rows(
            opened, _boxes(table), _polygons(table, annotation.regions), spec, cancel, tick
        )
    finally:
        if owned:
            opened.close()
    meta = feature_meta(spec, skipped, slide=str(getattr(opened, "path", slide)))
    return Dataset(table, rows, 0, spec.name, meta)


def _part(slide_path: str, table_cols: dict, polygons: list, settings: dict, cancel):
    """Dask task: feature rows of a chunk of one slide's patches."""
    from napari_crystal.io.slide import open_slide

    table = PatchTable.from_columns(table_cols)
    spec = FeatureSpec.from_settings(settings)
    with open_slide(slide_path) as slide:
        rows, skipped = feature_rows(slide, _boxes(table), polygons, spec, cancel)
    return rows, skipped.to_dict()


def build_feature_dataset(
    corpus,
    split: str | None,
    out,
    spec: FeatureSpec,
    *,
    progress: Progress = None,
    scheduler=None,
    cancel: threading.Event | None = None,
    chunk: int = 64,
    labels=None,
) -> Dataset:
    """Feature rows of every annotated region of ``corpus/split``, saved at ``out``.

    One dask task per chunk of a slide's patches (``scheduler`` as in `dataset.build_dataset`);
    the patch table and its order are those of the mask dataset of the same split, so rows
    pair up with the mask baseline's.
    """
    from napari_crystal.parallel import scheduler_kind

    corpus, out = Path(corpus), Path(out)
    folder = corpus / split if split else corpus
    if out.exists() and not _ds._is_dataset(out):
        raise DatasetError(out, "exists and is not a napari-crystal dataset; not overwriting")
    plan = _ds._plan(folder, 256, labels)  # labels: a label map, as in build_dataset
    settings = spec.settings()
    if labels is not None:
        settings = [settings, sorted({r.label for *_, a, _t in plan for r in a.regions})]
    calls, sizes, keys = [], [], []
    for slide, ann_path, annotation, table in plan:
        keys.append([_ds._stat_key(slide), _ds._stat_key(ann_path)])
        polys = _polygons(table, annotation.regions)
        for start in range(0, len(table), chunk):
            rows = slice(start, min(start + chunk, len(table)))
            calls.append((str(slide), table[rows].columns(), polys[rows]))
            sizes.append(rows.stop - rows.start)
    inputs_hash = _ds._digest([str(folder.relative_to(corpus)) if split else "", keys, settings])
    table = PatchTable.concat([t for *_, t in plan])
    total = len(table)
    if _ds._is_dataset(out):
        try:
            done = _ds.load_dataset(out)
        except DatasetError:
            done = None
        if done is not None and done.meta.get("inputs_hash") == inputs_hash:
            if progress is not None:
                progress(total, total)
            return done
    kind = scheduler_kind(scheduler)
    task_cancel = cancel if kind in ("threads", "sync") else None
    count = [0]

    def on_done(i: int) -> None:
        count[0] += sizes[i]
        if progress is not None:
            progress(count[0], total)

    if progress is not None:
        progress(0, total)
    results = run_tasks(
        _part, [(*c, settings, task_cancel) for c in calls], scheduler, on_done, cancel
    )
    skipped = Skipped()
    for _, sk in results:
        skipped.add(Skipped(**sk))
    rows = (
        np.concatenate([r for r, _ in results])
        if results
        else np.zeros((0, len(spec.names)), np.float32)
    )
    meta = feature_meta(
        spec, skipped, corpus=str(corpus.resolve()), split=split or "",
        inputs_hash=inputs_hash, slides=len(plan),
    )  # fmt: skip
    _ds._save(out, table, iter([rows]), meta)
    return _ds.load_dataset(out)
