"""The study's design beyond one run: the matched-data control arm, the run's Methods record,
and repeated runs over seeds with the spread of every figure.

"With crystals" gains two things over "without": more patches of the parent classes, and
whatever the crystal annotations themselves teach. The matched-data control trains without
crystals but with as many plain-parent patches as the crystal model gained, so the
difference "with crystals - matched" is the crystals' own contribution.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_crystal import palette
from napari_crystal._atomic import atomic_write
from napari_crystal.dataset import Dataset
from napari_crystal.patches import PatchTable

#: Matched-data sources: a corpus's ``matched/`` pool of fresh plain parents, or resampling
#: the training set's own plain parents (duplicates: more draws, no new information).
MATCHED_MODES = ("auto", "pool", "resample", "none")


def crystals_gained(labels) -> dict[str, int]:
    """Patches per parent class that merging the crystal classes adds to a training set."""
    labels = np.asarray(labels, dtype=str)
    return {
        parent: int(np.sum(labels == child))
        for child, parent in palette.CRYSTAL_PARENT.items()
        if np.any(labels == child)
    }


def matched_dataset(
    train: Dataset, pool: Dataset | None = None, seed: int = 0
) -> tuple[Dataset, dict[str, Any]]:
    """The training set without crystals plus as many plain parents as the crystals added.

    Per parent class the extra patches are drawn without replacement from ``pool`` (fresh
    plain parents, e.g. a synthetic corpus's ``matched/`` split); when there is no pool or it
    runs short, the rest are drawn with replacement from ``train``'s own plain parents. For a
    feature dataset only measured rows count: crystals the set skipped add nothing to the
    crystal model, and skipped pool rows are never drawn.
    Returns the dataset (in memory) and a record of what was added from where.
    """
    rng = np.random.default_rng([seed, 7])
    labels = np.asarray(train.labels, dtype=str)
    usable = _usable(train)  # a feature dataset's skipped (NaN) rows train no model
    gained = crystals_gained(labels[usable])
    base = np.flatnonzero(~np.isin(labels, palette.CRYSTAL_LABELS))
    tables, packed = [train.table[base]], [_rows(train, base)]
    record: dict[str, Any] = {"added": gained, "from_pool": {}, "resampled": {}}
    pool_labels = np.asarray(pool.labels, dtype=str) if pool is not None else np.zeros(0, str)
    pool_usable = _usable(pool) if pool is not None else np.zeros(0, bool)
    for parent, n in gained.items():
        have = np.flatnonzero((pool_labels == parent) & pool_usable)
        take = rng.choice(have, size=min(n, len(have)), replace=False) if len(have) else have
        if len(take):
            take = np.sort(take)
            tables.append(pool.table[take])
            packed.append(_rows(pool, take))
            record["from_pool"][parent] = int(len(take))
        rest = n - len(take)
        if rest:
            own = np.flatnonzero((labels == parent) & usable)
            if not len(own):
                raise ValueError(f"no plain {parent} patches to resample for the matched arm")
            extra = np.sort(rng.choice(own, size=rest, replace=True))
            tables.append(train.table[extra])
            packed.append(_rows(train, extra))
            record["resampled"][parent] = int(rest)
    record["source"] = (
        "pool" if not record["resampled"] else "resample" if not record["from_pool"] else "both"
    )
    meta = {**(train.meta or {}), "matched": record}
    if pool is not None:
        meta["patients"] = {**(pool.meta or {}).get("patients", {}), **meta.get("patients", {})}
    ds = Dataset(PatchTable.concat(tables), np.concatenate(packed), train.size, train.method, meta)
    return ds, record


def _rows(ds: Dataset, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of packed masks (uint8) or feature rows (float32), as stored."""
    if isinstance(ds.packed, np.ndarray):
        return ds.packed[idx]
    return np.asarray(ds.packed.get_orthogonal_selection((idx, slice(None))))


def _usable(ds: Dataset) -> np.ndarray:
    """Bool per row: False for the patches a feature set skipped (NaN rows)."""
    from napari_crystal.training import finite_rows

    return finite_rows(ds.packed)


# ---------------------------------------------------------------- methods


def library_versions() -> dict[str, str]:
    """Versions of the libraries the numbers depend on."""
    import imblearn
    import skimage
    import sklearn

    from napari_crystal import __version__

    return {
        "napari-crystal": __version__,
        "scikit-learn": sklearn.__version__,
        "imbalanced-learn": imblearn.__version__,
        "scikit-image": skimage.__version__,
        "numpy": np.__version__,
    }


def synthetic_info(corpus: str | os.PathLike) -> dict[str, Any] | None:
    """A synthetic corpus's design record (``SYNTHETIC.json``), None for a real corpus."""
    path = Path(corpus) / "SYNTHETIC.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    info.pop("patients", None)
    return info


def methods_record(
    *,
    corpus: Path,
    train: Dataset,
    models: dict[str, Any],
    evaluations: dict[str, dict[str, Any]],
    seed: int,
    n_boot: int,
    matched: dict[str, Any] | None,
    warnings: list[str],
) -> dict[str, Any]:
    """Everything a Methods section needs, taken from the run itself."""
    meta = dict(train.meta or {})
    first = next(iter(models.values()))
    scoring: dict[str, set] = {}
    for per_test in evaluations.values():
        for name, ev in per_test.items():
            scoring.setdefault(name, set()).add(ev.scoring)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "corpus": str(corpus),
        "synthetic": synthetic_info(corpus),
        "masks": {
            "method": train.method,
            "channel": meta.get("channel"),
            "size": int(train.size),
            "level_rule": meta.get("level_rule"),
            "resize_rule": meta.get("resize_rule"),
            "threshold_rule": meta.get("threshold_rule"),
        },
        "forest": {k: v for k, v in first.params.items()},
        "seeds": {
            "forest": seed,
            "bootstrap": seed,
            "corpus": (synthetic_info(corpus) or {}).get("seed"),
        },
        "training_counts": {name: dict(m.class_counts) for name, m in models.items()},
        "crystals": {name: m.crystals for name, m in models.items()},
        "matched": matched,
        "scoring": {name: "; ".join(sorted(v)) for name, v in scoring.items()},
        "bootstrap": {"resamples": n_boot, "unit": "patient", "interval": "percentile"},
        "versions": library_versions(),
        "warnings": list(warnings),
    }


# ---------------------------------------------------------------- repeated runs


@dataclass
class SeedsResult:
    """Where the repeated runs are, one `experiment.ExperimentResult` per seed, the summary."""

    out: Path
    seeds: list[int]
    runs: list[Any]
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _corpus_for_seed(corpus: Path, info: dict | None, seed: int, corpora: Path, progress):
    """The corpus of one seed: the given one for its own seed, else the same design regenerated."""
    from napari_crystal.synthetic import PRESETS, design, generate_corpus

    if info is None or info.get("seed") == seed:
        return corpus
    if info.get("preset") not in PRESETS:
        return corpus
    target = corpora / f"seed-{seed}"
    done = synthetic_info(target)
    keys = ("preset", "effect", "protocol")
    if (
        done is not None
        and done.get("seed") == seed
        and all(done.get(k) == info.get(k) for k in keys)
    ):
        return target
    preset = design(info["preset"], effect=info.get("effect"), protocol=info.get("protocol"))
    generate_corpus(target, preset=preset, seed=seed, progress=progress)
    return target


def run_seeds(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    seeds: int = 5,
    *,
    corpora: str | os.PathLike | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    **kwargs: Any,
) -> SeedsResult:
    """Run the experiment ``seeds`` times: seed ``s`` = base, base + 1, ... (base: the synthetic
    corpus's seed, else 42) seeds the forests and the bootstrap and, for a synthetic corpus of
    a named preset, a corpus of the same design generated with seed ``s`` (kept in
    ``corpora``, default ``out/corpora``, and reused). A real corpus varies the forests only.

    Each run lands in ``out/seed-<s>/``; ``out/summary.md`` and ``summary.json`` give the mean
    and spread of every figure and every seed's intervals.
    """
    from napari_crystal.experiment import run_experiment

    corpus, out = Path(corpus), Path(out)
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    info = synthetic_info(corpus)
    base = int(info["seed"]) if info and "seed" in info else 42
    corpora = Path(corpora) if corpora is not None else out / "corpora"
    notes = []
    if info is None:
        notes.append("real corpus: only the forest and bootstrap seeds vary between runs")
    elif info.get("preset") not in (_preset_names()):
        notes.append("custom synthetic design: the corpus is not regenerated per seed")
    runs, used = [], []
    for k in range(seeds):
        s = base + k
        step = None if progress is None else (lambda d, t, s=s: progress(f"corpus seed {s}", d, t))
        seed_corpus = _corpus_for_seed(corpus, info, s, corpora, step)
        sub = (
            None if progress is None else (lambda name, d, t, s=s: progress(f"[{s}] {name}", d, t))
        )
        runs.append(run_experiment(seed_corpus, out / f"seed-{s}", seed=s, progress=sub, **kwargs))
        used.append(s)
    summary = summarize_runs(runs, used)
    summary["notes"] = notes
    summary["methods"] = runs[0].meta.get("methods", {})
    from napari_crystal.reports import seeds_markdown

    files = {"json": out / "summary.json", "markdown": out / "summary.md"}
    atomic_write(files["json"], (json.dumps(summary, indent=1, default=str) + "\n").encode())
    atomic_write(files["markdown"], seeds_markdown(summary).encode())
    return SeedsResult(out, used, runs, summary, files, notes)


def _preset_names() -> tuple[str, ...]:
    from napari_crystal.synthetic import PRESETS

    return tuple(PRESETS)


def mean_interval(values, level: float = 0.95) -> dict[str, float]:
    """Mean, sample SD and the t interval of the mean of independent replicates."""
    from scipy.stats import t as student

    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    if n > 1:
        half = float(student.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
        lo, hi = mean - half, mean + half
    else:
        lo = hi = math.nan
    return {"mean": mean, "sd": sd, "lo": lo, "hi": hi, "n": n}


def summarize_runs(runs: list[Any], seeds: list[int], level: float = 0.95) -> dict[str, Any]:
    """Per test set: each model's figures (mean, SD over seeds) and each comparison's
    difference (mean, SD, t interval of the mean, every seed's Wald/paired/bootstrap CI)."""
    from napari_crystal.evaluation import STUDY_CLASSES

    tests: dict[str, Any] = {}
    for run, seed in zip(runs, seeds, strict=True):
        for r in run.reports:
            t = tests.setdefault(r.test_set, {"models": {}, "comparisons": {}})
            m = t["models"].setdefault(r.name, {})
            figures = {"accuracy": r.accuracy}
            for label in STUDY_CLASSES:
                s = r.per_class.get(label)
                if s is not None and s.support:
                    figures[f"{label} accuracy"] = s.accuracy
            cal = r.meta.get("calibration") or {}
            if cal:
                figures["Brier score"] = cal["brier"]
                figures["ECE"] = cal["ece"]
            for key, v in figures.items():
                m.setdefault(key, []).append(v)
        for c in run.comparisons:
            t = tests.setdefault(c.test_set, {"models": {}, "comparisons": {}})
            key = f"{c.name_a} - {c.name_b}"
            entry = t["comparisons"].setdefault(key, {"seeds": [], "per_class": {}})
            entry["seeds"].append(
                {
                    "seed": seed,
                    "n": c.n,
                    "difference": c.difference,
                    "wald_ci": list(c.wald_ci),
                    "paired_ci": list(c.paired_ci),
                    "cluster_ci": list(c.cluster_ci) if c.cluster_ci else None,
                    "clusters": c.clusters,
                    "mcnemar_p": c.mcnemar_p,
                }
            )
            for label, d in c.per_class.items():
                entry["per_class"].setdefault(label, []).append(d.difference)
    for t in tests.values():
        for name, figures in t["models"].items():
            t["models"][name] = {k: {**mean_interval(v, level), "values": v}
                                 for k, v in figures.items()}  # fmt: skip
        for entry in t["comparisons"].values():
            diffs = [s["difference"] for s in entry["seeds"]]
            entry["difference"] = mean_interval(diffs, level)
            entry["per_class"] = {
                k: mean_interval(v, level) for k, v in entry["per_class"].items()
            }
            entry["seeds_excluding_0"] = sum(
                1 for s in entry["seeds"] if s["paired_ci"][0] > 0 or s["paired_ci"][1] < 0
            )
    return {"seeds": seeds, "level": level, "tests": tests}
