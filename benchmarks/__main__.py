"""``python -m benchmarks [NAME ...] [--quick]``: run the benchmark modules and print the table."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from benchmarks._harness import Figure, machine, write_results

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Run each ``bench_*.py`` (or the named ones), then write the results and the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", help="bench module names, e.g. annotations")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
    figures: list[Figure] = []
    display = _virtual_display()

    def record(benchmark, project, baseline, ratio, target, met, **extra):
        fig = Figure(benchmark, project, baseline, ratio, target, met, extra)
        figures.append(fig)
        ratio_s = "" if ratio is None else f"  ratio {ratio:.2f}x"
        met_s = "" if met is None else ("  MET" if met else "  NOT MET")
        print(
            f"{benchmark}: {project} vs {baseline}{ratio_s}  (target {target}){met_s}", flush=True
        )

    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        module.run(record, quick=args.quick)
        print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)
    write_results(figures, machine())
    if display is not None:
        display.stop()
    return 0


def _virtual_display():
    """One Xvfb for the whole run when there is no screen: Qt keeps its first display, so the
    viewer benchmarks must not each start and stop their own."""
    import shutil

    from scripts._screen import start_screen

    return start_screen((1600, 1200)) if shutil.which("Xvfb") else None


if __name__ == "__main__":
    sys.exit(main())
