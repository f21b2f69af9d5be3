"""Training time and evaluation memory at the study's scale.

- Training: 2,243 synthetic 256x256 masks (the "with crystals" training set), the paper's
  settings, 2 threads; ``train_model`` (sub-forests with their own seeds, joined; progress and
  cancel per sub-forest) against a one-shot ``BalancedRandomForestClassifier.fit`` on the same
  matrix; the two forests are equal in distribution, checked by held-out accuracy.
- Evaluation: peak memory of ``predict_chunked`` for 46,666 patches (TUBR's size) against
  one-shot prediction (unpack everything, float32, ``predict_proba``), which is measured at a
  small n and extrapolated linearly: running it at 46,666 would need over 12 GB. Flatness is
  checked by measuring ``predict_chunked`` at two n.

Peak memory is measured with tracemalloc (numpy's buffers are traced) and, as a cross-check,
with the process RSS sampled in a thread.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc

import numpy as np

from napari_crystal.evaluation import predict_chunked
from napari_crystal.training import DEFAULT_PARAMS, map_labels, train_model

SIZE = 256
TRAIN_N = 2243
EVAL_N = 46_666
TARGET_BYTES = 1.5 * 2**30
# The study's training labels: nine NEDC classes plus the FCCR crystal regions.
CLASS_SHARES = {
    "bckg": 0.22, "norm": 0.14, "null": 0.06, "artf": 0.05, "nneo": 0.13, "infl": 0.06,
    "susp": 0.04, "dcis": 0.08, "indc": 0.05, "cnno": 0.02, "cdcs": 0.06, "cidc": 0.09,
}  # fmt: skip


def synthetic_packed(n: int, size: int = SIZE, seed: int = 42, chunk: int = 256):
    """Packed masks of class-dependent ellipses with noise, and their labels."""
    rng = np.random.default_rng(seed)
    names = np.array(list(CLASS_SHARES))
    shares = np.array(list(CLASS_SHARES.values()))
    labels = names[rng.choice(len(names), size=n, p=shares / shares.sum())]
    code = np.searchsorted(np.sort(names), labels).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    packed = np.empty((n, size * size // 8), dtype=np.uint8)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        c = code[start : start + m, None, None]
        ry = 0.10 + 0.025 * c + 0.05 * rng.random((m, 1, 1), dtype=np.float32)
        rx = 0.35 - 0.02 * c + 0.05 * rng.random((m, 1, 1), dtype=np.float32)
        inside = (yy / ry) ** 2 + (xx / rx) ** 2 < 1
        noise = rng.random((m, size, size), dtype=np.float32) < 0.05
        packed[start : start + m] = np.packbits((inside ^ noise).reshape(m, -1), axis=1)
    return packed, labels


class RssPeak:
    """Highest resident set size seen by a sampling thread while the block runs."""

    def __init__(self, interval: float = 0.005):
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.start = 0

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def delta(self) -> int:
        return self.peak - self.start


def measure(fn, *args, **kwargs):
    """(traced peak bytes, RSS delta bytes, seconds, result) of one call."""
    with RssPeak() as rss:
        tracemalloc.start()
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
            seconds = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return peak, rss.delta, seconds, result


def one_shot_predict(model, packed):
    """The naive way: the whole float32 matrix, then one ``predict_proba``."""
    X = np.unpackbits(packed, axis=1, count=model.size * model.size).astype(np.float32)
    return model.estimator.predict_proba(X)


def gib(x: float) -> str:
    return f"{x / 2**30:.2f} GiB"


def run(record, quick: bool = False) -> None:
    from imblearn.ensemble import BalancedRandomForestClassifier

    train_n = 600 if quick else TRAIN_N
    trees = 20 if quick else DEFAULT_PARAMS["n_estimators"]
    eval_ns = (1_000, 4_000) if quick else (8_000, EVAL_N)
    naive_n = 512 if quick else 2_048

    # ---- training
    packed, labels = synthetic_packed(train_n)
    params = {"n_estimators": trees}
    y, _ = map_labels(labels, "merge")
    X = np.unpackbits(packed, axis=1).astype(np.float32)
    # Alternate the two ways and keep each one's best: the machine is shared.
    base_s = proj_s = base_cpu = proj_cpu = float("inf")
    ticks: list[int] = []
    for _ in range(1 if quick else 2):
        start, cpu = time.perf_counter(), time.process_time()
        one_shot = BalancedRandomForestClassifier(**{**DEFAULT_PARAMS, **params}, n_jobs=2)
        one_shot.fit(X, y)
        base_s = min(base_s, time.perf_counter() - start)
        base_cpu = min(base_cpu, time.process_time() - cpu)
        ticks.clear()
        start, cpu = time.perf_counter(), time.process_time()
        model = train_model(
            packed, labels, SIZE, params=params, n_jobs=2,
            progress=lambda d, t: ticks.append(d),
        )  # fmt: skip
        proj_s = min(proj_s, time.perf_counter() - start)
        proj_cpu = min(proj_cpu, time.process_time() - cpu)
    del X
    with RssPeak() as rss:
        train_model(packed, labels, SIZE, params={"n_estimators": 2}, n_jobs=2)
    check, check_labels = synthetic_packed(1024, seed=7)
    truth, _ = map_labels(check_labels, "merge")
    Xc = np.unpackbits(check, axis=1).astype(np.float32)
    acc = float(np.mean(model.estimator.predict(Xc) == truth))
    acc_one_shot = float(np.mean(one_shot.predict(Xc) == truth))
    same = abs(acc - acc_one_shot) <= 0.03
    del Xc, one_shot
    record(
        f"training {train_n} x {SIZE}x{SIZE} masks, {trees} trees, 2 threads",
        f"{proj_s:.1f} s, {proj_cpu:.0f} s CPU (train_model from packed, {len(ticks) - 1} steps, "
        f"held-out accuracy {100 * acc:.1f}%)",
        f"{base_s:.1f} s (one-shot fit on a ready matrix, {100 * acc_one_shot:.1f}%)",
        base_s / proj_s,
        "progress + cancel at <= 25% overhead; accuracy within 3 points",
        same and proj_s <= 1.25 * base_s,
        project_s=proj_s, baseline_s=base_s, project_cpu_s=proj_cpu, baseline_cpu_s=base_cpu, accuracy=acc, accuracy_one_shot=acc_one_shot, progress_calls=len(ticks),
        rss_delta_gib_2_trees=rss.delta / 2**30, load_average=os.getloadavg(),
    )  # fmt: skip

    # ---- evaluation memory
    peaks = {}
    for n in eval_ns:
        data, _ = synthetic_packed(n, seed=n)
        peak, rss_delta, seconds, (pred, _) = measure(predict_chunked, model, data, n_jobs=2)
        peaks[n] = (peak, rss_delta, seconds)
        del data, pred
    small = synthetic_packed(naive_n, seed=3)[0]
    naive_peak, naive_rss, naive_s, naive_proba = measure(one_shot_predict, model, small)
    _, chunk_proba = predict_chunked(model, small)
    equal = bool(np.allclose(naive_proba.astype(np.float32), chunk_proba))
    per_patch = naive_peak / naive_n
    big = eval_ns[-1]
    extrapolated = per_patch * EVAL_N
    proj_peak, proj_rss, proj_s = peaks[big]
    flat = peaks[eval_ns[1]][0] / peaks[eval_ns[0]][0]
    record(
        f"evaluation peak memory, {big} patches {SIZE}x{SIZE}",
        f"{gib(proj_peak)} traced, {gib(proj_rss)} RSS, {proj_s:.0f} s (predict_chunked)",
        f"{gib(extrapolated)} (one-shot, {naive_n} measured x {EVAL_N / naive_n:.1f})",
        extrapolated / proj_peak,
        f"< 1.5 GiB at {EVAL_N}, flat in n",
        proj_peak < TARGET_BYTES and proj_rss < TARGET_BYTES and flat < 1.2,
        peaks={str(n): {"traced": p, "rss": r, "s": s} for n, (p, r, s) in peaks.items()},
        naive={"n": naive_n, "traced": naive_peak, "rss": naive_rss, "s": naive_s},
        chunked_equals_one_shot=equal,
    )
    record(
        "evaluation memory flatness",
        f"peak at n={eval_ns[1]}: {gib(peaks[eval_ns[1]][0])}",
        f"peak at n={eval_ns[0]}: {gib(peaks[eval_ns[0]][0])}",
        flat,
        "ratio <= 1.2 (ratio here = peak(large n) / peak(small n))",
        flat < 1.2,
    )
