"""``napari-crystal synth``: build a synthetic NEDC corpus (slides + CSV/XML annotations)."""

from __future__ import annotations

import argparse
import json
import time

from napari_crystal.cli import _args


def register(subparsers) -> None:
    """Add the ``synth`` command."""
    from napari_crystal.synthetic import PRESETS

    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic NEDC corpus",
        description="Generate a synthetic NEDC breast corpus: OUT/{train,dev,eval}/<stem>.svs "
        "with <stem>.csv and <stem>.xml beside each slide.",
    )
    p.add_argument(
        "out", type=_args.new_folder, metavar="OUT", help="output folder (created if missing)"
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="corpus size")
    p.add_argument(
        "--seed", type=_args.seed, default=42, help="random seed (same seed, same corpus)"
    )
    p.add_argument(
        "--effect",
        type=float,
        default=None,
        help="0..1: how much calcifications say about the parent class (0: nothing, the "
        "negative control; 1: class-specific look and presence); default the preset's",
    )
    p.add_argument(
        "--protocol",
        default=None,
        help="how often plain parents in train are calcified: natural (as in eval), never "
        "(the old generator's, builds the crystal advantage in) or a rate 0..1; default the "
        "preset's (natural)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    """Generate the corpus with a progress bar and print what was written."""
    from tqdm import tqdm

    from napari_crystal.cli import fail
    from napari_crystal.synthetic import design, generate_corpus

    try:
        preset = design(args.preset, effect=args.effect, protocol=args.protocol)
    except ValueError as exc:
        return fail(str(exc))
    start = time.perf_counter()
    with tqdm(
        total=0, unit="strip", desc=f"synth {args.preset}", disable=args.quiet, leave=False
    ) as bar:

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        out = generate_corpus(args.out, preset=preset, seed=args.seed, progress=progress)
    info = json.loads((out / "SYNTHETIC.json").read_text())
    print(f"design: {preset.name}, effect {preset.effect:g}, protocol {preset.protocol}")
    for split, s in info["splits"].items():
        n = sum(s["regions"].values())
        print(
            f"{split}: {s['slides']} slides, {n} regions, {s['patients']} patients, "
            f"{s['large_regions']} large regions"
        )
    print(f"wrote {out} ({time.perf_counter() - start:.1f} s)")
    return 0
