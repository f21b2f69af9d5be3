"""Balanced random forests on packed binary masks: label mapping, training, model files.

Features arrive packed (``np.packbits`` rows of a row-major ``size`` x ``size`` mask), so a
corpus never has to exist unpacked except as the one float32 matrix scikit-learn trains on.
Models are stored with skops plus a JSON member describing how they were made; loading
trusts only the types a balanced random forest needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_crystal import palette
from napari_crystal._atomic import atomic_path
from napari_crystal.errors import Cancelled, DatasetError, ModelError

CRYSTAL_MODES = ("merge", "keep", "drop")

#: The study's settings (crystal-method.md, "Baseline pipeline"); each can be overridden.
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 100,
    "criterion": "gini",
    "max_features": "sqrt",
    "max_depth": None,
    "min_samples_split": 2,
    "min_samples_leaf": 1,
    "sampling_strategy": "all",
    "replacement": True,
    "bootstrap": False,
    "random_state": 42,
}

#: Bumped whenever the file layout or the metadata's meaning changes.
FORMAT = "napari-crystal-model"
FORMAT_VERSION = 1
META_MEMBER = "napari_crystal.json"

#: The only non-default types a model file may contain (what ``skops.io.get_untrusted_types``
#: reports for a fitted ``BalancedRandomForestClassifier``); anything else is refused.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "imblearn.ensemble._forest.BalancedRandomForestClassifier",
        "imblearn.pipeline.Pipeline",
        "imblearn.under_sampling._prototype_selection._random_under_sampler.RandomUnderSampler",
        "sklearn.pipeline.Pipeline",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._tree.Tree",
    }
)

#: Most trees per sub-forest (see `train_model`): the unit of progress, Cancel and seeding.
#: Each sub-forest's fit has a fixed cost (scikit-learn checks the whole matrix), so they are
#: not made smaller than needed: 100 trees grow as 6 sub-forests.
SUB_FOREST_TREES = 20


def map_labels(labels: Sequence[str], crystals: str = "merge") -> tuple[np.ndarray, np.ndarray]:
    """Apply a crystal-label policy to NEDC labels.

    Parameters
    ----------
    labels : sequence of str
        NEDC labels; unknown labels pass through unchanged.
    crystals : {"merge", "keep", "drop"}
        ``merge``: crystal labels become their parent (``cnno``->``nneo``, ``cdcs``->``dcis``,
        ``cidc``->``indc``, the study's setting); ``keep``: unchanged; ``drop``: crystal
        patches are removed (the "without crystals" training set).

    Returns
    -------
    mapped : ndarray of str
        The labels of the kept patches, mapped.
    keep : ndarray of bool
        Which input patches were kept (all of them unless ``crystals="drop"``).
    """
    if crystals not in CRYSTAL_MODES:
        raise ValueError(f"crystals must be one of {CRYSTAL_MODES}, not {crystals!r}")
    arr = np.asarray(labels, dtype=str)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    is_crystal = np.isin(arr, palette.CRYSTAL_LABELS)
    if crystals == "keep":
        return arr.copy(), np.ones(arr.shape, dtype=bool)
    if crystals == "drop":
        keep = ~is_crystal
        return arr[keep], keep
    mapped = arr.astype(object)
    for child, parent in palette.CRYSTAL_PARENT.items():
        mapped[arr == child] = parent
    return mapped.astype(str), np.ones(arr.shape, dtype=bool)


def truth_labels(labels: Sequence[str], crystals: str) -> np.ndarray:
    """Ground truth for a model trained with ``crystals``: crystal labels merged unless kept.

    A "drop" model never learnt crystal classes, but a crystal region is still tissue of its
    parent class, so it is scored against the parent.
    """
    return map_labels(labels, "keep" if crystals == "keep" else "merge")[0]


@dataclass
class Model:
    """A trained forest with everything needed to use it again on matching data.

    ``classes`` is the estimator's class order (columns of ``predict_proba``); ``crystals``
    the label policy it was trained with; ``size``/``method``/``level_rule`` how its masks
    were made (``method``/``level_rule`` come from the caller's ``meta``); ``training_hash``
    identifies the training set (`training_hash`); ``path`` is set by `load_model`.
    """

    estimator: Any
    classes: tuple[str, ...]
    crystals: str
    size: int
    method: str | None
    level_rule: str | None
    params: dict[str, Any]
    versions: dict[str, str]
    training_hash: str
    class_counts: dict[str, int]
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def n_features(self) -> int:
        """Length of one flattened mask."""
        return self.size * self.size

    def metadata(self) -> dict[str, Any]:
        """The JSON-able description stored next to the estimator."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "classes": list(self.classes),
            "crystals": self.crystals,
            "size": self.size,
            "method": self.method,
            "level_rule": self.level_rule,
            "params": self.params,
            "versions": self.versions,
            "training_hash": self.training_hash,
            "class_counts": self.class_counts,
            "meta": self.meta,
        }


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model file depends on."""
    import imblearn
    import sklearn

    from napari_crystal import __version__

    return {
        "sklearn": sklearn.__version__,
        "imblearn": imblearn.__version__,
        "numpy": np.__version__,
        "napari_crystal": __version__,
    }


def packed_width(size: int) -> int:
    """Bytes per packed ``size`` x ``size`` mask."""
    return -(-size * size // 8)


def check_packed(packed: Any, size: int, path: str | None = None) -> int:
    """Check that ``packed`` holds ``size`` x ``size`` masks; return the number of rows."""
    shape = getattr(packed, "shape", None)
    if shape is None or len(shape) != 2:
        raise DatasetError(path, f"packed masks must be a 2-D array, got shape {shape}")
    if shape[1] != packed_width(size):
        raise DatasetError(
            path,
            f"packed masks have {shape[1]} bytes per row, {size}x{size} masks need "
            f"{packed_width(size)}: the dataset was made with another mask size",
        )
    dtype = getattr(packed, "dtype", None)
    if dtype is not None and np.dtype(dtype) != np.uint8:
        raise DatasetError(path, f"packed masks must be uint8, got {dtype}")
    return int(shape[0])


def iter_unpacked(packed: Any, size: int, chunk: int = 1024) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, uint8 (m, size*size))`` for consecutive row chunks of ``packed``."""
    n = int(packed.shape[0])
    for start in range(0, n, chunk):
        rows = np.asarray(packed[start : start + chunk], dtype=np.uint8)
        yield start, np.unpackbits(rows, axis=1, count=size * size)


def is_feature_rows(rows: Any) -> bool:
    """Whether ``rows`` are float feature rows (`napari_crystal.features`), not packed masks."""
    dtype = getattr(rows, "dtype", None)
    return dtype is not None and np.issubdtype(np.dtype(dtype), np.floating)


def feature_matrix(rows: Any, keep: np.ndarray, size: int, chunk: int = 1024) -> np.ndarray:
    """The float32 training matrix of the kept rows of either kind of dataset: packed masks
    (unpacked chunk by chunk) or feature rows (taken as they are)."""
    if not is_feature_rows(rows):
        return _features(rows, keep, size, chunk)
    X = np.empty((int(keep.sum()), int(rows.shape[1])), dtype=np.float32)
    row = 0
    for start in range(0, int(rows.shape[0]), chunk):
        block = np.asarray(rows[start : start + chunk], dtype=np.float32)
        sel = block[keep[start : start + len(block)]]
        X[row : row + len(sel)] = sel
        row += len(sel)
    return X


def finite_rows(rows: Any, chunk: int = 4096) -> np.ndarray:
    """Bool per row: False for the NaN rows a feature dataset keeps for skipped patches."""
    n = int(rows.shape[0])
    if not is_feature_rows(rows):
        return np.ones(n, dtype=bool)
    out = np.empty(n, dtype=bool)
    for start in range(0, n, chunk):
        out[start : start + chunk] = np.isfinite(np.asarray(rows[start : start + chunk])).all(1)
    return out


def training_hash(packed: Any, labels: Sequence[str], size: int, chunk: int = 4096) -> str:
    """sha256 over the packed mask bytes (or feature rows), the mask size and the labels."""
    h = hashlib.sha256()
    h.update(f"size={size}\n".encode())
    n = int(packed.shape[0])
    dtype = np.float32 if is_feature_rows(packed) else np.uint8
    for start in range(0, n, chunk):
        h.update(np.ascontiguousarray(packed[start : start + chunk], dtype=dtype).tobytes())
    h.update("\n".join(str(label) for label in labels).encode("utf-8"))
    return h.hexdigest()


def _features(
    packed: Any, keep: np.ndarray, size: int, chunk: int = 1024, step: int = 64
) -> np.ndarray:
    """The float32 training matrix of the kept rows: read ``chunk`` packed rows at a time, keep
    the wanted ones, and unpack ``step`` rows at a time (a few MB, so they stay in cache)."""
    X = np.empty((int(keep.sum()), size * size), dtype=np.float32)
    row = 0
    for start in range(0, int(packed.shape[0]), chunk):
        rows = np.asarray(packed[start : start + chunk], dtype=np.uint8)
        rows = rows[keep[start : start + len(rows)]]
        for k in range(0, len(rows), step):
            part = rows[k : k + step]
            X[row : row + len(part)] = np.unpackbits(part, axis=1, count=size * size)
            row += len(part)
    return X


def sub_forest_sizes(total: int) -> list[int]:
    """Trees of each sub-forest of a ``total``-tree forest: at most `SUB_FOREST_TREES`, sizes
    as equal as can be, and an even number of sub-forests, so that two threads (a laptop's
    usual count) finish together rather than one growing the last sub-forest alone. Depends on
    ``total`` only, so neither threads nor timing change a model."""
    n = max(1, -(-total // SUB_FOREST_TREES))
    n = min(total, n + n % 2) if total > 1 else 1
    return [len(part) for part in np.array_split(np.arange(total), n)]


def sub_forest_seeds(seed: int | None, n: int) -> list[int]:
    """One independent seed per sub-forest, derived from the model's seed with numpy's
    ``SeedSequence.spawn`` (fresh entropy when ``seed`` is None)."""
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(n)]


def join_forests(forests: Sequence[Any], params: dict[str, Any]) -> Any:
    """One forest of the trees of fitted sub-forests, in order, with ``params`` (the whole
    forest's settings); its ``predict_proba`` is the average over all trees, as for a forest
    fitted in one go. Sub-forests fitted on the same labels have the same classes (checked).
    """
    forest = forests[0]  # fitted on the same data: its fitted state serves for all
    for other in forests[1:]:
        if not np.array_equal(other.classes_, forest.classes_):
            raise ValueError("sub-forests were fitted on different classes")
    forest.estimators_ = [tree for f in forests for tree in f.estimators_]
    forest.samplers_ = [s for f in forests for s in f.samplers_]
    forest.pipelines_ = [p for f in forests for p in f.pipelines_]
    forest.set_params(**params, n_jobs=None)
    return forest


def _grow_sub_forests(
    X: np.ndarray,
    y: np.ndarray,
    subs: list[dict[str, Any]],
    threads: int,
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> list[Any]:
    """Fit one ``BalancedRandomForestClassifier`` per parameter set in ``subs``, ``threads``
    at a time; progress in trees after each, Cancel checked before each starts."""
    from imblearn.ensemble import BalancedRandomForestClassifier

    total = sum(sub["n_estimators"] for sub in subs)

    def grow(sub: dict[str, Any]):
        if cancel is not None and cancel.is_set():
            raise Cancelled("training cancelled")
        return BalancedRandomForestClassifier(**sub, n_jobs=1).fit(X, y)

    if progress is not None:
        progress(0, total)
    forests: list[Any] = [None] * len(subs)
    done = 0
    if threads == 1:
        for k, sub in enumerate(subs):
            forests[k] = grow(sub)
            done += sub["n_estimators"]
            if progress is not None:
                progress(done, total)
        return forests
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = {pool.submit(grow, sub): k for k, sub in enumerate(subs)}
        try:
            for future in as_completed(futures):
                k = futures[future]
                forests[k] = future.result()
                done += subs[k]["n_estimators"]
                if progress is not None:
                    progress(done, total)
        except BaseException:
            for future in futures:
                future.cancel()  # those not started; the running ones finish
            raise
    return forests


def train_model(
    packed: Any,
    labels: Sequence[str],
    size: int,
    *,
    crystals: str = "merge",
    params: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    n_jobs: int | None = None,
) -> Model:
    """Train a balanced random forest on packed masks.

    The forest is grown as sub-forests of about `SUB_FOREST_TREES` trees, each a
    ``BalancedRandomForestClassifier`` fitted with its own seed (`sub_forest_seeds`, from
    ``random_state``), then joined (`join_forests`). Progress is reported and Cancel checked
    per sub-forest; ``n_jobs`` sub-forests grow at once. The result is a forest of the same
    trees in distribution as one ``fit`` of all ``n_estimators`` (each tree is an independent
    draw), not bit-identical to it; the same ``random_state`` and ``n_estimators`` give the
    same model whatever ``n_jobs``.

    Parameters
    ----------
    packed : array-like (n, ceil(size*size/8)) uint8
        ``np.packbits`` rows; anything sliceable as ``packed[i:j]`` (numpy, zarr).
    labels : sequence of str
        NEDC label per row.
    size : int
        Mask side in pixels.
    crystals : {"merge", "keep", "drop"}
        Crystal-label policy (see `map_labels`).
    params : dict, optional
        Overrides of `DEFAULT_PARAMS` (any ``BalancedRandomForestClassifier`` parameter).
    meta : dict, optional
        Caller's description (``method``, ``level_rule``, ``dataset``...), stored in the model.
    progress : callable(done_trees, total_trees), optional
    cancel : threading.Event, optional
        When set, training stops before the next sub-forest with `errors.Cancelled`.
    n_jobs : int, optional
        Sub-forests grown at once, one thread each (does not change the result); -1: all
        cores.

    Returns
    -------
    Model
    """
    meta = dict(meta or {})
    source = meta.get("dataset")
    source = None if source is None else str(source)
    if is_feature_rows(packed):
        n = int(packed.shape[0])
    else:
        n = check_packed(packed, size, source)
    labels = np.asarray(labels, dtype=str).reshape(-1)
    if len(labels) != n:
        raise DatasetError(source, f"{n} masks but {len(labels)} labels")
    y, keep = map_labels(labels, crystals)
    valid = finite_rows(packed)  # skipped patches of a feature dataset are left out
    y, keep = y[valid[keep]], keep & valid
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        found = ", ".join(classes) if len(classes) else "none"
        raise DatasetError(
            source,
            f"training needs at least 2 classes after crystals={crystals!r}, found {found}",
        )
    merged = {**DEFAULT_PARAMS, **(params or {})}
    for key in ("warm_start", "n_jobs"):
        merged.pop(key, None)
    seed = merged.get("random_state")
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise ValueError("random_state must be an int or None for reproducible training")
    total = int(merged["n_estimators"])
    if total < 1:
        raise ValueError("n_estimators must be at least 1")

    sizes = sub_forest_sizes(total)
    seeds = sub_forest_seeds(None if seed is None else int(seed), len(sizes))
    subs = [
        {**merged, "n_estimators": k, "random_state": r} for k, r in zip(sizes, seeds, strict=True)
    ]
    jobs = n_jobs if n_jobs is not None else 1
    threads = max(1, min(len(subs), jobs if jobs > 0 else (os.cpu_count() or 1)))
    forests = _grow_sub_forests(
        feature_matrix(packed, keep, size), y, subs, threads, progress, cancel
    )
    forest = join_forests(forests, merged)

    return Model(
        estimator=forest,
        classes=tuple(str(c) for c in forest.classes_),
        crystals=crystals,
        size=int(size),
        method=meta.get("method"),
        level_rule=meta.get("level_rule"),
        params=merged,
        versions=library_versions(),
        training_hash=training_hash(packed, labels, size),
        class_counts={str(c): int(k) for c, k in zip(classes, counts, strict=True)},
        meta=_jsonable(meta),
    )


def _jsonable(value: Any) -> Any:
    """``value`` with paths and numpy scalars turned into plain JSON types."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save_model(model: Model, path: str | os.PathLike) -> Path:
    """Write ``model`` as a skops file with its metadata as a JSON member; atomic."""
    import skops.io as sio

    path = Path(path)
    with atomic_path(path) as tmp:
        sio.dump(model.estimator, tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(META_MEMBER, json.dumps(model.metadata(), indent=1))
    return path


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a model file, checked for format and version (estimator not loaded)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(path, "model file not found")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as fh:
            head = fh.read(2)
        kind = "a pickle" if head[:1] == b"\x80" else "not a skops file"
        raise ModelError(path, f"not a napari-crystal model ({kind}); refusing to load it")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "schema.json" not in names:
                raise ModelError(path, "not a napari-crystal model (zip without a skops schema)")
            if META_MEMBER not in names:
                raise ModelError(path, f"model metadata ({META_MEMBER}) is missing")
            meta = json.loads(zf.read(META_MEMBER))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(path, f"unreadable model file: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(path, "model metadata is not napari-crystal's")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            path,
            f"model format version {version} is not supported (this napari-crystal reads "
            f"version {FORMAT_VERSION}); retrain the model",
        )
    required = ("classes", "crystals", "size", "params", "versions", "training_hash")
    missing = [key for key in required if key not in meta]
    if missing:
        raise ModelError(path, f"model metadata lacks {', '.join(missing)}")
    return meta


def model_header(path: str | os.PathLike) -> Model:
    """A model file's description without its forest (``estimator`` None): for checking it
    against data before the forest is loaded."""
    meta = read_model_metadata(path)
    return Model(
        estimator=None, classes=tuple(str(c) for c in meta["classes"]),
        crystals=str(meta["crystals"]), size=int(meta["size"]), method=meta.get("method"),
        level_rule=meta.get("level_rule"), params=dict(meta["params"]),
        versions=dict(meta["versions"]), training_hash=str(meta["training_hash"]),
        meta=dict(meta.get("meta") or {}), class_counts={}, path=str(path),
    )  # fmt: skip


def load_model(path: str | os.PathLike) -> Model:
    """Load a model saved by `save_model`, trusting only `TRUSTED_TYPES` (never unpickles).

    Raises `ModelError` for a file that is not a skops zip (e.g. a pickle), another format
    version, missing metadata, untrusted types, or an estimator that disagrees with its
    metadata. A different scikit-learn/imblearn version only warns.
    """
    import skops.io as sio

    path = Path(path)
    meta = read_model_metadata(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises assorted errors for broken schemas
        raise ModelError(path, f"unreadable skops content: {exc}") from None
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise ModelError(path, f"refusing untrusted types in model file: {', '.join(refused)}")
    try:
        estimator = sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise ModelError(path, f"cannot load the estimator: {exc}") from None
    from imblearn.ensemble import BalancedRandomForestClassifier

    if not isinstance(estimator, BalancedRandomForestClassifier):
        raise ModelError(path, f"expected a BalancedRandomForestClassifier, got {type(estimator)}")
    classes = tuple(str(c) for c in estimator.classes_)
    if classes != tuple(meta["classes"]):
        raise ModelError(path, "estimator classes disagree with the model metadata")
    size = int(meta["size"])
    names = (meta.get("meta") or {}).get("feature_names")
    width = len(names) if (meta.get("meta") or {}).get("features") and names else size * size
    if getattr(estimator, "n_features_in_", width) != width:
        raise ModelError(path, "estimator feature count disagrees with the mask size")
    current = library_versions()
    differ = [
        f"{lib} {meta['versions'].get(lib)} (now {current[lib]})"
        for lib in ("sklearn", "imblearn")
        if meta["versions"].get(lib) != current[lib]
    ]
    if differ:
        warnings.warn(
            f"{path}: model saved with {', '.join(differ)}; predictions may differ",
            UserWarning,
            stacklevel=2,
        )
    return Model(
        estimator=estimator,
        classes=classes,
        crystals=str(meta["crystals"]),
        size=size,
        method=meta.get("method"),
        level_rule=meta.get("level_rule"),
        params=dict(meta["params"]),
        versions=dict(meta["versions"]),
        training_hash=str(meta["training_hash"]),
        class_counts={str(k): int(v) for k, v in meta.get("class_counts", {}).items()},
        meta=dict(meta.get("meta") or {}),
        path=str(path),
    )


def check_compatible(
    model: Model,
    *,
    size: int | None = None,
    method: str | None = None,
    path: str | os.PathLike | None = None,
    features: dict | None | str = "unchecked",
    channel: str | None = None,
) -> None:
    """Raise `ModelError` when a dataset's mask size, method or channel differs from the model's.

    ``features`` is the dataset's feature settings (``None``: packed masks); a different
    feature set, resolution or stain reference is refused naming both settings.
    ``path`` names the dataset in the message; ``None`` values are not checked.
    """
    where = path if path is not None else model.path
    mine = (model.meta or {}).get("features")
    if features == "unchecked" and mine and size:  # masks offered to a feature model
        features = None
    if features != "unchecked":
        from napari_crystal.features import describe, same_settings

        if not same_settings(mine, features):
            raise ModelError(
                where,
                f"the data were made with {describe(features)} but the model was trained on "
                f"{describe(mine)}",
            )
        if mine:
            return
    if size is not None and int(size) != model.size:
        raise ModelError(
            where,
            f"dataset has {size}x{size} masks but the model was trained on "
            f"{model.size}x{model.size} masks",
        )
    if method is not None and model.method is not None and method != model.method:
        raise ModelError(
            where,
            f"dataset masks were made with method {method!r} but the model with {model.method!r}",
        )
    trained = (model.meta or {}).get("channel")
    if channel is not None and trained is not None and channel != trained:
        raise ModelError(
            where,
            f"dataset masks were thresholded on the {channel!r} channel but the model was "
            f"trained on {trained!r} masks",
        )
