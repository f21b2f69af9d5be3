"""The whole ``experiment`` on the fcbr synthetic preset: wall time, peak memory, step breakdown.

The study runs in a child process (the CLI, as a lab would run it) so its peak resident memory
is measured alone: ``getrusage(RUSAGE_CHILDREN)`` covers the child and any worker processes.
Quick mode uses the ``small`` preset.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time

from benchmarks._harness import DATA

TARGET_BYTES = 2 * 2**30


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
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
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
