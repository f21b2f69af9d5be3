"""A synthetic NEDC breast corpus: Aperio-style pyramidal slides with CSV + XML annotations.

There is no public NEDC data here, so tests, the demo, benchmarks and the sample menu use this.
Each class has a visual signature that survives binarisation (nuclei density, size and
arrangement, lumens, region shape), drawn with noise and deliberate look-alikes so a pixel
classifier learns it only partly. Training sets are built like the study's: few plain
``nneo``/``dcis``/``indc`` regions next to their crystal counterparts.

The corpus is an experiment design (docs/synthetic.md): ``effect`` sets how much the
calcifications say about the parent class (1: each crystal class has its own look and only
parent classes calcify; 0: presence and look are the same for every class), ``protocol`` how
often plain parents in *train* are calcified (``natural``: as often as in eval; ``never``: the
old generator's behaviour, which builds an advantage for the crystal model in; or a rate).
Patients have one to a few slides (the stem's first field is the patient), region sizes run
from ~100 px to several thousand (masks then come from coarser pyramid levels), and a
``matched/`` split holds, for the matched-data control arm, as many plain parents as train
has crystals, drawn like the crystal regions (calcified) but with a calcification look that
says nothing about the class: at effect 0 they are exchangeable with the crystal regions.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from napari_crystal.palette import CRYSTAL_LABELS, CRYSTAL_PARENT, LABELS, NEDC_LABELS, label_order
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
#: Folders of a corpus; ``matched`` holds fresh plain parents for the matched-data control.
SPLITS = ("train", "dev", "eval", "matched")
PROTOCOLS = ("natural", "never")
APERIO = "Aperio Image Library v12.0.15 \r\n"
WHITE = (244, 242, 244)
_CHILD = {parent: child for child, parent in CRYSTAL_PARENT.items()}


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A corpus design: region counts per split and class, slides, region sizes, the effect.

    ``calcified_parents``: share of plain parent regions with (unannotated) calcifications in
    eval/dev at ``effect`` 1 (and in train under the ``natural`` protocol). ``large_share`` of
    the regions (at least one per split) get a diameter drawn log-uniformly between
    ``large_min`` (default ``2 * cell``) and ``large_max`` level-0 pixels (the rest fill one grid cell, ~100-240 px). ``slides_per_patient`` is the
    range of slides one patient contributes to a split.
    """

    name: str
    counts: dict[str, dict[str, int]]
    slide_shape: tuple[int, int]  # level-0 rows, cols (each slide varies by up to -15%)
    cell: int  # regions are laid out on a grid of this side (level-0 pixels)
    regions_per_slide: int
    calcified_parents: dict[str, float] = field(
        default_factory=lambda: {"nneo": 0.35, "dcis": 0.55, "indc": 0.5}
    )
    mpp: float = 0.4990
    effect: float = 1.0
    protocol: str | float = "natural"
    slides_per_patient: tuple[int, int] = (1, 3)
    large_share: float = 0.0
    large_max: int = 0
    large_min: int = 0  # default 2 * cell
    description: str = ""


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
_SMALL = {
    "train": _counts(
        "bckg 86 norm 66 null 38 artf 30 nneo 5 infl 56 susp 70 dcis 9 indc 11 "
        "cnno 10 cdcs 32 cidc 42"
    ),
    "dev": _counts(
        "bckg 10 norm 8 null 4 artf 3 nneo 2 infl 6 susp 8 dcis 2 indc 2 cnno 2 cdcs 4 cidc 5"
    ),
    "eval": {k: max(1, round(v * 0.045)) for k, v in _FCBR_EVAL.items()},
}
_SMALL_SLIDES = {"slide_shape": (3072, 4096), "cell": 256, "regions_per_slide": 50}

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
        large_share=0.02,
        large_min=1400,
        large_max=1700,
        description="CI and quick checks: every class, a few regions read at level 1",
    ),
    "small": Preset(
        "small",
        _SMALL,
        **_SMALL_SLIDES,
        large_share=0.015,
        large_max=5200,
        description="the demo; effect on: class-specific calcifications, natural protocol",
    ),
    "negative": Preset(
        "negative",
        _SMALL,
        **_SMALL_SLIDES,
        large_share=0.015,
        large_max=5200,
        effect=0.0,
        description="negative control: `small` with effect 0 (crystals carry no class signal)",
    ),
    "fcbr": Preset(
        "fcbr",
        {"train": _FCBR_TRAIN, "dev": _FCBR_DEV, "eval": _FCBR_EVAL},
        slide_shape=(6144, 8192),
        cell=192,
        regions_per_slide=700,
        large_share=0.004,
        large_max=5200,
        description="the study's counts (2,243 / 1,850 train, 18,224 eval)",
    ),
}


def design(preset: str | Preset = "tiny", *, effect: float | None = None, protocol=None) -> Preset:
    """A preset with ``effect`` and/or ``protocol`` changed (checked)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    p = replace(
        preset,
        effect=preset.effect if effect is None else float(effect),
        protocol=preset.protocol if protocol is None else parse_protocol(protocol),
    )
    if not 0.0 <= p.effect <= 1.0:
        raise ValueError(f"effect must be between 0 and 1, got {p.effect}")
    parse_protocol(p.protocol)
    return p


def parse_protocol(value) -> str | float:
    """``"natural"``, ``"never"`` or a rate in [0, 1] (how often train plain parents calcify)."""
    if isinstance(value, str) and value in PROTOCOLS:
        return value
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"protocol must be one of {', '.join(PROTOCOLS)} or a rate in [0, 1], not {value!r}"
        ) from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"protocol rate must be in [0, 1], got {rate}")
    return rate


def calcification_rates(p: Preset, split: str) -> dict[str, float]:
    """Share of plain regions of each NEDC class drawn with calcifications in ``split``.

    At effect 1 only the parent classes calcify, at ``calcified_parents``' rates; at effect 0
    every class calcifies at their mean rate (presence says nothing about the class); in
    between, a linear mix. In train the protocol decides the parents' rates. The ``matched``
    pool's plain parents stand in for train's crystal regions: all calcified, with a
    calcification look drawn at random from the three crystal classes (no class signal).
    """
    common = float(np.mean(list(p.calcified_parents.values()))) if p.calcified_parents else 0.0
    e = p.effect
    rates = {
        label: e * p.calcified_parents.get(label, 0.0) + (1 - e) * common for label in NEDC_LABELS
    }
    if split == "matched":  # stand-ins for the crystal regions: every one calcified
        return {parent: 1.0 for parent in _CHILD}
    if split == "train" and p.protocol != "natural":
        rate = 0.0 if p.protocol == "never" else float(p.protocol)
        for parent in _CHILD:
            rates[parent] = rate
    return rates


# ----------------------------------------------------------------------------- corpus


def _region_size(rng: np.random.Generator, look: str, cell: int, large: float) -> float:
    """A region's diameter: ``large`` > 0 is a log-uniform share of the large range."""
    if large > 0:
        return large
    lo, hi = _SIZE[look]
    return cell * rng.uniform(lo, hi) - 4


def _span(diameter: float, cell: int) -> int:
    """Grid cells a region of ``diameter`` needs on a side."""
    return max(1, math.ceil((diameter + 6) / cell))


def _calc_pattern(rng: np.random.Generator, label: str, effect: float) -> str:
    """Which crystal class's calcification look to draw: class-specific with chance ``effect``."""
    parent = CRYSTAL_PARENT.get(label, label)
    if parent in _CHILD and rng.random() < effect:
        return _CHILD[parent]
    return str(rng.choice(CRYSTAL_LABELS))


def _free_blocks(taken: np.ndarray, span: int) -> np.ndarray:
    """``ok[r, c]``: the ``span`` x ``span`` block of grid cells at (r, c) is all free."""
    s = np.pad(np.cumsum(np.cumsum(taken.astype(np.int32), 0), 1), ((1, 0), (1, 0)))
    k = span
    block = s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]
    return block == 0


def _plan_slide(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cell: int,
    labels: Sequence[str],
    calcified: dict[str, float],
    tissue: np.ndarray,
    *,
    effect: float = 1.0,
    sizes: Sequence[float] | None = None,
) -> list[_Region]:
    """Place regions in free blocks of the slide grid (largest first), on tissue where they can.

    ``sizes[i]`` > 0 fixes region i's diameter (a large region); 0 draws it from its look.
    """
    gr, gc = shape[0] // cell - 2, shape[1] // cell - 2
    k = cell // TISSUE_STEP
    inside = np.array(
        [
            [tissue[(r + 1) * k : (r + 2) * k + 1, (c + 1) * k : (c + 2) * k + 1].min() > 0.7
             for c in range(gc)]
            for r in range(gr)
        ]
    )  # fmt: skip
    sizes = list(sizes) if sizes is not None else [0.0] * len(labels)
    plans = []
    for label, large in zip(labels, sizes, strict=True):
        look = _choose_look(rng, label)
        calc = None
        if label in CRYSTAL_LABELS or rng.random() < calcified.get(label, 0.0):
            calc = _calc_pattern(rng, label, effect)
        diameter = _region_size(rng, look, cell, large)
        plans.append((label, look, calc, diameter, _span(diameter, cell)))
    taken = np.zeros((gr, gc), bool)
    regions: list[_Region | None] = [None] * len(plans)
    for i in sorted(range(len(plans)), key=lambda j: -plans[j][4]):
        label, look, calc, diameter, span = plans[i]
        ok = _free_blocks(taken, span) if span > 1 else ~taken
        if not ok.any():
            raise ValueError(f"{len(labels)} regions do not fit on a {shape} slide")
        if span == 1:
            good = ok & inside
        else:
            good = ok & (_free_blocks(~inside, span) if inside.any() else ok)
        pick = good if good.any() else ok
        cand = np.flatnonzero(pick)
        # large blocks go to the first free place (raster order) so they do not fragment the grid
        at = cand[0] if span > 1 else cand[rng.integers(len(cand))]
        r, c = divmod(int(at), pick.shape[1])
        taken[r : r + span, c : c + span] = True
        kind = str(rng.choice(_SHAPES[look]))
        poly = _radial_polygon(rng, kind, diameter)
        h = int(math.ceil(poly[:, 0].max())) + 2
        w = int(math.ceil(poly[:, 1].max())) + 2
        room = span * cell
        top = (r + 1) * cell + int(rng.integers(0, max(1, room - h)))
        left = (c + 1) * cell + int(rng.integers(0, max(1, room - w)))
        seed = int(rng.integers(1 << 62))
        regions[i] = _Region(label, look, calc, top, left, h, w, poly, seed)
    return [reg for reg in regions if reg is not None]


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
    effect: float = 1.0,
    sizes: Sequence[float] | None = None,
    compression: str = "jpeg",
    progress: Callable[[int], None] | None = None,
):
    """Write one synthetic slide with one region per label, plus ``.csv`` and ``.xml`` beside it.

    ``calcified_parents``: share of plain regions of a class drawn with calcifications (any
    NEDC label); ``effect``: chance a calcification has its class's own look (else any
    crystal class's); ``sizes``: fixed diameters (> 0) for large regions.
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
    regions = _plan_slide(
        rng, shape, cell, labels, calcified_parents or {}, tissue, effect=effect, sizes=sizes
    )
    canvas = SlideCanvas(shape, regions, int(rng.integers(1 << 62)), tissue=tissue)
    write_pyramid(path, canvas, shape, mpp, compression=compression, progress=progress)
    ann = _annotation(regions, shape, mpp, path.stem, path)
    write_annotation(ann, path.with_suffix(".csv"))
    write_annotation(ann, path.with_suffix(".xml"))
    return ann


@dataclass(frozen=True)
class SlidePlan:
    """One planned slide: level-0 shape, region labels, fixed diameters (0: drawn), patient."""

    shape: tuple[int, int]
    labels: tuple[str, ...]
    sizes: tuple[float, ...]
    patient: int
    session: int


def _fits(shape: tuple[int, int], cell: int, spans: list[int]) -> bool:
    gr, gc = shape[0] // cell - 2, shape[1] // cell - 2
    large = sum(s * s for s in spans if s > 1)  # blocks: leave slack for packing them
    return max(spans, default=1) <= min(gr, gc) and spans.count(1) + 1.5 * large <= gr * gc


def _split_slides(
    rng: np.random.Generator, counts: dict[str, int], preset: Preset
) -> list[tuple[tuple[int, int], list[str], list[float]]]:
    """Shuffle a split's labels, pick the large regions, deal them to slides of varying size."""
    labels = [label for label in LABELS if label in counts for _ in range(counts[label])]
    unknown = set(counts) - set(LABELS)
    if unknown:
        raise ValueError(f"unknown labels in preset {preset.name}: {sorted(unknown)}")
    labels = [labels[i] for i in rng.permutation(len(labels))]
    sizes = [0.0] * len(labels)
    low = preset.large_min or 2 * preset.cell
    if preset.large_share > 0 and preset.large_max > low:
        lo, hi = math.log(low), math.log(preset.large_max)
        n_large = max(1, round(preset.large_share * len(labels)))
        for i in rng.choice(len(labels), size=min(n_large, len(labels)), replace=False):
            sizes[int(i)] = round(math.exp(rng.uniform(lo, hi)), 1)
    n_slides = max(1, math.ceil(len(labels) / preset.regions_per_slide))
    out = []
    for k in range(n_slides):
        chunk, big = labels[k::n_slides], sizes[k::n_slides]
        rows, cols = preset.slide_shape
        scale_r, scale_c = rng.uniform(0.85, 1.0, 2)
        shape = (int(rows * scale_r) // 16 * 16, int(cols * scale_c) // 16 * 16)
        spans = [_span(s, preset.cell) if s else 1 for s in big]
        if not _fits(shape, preset.cell, spans):
            shape = (rows, cols)
        while not _fits(shape, preset.cell, spans):
            shape = (shape[0] + 512, shape[1] + 512)
        out.append((shape, chunk, big))
    return out


def corpus_plan(preset: str | Preset = "tiny", seed: int = 42) -> dict[str, list[SlidePlan]]:
    """Slides per split with shapes, labels and patients, without drawing anything (cheap).

    Patients are numbered through the splits, so no patient is in two splits; each has
    ``slides_per_patient`` slides (the last one of a split may have fewer). The ``matched``
    split holds, per parent class, as many plain parents as train has of its crystal class.
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    counts = dict(p.counts)
    train = counts.get("train", {})
    counts["matched"] = {
        parent: train[child] for child, parent in CRYSTAL_PARENT.items() if train.get(child)
    }
    plan: dict[str, list[SlidePlan]] = {}
    patient = 0
    lo, hi = p.slides_per_patient
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, i])
        slides = _split_slides(rng, counts.get(split, {}), p) if counts.get(split) else []
        plan[split] = []
        left = 0
        for shape, labels, sizes in slides:
            if left == 0:
                patient += 1
                left = int(rng.integers(lo, hi + 1))
                session = 0
            session += 1
            left -= 1
            plan[split].append(SlidePlan(shape, tuple(labels), tuple(sizes), patient, session))
    return plan


def slide_stem(patient: int, session: int) -> str:
    """The NEDC-style stem of a patient's slide: the first field is the patient."""
    return f"{patient:08d}_s{session:03d}_0hne_0000_a001_lvl001_t000"


def generate_corpus(
    out,
    preset: str | Preset = "tiny",
    seed: int = 42,
    progress: Progress | None = None,
    *,
    effect: float | None = None,
    protocol: str | float | None = None,
) -> Path:
    """Build a synthetic NEDC corpus: ``out/{train,dev,eval,matched}/<stem>.svs`` + ``.csv`` + ``.xml``.

    ``effect`` and ``protocol`` override the preset's (see `design`). ``progress(done,
    total)`` counts level-0 strips. Deterministic for a seed: the same design and seed give
    the same files. A ``SYNTHETIC.json`` at the top records the design, every slide's
    patient and what was built.
    """
    p = design(preset, effect=effect, protocol=protocol)
    out = Path(out)
    plan = corpus_plan(p, seed)
    total = sum(-(-s.shape[0] // 256) for slides in plan.values() for s in slides)
    done = 0
    if progress is not None:
        progress(0, total)

    def step(_strips: int) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    summary: dict[str, dict] = {}
    patients: dict[str, int] = {}
    for i, split in enumerate(SPLITS):
        if not plan[split]:
            continue
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        rates = calcification_rates(p, split)
        for k, s in enumerate(plan[split]):
            stem = slide_stem(s.patient, s.session)
            patients[f"{split}/{stem}"] = s.patient
            generate_slide(
                folder / f"{stem}.svs",
                s.labels,
                s.shape,
                seed=int(np.random.SeedSequence([seed, i, k]).generate_state(1)[0]),
                cell=p.cell,
                mpp=p.mpp,
                calcified_parents=rates,
                effect=0.0 if split == "matched" else p.effect,
                sizes=s.sizes,
                progress=step,
            )
            for label in s.labels:
                counts[label] = counts.get(label, 0) + 1
        summary[split] = {
            "slides": len(plan[split]),
            "patients": len({s.patient for s in plan[split]}),
            "large_regions": sum(1 for s in plan[split] for d in s.sizes if d),
            "calcified_share": {k: round(v, 4) for k, v in rates.items() if v},
            "regions": {label: counts[label] for label in label_order(counts)},
        }
    info = {
        "preset": p.name,
        "seed": seed,
        "mpp": p.mpp,
        "effect": p.effect,
        "protocol": p.protocol,
        "large_max": p.large_max,
        "splits": summary,
        "patients": patients,
    }
    tmp = out / ".SYNTHETIC.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out / "SYNTHETIC.json")
    return out
