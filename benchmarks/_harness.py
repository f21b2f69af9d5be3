"""Recording benchmark figures: JSON lines with machine info, and the table in docs/benchmarks.md.

A benchmark module ``benchmarks/bench_<name>.py`` defines ``run(record, quick=False)`` and calls
``record(...)`` once per figure. Ratios are project/baseline speed-ups (baseline time divided
by project time) unless the row says otherwise; ``met`` is judged by the module.
"""

from __future__ import annotations

import json
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from napari_crystal._atomic import atomic_write

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "results.jsonl"
TABLE = ROOT / "docs" / "benchmarks.md"
DATA = ROOT / "bench-data"


@dataclass
class Figure:
    """One row of the benchmark table."""

    benchmark: str
    project: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None
    extra: dict = field(default_factory=dict)


def machine() -> dict:
    """What the figures were measured on."""
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        mem = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gib": mem,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def timed(fn: Callable, *args, repeat: int = 1, **kwargs) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_python_memory(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    """Peak bytes allocated through Python's allocators (numpy included) while ``fn`` runs."""
    tracemalloc.start()
    try:
        result = fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


def _read_table() -> tuple[dict[str, list[str]], str]:
    """The table's rows by benchmark name, and the prose under it, from one read of the file.

    A partial run keeps the other rows; notes written under the table by hand stay as they are.
    """
    rows: dict[str, list[str]] = {}
    if not TABLE.is_file():
        return rows, ""
    text = TABLE.read_text().splitlines()
    last = -1
    for i, line in enumerate(text):
        if not line.startswith("|"):
            continue
        last = i
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ("benchmark", "---") or len(cells) < 6:
            continue
        if len(cells) == 6:  # a table from before rows carried their date
            cells.append("earlier run")
        rows[cells[0]] = cells[:7]
    rest = "\n".join(text[last + 1 :]).strip("\n") if last >= 0 else ""
    return rows, (f"\n{rest}\n" if rest else "")


def write_results(figures: list[Figure], info: dict) -> None:
    """Append the figures as JSON lines and update their rows of the summary table.

    Rows of benchmarks this run did not measure stay, each with the date it was measured, so
    running one module (``python -m benchmarks slide``) never drops the others.
    """
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        for fig in figures:
            fh.write(json.dumps({**asdict(fig), "machine": info}) + "\n")
    rows, notes = _read_table()
    for f in figures:
        ratio = "" if f.ratio is None else f"{f.ratio:.2f}x"
        met = "" if f.met is None else ("yes" if f.met else "no")
        rows[f.benchmark] = [
            f.benchmark,
            f.project,
            f.baseline,
            ratio,
            f.target,
            met,
            info["time"],
        ]
    lines = [
        "# Benchmarks",
        "",
        f"Last run by `make bench` (or `python -m benchmarks NAME`) on {info['time']}: Python "
        f"{info['python']}, {info['cpus']} cores, {info['memory_gib']} GiB. Each row says when it "
        "was measured. Every ratio compares the project's way with a baseline run in the same "
        "process; raw rows are in `benchmarks/results/results.jsonl`.",
        "",
        "| benchmark | project | baseline | ratio | target | met | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows.values()]
    atomic_write(TABLE, ("\n".join(lines) + "\n" + notes).encode())
