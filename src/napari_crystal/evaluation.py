"""Chunked prediction, per-class scores and model comparison statistics (report files: ``reports``).

Label order everywhere (confusion matrices, tables): `palette.LABELS` order, then labels the
palette does not know, sorted; only classes present in the truth, the predictions or the
``classes`` argument appear.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from napari_crystal import palette
from napari_crystal.errors import Cancelled, ModelError
from napari_crystal.palette import label_order
from napari_crystal.training import Model, map_labels, packed_width, truth_labels

#: Classes the study reports per-class accuracy for.
STUDY_CLASSES = ("indc", "dcis", "nneo")
#: Below this many discordant pairs McNemar's test is exact (binomial), else chi-square.
MCNEMAR_EXACT_BELOW = 25


# ---------------------------------------------------------------- prediction


def predict_chunked(
    model: Model,
    packed: Any,
    chunk: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    n_jobs: int | None = None,
    scheduler: Any = None,
    source: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict packed masks chunk by chunk so memory stays flat in the number of patches.

    With ``scheduler`` (see `parallel.run_tasks`: "threads", "processes", "sync", a
    dask.distributed address or ``Client``) the chunks are dask tasks; a ``source`` dataset
    path lets each task read its own rows (workers must see the file). Same results either way.

    Only one chunk is unpacked (uint8) and converted (into a reused float32 buffer) at a
    time; scikit-learn would otherwise build the whole float32 matrix (12 GB for 46,666
    256x256 masks).

    Parameters
    ----------
    model : Model
    packed : array-like (n, ceil(size*size/8)) uint8
        ``np.packbits`` rows for ``model.size``; anything sliceable as ``packed[i:j]``.
    chunk : int
        Rows per chunk (1024 x 65,536 float32 = 256 MiB).
    progress : callable(done_rows, total_rows), optional
    cancel : threading.Event, optional
        Checked between chunks; raises `errors.Cancelled`.
    n_jobs : int, optional
        Threads for the forest's prediction (default: the estimator's setting).

    Returns
    -------
    pred : ndarray of str (n,)
    proba : ndarray float32 (n, len(model.classes)), columns in ``model.classes`` order
    """
    import joblib

    shape = getattr(packed, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"packed masks must be a 2-D array, got shape {shape}")
    names = (model.meta or {}).get("feature_names") if (model.meta or {}).get("features") else None
    if names is not None and shape[1] != len(names):
        raise ModelError(
            model.path, f"rows have {shape[1]} features but the model needs {len(names)}"
        )
    if names is None and shape[1] != packed_width(model.size):
        raise ModelError(
            model.path,
            f"dataset rows have {shape[1]} bytes but the model needs {model.size}x{model.size} "
            f"masks ({packed_width(model.size)} bytes): made with another mask size",
        )
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    n = int(shape[0])
    nfeat = len(names) if names is not None else model.size * model.size
    classes = np.asarray(model.classes, dtype=str)
    if scheduler is not None:
        proba = _predict_tasks(model, packed, n, chunk, progress, cancel, scheduler, source)
        pred = classes[np.argmax(proba, axis=1)] if n else np.empty(0, dtype=classes.dtype)
        return pred, proba
    proba = np.empty((n, len(classes)), dtype=np.float32)
    buf = np.empty((min(chunk, n), nfeat), dtype=np.float32)
    if progress is not None:
        progress(0, n)
    with joblib.parallel_config(n_jobs=n_jobs) if n_jobs is not None else nullcontext():
        for start in range(0, n, chunk):
            if cancel is not None and cancel.is_set():
                raise Cancelled("prediction cancelled")
            m = min(chunk, n - start)
            x = buf[:m]
            if names is not None:  # feature rows (float), not packed masks
                x[...] = np.asarray(packed[start : start + m], dtype=np.float32)
            else:
                rows = np.asarray(packed[start : start + chunk], dtype=np.uint8)
                x[...] = np.unpackbits(rows, axis=1, count=nfeat)
            proba[start : start + m] = model.estimator.predict_proba(x)
            if progress is not None:
                progress(start + m, n)
    pred = classes[np.argmax(proba, axis=1)] if n else np.empty(0, dtype=classes.dtype)
    return pred, proba


def _predict_block(estimator: Any, rows: Any, start: int, stop: int, size: int) -> np.ndarray:
    """Dask task: class probabilities (float32) of packed rows ``start:stop``.

    ``rows`` is the packed block itself or a dataset path the task reads its rows from.
    """
    if isinstance(rows, str):
        from napari_crystal.dataset import load_dataset

        rows = load_dataset(rows).packed[start:stop]
    x = np.unpackbits(np.asarray(rows, dtype=np.uint8), axis=1, count=size * size)
    return estimator.predict_proba(x.astype(np.float32)).astype(np.float32)


def _predict_tasks(model, packed, n, chunk, progress, cancel, scheduler, source) -> np.ndarray:
    """`predict_chunked` as one dask task per chunk (`parallel.run_tasks`)."""
    from napari_crystal.parallel import run_tasks

    bounds = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
    calls = [
        (model.estimator, str(source) if source is not None else packed[a:b], a, b, model.size)
        for a, b in bounds
    ]
    done = [0]

    def on_done(i: int) -> None:
        done[0] += bounds[i][1] - bounds[i][0]
        if progress is not None:
            progress(done[0], n)

    if progress is not None:
        progress(0, n)
    blocks = run_tasks(_predict_block, calls, scheduler, on_done, cancel)
    if not blocks:
        return np.empty((0, len(model.classes)), dtype=np.float32)
    return np.concatenate(blocks, axis=0)


def model_truth(model: Model, labels: Sequence[str]) -> np.ndarray:
    """Ground truth for ``model``: labels mapped with the model's crystal policy."""
    return truth_labels(labels, model.crystals)


#: How a model's predictions were scored (written into every report).
SCORING_MERGED = "crystal predictions merged into their parents (truth has no crystal classes)"
SCORING_KEPT = "crystal classes kept apart (truth has crystal classes)"


def merge_proba(classes: Sequence[str], proba: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Class probabilities with each crystal class's column added to its parent's."""
    classes = [str(c) for c in classes]
    merged = [c for c in classes if c not in palette.CRYSTAL_PARENT]
    for child, parent in palette.CRYSTAL_PARENT.items():
        if child in classes and parent not in merged:
            merged.append(parent)
    merged = label_order(merged)
    out = np.zeros((len(proba), len(merged)), dtype=np.float32)
    for j, c in enumerate(classes):
        out[:, merged.index(palette.CRYSTAL_PARENT.get(c, c))] += proba[:, j]
    return merged, out


def score_space(
    model: Model, labels: Sequence[str], predicted: Sequence[str], proba: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], str]:
    """Truth, predictions, probabilities and classes as they are scored, and how.

    A model that keeps crystal classes apart is scored with its crystal predictions merged
    into their parents whenever the truth is merged (it has no crystal labels): a ``cidc``
    prediction on an ``indc`` region is right. Only a truth with crystal labels is scored
    with the classes kept apart. Other models never predict crystal classes.
    """
    truth = model_truth(model, labels)
    pred = np.asarray(predicted, dtype=str)
    classes = list(model.classes)
    if model.crystals == "keep" and not np.isin(truth, palette.CRYSTAL_LABELS).any():
        pred = map_labels(pred, "merge")[0]
        classes, proba = merge_proba(classes, np.asarray(proba))
        return truth, pred, proba, classes, SCORING_MERGED
    return (
        truth,
        pred,
        np.asarray(proba),
        classes,
        (SCORING_KEPT if model.crystals == "keep" else SCORING_MERGED),
    )


# ---------------------------------------------------------------- reports


@dataclass
class ClassScores:
    """Scores of one class. ``accuracy`` is the share of the class's patches predicted as the
    class, i.e. its recall (the study's "per-class accuracy")."""

    support: int
    predicted: int
    correct: int
    accuracy: float
    precision: float
    recall: float
    f1: float


@dataclass
class Report:
    """Evaluation of one set of predictions against the truth.

    ``confusion[i][j]`` counts patches of true class ``classes[i]`` predicted as
    ``classes[j]``. Precision of a never-predicted class and F1 of a class with precision and
    recall both 0 are 0. ``macro`` averages over classes with support > 0.
    """

    n: int
    correct: int
    incorrect: int
    accuracy: float
    classes: list[str]
    per_class: dict[str, ClassScores]
    confusion: list[list[int]]
    macro: dict[str, float]
    name: str = ""
    test_set: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Inverse of `to_dict`."""
        data = dict(data)
        data["per_class"] = {k: ClassScores(**v) for k, v in data["per_class"].items()}
        return cls(**data)

    def confusion_array(self) -> np.ndarray:
        """The confusion matrix as an int64 array."""
        return np.asarray(self.confusion, dtype=np.int64).reshape(len(self.classes), -1)


def _as_labels(values: Sequence[str], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=str)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    return arr


def evaluate(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    classes: Iterable[str] | None = None,
    *,
    name: str = "",
    test_set: str = "",
) -> Report:
    """Counts, accuracy, per-class scores and confusion matrix of ``y_pred`` against ``y_true``.

    Map ``y_true`` with the model's crystal policy first (`model_truth`). ``classes`` adds
    rows/columns that may be absent (e.g. the model's classes); order is `palette.label_order`.
    """
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {len(t)} labels but y_pred {len(p)}")
    if len(t) == 0:
        raise ValueError("cannot evaluate zero predictions")
    order = label_order([*np.unique(t), *np.unique(p), *(classes or ())])
    index = {label: i for i, label in enumerate(order)}
    ti = np.fromiter((index[v] for v in t), dtype=np.int64, count=len(t))
    pi = np.fromiter((index[v] for v in p), dtype=np.int64, count=len(p))
    k = len(order)
    cm = np.bincount(ti * k + pi, minlength=k * k).reshape(k, k)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    diag = np.diag(cm)
    per_class = {}
    for i, label in enumerate(order):
        recall = diag[i] / support[i] if support[i] else 0.0
        precision = diag[i] / predicted[i] if predicted[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = ClassScores(
            support=int(support[i]),
            predicted=int(predicted[i]),
            correct=int(diag[i]),
            accuracy=float(recall),
            precision=float(precision),
            recall=float(recall),
            f1=float(f1),
        )
    scored = [s for s in per_class.values() if s.support > 0]
    macro = {
        key: float(np.mean([getattr(s, key) for s in scored]))
        for key in ("precision", "recall", "f1")
    }
    correct = int(diag.sum())
    return Report(
        n=len(t),
        correct=correct,
        incorrect=len(t) - correct,
        accuracy=correct / len(t),
        classes=order,
        per_class=per_class,
        confusion=cm.tolist(),
        macro=macro,
        name=name,
        test_set=test_set,
    )


# ---------------------------------------------------------------- statistics


def _z(level: float) -> float:
    from scipy.stats import norm

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(norm.ppf(0.5 + level / 2))


def wald_difference_ci(
    correct_a: int, n_a: int, correct_b: int, n_b: int, level: float = 0.95
) -> tuple[float, float, float]:
    """Difference of two independent proportions ``a - b`` with its Wald interval.

    ``se = sqrt(pa(1-pa)/n_a + pb(1-pb)/n_b)``; interval ``d -/+ z se`` (the study's
    convention, even though both models score the same patches). Fractions, not percent.
    """
    for c, n in ((correct_a, n_a), (correct_b, n_b)):
        if n <= 0 or not 0 <= c <= n:
            raise ValueError(f"need 0 <= correct <= n and n > 0, got {c}/{n}")
    pa, pb = correct_a / n_a, correct_b / n_b
    d = pa - pb
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    half = _z(level) * se
    return d, d - half, d + half


def paired_difference_ci(
    b: int, c: int, n: int, level: float = 0.95
) -> tuple[float, float, float]:
    """Difference of paired proportions ``a - b`` from discordant counts, Wald interval.

    ``b``: A right and B wrong; ``c``: A wrong and B right; ``n``: all pairs.
    ``d = (b - c)/n``, ``se = sqrt(b + c - (b - c)^2/n) / n``.
    """
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need b, c >= 0 and b + c <= n > 0, got b={b}, c={c}, n={n}")
    d = (b - c) / n
    se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    half = _z(level) * se
    return d, d - half, d + half


def mcnemar(b: int, c: int) -> tuple[float, float, str]:
    """McNemar's test on discordant counts ``b`` and ``c``.

    Fewer than 25 discordant pairs: exact two-sided binomial, statistic ``min(b, c)``,
    ``p = min(1, 2 P(X <= min(b, c)))`` with ``X ~ Bin(b + c, 1/2)``. Otherwise chi-square
    with continuity correction, ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom.

    Returns
    -------
    statistic, p_value, method ("exact binomial" or "chi-square, continuity-corrected")
    """
    from scipy.stats import binom, chi2

    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n < MCNEMAR_EXACT_BELOW:
        k = min(b, c)
        p = 1.0 if n == 0 else min(1.0, 2.0 * float(binom.cdf(k, n, 0.5)))
        return float(k), p, "exact binomial"
    stat = max(abs(b - c) - 1, 0) ** 2 / n
    return float(stat), float(chi2.sf(stat, 1)), "chi-square, continuity-corrected"


def cluster_bootstrap_difference_ci(
    right_a: Sequence[bool],
    right_b: Sequence[bool],
    clusters: Sequence,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Accuracy difference ``a - b`` with a cluster (patient-level) bootstrap interval.

    Patches of one patient are correlated, so whole clusters are resampled with replacement
    (``n_boot`` times, seeded): each resample's difference is ``sum(right_a - right_b) /
    patches`` over the drawn clusters; the interval is the percentile interval. With one
    cluster per patch this is the ordinary paired bootstrap.
    """
    a = np.asarray(right_a, dtype=bool).reshape(-1)
    b = np.asarray(right_b, dtype=bool).reshape(-1)
    groups = np.asarray(clusters).reshape(-1)
    if not len(a) == len(b) == len(groups) or len(a) == 0:
        raise ValueError("right_a, right_b and clusters must have the same, non-zero length")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    _z(level)
    _, index = np.unique(groups, return_inverse=True)
    k = int(index.max()) + 1
    diff = np.bincount(index, weights=a.astype(float) - b, minlength=k)
    size = np.bincount(index, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    d = float(diff.sum() / size.sum())
    stats = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # bounded memory: 256 x k draw counts at a time
        m = min(256, n_boot - start)
        draws = rng.integers(0, k, size=(m, k))
        counts = np.zeros((m, k))
        np.add.at(counts, (np.repeat(np.arange(m), k), draws.reshape(-1)), 1.0)
        stats[start : start + m] = (counts @ diff) / (counts @ size)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return d, float(lo), float(hi)


def calibration(
    truth: Sequence[str], proba: np.ndarray, classes: Sequence[str], bins: int = 10
) -> dict[str, Any]:
    """Brier score and expected calibration error of class probabilities.

    Brier: mean over patches of ``sum_k (p_k - [truth = k])^2`` (0 best, 2 worst; equal to
    ``sklearn.metrics.brier_score_loss(..., scale_by_half=False)``). ECE: the top class's
    probability (confidence) binned into ``bins`` equal-width bins;
    ``sum_b n_b / n |accuracy_b - confidence_b|``. ``bins`` lists each bin's count, mean
    confidence and accuracy (the reliability diagram). A truth outside ``classes`` counts as
    probability 0 for its class.
    """
    t = _as_labels(truth, "truth")
    p = np.asarray(proba, dtype=np.float64)
    classes = [str(c) for c in classes]
    if p.shape != (len(t), len(classes)):
        raise ValueError(f"proba has shape {p.shape}, expected {(len(t), len(classes))}")
    if len(t) == 0:
        raise ValueError("cannot measure calibration of zero predictions")
    onehot = (t[:, None] == np.asarray(classes, dtype=str)[None, :]).astype(np.float64)
    brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    top = np.argmax(p, axis=1)
    conf = p[np.arange(len(t)), top]
    right = np.asarray(classes, dtype=str)[top] == t
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (lo, hi] bins
    table = []
    ece = 0.0
    for b in range(bins):
        sel = which == b
        n_b = int(sel.sum())
        if n_b:
            acc, cf = float(right[sel].mean()), float(conf[sel].mean())
            ece += n_b / len(t) * abs(acc - cf)
        else:
            acc = cf = float("nan")
        table.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n_b, "confidence": cf,
                      "accuracy": acc})  # fmt: skip
    return {"brier": brier, "ece": float(ece), "bins": table, "n": len(t)}


@dataclass
class ClassDifference:
    """One class's accuracy (recall) difference A - B on that class's patches."""

    support: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    wald_ci: tuple[float, float]
    paired_ci: tuple[float, float]


@dataclass
class Comparison:
    """Model A against model B on the same patches (differences are A minus B)."""

    name_a: str
    name_b: str
    n: int
    correct_a: int
    correct_b: int
    both_correct: int
    both_wrong: int
    b: int
    c: int
    level: float
    difference: float
    wald_ci: tuple[float, float]
    paired_ci: tuple[float, float]
    mcnemar_statistic: float
    mcnemar_p: float
    mcnemar_method: str
    report_a: Report
    report_b: Report
    test_set: str = ""
    cluster_ci: tuple[float, float] | None = None
    clusters: int = 0
    bootstrap: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, ClassDifference] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


def compare(
    y_true: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    *,
    level: float = 0.95,
    names: tuple[str, str] = ("A", "B"),
    classes: Iterable[str] | None = None,
    test_set: str = "",
    clusters: Sequence | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare two models' predictions of the same patches.

    ``y_true`` must already be in the label space both predictions use (for a "keep" model
    against a "merge" one, map predictions and truth with `training.map_labels(..., "merge")`).
    ``clusters`` (e.g. the patient of each patch) adds a cluster bootstrap interval
    (``n_boot`` resamples, ``seed``). Per-class differences are given for `STUDY_CLASSES`.
    """
    t = _as_labels(y_true, "y_true")
    a = _as_labels(pred_a, "pred_a")
    b_ = _as_labels(pred_b, "pred_b")
    if not t.shape == a.shape == b_.shape:
        raise ValueError("y_true, pred_a and pred_b must have the same length")
    classes = list(classes or ())
    report_a = evaluate(t, a, classes, name=names[0], test_set=test_set)
    report_b = evaluate(t, b_, classes, name=names[1], test_set=test_set)
    ra, rb = a == t, b_ == t
    b = int(np.sum(ra & ~rb))
    c = int(np.sum(~ra & rb))
    n = len(t)
    d, wlo, whi = wald_difference_ci(int(ra.sum()), n, int(rb.sum()), n, level)
    _, plo, phi = paired_difference_ci(b, c, n, level)
    stat, p, method = mcnemar(b, c)
    cluster_ci, n_clusters, boot = None, 0, {}
    if clusters is not None:
        _, clo, chi = cluster_bootstrap_difference_ci(ra, rb, clusters, level, n_boot, seed)
        cluster_ci, n_clusters = (clo, chi), len(np.unique(np.asarray(clusters)))
        boot = {"resamples": n_boot, "seed": seed, "unit": "patient", "interval": "percentile"}
    per_class = {}
    for label in STUDY_CLASSES:
        sel = t == label
        n_k = int(sel.sum())
        if n_k == 0:
            continue
        ka, kb = int(ra[sel].sum()), int(rb[sel].sum())
        dk, wl, wh = wald_difference_ci(ka, n_k, kb, n_k, level)
        _, pl, ph = paired_difference_ci(
            int(np.sum(ra[sel] & ~rb[sel])), int(np.sum(~ra[sel] & rb[sel])), n_k, level
        )
        per_class[label] = ClassDifference(n_k, ka / n_k, kb / n_k, dk, (wl, wh), (pl, ph))
    return Comparison(
        name_a=names[0],
        name_b=names[1],
        n=n,
        correct_a=int(ra.sum()),
        correct_b=int(rb.sum()),
        both_correct=int(np.sum(ra & rb)),
        both_wrong=int(np.sum(~ra & ~rb)),
        b=b,
        c=c,
        level=level,
        difference=d,
        wald_ci=(wlo, whi),
        paired_ci=(plo, phi),
        mcnemar_statistic=stat,
        mcnemar_p=p,
        mcnemar_method=method,
        report_a=report_a,
        report_b=report_b,
        test_set=test_set,
        cluster_ci=cluster_ci,
        clusters=n_clusters,
        bootstrap=boot,
        per_class=per_class,
    )
