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
from napari_crystal.features.extract import (
    FeatureSpec,
    Skipped,
    feature_rows,
    feature_rows_of_sets,
)
from napari_crystal.parallel import run_tasks, scheduler_kind
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


def _part(slide_path: str, table_cols: dict, polygons: list, settings: list[dict], cancel):
    """Dask task: each set's feature rows of a chunk of one slide's patches, read once."""
    from napari_crystal.io.slide import open_slide

    table = PatchTable.from_columns(table_cols)
    specs = [FeatureSpec.from_settings(s) for s in settings]
    with open_slide(slide_path) as slide:
        done = feature_rows_of_sets(slide, _boxes(table), polygons, specs, cancel)
    return [(rows, skipped.to_dict()) for rows, skipped in done]


def build_feature_dataset(corpus, split: str | None, out, spec: FeatureSpec, **options) -> Dataset:
    """Feature rows of every annotated region of ``corpus/split``, saved at ``out``.

    One dask task per chunk of a slide's patches (``scheduler`` as in `dataset.build_dataset`);
    the patch table and its order are those of the mask dataset of the same split, so rows
    pair up with the mask baseline's. ``options``: those of `build_feature_datasets`.
    """
    return build_feature_datasets(corpus, split, {out: spec}, **options)[0]


def build_feature_datasets(
    corpus,
    split: str | None,
    targets: dict,
    *,
    progress: Progress = None,
    scheduler=None,
    cancel: threading.Event | None = None,
    chunk: int = 64,
    labels=None,
) -> list[Dataset]:
    """`build_feature_dataset` of several sets at once (``targets``: out path -> `FeatureSpec`,
    all read at the same resolution, crop cap and stain), each region read once for all.

    Every saved dataset is the one its set alone makes (rows, metadata, rerun check); one
    whose inputs did not change is returned as saved and left out of the work.
    """
    corpus = Path(corpus)
    folder = corpus / split if split else corpus
    outs, specs = [Path(o) for o in targets], list(targets.values())
    for out in outs:
        if out.exists() and not _ds._is_dataset(out):
            raise DatasetError(out, "exists and is not a napari-crystal dataset; not overwriting")
    plan = _ds._plan(folder, 256, labels)  # labels: a label map, as in build_dataset
    mapped = sorted({r.label for *_, a, _t in plan for r in a.regions})
    calls, sizes, keys = [], [], []
    for slide, ann_path, annotation, table in plan:
        keys.append([_ds._stat_key(slide), _ds._stat_key(ann_path)])
        polys = _polygons(table, annotation.regions)
        for start in range(0, len(table), chunk):
            rows = slice(start, min(start + chunk, len(table)))
            calls.append((str(slide), table[rows].columns(), polys[rows]))
            sizes.append(rows.stop - rows.start)
    where = str(folder.relative_to(corpus)) if split else ""
    hashes = [
        _ds._digest([where, keys, s.settings() if labels is None else [s.settings(), mapped]])
        for s in specs
    ]
    table = PatchTable.concat([t for *_, t in plan])
    total = len(table)
    saved = [_saved(out, h) for out, h in zip(outs, hashes, strict=True)]
    todo = [i for i, ds in enumerate(saved) if ds is None]
    if not todo:
        if progress is not None:
            progress(total, total)
        return saved
    kind = scheduler_kind(scheduler)
    task_cancel = cancel if kind in ("threads", "sync") else None
    count = [0]

    def on_done(i: int) -> None:
        count[0] += sizes[i]
        if progress is not None:
            progress(count[0], total)

    if progress is not None:
        progress(0, total)
    settings = [specs[i].settings() for i in todo]
    results = run_tasks(
        _part, [(*c, settings, task_cancel) for c in calls], scheduler, on_done, cancel
    )
    for k, i in enumerate(todo):
        skipped = Skipped()
        for parts in results:
            skipped.add(Skipped(**parts[k][1]))
        rows = (
            np.concatenate([parts[k][0] for parts in results])
            if results
            else np.zeros((0, len(specs[i].names)), np.float32)
        )
        meta = feature_meta(
            specs[i], skipped, corpus=str(corpus.resolve()), split=split or "",
            inputs_hash=hashes[i], slides=len(plan),
        )  # fmt: skip
        _ds._save(outs[i], table, iter([rows]), meta)
        saved[i] = _ds.load_dataset(outs[i])
    return saved


def _saved(out: Path, inputs_hash: str) -> Dataset | None:
    """The dataset saved at ``out`` when it was made from these inputs, else None."""
    if not _ds._is_dataset(out):
        return None
    try:
        done = _ds.load_dataset(out)
    except DatasetError:
        return None
    return done if done.meta.get("inputs_hash") == inputs_hash else None


def feature_spec(
    name: str,
    *,
    mpp: float | None = None,
    max_side: int | None = None,
    stain: str | None = None,
    reference=None,
):
    """The `FeatureSpec` of a feature set (None for ``mask``), its stain normalisation
    (``macenko``/``reinhard``) fitted on the ``reference`` slide: what ``--features``,
    ``--mpp``, ``--max-side``, ``--stain`` and ``--stain-reference`` describe."""
    from napari_crystal.features.extract import DEFAULT_MAX_SIDE, DEFAULT_MPP
    from napari_crystal.features.stain import fit_stain_on_slide

    if name == "mask":
        return None
    if stain and reference is None:
        raise DatasetError(None, f"{stain} stain normalisation needs a reference slide")
    fitted = fit_stain_on_slide(stain, reference) if stain else None
    return FeatureSpec(
        name, mpp=DEFAULT_MPP if mpp is None else float(mpp),
        max_side=DEFAULT_MAX_SIDE if max_side is None else int(max_side), stain=fitted,
    )  # fmt: skip


def feature_dataset_like(
    dataset: Dataset,
    spec: FeatureSpec,
    *,
    annotations: dict | None = None,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> Dataset:
    """Feature rows of a mask dataset's own patches, in its order (same table, labels,
    slides and patients): a model of another feature set trained on the same data.

    Region patches are restricted to their region's outline, taken from ``annotations``
    (slide stem -> ``Annotation``, e.g. drawn in napari) or else the annotation file beside
    each slide; frames use their whole window.
    """
    from napari_crystal.io.formats import find_annotation, read_annotation
    from napari_crystal.io.slide import open_slide

    table = dataset.table
    rows = np.full((len(table), len(spec.names)), np.nan, dtype=np.float32)
    skipped = Skipped()
    slides = list(dict.fromkeys(np.asarray(table.slide, dtype=str).tolist()))
    done = 0
    if progress is not None:
        progress(0, len(table))
    for slide in slides:
        at = np.flatnonzero(np.asarray(table.slide, dtype=str) == slide)
        part = table[at]
        polygons = [None] * len(part)
        if (part.kind == "region").any():
            annotation = (annotations or {}).get(Path(slide).stem)
            if annotation is None:
                found = find_annotation(Path(slide))
                if found is None:
                    raise DatasetError(
                        slide, "no annotation beside the slide: feature rows need the outlines "
                        "of its regions",
                    )  # fmt: skip
                annotation = read_annotation(found)
            n = len(annotation.regions)
            if int(part.index[part.kind == "region"].max()) >= n:
                raise DatasetError(slide, f"the annotation has {n} regions, fewer than the masks")
            polygons = _polygons(part, annotation.regions)

        def tick(k: int, base: int = done) -> None:
            if progress is not None:
                progress(base + k, len(table))

        with open_slide(slide) as opened:
            got, sk = feature_rows(opened, _boxes(part), polygons, spec, cancel, tick)
        rows[at] = got
        skipped.add(sk)
        done += len(part)
    meta = {k: v for k, v in (dataset.meta or {}).items() if k in ("corpus", "split", "patients")}
    meta["masks"] = (dataset.meta or {}).get("path") or (dataset.meta or {}).get("slide")
    return Dataset(table, rows, 0, spec.name, feature_meta(spec, skipped, **meta))


def check_feature_choice(meta: dict, name: str, path=None) -> None:
    """Refuse feature set ``name`` for a dataset (its metadata) of another set's rows; masks
    can be made into any set (`with_feature_set`)."""
    from napari_crystal.features.extract import describe

    mine = (meta.get("features") or {}).get("feature_set", "mask")
    if mine not in ("mask", name):
        raise DatasetError(
            path,
            f"the dataset holds {describe(meta.get('features'))} rows, not {name}: "
            f"choose {mine}, or a mask dataset to make {name} rows from",
        )


def with_feature_set(
    dataset: Dataset,
    name: str,
    *,
    mpp: float | None = None,
    max_side: int | None = None,
    stain: str | None = None,
    annotations: dict | None = None,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> Dataset:
    """``dataset`` as feature set ``name`` for training: as it is when it already holds that
    set (a feature dataset keeps its own settings), else, from masks, its patches' rows made
    by `feature_dataset_like` (stain fitted on its first slide, as ``--stain`` does). Feature
    rows of another set are refused naming both."""
    check_feature_choice(dataset.meta or {}, name, (dataset.meta or {}).get("path"))
    if dataset.feature_set == name:
        return dataset
    first = str(dataset.table.slide[0]) if len(dataset) else None
    spec = feature_spec(name, mpp=mpp, max_side=max_side, stain=stain, reference=first)
    return feature_dataset_like(
        dataset, spec, annotations=annotations, progress=progress, cancel=cancel
    )
