"""``napari-crystal synth``: build a synthetic NEDC corpus (slides + CSV/XML annotations)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``synth`` command."""
    from napari_crystal.synthetic import PRESETS

    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic NEDC corpus",
        description="Generate a synthetic NEDC breast corpus: OUT/{train,dev,eval}/<stem>.svs "
        "with <stem>.csv and <stem>.xml beside each slide.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="corpus size")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same corpus)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    """Generate the corpus with a progress bar and print what was written."""
    from tqdm import tqdm

    from napari_crystal.synthetic import generate_corpus

    start = time.perf_counter()
    with tqdm(
        total=0, unit="strip", desc=f"synth {args.preset}", disable=args.quiet, leave=False
    ) as bar:

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        out = generate_corpus(args.out, preset=args.preset, seed=args.seed, progress=progress)
    info = json.loads((out / "SYNTHETIC.json").read_text())
    for split, s in info["splits"].items():
        n = sum(s["regions"].values())
        print(f"{split}: {s['slides']} slides, {n} regions")
    print(f"wrote {out} ({time.perf_counter() - start:.1f} s)")
    return 0
