"""The whole ``experiment`` on the fcbr synthetic preset: wall time, peak memory, step breakdown.

The study runs in a child process (the CLI, as a lab would run it) so its memory is measured
alone: the resident memory of the child and all its descendants, summed and sampled every
50 ms (``getrusage(RUSAGE_CHILDREN)`` would also count children of earlier benchmarks).
Quick mode uses the ``small`` preset.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from benchmarks._harness import DATA

TARGET_BYTES = 2 * 2**30


def _run_sampling_memory(cmd: list[str], interval: float = 0.05) -> int:
    """Run ``cmd``; the peak of its process tree's summed resident memory, in bytes."""
    import psutil

    child = subprocess.Popen(cmd)
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(interval)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, cmd)
    return peak


def run(record, quick: bool = False) -> None:
    """Build the corpus once (cached in bench-data/), then time the study from scratch."""
    from napari_crystal.synthetic import generate_corpus

    preset = "small" if quick else "fcbr"
    corpus = DATA / f"corpus-{preset}"
    if not (corpus / "SYNTHETIC.json").is_file():
        start = time.perf_counter()
        generate_corpus(corpus, preset=preset, seed=42)
        print(f"   generated {preset} corpus in {time.perf_counter() - start:.0f} s")
    out = DATA / f"experiment-{preset}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun would reuse the datasets: time it all
    cmd = [sys.executable, "-m", "napari_crystal.cli", "experiment", str(corpus), "--out", str(out), "--quiet"]  # fmt: skip
    start = time.perf_counter()
    peak = _run_sampling_memory(cmd)
    wall = time.perf_counter() - start
    timings = json.loads((out / "timings.json").read_text())
    doc = json.loads((out / "report.json").read_text())
    steps = ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
    accuracy = {f"{r['name']} on {r['test_set']}": round(r["accuracy"], 4) for r in doc["reports"]}
    record(
        f"experiment on {preset} ({doc['meta']['train_patches']} train, "
        f"{sum(doc['meta']['test_patches'].values())} eval patches)",
        f"{wall:.0f} s wall, peak {peak / 2**20:.0f} MiB",
        "none (absolute figures)",
        None,
        "peak memory < 2 GB",
        peak < TARGET_BYTES,
        wall_s=round(wall, 1),
        peak_bytes=peak,
        steps_s=timings,
        accuracy=accuracy,
    )
    print(f"   steps: {steps}")
    print(f"   accuracy: {accuracy}")
