"""Feature sets: extraction throughput against mask building, and whole-slide maps.

1. Per feature set, patches/s of `feature_dataset_for_slide` against `dataset_for_slide`
   (the study's 256 x 256 threshold masks) on the same patches of one synthetic slide.
2. Per feature set, `slidemap.predict_slide_map` with 128/256 frames on a synthetic slide
   (cached in bench-data/): seconds, seconds per 10,000 tissue frames, peak RSS sampled over
   the run; memory flat in slide size is checked by running a slide a quarter of the size
   too, and the quarter's map by the one-window-at-a-time path is the in-run baseline. The
   issue's 100,000 x 80,000 slide is measured when ``NAPARI_CRYSTAL_BENCH_BIG=1`` (writing it
   takes a long time on 2 cores); otherwise a 20,000 x 16,000 slide is measured and the time is
   extrapolated by area, which the table says.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from benchmarks._harness import DATA, timed

SETS = ("texture", "colour", "morphology", "multiscale")
MPP = 0.5


def _corpus():
    from napari_crystal.synthetic import generate_corpus

    root = DATA / "features-tiny"
    if not (root / "train").is_dir():
        generate_corpus(root, preset="tiny", seed=42)
    return root


def tissue_source(shape):
    """A cheap tile source: an elliptic tissue blob (~half the slide) with a nuclei lattice."""
    cy, cx = shape[0] / 2, shape[1] / 2
    ry, rx = shape[0] * 0.48, shape[1] * 0.42

    def source(top, left, h, w):
        rr = np.arange(top, top + h, dtype=np.float32)[:, None]
        cc = np.arange(left, left + w, dtype=np.float32)[None, :]
        inside = ((rr - cy) / ry) ** 2 + ((cc - cx) / rx) ** 2 < 1
        out = np.empty((h, w, 3), np.uint8)
        out[...] = (244, 242, 244)
        out[inside] = (228, 160, 200)
        ri = np.arange(top, top + h)[:, None] % 29 < 7
        ci = np.arange(left, left + w)[None, :] % 23 < 7
        out[inside & ri & ci] = (88, 52, 138)
        return out

    return source


def big_slide(shape):
    from napari_crystal.synthetic.pyramid import write_pyramid

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"features-slide-{shape[1]}x{shape[0]}.svs"
    if not path.is_file():
        print(f"   generating {path.name} (cached for later runs)...", flush=True)
        write_pyramid(path, tissue_source(shape), shape, MPP, quality=70)
    return path


class PeakRSS:
    """Peak resident memory of this process, sampled every 50 ms."""

    def __enter__(self):
        import psutil

        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()

        def sample():
            while not self.stop.is_set():
                self.peak = max(self.peak, self.proc.memory_info().rss)
                time.sleep(0.05)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def extraction(record, quick: bool) -> None:
    from napari_crystal.dataset import dataset_for_slide, slide_files
    from napari_crystal.features import FeatureSpec
    from napari_crystal.features.build import feature_dataset_for_slide
    from napari_crystal.io.nedc import find_annotation, read_annotation

    slide = slide_files(_corpus() / "train")[0]
    ann = read_annotation(find_annotation(slide))
    n = len(ann.regions)
    t_mask, _ = timed(dataset_for_slide, slide, ann, "threshold", 256, repeat=1 if quick else 2)
    for name in SETS:
        spec = FeatureSpec(name, mpp=1.0)
        t, ds = timed(feature_dataset_for_slide, slide, ann, spec, repeat=1 if quick else 2)
        record(
            f"feature extraction: {name} ({len(spec.names)} features, 1 um/px)",
            f"{n / t:.1f} patches/s",
            f"256x256 threshold masks {n / t_mask:.1f} patches/s",
            t_mask / t,
            "reported (ratio = mask time / feature time)",
            None,
            patches=n,
            seconds=t,
            seconds_mask=t_mask,
        )


def _train_model(name: str, mpp: float):
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.features import FeatureSpec
    from napari_crystal.features.build import build_feature_dataset

    out = DATA / f"features-{name}-{mpp:g}.zarr"
    ds = build_feature_dataset(_corpus(), "train", out, FeatureSpec(name, mpp=mpp))
    return train_on_dataset(ds, params={"n_estimators": 100}, n_jobs=1)


def _map(path, model, out, batched: bool = True):
    """Seconds, tissue frames, peak RSS and CPU seconds of one `predict_slide_map` run
    (128/256 frames); ``batched`` False runs the one-window-at-a-time path (the baseline).
    On the shared machine wall time is several times the CPU time the run itself used."""
    from napari_crystal import slidemap

    old = slidemap._Rows.batched
    slidemap._Rows.batched = batched
    try:
        with PeakRSS() as mem:
            start, cpu = time.perf_counter(), time.process_time()
            result = slidemap.predict_slide_map(path, model, out, frame=128, window=256, n_jobs=1)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        slidemap._Rows.batched = old
    return seconds, result.n_tissue, mem.peak, cpu


def whole_slide(record, quick: bool) -> None:
    """Per feature set: the map of a slide and of one a quarter its area, and the quarter's
    map by the one-window-at-a-time path (in-run baseline: the ratio is its time / ours)."""
    big = os.environ.get("NAPARI_CRYSTAL_BENCH_BIG") == "1"
    target_shape = (80_000, 100_000)
    shape = (8_000, 10_000) if quick else (target_shape if big else (16_000, 20_000))
    small_shape = (shape[0] // 2, shape[1] // 2)
    scale = (target_shape[0] * target_shape[1]) / (shape[0] * shape[1])
    label = (
        "measured" if scale == 1 else f"extrapolated x{scale:g} by area from {shape[1]}x{shape[0]}"
    )
    for name in ("colour", "texture", "morphology", "multiscale"):
        model = _train_model(name, 4.0)
        load = [os.getloadavg()[0]]
        small = _map(big_slide(small_shape), model, DATA / f"map-{name}-small")
        seconds, frames, peak, cpu = _map(big_slide(shape), model, DATA / f"map-{name}")
        base = _map(big_slide(small_shape), model, DATA / f"map-{name}-base", batched=False)
        load.append(os.getloadavg()[0])
        per10k = seconds / frames * 1e4
        projected = seconds * scale
        record(
            f"whole-slide map, 100,000 x 80,000 slide, 128/256 frames, {name} model at 4 um/px",
            f"{projected:.0f} s ({label}); {per10k:.1f} s per 10,000 tissue frames "
            f"({frames / seconds:.0f} frames/s); peak RSS {peak / 2**30:.2f} GB (quarter-area "
            f"slide {small[2] / 2**30:.2f} GB); CPU {cpu / frames * 1e4:.1f} s per 10,000 "
            f"frames, {cpu * scale:.0f} s for the slide; load {load[0]:.1f}-{load[1]:.1f}",
            f"one window at a time: {base[0] / base[1] * 1e4:.1f} s per 10,000 frames "
            f"(quarter-area slide, {base[1]} frames: {base[0]:.1f} s against {small[0]:.1f} s)",
            base[0] / small[0],
            "< 300 s and < 2 GB; memory flat in slide size",
            projected < 300 and peak < 2 * 2**30 and peak < 1.25 * small[2] + 2**28,
            slide=list(shape),
            tissue_frames=frames,
            seconds=seconds,
            seconds_per_10k=per10k,
            peak_rss=peak,
            peak_rss_quarter=small[2],
            seconds_quarter=small[0],
            seconds_baseline_quarter=base[0],
            cpu_seconds=cpu,
            extrapolated=scale != 1,
            load_average=load,
        )


def run(record, quick: bool = False) -> None:
    """Record extraction throughput per feature set and the whole-slide map figures."""
    extraction(record, quick)
    whole_slide(record, quick)
