"""A synthetic NEDC breast corpus: Aperio-style pyramidal slides with CSV + XML annotations.

There is no public NEDC data here, so tests, the demo, benchmarks and the sample menu use this.
Each class has a visual signature that survives binarisation (nuclei density, size and
arrangement, lumens, region shape, concentric calcifications for the crystal classes), drawn
with noise and deliberate look-alikes so a pixel classifier learns it only partly. Training
sets are built like the study's: few plain ``nneo``/``dcis``/``indc`` regions next to their
crystal counterparts, so merging the crystals into their parents helps on ``eval``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_crystal.palette import CRYSTAL_LABELS, CRYSTAL_PARENT, LABELS, label_order
from napari_crystal.synthetic.pyramid import write_pyramid
from napari_crystal.synthetic.render import (
    _SHAPES,
    _SIZE,
    TISSUE_STEP,
    SlideCanvas,
    _choose_look,
    _radial_polygon,
    _Region,
    _tissue_field,
)

Progress = Callable[[int, int], None]
TileSource = Callable[[int, int, int, int], np.ndarray]
SPLITS = ("train", "dev", "eval")
APERIO = "Aperio Image Library v12.0.15 \r\n"
WHITE = (244, 242, 244)


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """Corpus size: region counts per split and class, slide size and region cell size."""

    name: str
    counts: dict[str, dict[str, int]]
    slide_shape: tuple[int, int]  # level-0 rows, cols (each slide varies by up to -15%)
    cell: int  # regions are laid out one per cell of this side (level-0 pixels)
    regions_per_slide: int
    calcified_parents: dict[str, float] = field(
        default_factory=lambda: {"nneo": 0.35, "dcis": 0.55, "indc": 0.5}
    )  # share of eval/dev parent regions that carry (unannotated) calcifications
    mpp: float = 0.4990


def _counts(spec: str) -> dict[str, int]:
    """``"bckg 10 norm 8 ..."`` -> ``{"bckg": 10, "norm": 8, ...}``."""
    words = spec.split()
    return {label: int(n) for label, n in zip(words[::2], words[1::2], strict=True) if int(n) > 0}


# Train: plain parents are few next to their crystal counterparts (the paper's 1,850 -> 2,243,
# crystals 46 : 150 : 197 of FCCR's 51 : 168 : 220; the rest of FCCR is in dev).
_FCBR_TRAIN = _counts(
    "bckg 430 norm 330 null 190 artf 150 nneo 20 infl 280 susp 350 dcis 45 indc 55 "
    "cnno 46 cdcs 150 cidc 197"
)
# Eval follows FCBR's mix: ~61% non-cancerous, ~10% carcinogenic, ~30% cancerous; no crystals.
_FCBR_EVAL = _counts(
    "bckg 4009 norm 2551 null 911 artf 729 nneo 1822 infl 1021 susp 729 dcis 1057 indc 5395"
)
_FCBR_DEV = _counts(
    "bckg 43 norm 33 null 19 artf 15 nneo 4 infl 28 susp 35 dcis 6 indc 7 cnno 5 cdcs 18 cidc 23"
)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        {
            "train": _counts(
                "bckg 10 norm 8 null 5 artf 4 nneo 2 infl 7 susp 8 dcis 3 indc 3 "
                "cnno 3 cdcs 6 cidc 8"
            ),
            "dev": _counts(
                "bckg 3 norm 2 null 1 artf 1 nneo 1 infl 2 susp 2 dcis 1 indc 1 cnno 1 cdcs 1 cidc 1"
            ),
            "eval": _counts("bckg 12 norm 8 null 3 artf 3 nneo 6 infl 4 susp 3 dcis 5 indc 16"),
        },
        slide_shape=(3072, 4096),
        cell=256,
        regions_per_slide=30,
    ),
    "small": Preset(
        "small",
        {
            "train": _counts(
                "bckg 86 norm 66 null 38 artf 30 nneo 5 infl 56 susp 70 dcis 9 indc 11 "
                "cnno 10 cdcs 32 cidc 42"
            ),
            "dev": _counts(
                "bckg 10 norm 8 null 4 artf 3 nneo 2 infl 6 susp 8 dcis 2 indc 2 cnno 2 cdcs 4 cidc 5"
            ),
            "eval": {k: max(1, round(v * 0.045)) for k, v in _FCBR_EVAL.items()},
        },
        slide_shape=(4096, 6144),
        cell=256,
        regions_per_slide=160,
    ),
    "fcbr": Preset(
        "fcbr",
        {"train": _FCBR_TRAIN, "dev": _FCBR_DEV, "eval": _FCBR_EVAL},
        slide_shape=(6144, 8192),
        cell=192,
        regions_per_slide=700,
    ),
}

# ----------------------------------------------------------------------------- corpus


def _plan_slide(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cell: int,
    labels: Sequence[str],
    calcified: dict[str, float],
    tissue: np.ndarray,
) -> list[_Region]:
    """Place one region per label in distinct cells of the slide grid, on tissue where it can."""
    gr, gc = shape[0] // cell - 2, shape[1] // cell - 2
    k = cell // TISSUE_STEP
    inside = np.array(
        [
            tissue[(r + 1) * k : (r + 2) * k + 1, (c + 1) * k : (c + 2) * k + 1].min() > 0.7
            for r in range(gr)
            for c in range(gc)
        ]
    )
    order = rng.permutation(gr * gc)
    cells = np.concatenate([order[inside[order]], order[~inside[order]]])[: len(labels)]
    regions = []
    for label, k in zip(labels, cells, strict=False):
        look = _choose_look(rng, label)
        calc = label if label in CRYSTAL_LABELS else None
        if calc is None and label in calcified and rng.random() < calcified[label]:
            calc = {v: k for k, v in CRYSTAL_PARENT.items()}[label]
        lo, hi = _SIZE[look]
        diameter = cell * rng.uniform(lo, hi) - 4
        kind = str(rng.choice(_SHAPES[look]))
        poly = _radial_polygon(rng, kind, diameter)
        h = int(math.ceil(poly[:, 0].max())) + 2
        w = int(math.ceil(poly[:, 1].max())) + 2
        r, c = divmod(int(k), gc)
        top = (r + 1) * cell + int(rng.integers(0, max(1, cell - h)))
        left = (c + 1) * cell + int(rng.integers(0, max(1, cell - w)))
        seed = int(rng.integers(1 << 62))
        regions.append(_Region(label, look, calc, top, left, h, w, poly, seed))
    return regions


def _annotation(regions: list[_Region], shape, mpp: float, stem: str, source: Path):
    from napari_crystal.io.nedc import Annotation, Region

    out = []
    for i, reg in enumerate(regions):
        coords = np.round(reg.polygon + (reg.top, reg.left)).astype(np.float64)
        coords = np.concatenate([coords, coords[:1]])  # NEDC polygons repeat the first vertex
        out.append(
            Region(
                index=i,
                region_id=i + 1,
                label=reg.label,
                tissue="breast",
                coords=coords,
                depth=np.zeros(len(coords), np.int64),
                confidence=1.0,
            )
        )
    return Annotation(
        regions=out,
        mpp=mpp,
        width=int(shape[1]),
        height=int(shape[0]),
        bname=stem,
        tissue="breast",
        source=str(source),
    )


def generate_slide(
    path,
    labels: Sequence[str],
    shape: tuple[int, int] = (4096, 6144),
    *,
    seed: int = 42,
    cell: int = 256,
    mpp: float = 0.4990,
    calcified_parents: dict[str, float] | None = None,
    compression: str = "jpeg",
    progress: Callable[[int], None] | None = None,
):
    """Write one synthetic slide with one region per label, plus ``.csv`` and ``.xml`` beside it.

    Returns the ``nedc.Annotation`` written.
    """
    from napari_crystal.io.nedc import write_annotation

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    slots = (shape[0] // cell - 2) * (shape[1] // cell - 2)
    if len(labels) > slots:
        raise ValueError(f"{len(labels)} regions do not fit in {slots} cells of a {shape} slide")
    tissue = _tissue_field(rng, shape, TISSUE_STEP)
    regions = _plan_slide(rng, shape, cell, labels, calcified_parents or {}, tissue)
    canvas = SlideCanvas(shape, regions, int(rng.integers(1 << 62)), tissue=tissue)
    write_pyramid(path, canvas, shape, mpp, compression=compression, progress=progress)
    ann = _annotation(regions, shape, mpp, path.stem, path)
    write_annotation(ann, path.with_suffix(".csv"))
    write_annotation(ann, path.with_suffix(".xml"))
    return ann


def _split_slides(
    rng: np.random.Generator, counts: dict[str, int], preset: Preset
) -> list[tuple[tuple[int, int], list[str]]]:
    """Shuffle a split's labels and deal them to slides of (slightly) varying size."""
    labels = [label for label in LABELS if label in counts for _ in range(counts[label])]
    unknown = set(counts) - set(LABELS)
    if unknown:
        raise ValueError(f"unknown labels in preset {preset.name}: {sorted(unknown)}")
    labels = [labels[i] for i in rng.permutation(len(labels))]
    n_slides = max(1, math.ceil(len(labels) / preset.regions_per_slide))
    out = []
    for k in range(n_slides):
        chunk = labels[k::n_slides]
        rows, cols = preset.slide_shape
        scale_r, scale_c = rng.uniform(0.85, 1.0, 2)
        shape = (int(rows * scale_r) // 16 * 16, int(cols * scale_c) // 16 * 16)
        cells = (shape[0] // preset.cell - 2) * (shape[1] // preset.cell - 2)
        if cells < len(chunk):
            shape = (rows, cols)
        out.append((shape, chunk))
    return out


def corpus_plan(preset: str | Preset = "tiny", seed: int = 42) -> dict[str, list]:
    """Slide shapes and labels per split, without drawing anything (cheap; deterministic)."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    plan = {}
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, i])
        plan[split] = _split_slides(rng, p.counts.get(split, {}), p)
    return plan


def generate_corpus(
    out, preset: str | Preset = "tiny", seed: int = 42, progress: Progress | None = None
) -> Path:
    """Build a synthetic NEDC corpus: ``out/{train,dev,eval}/<stem>.svs`` + ``.csv`` + ``.xml``.

    ``progress(done, total)`` counts level-0 strips. Deterministic for a seed: the same
    preset and seed give the same files. A ``SYNTHETIC.json`` at the top records what was built.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        p = PRESETS[preset]
    else:
        p = preset
    out = Path(out)
    plan = corpus_plan(p, seed)
    total = sum(-(-shape[0] // 256) for slides in plan.values() for shape, _ in slides)
    done = 0
    if progress is not None:
        progress(0, total)

    def step(_strips: int) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    summary: dict[str, dict] = {}
    patient = 0
    for i, split in enumerate(SPLITS):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        for k, (shape, labels) in enumerate(plan[split]):
            patient += 1
            stem = f"{patient:08d}_s001_0hne_0000_a001_lvl001_t000"
            calcified = p.calcified_parents if split != "train" else {}
            generate_slide(
                folder / f"{stem}.svs",
                labels,
                shape,
                seed=int(np.random.SeedSequence([seed, i, k]).generate_state(1)[0]),
                cell=p.cell,
                mpp=p.mpp,
                calcified_parents=calcified,
                progress=step,
            )
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
        summary[split] = {
            "slides": len(plan[split]),
            "regions": {label: counts[label] for label in label_order(counts)},
        }
    info = {"preset": p.name, "seed": seed, "mpp": p.mpp, "splits": summary}
    tmp = out / ".SYNTHETIC.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out / "SYNTHETIC.json")
    return out
