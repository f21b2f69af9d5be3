"""Datasets: a patch table plus one ``np.packbits`` row per patch, saved as a zarr directory.

Row ``i`` of ``packed`` is the row-major mask of patch ``i``, 1 bit per pixel. Corpus builds
run over slides with dask, write per-chunk results atomically into ``<out>.work/`` so an
interrupted build resumes, and skip a rebuild whose inputs did not change.

A saved dataset records what it holds (``files``: size and SHA-256 of every file but the root
metadata) and `load_dataset` checks it, so a deleted or damaged chunk is an error naming the
dataset, never all-zero masks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_crystal import __version__
from napari_crystal._atomic import sweep_leftovers, sweep_temporaries, temp_name
from napari_crystal.errors import Cancelled, DatasetError, shorten
from napari_crystal.io.slide import SLIDE_SUFFIXES, slide_files  # one list of slide formats
from napari_crystal.masks import CHANNELS, METHODS, RESIZE_RULE, THRESHOLD_RULE, make_mask
from napari_crystal.parallel import run_tasks, scheduler_kind
from napari_crystal.patches import COLUMNS, LEVEL_RULE, STRING_COLUMNS, Patch, PatchTable
from napari_crystal.patches import region_patches as _region_patches

FORMAT = "napari-crystal-dataset"
VERSION = 1
PACK_CHUNK = 1024  # rows per zarr chunk of the packed masks

Progress = Callable[[int, int], None] | None

# --------------------------------------------------------------------------- datasets


def _nbytes(size: int) -> int:
    return -(-size * size // 8)


@dataclass
class Dataset:
    """Patch table + packed masks (``packed[i]`` = ``np.packbits`` of mask i, row-major).

    ``packed`` is a numpy array or, for a loaded dataset, a lazy zarr array: slice it by rows.
    A feature dataset (`napari_crystal.features`) holds float32 feature rows there instead
    (NaN rows: patches skipped), with ``size`` 0, ``method`` the set's name and the set's
    settings in ``meta["features"]``.
    """

    table: PatchTable
    packed: Any
    size: int
    method: str
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    def from_packed(
        cls, packed: np.ndarray, labels, size: int, method: str = "threshold", slide: str = ""
    ) -> Dataset:
        """A dataset of masks made elsewhere: packed rows and their labels, no slide boxes."""
        n = len(packed)
        zeros = np.zeros(n, dtype=np.int64)
        table = PatchTable(
            slide=np.full(n, slide), region_id=np.arange(n), label=np.asarray(labels, dtype=str),
            top=zeros, left=zeros, height=zeros + size, width=zeros + size, level=zeros,
            kind=np.full(n, "region"), index=np.arange(n),
        )  # fmt: skip
        return cls(table, packed, int(size), method, {"channel": "grey"})

    @property
    def feature_set(self) -> str:
        """``"mask"`` for packed masks, else the feature set of the rows."""
        return (self.meta.get("features") or {}).get("feature_set", "mask")

    @property
    def labels(self) -> np.ndarray:
        """Label string per patch."""
        return self.table.label

    @property
    def slide_ids(self) -> np.ndarray:
        """Slide of each patch: its file stem (the same slide in two folders is one slide)."""
        return np.asarray([Path(s).stem for s in self.table.slide.tolist()], dtype=str)

    @property
    def patients(self) -> np.ndarray:
        """Patient of each patch: recorded at build time, else read from the slide's stem."""
        recorded = (self.meta or {}).get("patients") or {}
        return np.asarray(
            [recorded.get(s, patient_of(s)) for s in self.slide_ids.tolist()], dtype=str
        )

    def unpack(self, rows: slice | np.ndarray | Sequence[int] = slice(None)) -> np.ndarray:
        """Masks of ``rows`` as (k, size*size) uint8 0/1 vectors."""
        packed = self._read(rows) if isinstance(rows, slice) else self.take(rows)
        return np.unpackbits(packed, axis=1, count=self.size * self.size)

    def _read(self, rows: slice) -> np.ndarray:
        """Packed rows; a chunk that fails to decode is a `DatasetError` naming the dataset."""
        if isinstance(self.packed, np.ndarray):
            return self.packed[rows]
        try:
            return np.asarray(self.packed[rows])
        except Exception as exc:  # noqa: BLE001 - codec/store errors from deep inside zarr
            raise _read_error(self.meta.get("path"), exc) from exc

    def take(self, rows) -> np.ndarray:
        """Packed rows by position or by a bool mask (numpy or zarr), read in one selection."""
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.intp)
        if isinstance(self.packed, np.ndarray):
            return self.packed[rows]
        try:
            return np.asarray(self.packed.get_orthogonal_selection((rows, slice(None))))
        except Exception as exc:  # noqa: BLE001
            raise _read_error(self.meta.get("path"), exc) from exc

    def mask(self, i: int) -> np.ndarray:
        """Mask ``i`` as a (size, size) bool image."""
        return self.unpack(slice(i, i + 1))[0].reshape(self.size, self.size).astype(bool)

    def iter_packed(self, chunk: int = PACK_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """(start, packed rows) in chunks: bounded memory whatever the dataset size."""
        for start in range(0, len(self), chunk):
            yield start, self._read(slice(start, start + chunk))

    def iter_features(
        self, chunk: int = PACK_CHUNK, dtype=np.uint8
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(start, (k, size*size) feature vectors) in chunks, unpacked only chunk by chunk."""
        for start, block in self.iter_packed(chunk):
            yield start, np.unpackbits(block, axis=1, count=self.size * self.size).astype(dtype)


def _read_error(path, exc: BaseException) -> DatasetError:
    return DatasetError(
        path, f"damaged mask data ({shorten(str(exc) or type(exc).__name__, 120)}); rebuild it"
    )


def _check_format(method: str, size: int, channel: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown mask method {method!r}; expected one of {METHODS}")
    if channel not in CHANNELS:
        raise ValueError(f"unknown threshold channel {channel!r}; expected one of {CHANNELS}")
    if int(size) < 1:
        raise ValueError(f"mask size must be positive, got {size}")


def _meta(method, size, channel, **extra) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "method": method,
        "size": int(size),
        "channel": channel,
        "level_rule": LEVEL_RULE,
        "resize_rule": RESIZE_RULE,
        "threshold_rule": THRESHOLD_RULE,
        "napari_crystal": __version__,
        **extra,
    }


def _polygon_for(patch: Patch, regions: Sequence, method: str):
    """The polygon a patch's mask is restricted to (None: the whole box)."""
    if patch.kind == "region":
        return regions[patch.index].coords
    if method == "polygon":
        for region in regions:
            if int(region.region_id) == patch.region_id:
                return region.coords
        return np.zeros((0, 2))
    return None


def _is_dataset(path: Path) -> bool:
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return attrs.get("format") == FORMAT


def _write_zarr(path: Path, table: PatchTable, blocks: Iterator[np.ndarray], meta: dict) -> None:
    """Write a dataset directory at ``path`` (which must not exist) from packed row blocks."""
    import zarr

    n, nbytes = len(table), _nbytes(int(meta["size"]))
    rows_name, dtype = "packed", "uint8"
    if (meta.get("features") or {}).get("feature_set", "mask") != "mask":
        rows_name, dtype, nbytes = "features", "float32", len(meta["feature_names"])
    group = zarr.open_group(store=str(path), mode="w", zarr_format=3)
    cats: dict[str, list[str]] = {}
    tgroup = group.create_group("table")
    for name in COLUMNS:
        col = getattr(table, name)
        if name in STRING_COLUMNS:
            values, codes = np.unique(col, return_inverse=True)
            cats[name] = [str(v) for v in values]
            col = codes.astype(np.int32).reshape(-1)
        tgroup.create_array(name, data=np.ascontiguousarray(col), chunks=(max(1, len(col)),))
    packed = group.create_array(
        rows_name, shape=(n, nbytes), dtype=dtype, chunks=(max(1, min(n, PACK_CHUNK)), nbytes)
    )
    start = 0
    for block in blocks:
        block = np.asarray(block, dtype=dtype).reshape(-1, nbytes)
        packed[start : start + len(block)] = block
        start += len(block)
    if start != n:
        raise DatasetError(path, f"wrote {start} mask rows for {n} patches")
    group.attrs.update(
        {**meta, "n": n, "nbytes": nbytes, "categories": cats, "files": _file_record(path)}
    )


ROOT_META = "zarr.json"  # holds the record itself, so it is the one file not in it


def _file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _file_record(path: Path) -> dict[str, list]:
    """``{relative path: [bytes, sha256]}`` of every file of a dataset but the root metadata."""
    record = {}
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).as_posix()
        if f.is_file() and rel != ROOT_META:
            record[rel] = [f.stat().st_size, _file_digest(f)]
    return record


def verify_dataset(path, record: dict) -> None:
    """Check a dataset's files against its record: present, same size, same digest.

    Sizes first (a stat per file), then digests; a 50,000-mask dataset (~100 MB of
    compressed chunks) hashes in well under a second.
    """
    path = Path(path)
    if not isinstance(record, dict) or not all(
        isinstance(v, list) and len(v) == 2 for v in record.values()
    ):
        raise DatasetError(path, "damaged metadata: the file record is not readable")
    for rel, (nbytes, _) in record.items():
        f = path / rel
        try:
            actual = f.stat().st_size
        except OSError:
            raise DatasetError(path, f"damaged: {rel} is missing; rebuild the dataset") from None
        if actual != nbytes:
            raise DatasetError(
                path, f"damaged: {rel} has {actual} bytes, {nbytes} were written; rebuild it"
            )
    for rel, (_, digest) in record.items():
        if _file_digest(path / rel) != digest:
            raise DatasetError(
                path, f"damaged: {rel} differs from what was written (SHA-256); rebuild it"
            )


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put the finished directory ``tmp`` at ``path``; an old dataset there goes only after."""
    if path.exists() or path.is_symlink():
        if not _is_dataset(path):
            raise DatasetError(path, "exists and is not a napari-crystal dataset; not overwriting")
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _save(path, table: PatchTable, blocks: Iterator[np.ndarray], meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not _is_dataset(path):
        raise DatasetError(path, "exists and is not a napari-crystal dataset; not overwriting")
    sweep_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=temp_name(path, "dir"), dir=path.parent))
    try:
        shutil.rmtree(tmp)
        _write_zarr(tmp, table, blocks, meta)
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def save_dataset(ds: Dataset, path) -> Path:
    """Write ``ds`` as a zarr directory at ``path`` atomically (temp folder, then rename)."""
    meta = {**ds.meta, **_meta(ds.method, ds.size, ds.meta.get("channel", "grey"))}
    return _save(path, ds.table, (b for _, b in ds.iter_packed()), meta)


def load_dataset(path) -> Dataset:
    """Open a dataset directory: table and metadata in memory, masks lazily (zarr)."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "no such dataset")
    if not _is_dataset(path):
        raise DatasetError(path, "not a napari-crystal dataset (no dataset metadata)")
    try:
        return _open(path, zarr)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - zarr/numcodecs raise many types on damage
        raise DatasetError(
            path, f"damaged dataset: {shorten(str(exc) or type(exc).__name__, 120)}"
        ) from exc


def read_dataset_meta(path) -> dict:
    """A dataset's metadata alone (mask size, method, channel, feature settings), without
    its table or masks: cheap enough for a widget's check of its fields."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "no such dataset")
    if not _is_dataset(path):
        raise DatasetError(path, "not a napari-crystal dataset (no dataset metadata)")
    return dict(json.loads((path / "zarr.json").read_text()).get("attributes", {}))


def _meta_int(path: Path, meta: dict, key: str, low: int) -> int:
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise DatasetError(path, f"damaged metadata: {key} is {shorten(repr(value), 40)}")
    return value


def _open(path: Path, zarr) -> Dataset:
    group = zarr.open_group(store=str(path), mode="r")
    meta = dict(group.attrs)
    version = meta.get("version", -1)
    if isinstance(version, int) and version > VERSION:
        raise DatasetError(path, f"dataset format version {version} is newer than {VERSION}")
    if "files" not in meta:
        raise DatasetError(
            path, "no file record (made before napari-crystal checked datasets); rebuild it"
        )
    verify_dataset(path, meta.pop("files"))
    features = (meta.get("features") or {}).get("feature_set", "mask") != "mask"
    n = _meta_int(path, meta, "n", 0)
    size = _meta_int(path, meta, "size", 0 if features else 1)
    if not features and meta.get("method") not in METHODS:
        raise DatasetError(
            path, f"damaged metadata: method {shorten(repr(meta.get('method')), 40)}"
        )
    cats = meta.pop("categories", {})
    meta["path"] = str(path)
    columns = {}
    for name in COLUMNS:
        if f"table/{name}" not in group:
            raise DatasetError(path, f"damaged: table column {name!r} is missing")
        array = group["table"][name]
        col = np.asarray(array[:]).reshape(-1)
        if len(col) != n:
            raise DatasetError(
                path, f"damaged: table column {name!r} has {len(col)} rows, not {n}"
            )
        if name in STRING_COLUMNS:
            values = cats.get(name) if isinstance(cats, dict) else None
            if not isinstance(values, list):
                raise DatasetError(path, f"damaged metadata: no categories for {name!r}")
            if len(col) and (col.min() < 0 or col.max() >= max(1, len(values))):
                raise DatasetError(
                    path, f"damaged: {name!r} code {int(col.max())} is out of range "
                    f"({len(values)} values)"
                )  # fmt: skip
            col = np.asarray(values or [""], dtype=str)[col] if len(col) else col.astype(str)
        columns[name] = col
    if features:
        if "features" not in group:
            raise DatasetError(path, "damaged: the feature rows are missing")
        rows = group["features"]
        names = meta.get("feature_names")
        if not isinstance(names, list) or rows.shape != (n, len(names)):
            raise DatasetError(path, f"feature rows have shape {rows.shape}, metadata disagree")
        return Dataset(PatchTable.from_columns(columns), rows, 0, meta["method"], meta)
    if "packed" not in group:
        raise DatasetError(path, "damaged: the packed masks are missing")
    packed = group["packed"]
    if packed.shape != (n, _nbytes(size)):
        raise DatasetError(path, f"packed masks have shape {packed.shape}, metadata disagree")
    return Dataset(PatchTable.from_columns(columns), packed, size, meta["method"], meta)


# --------------------------------------------------------------------------- subjects


def patient_of(slide: str | os.PathLike) -> str:
    """The patient of a slide: the first field of an NEDC stem (``00000008_s001_...``).

    A stem without the NEDC fields is its own patient (an unnamed slide is never merged
    with another one).
    """
    stem = Path(str(slide)).stem
    head = stem.split("_", 1)[0]
    return head if "_" in stem and head.isdigit() else stem


def shared_subjects(a: Dataset, b: Dataset) -> dict[str, list[str]]:
    """Patients and slides present in both datasets (train and eval should share none)."""
    out = {}
    for key, get in (("patients", lambda d: d.patients), ("slides", lambda d: d.slide_ids)):
        common = set(get(a).tolist()) & set(get(b).tolist())
        out[key] = sorted(common - {""})
    return out


def dependence_warning(a: Dataset, b: Dataset, names: tuple[str, str] = ("train", "eval")):
    """One line when two datasets share patients or slides (their patches are not independent),
    else None."""
    shared = shared_subjects(a, b)
    if not shared["patients"] and not shared["slides"]:
        return None
    first = ", ".join(shared["patients"][:3]) + (", ..." if len(shared["patients"]) > 3 else "")
    return (
        f"{names[0]} and {names[1]} share {len(shared['patients'])} patient(s) ({first}) and "
        f"{len(shared['slides'])} slide(s): their patches are not independent, so the "
        "evaluation is optimistic"
    )


# --------------------------------------------------------------------------- building


def _mask_rows(slide, table: PatchTable, regions, method, size, channel, cancel=None, tick=None):
    """Packed masks of ``table``'s patches of one open slide."""
    out = np.empty((len(table), _nbytes(size)), dtype=np.uint8)
    for i, patch in enumerate(table):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        mask = make_mask(slide, patch, _polygon_for(patch, regions, method), method, size, channel)
        out[i] = np.packbits(mask.reshape(-1))
        if tick is not None:
            tick(i + 1)
    return out


def dataset_for_slide(
    slide,
    annotation,
    method: str = "threshold",
    size: int = 256,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    channel: str = "grey",
    patches: PatchTable | None = None,
) -> Dataset:
    """In-memory dataset of one slide (path or open ``Slide``) and an ``Annotation``.

    The patches are the annotation's regions unless ``patches`` (e.g. NEDC frames) is given.
    For the napari widget: progress per patch, cancellable between patches.
    """
    from napari_crystal.io.slide import open_slide

    _check_format(method, size, channel)
    owned = isinstance(slide, (str, os.PathLike))
    opened = open_slide(slide) if owned else slide
    try:
        table = _region_patches(opened, annotation, size) if patches is None else patches
        total = len(table)
        tick = None if progress is None else (lambda done: progress(done, total))
        packed = _mask_rows(opened, table, annotation.regions, method, size, channel, cancel, tick)
    finally:
        if owned:
            opened.close()
    meta = _meta(method, size, channel, slide=str(getattr(opened, "path", slide)))
    return Dataset(table, packed, size, method, meta)


@dataclass
class _Part:
    """One task: a chunk of one slide's patches, written to ``name`` in the work folder."""

    name: str
    slide: str
    rows: slice
    key: str


def _stat_key(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _plan(folder: Path, size: int, labels=None):
    """Read every annotation and slide header up front: bad input fails before any mask work.

    ``labels``: a label map (mapping or CSV path) applied to every annotation.
    """
    from napari_crystal.io.formats import find_annotation, read_annotation, read_label_map

    if isinstance(labels, str | Path):
        labels = read_label_map(labels)

    if not folder.is_dir():
        raise DatasetError(folder, "no such corpus folder")
    slides = slide_files(folder)
    if not slides:
        raise DatasetError(folder, f"no slides ({', '.join(SLIDE_SUFFIXES)}) found")
    found = [find_annotation(s) for s in slides]
    if all(a is None for a in found):
        raise DatasetError(
            folder,
            f"no NEDC annotations (.csv/.xml beside the slides) for any of {len(slides)} slides",
        )
    for slide, ann in zip(slides, found, strict=True):
        if ann is None:
            raise DatasetError(slide, "no annotation (.csv or .xml with the same stem) beside it")
    plan = []
    for slide, ann_path in zip(slides, found, strict=True):
        annotation = read_annotation(ann_path, labels=labels)
        table = _region_patches(slide, annotation, size)
        plan.append((slide.resolve(), Path(ann_path), annotation, table))
    if sum(len(t) for *_, t in plan) == 0:
        raise DatasetError(folder, "the annotations hold no regions")
    return plan


def _build_part(slide_path, table_cols, polygons, method, size, channel, part_path, key, cancel):
    """Dask task: masks of a chunk of one slide's patches, written atomically to ``part_path``."""
    from napari_crystal.io.slide import open_slide

    if cancel is not None and cancel.is_set():
        raise Cancelled()
    table = PatchTable.from_columns(table_cols)
    regions = [_Region(i, c) for i, c in polygons]
    slide = open_slide(slide_path)
    try:
        packed = _mask_rows(slide, table, regions, method, size, channel, cancel)
    finally:
        slide.close()
    part_path = Path(part_path)
    fd, tmp = tempfile.mkstemp(prefix=temp_name(part_path), suffix=".tmp", dir=part_path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, packed=packed, key=np.array(key))
        os.replace(tmp, part_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(table)


@dataclass
class _Region:
    """The part of a region a task needs (picklable, small)."""

    region_id: int
    coords: np.ndarray


def _part_done(path: Path, key: str, rows: int, nbytes: int) -> bool:
    """Whether a finished chunk is there, for these inputs, whole; a damaged one is removed
    (and so redone): a truncated file from a full disk must not stop every rerun."""
    if not path.is_file():
        return False
    try:
        with np.load(path) as data:
            ok = str(data["key"]) == key and data["packed"].shape == (rows, nbytes)
    except Exception:  # noqa: BLE001 - BadZipFile, EOFError, zlib errors...: redo it
        ok = False
    if not ok:
        path.unlink(missing_ok=True)
    return ok


def build_dataset(
    corpus,
    split: str | None,
    out,
    method: str = "threshold",
    size: int = 256,
    progress: Progress = None,
    scheduler=None,
    cancel: threading.Event | None = None,
    channel: str = "grey",
    chunk: int = 64,
    labels=None,
) -> Dataset:
    """Masks of every annotated region of ``corpus/split``, saved at ``out`` and returned.

    Runs one dask task per chunk of ``chunk`` patches of a slide: ``scheduler`` None or
    "threads" (all cores), "processes", "sync", a dask.distributed address "tcp://host:port"
    or a ``Client`` (workers must see the corpus and ``out``'s folder). Results are identical
    whatever the scheduler. Finished chunks stay in ``<out>.work/`` until the dataset is saved,
    so a rerun resumes; a rerun with unchanged inputs (slide and annotation sizes and mtimes,
    method, size, channel, format) returns the saved dataset without work. ``labels`` is a
    label map (mapping, or a mapping CSV's path) for annotations with foreign class names.
    """
    _check_format(method, size, channel)
    kind = scheduler_kind(scheduler)
    corpus = Path(corpus)
    folder = corpus / split if split else corpus
    out = Path(out)
    if out.exists() and not _is_dataset(out):
        raise DatasetError(out, "exists and is not a napari-crystal dataset; not overwriting")
    plan = _plan(folder, size, labels)
    settings = [method, int(size), channel, VERSION, LEVEL_RULE, RESIZE_RULE, THRESHOLD_RULE]
    if labels is not None:  # the mapped labels, not the map file's name, decide a rerun
        settings.append(sorted({r.label for *_, a, _t in plan for r in a.regions}))
    parts: list[_Part] = []
    calls: list[tuple] = []
    for s, (slide, ann_path, annotation, table) in enumerate(plan):
        inputs = [_stat_key(slide), _stat_key(ann_path), settings]
        polygons = [(int(r.region_id), np.asarray(r.coords)) for r in annotation.regions]
        for c, start in enumerate(range(0, len(table), chunk)):
            rows = slice(start, min(start + chunk, len(table)))
            key = _digest([inputs, s, rows.start, rows.stop])
            parts.append(_Part(f"{s:05d}-{c:04d}.npz", str(slide), rows, key))
            calls.append((str(slide), table[rows].columns(), polygons))
    inputs_hash = _digest(
        [str(folder.relative_to(corpus)) if split else "", [p.key for p in parts]]
    )
    table = PatchTable.concat([t for *_, t in plan])
    total = len(table)
    if _is_dataset(out):
        try:
            done = load_dataset(out)
        except DatasetError:
            done = None
        if done is not None and done.meta.get("inputs_hash") == inputs_hash:
            if progress is not None:
                progress(total, total)
            return done
    sweep_leftovers(out)
    work = out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(work)
    sizes = [p.rows.stop - p.rows.start for p in parts]
    nbytes = _nbytes(size)
    finished = [
        _part_done(work / p.name, p.key, n, nbytes) for p, n in zip(parts, sizes, strict=True)
    ]
    done_count = sum(n for n, f in zip(sizes, finished, strict=True) if f)
    if progress is not None:
        progress(done_count, total)
    pending = [i for i, f in enumerate(finished) if not f]
    threads_cancel = cancel if kind in ("threads", "sync") else None  # an Event does not pickle
    run = [
        (*calls[i], method, int(size), channel, str(work / parts[i].name), parts[i].key,
         threads_cancel)
        for i in pending
    ]  # fmt: skip

    def on_done(j: int) -> None:
        nonlocal done_count
        done_count += sizes[pending[j]]
        if progress is not None:
            progress(done_count, total)

    try:
        if run:
            run_tasks(_build_part, run, scheduler, on_done, cancel)
    finally:
        sweep_leftovers(out)  # a failed first run leaves no empty <out>.work

    def blocks() -> Iterator[np.ndarray]:
        for p in parts:
            with np.load(work / p.name) as data:
                if str(data["key"]) != p.key:
                    raise DatasetError(work / p.name, "changed while the dataset was assembled")
                yield data["packed"]

    meta = _meta(
        method, size, channel, corpus=str(corpus.resolve()), split=split or "",
        inputs_hash=inputs_hash, slides=len(plan),
        patients={Path(str(sl)).stem: patient_of(sl) for sl, *_ in plan},
    )  # fmt: skip
    _save(out, table, blocks(), meta)
    shutil.rmtree(work, ignore_errors=True)
    return load_dataset(out)
