"""A synthetic NEDC breast corpus: Aperio-style pyramidal slides with CSV + XML annotations.

There is no public NEDC data here, so tests, the demo, benchmarks and the sample menu use this.
Each class has a visual signature that survives binarisation (nuclei density, size and
arrangement, lumens, region shape, concentric calcifications for the crystal classes), drawn
with noise and deliberate look-alikes so a pixel classifier learns it only partly. Training
sets are built like the study's: few plain ``nneo``/``dcis``/``indc`` regions next to their
crystal counterparts, so merging the crystals into their parents helps on ``eval``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_crystal.palette import CRYSTAL_LABELS, CRYSTAL_PARENT, LABELS

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

# ----------------------------------------------------------------------------- class looks

# Look-alikes: with probability CONFUSE a region is drawn with a neighbour's look (overlap).
CONFUSE = 0.3
_LOOKALIKE: dict[str, tuple[str, ...]] = {
    "bckg": ("nneo", "null"),
    "norm": ("nneo", "susp"),
    "null": ("bckg", "artf"),
    "artf": ("null",),
    "nneo": ("norm", "bckg", "susp"),
    "infl": ("indc", "null"),
    "susp": ("norm", "dcis", "nneo"),
    "dcis": ("susp", "indc"),
    "indc": ("dcis", "infl", "susp"),
}
# Calcification bodies per crystal class: (count range, radius as share of region radius, ring period).
_CALC: dict[str, tuple[tuple[int, int], tuple[float, float], tuple[float, float]]] = {
    "cnno": ((1, 2), (0.28, 0.42), (5.0, 7.0)),
    "cdcs": ((1, 3), (0.18, 0.34), (3.0, 4.5)),
    "cidc": ((3, 7), (0.09, 0.16), (2.0, 3.0)),
}
_NUCLEUS = np.array((88, 52, 138), np.float32)
_NUCLEUS_DARK = np.array((62, 30, 112), np.float32)
_STROMA = np.array((234, 172, 204), np.float32)
_CYTO = np.array((216, 158, 204), np.float32)
_CALC_RGB = np.array((58, 34, 118), np.float32)
_PENS = (
    np.array((46, 118, 84), np.float32),
    np.array((44, 64, 150), np.float32),
    np.array((50, 50, 60), np.float32),
)


@dataclass
class _Region:
    """A planned region: label, the look it is drawn with, bounding box and polygon (level 0)."""

    label: str
    look: str  # NEDC label whose texture is drawn
    calc: str | None  # crystal label whose calcifications are drawn, or None
    top: int
    left: int
    height: int
    width: int
    polygon: np.ndarray  # (N, 2) row/col, local to the bounding box
    seed: int


def _radial_polygon(rng: np.random.Generator, kind: str, diameter: float) -> np.ndarray:
    """A closed-ish star-shaped polygon (N, 2) of a given kind, fitted into ``diameter``."""
    n = int(rng.integers(28, 48))
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    aspect = 1.0
    harmonics: list[tuple[int, float]] = []
    if kind == "round":
        aspect = rng.uniform(1.0, 1.3)
        harmonics = [(2, rng.uniform(0, 0.06)), (3, rng.uniform(0, 0.04))]
    elif kind == "blob":
        aspect = rng.uniform(1.0, 1.8)
        harmonics = [(k, rng.uniform(0.05, 0.16)) for k in (2, 3, 4)]
    elif kind == "lobulated":
        aspect = rng.uniform(1.0, 1.5)
        harmonics = [(k, rng.uniform(0.12, 0.22)) for k in (3, 4, 5)]
    elif kind == "elongated":
        aspect = rng.uniform(2.2, 4.0)
        harmonics = [(2, rng.uniform(0, 0.08)), (3, rng.uniform(0, 0.08))]
    elif kind == "spiky":
        aspect = rng.uniform(1.0, 1.6)
        harmonics = [(k, rng.uniform(0.06, 0.16)) for k in (3, 5, 7, 9)]
    for k, a in harmonics:
        r += a * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if kind == "spiky":
        r *= 1 + rng.uniform(-0.18, 0.18, n)
    else:
        r *= 1 + rng.uniform(-0.03, 0.03, n)
    r = np.clip(r, 0.35, None)
    x, y = r * np.cos(theta) * aspect, r * np.sin(theta)
    angle = rng.uniform(0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rows, cols = s * x + c * y, c * x - s * y
    pts = np.stack([rows, cols], axis=1)
    pts -= pts.min(axis=0)
    pts *= diameter / max(float(pts.max()), 1e-6)
    return pts + 1.0


_SHAPES = {
    "bckg": ("blob", "elongated"),
    "norm": ("lobulated", "blob"),
    "null": ("blob", "round"),
    "artf": ("elongated", "elongated", "blob"),
    "nneo": ("elongated", "blob"),
    "infl": ("round", "blob"),
    "susp": ("round", "lobulated"),
    "dcis": ("round", "round", "blob"),
    "indc": ("spiky", "spiky", "blob"),
}
_SIZE = {  # region diameter as share of its cell
    "bckg": (0.7, 0.95), "norm": (0.55, 0.85), "null": (0.6, 0.95), "artf": (0.6, 0.95),
    "nneo": (0.6, 0.9), "infl": (0.45, 0.75), "susp": (0.5, 0.8), "dcis": (0.5, 0.85),
    "indc": (0.6, 0.95),
}  # fmt: skip


def _choose_look(rng: np.random.Generator, label: str) -> str:
    base = CRYSTAL_PARENT.get(label, label)
    if base in _LOOKALIKE and rng.random() < CONFUSE:
        return str(rng.choice(_LOOKALIKE[base]))
    return base if base in _SHAPES else "bckg"


# ----------------------------------------------------------------------------- rendering


def _poly_mask(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled polygon (row/col vertices) as a bool mask; PIL's scanline fill is fast."""
    from PIL import Image, ImageDraw

    img = Image.new("1", (shape[1], shape[0]), 0)
    ImageDraw.Draw(img).polygon([(float(c), float(r)) for r, c in polygon], fill=1)
    return np.asarray(img, dtype=bool)


def _points(rng: np.random.Generator, mask: np.ndarray, n: int) -> np.ndarray:
    idx = np.flatnonzero(mask)
    if n <= 0 or idx.size == 0:
        return np.zeros((0, 2))
    pick = rng.choice(idx, size=n, replace=True)
    r, c = np.divmod(pick, mask.shape[1])
    return np.stack([r, c], axis=1) + rng.uniform(-0.5, 0.5, (n, 2))


def _nuclei(shape, pts: np.ndarray, sigma, rng: np.random.Generator, spread=(0.75, 1.0)):
    """Soft nuclei (0..1) at ``pts``: blurred impulses thresholded into round/oval blobs."""
    img = np.zeros(shape, np.float32)
    if len(pts):
        r = np.clip(np.round(pts[:, 0]).astype(int), 0, shape[0] - 1)
        c = np.clip(np.round(pts[:, 1]).astype(int), 0, shape[1] - 1)
        np.add.at(img, (r, c), rng.uniform(*spread, len(pts)).astype(np.float32))
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    img = ndimage.gaussian_filter(img, (sy, sx), truncate=3.0) * (2 * np.pi * sy * sx)
    return np.clip((img - 0.3) / 0.3, 0, 1)


def _disc_field(shape, cy: float, cx: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return np.hypot(yy - cy, xx - cx).astype(np.float32)


def _window(shape, cy: float, cx: float, r: float):
    """Slices of the square around a disc, and the distance to its centre inside them."""
    y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, shape[0])
    x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, shape[1])
    yy, xx = np.ogrid[y0:y1, x0:x1]
    return (slice(y0, y1), slice(x0, x1)), np.hypot(yy - cy, xx - cx).astype(np.float32)


def _paint_disc(field_: np.ndarray, cy: float, cx: float, r: float, value: float = 1.0) -> None:
    """``field_ = max(field_, value)`` inside a disc, touching only its window."""
    win, d = _window(field_.shape, cy, cx, r)
    np.maximum(field_[win], np.where(d < r, np.float32(value), np.float32(0)), out=field_[win])


def _blend(rgb: np.ndarray, alpha: np.ndarray, colour) -> None:
    """In place: ``rgb = rgb * (1 - alpha) + colour * alpha`` (skipped where nothing to do)."""
    if alpha.any():
        rgb -= (rgb - np.asarray(colour, np.float32)) * alpha[..., None]


_NOISE = np.random.default_rng(20260101).normal(0, 1, (600, 600)).astype(np.float32)


def _noise(rng: np.random.Generator, shape) -> np.ndarray:
    """A random window of a fixed Gaussian noise bank (much cheaper than fresh noise)."""
    if shape[0] > _NOISE.shape[0] or shape[1] > _NOISE.shape[1]:
        return rng.standard_normal(shape, dtype=np.float32)
    y = int(rng.integers(0, _NOISE.shape[0] - shape[0] + 1))
    x = int(rng.integers(0, _NOISE.shape[1] - shape[1] + 1))
    return _NOISE[y : y + shape[0], x : x + shape[1]]


def _ring_points(rng, cy, cx, radius, spacing) -> np.ndarray:
    n = max(5, int(2 * np.pi * radius / spacing))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
    rr = radius * (1 + rng.uniform(-0.08, 0.08, n))
    return np.stack([cy + rr * np.sin(t), cx + rr * np.cos(t)], axis=1)


def _centres(
    rng, mask: np.ndarray, n: int, min_dist: float, margin: float | None = None
) -> list[tuple[float, float]]:
    """Up to ``n`` points in ``mask``, ``margin`` inside its edge, ``min_dist`` apart (dart throwing)."""
    margin = min_dist * 0.5 if margin is None else margin
    inner = ndimage.distance_transform_edt(mask) > margin
    cand = _points(rng, inner if inner.any() else mask, n * 12)
    out: list[tuple[float, float]] = []
    for y, x in cand:
        if all((y - a) ** 2 + (x - b) ** 2 >= min_dist**2 for a, b in out):
            out.append((float(y), float(x)))
            if len(out) == n:
                break
    return out


def _render_region(reg: _Region) -> tuple[np.ndarray, np.ndarray]:
    """The region's RGB texture over its bounding box, and its polygon mask."""
    rng = np.random.default_rng(reg.seed)
    shape = (reg.height, reg.width)
    mask = _poly_mask(reg.polygon, shape)
    area = float(max(mask.sum(), 1))
    radius = math.sqrt(area / np.pi)
    cy, cx = (float(v) for v in np.argwhere(mask).mean(axis=0)) if mask.any() else (0.0, 0.0)
    look = reg.look
    stain = rng.uniform(0.85, 1.1)  # per-region haematoxylin strength (stain variation)
    base = _CYTO if look in ("norm", "susp", "dcis", "indc", "infl") else _STROMA
    rgb = np.empty(shape + (3,), np.float32)
    rgb[:] = base
    rgb += (_noise(rng, shape) * 5)[..., None]
    nuc_rgb = _NUCLEUS
    sigma: float | tuple[float, float] = 3.2
    pts = np.zeros((0, 2))
    white = np.zeros(shape, np.float32)
    extra_dark = None

    if look == "bckg":  # stroma: sparse elongated fibroblast nuclei
        sigma = (rng.uniform(1.2, 1.8), rng.uniform(3.0, 4.5))
        if rng.random() < 0.5:
            sigma = sigma[::-1]
        pts = _points(rng, mask, int(area * rng.uniform(0.0012, 0.0035)))
    elif look == "norm":  # lobule: small acini, a ring of small nuclei around a tiny lumen
        sigma = rng.uniform(2.3, 3.0)
        ra = radius * rng.uniform(0.14, 0.22)
        acini = _centres(rng, mask, int(rng.integers(4, 9)), 2.3 * ra)
        rings = [_ring_points(rng, y, x, ra, 2.6 * sigma) for y, x in acini]
        pts = np.concatenate([*rings, _points(rng, mask, int(area * 0.0008))])
        for y, x in acini:
            _paint_disc(white, y, x, ra * 0.45)
    elif look == "null":  # bad cut or stain: washed out, smeared low-contrast blotches
        rgb *= 0.35
        rgb += np.array((205, 190, 205), np.float32) * 0.65
        smear = ndimage.gaussian_filter(_noise(rng, shape), rng.uniform(4, 9))
        smear /= max(float(np.abs(smear).max()), 1e-6)
        extra_dark = np.clip(smear * rng.uniform(0.3, 0.55), 0, 1)
        sigma = rng.uniform(3, 5)
        pts = _points(rng, mask, int(area * rng.uniform(0.0005, 0.002)))
        nuc_rgb = np.array((150, 120, 165), np.float32)
    elif look == "artf":  # pen marks: thick ink strokes across the region
        pen = _PENS[int(rng.integers(len(_PENS)))]
        ink = np.zeros(shape, np.float32)
        yy, xx = np.ogrid[: shape[0], : shape[1]]
        for _ in range(int(rng.integers(1, 4))):
            a = rng.uniform(0, np.pi)
            off = rng.uniform(-0.5, 0.5) * radius
            d = np.abs((yy - cy) * np.cos(a) - (xx - cx) * np.sin(a) - off).astype(np.float32)
            np.maximum(ink, np.clip(1.5 - d / (radius * rng.uniform(0.1, 0.25)), 0, 1), out=ink)
        _blend(rgb, ink, pen)
        sigma = (1.5, 3.5)
        pts = _points(rng, mask, int(area * 0.0015))
    elif look == "nneo":  # ectasia / fibrosis: a dilated duct, thin epithelium, dense collagen
        sigma = rng.uniform(2.6, 3.4)
        lumen_r = radius * rng.uniform(0.3, 0.55)
        _paint_disc(white, cy, cx, lumen_r)
        pts = _ring_points(rng, cy, cx, lumen_r + sigma, 2.4 * sigma)
        pts = np.concatenate([pts, _points(rng, mask, int(area * rng.uniform(0.001, 0.003)))])
        rgb *= 0.85
        rgb += np.array((222, 140, 182), np.float32) * 0.15
    elif look == "infl":  # inflammation: a dense sheet of small round dark lymphocytes
        sigma = rng.uniform(1.9, 2.5)
        nuc_rgb = _NUCLEUS_DARK
        pts = _points(rng, mask, int(area * rng.uniform(0.018, 0.03)))
    elif look == "susp":  # atypia: crowded acini with enlarged nuclei, lumens partly filled
        sigma = rng.uniform(3.0, 3.8)
        ra = radius * rng.uniform(0.2, 0.3)
        acini = _centres(rng, mask, int(rng.integers(2, 5)), 2.1 * ra)
        rings = [_ring_points(rng, y, x, ra, 2.2 * sigma) for y, x in acini]
        pts = np.concatenate([*rings, _points(rng, mask, int(area * rng.uniform(0.002, 0.005)))])
        for y, x in acini:
            _paint_disc(white, y, x, ra * 0.35)
    elif look == "dcis":  # duct filled by large atypical nuclei around central (comedo) necrosis
        sigma = rng.uniform(3.6, 4.8)
        nuc_rgb = _NUCLEUS_DARK
        necrosis = radius * rng.uniform(0.2, 0.42)
        core = np.zeros(shape, np.float32)
        _paint_disc(core, cy, cx, necrosis)
        rim = mask & (core == 0)
        pts = _points(rng, rim, int(rim.sum() * rng.uniform(0.006, 0.011)))
        _blend(rgb, core, (240, 200, 222))
        pts = np.concatenate([pts, _points(rng, core > 0, int(rng.integers(0, 6)))])
    else:  # indc: nests and cords of large pleomorphic nuclei infiltrating desmoplastic stroma
        sigma = rng.uniform(3.2, 5.2)
        nuc_rgb = _NUCLEUS_DARK
        nests = _centres(rng, mask, int(rng.integers(3, 9)), radius * 0.35)
        spread = radius * rng.uniform(0.08, 0.16)
        groups = [
            np.array([y, x]) + rng.normal(0, spread, (int(rng.integers(5, 14)), 2))
            for y, x in nests
        ]
        pts = np.concatenate([*groups, _points(rng, mask, int(area * rng.uniform(0.002, 0.006)))])
        rgb *= 0.7
        rgb += _STROMA * 0.3

    dark = _nuclei(shape, pts, sigma, rng)
    dark *= stain
    if extra_dark is not None:
        np.maximum(dark, extra_dark, out=dark)
    np.clip(dark, 0, 1, out=dark)
    _blend(rgb, white, WHITE)
    _blend(rgb, dark, nuc_rgb)

    if reg.calc is not None:  # concentric, dark, dense calcifications of class-specific size
        (n0, n1), (f0, f1), (p0, p1) = _CALC[reg.calc]
        count = int(rng.integers(n0, n1 + 1))
        rmax = radius * f1
        near = mask & (_disc_field(shape, cy, cx) < radius * 0.55)  # calcifications sit centrally
        spots = _centres(rng, near if near.any() else mask, count, rmax * 1.6, margin=0)
        if reg.calc in ("cnno", "cdcs"):
            centre = (cy + rng.normal(0, radius * 0.08), cx + rng.normal(0, radius * 0.08))
            spots = [centre, *spots[1:]]
        for y, x in spots:
            rc = radius * rng.uniform(f0, f1)
            win, d = _window(shape, y, x, rc)
            period = rng.uniform(p0, p1)
            inside = d < rc
            shade = 0.72 + 0.28 * np.cos(2 * np.pi * d / period)
            patch = rgb[win]
            patch[inside] = _CALC_RGB * shade[inside][:, None]
    return np.clip(rgb, 0, 255).astype(np.uint8), mask


def _stroma_tile(rng: np.random.Generator, size: int) -> np.ndarray:
    """A tile of pink stroma: collagen streaks, sparse elongated fibroblasts, the odd fat cell."""
    shape = (size, size)
    streak = ndimage.gaussian_filter(
        rng.normal(0, 1, shape).astype(np.float32), (1.5, 9), mode="wrap"
    )
    streak /= float(np.abs(streak).max())
    rgb = _STROMA + streak[..., None] * np.array((-14, -30, -18), np.float32)
    rgb += rng.normal(0, 4, shape + (1,)).astype(np.float32)
    fat = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(0, 3))):
        y, x, r = rng.uniform(60, size - 60), rng.uniform(60, size - 60), rng.uniform(15, 40)
        win, d = _window(shape, y, x, r)
        fat[win] = np.maximum(fat[win], (d < r) & (d < r - 1.5))
    _blend(rgb, fat, WHITE)
    pts = _points(rng, np.ones(shape, bool), int(size * size * 0.0012))
    _blend(rgb, _nuclei(shape, pts, (1.4, 3.6), rng), _NUCLEUS)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _stroma_bank(batch: int, size: int) -> tuple[np.ndarray, ...]:
    """Four stroma tiles of one staining batch, shared by every slide of that batch."""
    rng = np.random.default_rng([20260101, batch])
    return tuple(_stroma_tile(rng, size) for _ in range(4))


def _upsample(coarse: np.ndarray, step: int, top: int, left: int, h: int, w: int) -> np.ndarray:
    """Bilinear sample of a coarse field (one value per ``step`` pixels) over a window."""

    def axis(start: int, n: int, size: int):
        pos = np.clip(
            (np.arange(start, start + n, dtype=np.float32) + 0.5) / step - 0.5, 0, size - 1
        )
        i0 = np.minimum(pos.astype(np.intp), max(size - 2, 0))
        return i0, np.minimum(i0 + 1, size - 1), (pos - i0).astype(np.float32)

    y0, y1, fy = axis(top, h, coarse.shape[0])
    x0, x1, fx = axis(left, w, coarse.shape[1])
    lo, hi = int(y0.min()), int(y1.max()) + 1
    band = coarse[lo:hi]
    cols = band[:, x0] * (1 - fx) + band[:, x1] * fx  # the few coarse rows, full width
    return cols[y0 - lo] * (1 - fy)[:, None] + cols[y1 - lo] * fy[:, None]


def _tissue_field(rng: np.random.Generator, shape: tuple[int, int], step: int) -> np.ndarray:
    """Coarse tissue probability: a few overlapping lobes with ragged edges, white around."""
    gh, gw = -(-shape[0] // step) + 1, -(-shape[1] // step) + 1
    yy, xx = np.mgrid[:gh, :gw].astype(np.float32)
    field_ = np.zeros((gh, gw), np.float32)
    for _ in range(int(rng.integers(2, 4))):
        cy, cx = rng.uniform(0.4, 0.6) * gh, rng.uniform(0.35, 0.65) * gw
        ry, rx = rng.uniform(0.4, 0.55) * gh, rng.uniform(0.35, 0.5) * gw
        field_ = np.maximum(field_, 1.4 - np.hypot((yy - cy) / ry, (xx - cx) / rx))
    field_ += ndimage.gaussian_filter(rng.normal(0, 1, (gh, gw)).astype(np.float32), 2.5) * 2.5
    return field_


TISSUE_STEP = 32


class SlideCanvas:
    """The pixels of one synthetic slide, drawn on demand for any window (a ``TileSource``)."""

    BANK = 512

    def __init__(self, shape: tuple[int, int], regions: list[_Region], seed: int, tissue=None):
        self.shape = shape
        self.regions = sorted(regions, key=lambda r: r.top)
        rng = np.random.default_rng([seed, 1])
        self.bank = _stroma_bank(int(rng.integers(4)), self.BANK)
        self.tissue = _tissue_field(rng, shape, TISSUE_STEP) if tissue is None else tissue.copy()
        for reg in self.regions:  # regions always lie on tissue: a round islet where needed
            cy = (reg.top + reg.height / 2) / TISSUE_STEP
            cx = (reg.left + reg.width / 2) / TISSUE_STEP
            r = max(reg.height, reg.width) / TISSUE_STEP
            win, d = _window(self.tissue.shape, cy, cx, 1.6 * r)
            np.maximum(self.tissue[win], 2.2 - 1.5 * d / r, out=self.tissue[win])
        self.dither = rng.uniform(-0.1, 0.1, (256, 1024)).astype(np.float32)
        self.salt = int(rng.integers(1 << 30))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _stroma(self, top: int, left: int, h: int, w: int) -> np.ndarray:
        b = self.BANK
        out = np.empty((h, w, 3), np.uint8)
        for br in range(top // b, (top + h - 1) // b + 1):
            for bc in range(left // b, (left + w - 1) // b + 1):
                key = (br * 7919 + bc * 104729 + self.salt) & 0xFFFFFFF
                tile = self.bank[key % len(self.bank)]
                if (key >> 4) & 1:
                    tile = tile[::-1]
                if (key >> 5) & 1:
                    tile = tile[:, ::-1]
                y0, x0 = br * b, bc * b
                ys, ye = max(top, y0), min(top + h, y0 + b)
                xs, xe = max(left, x0), min(left + w, x0 + b)
                out[ys - top : ye - top, xs - left : xe - left] = tile[
                    ys - y0 : ye - y0, xs - x0 : xe - x0
                ]
        return out

    def __call__(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        out = self._stroma(top, left, height, width)
        # the tissue edge is decided on a 4x coarser grid (ragged by the dither), then repeated
        q = 4
        t4, l4 = top // q, left // q
        h4, w4 = -(-(top + height) // q) - t4, -(-(left + width) // q) - l4
        tissue = _upsample(self.tissue, TISSUE_STEP // q, t4, l4, h4, w4)
        dh, dw = self.dither.shape
        reps = (-(-(h4 + t4 % dh) // dh), -(-(w4 + l4 % dw) // dw))
        tissue += np.tile(self.dither, reps)[t4 % dh : t4 % dh + h4, l4 % dw : l4 % dw + w4]
        background = tissue < 0.5
        if background.any():
            full = background.repeat(q, axis=0).repeat(q, axis=1)
            oy, ox = top - t4 * q, left - l4 * q
            out[full[oy : oy + height, ox : ox + width]] = WHITE
        for i, reg in enumerate(self.regions):
            if reg.top >= top + height:
                break
            if reg.top + reg.height <= top:
                self._cache.pop(i, None)
                continue
            if reg.left >= left + width or reg.left + reg.width <= left:
                continue
            if i not in self._cache:
                self._cache[i] = _render_region(reg)
            rgb, mask = self._cache[i]
            ys, ye = max(top, reg.top), min(top + height, reg.top + reg.height)
            xs, xe = max(left, reg.left), min(left + width, reg.left + reg.width)
            sub = mask[ys - reg.top : ye - reg.top, xs - reg.left : xe - reg.left]
            dst = out[ys - top : ye - top, xs - left : xe - left]
            dst[sub] = rgb[ys - reg.top : ye - reg.top, xs - reg.left : xe - reg.left][sub]
        return out


# ----------------------------------------------------------------------------- pyramid writer


def _level_shapes(shape: tuple[int, int], factor: int, min_levels: int, min_side: int):
    shapes = [shape]
    while len(shapes) < min_levels or max(shapes[-1]) > min_side:
        r, c = shapes[-1]
        nxt = (max(1, r // factor), max(1, c // factor))
        if nxt == shapes[-1] or min(nxt) < 16:
            break
        shapes.append(nxt)
    return shapes


def _pool(strip: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downsample of a strip whose height is a multiple of ``factor``."""
    h, w = strip.shape[:2]
    wp = -(-w // factor) * factor
    if wp != w:
        strip = np.concatenate([strip, np.full((h, wp - w, 3), 255, np.uint8)], axis=1)
    rows = strip[0::factor].astype(np.uint16)
    for k in range(1, factor):
        rows += strip[k::factor]
    out = rows[:, 0::factor].copy()
    for k in range(1, factor):
        out += rows[:, k::factor]
    out //= factor * factor
    return out.astype(np.uint8)


def write_pyramid(
    path,
    tile_source: TileSource,
    shape: tuple[int, int],
    mpp: float,
    *,
    tile: int = 256,
    compression: str = "jpeg",
    quality: int = 85,
    factor: int = 4,
    min_levels: int = 3,
    min_side: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write an Aperio-style pyramidal tiled TIFF, pulling level 0 strip by strip from ``tile_source``.

    ``tile_source(top, left, height, width)`` returns (h, w, 3) uint8. Memory stays at a few
    strips: coarser levels are pooled on the fly into raw files beside the target, then
    tiled. The file is written under a temporary name and renamed, so it is never half-written.
    ``progress(strips_done)`` is called after each level-0 strip.
    """
    import tifffile

    path = Path(path)
    rows, cols = int(shape[0]), int(shape[1])
    shapes = _level_shapes((rows, cols), factor, min_levels, min_side)
    if compression == "jpeg":
        codec = {"compression": "jpeg", "compressionargs": {"level": quality}}
        kind = f"JPEG/RGB Q={quality}"
    else:
        codec = {"compression": compression}
        kind = f"{compression.upper()}/RGB"
    res = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    big = rows * cols * 3 * 1.4 > 2**32 - 2**26
    head = f"{APERIO}{cols}x{rows} [0,0 {cols}x{rows}] ({tile}x{tile})"
    meta = f"|AppMag = 20|MPP = {mpp:.4f}|Filename = {path.stem}|Title = synthetic NEDC slide"
    strip_rows = tile  # pooled rows are carried over between strips, so any height works
    tmpdir = Path(tempfile.mkdtemp(prefix=".pyramid-", dir=path.parent))
    raws = [tmpdir / f"level{i}.raw" for i in range(len(shapes))]
    tmp = tmpdir / path.name
    try:
        handles = [open(raw, "wb") for raw in raws[1:]]
        pending: list[np.ndarray] = [np.zeros((0, 0, 3), np.uint8) for _ in shapes]

        def push(level: int, block: np.ndarray) -> None:
            """Append level rows to its raw file and pool full groups into the next level."""
            lr, lc = shapes[level]
            handles[level - 1].write(np.ascontiguousarray(block[:, :lc]).tobytes())
            if level + 1 >= len(shapes):
                return
            buf = block if pending[level].size == 0 else np.concatenate([pending[level], block])
            usable = buf.shape[0] // factor * factor
            if usable:
                push(level + 1, _pool(buf[:usable], factor))
            pending[level] = buf[usable:]

        def level0_tiles():
            done = 0
            for top in range(0, rows, strip_rows):
                h = min(strip_rows, rows - top)
                strip = np.asarray(tile_source(top, 0, h, cols), dtype=np.uint8)
                if (
                    len(shapes) > 1
                ):  # before yielding: the writer stops pulling after the last tile
                    pad = -h % factor
                    padded = strip
                    if pad:
                        padded = np.concatenate([strip, np.full((pad, cols, 3), 255, np.uint8)])
                    push(1, _pool(padded, factor))
                done += 1
                if progress is not None:
                    progress(done)
                for r in range(0, h, tile):
                    for c in range(0, cols, tile):
                        yield strip[r : r + tile, c : c + tile]

        def raw_tiles(level: int):
            lr, lc = shapes[level]
            with open(raws[level], "rb") as fh:
                for top in range(0, lr, tile):
                    h = min(tile, lr - top)
                    data = np.frombuffer(fh.read(h * lc * 3), np.uint8)
                    if data.size < h * lc * 3:  # last pooled rows may be short by one
                        data = np.concatenate(
                            [data, np.full(h * lc * 3 - data.size, 255, np.uint8)]
                        )
                    block = data.reshape(h, lc, 3)
                    for c in range(0, lc, tile):
                        yield block[:, c : c + tile]

        with tifffile.TiffWriter(tmp, bigtiff=big) as tw:
            tw.write(
                level0_tiles(), shape=(rows, cols, 3), dtype=np.uint8, tile=(tile, tile),
                photometric="rgb", description=head + " " + kind + meta, metadata=None,
                **codec, **res,
            )  # fmt: skip
            for fh in handles:
                fh.close()
            # SVS keeps a striped thumbnail as the second page, then the reduced levels.
            lr, lc = shapes[-1]
            coarse = np.fromfile(raws[-1], np.uint8)
            pad = max(lr * lc * 3 - coarse.size, 0)  # pooled rows may run one over or short
            coarse = np.concatenate([coarse, np.full(pad, 255, np.uint8)])
            coarse = coarse[: lr * lc * 3].reshape(lr, lc, 3)
            step = max(1, math.ceil(max(lr, lc) / 768))
            thumb = np.ascontiguousarray(coarse[::step, ::step])
            tw.write(
                thumb, photometric="rgb", compression="jpeg", metadata=None,
                description=f"{APERIO}{cols}x{rows} -> {thumb.shape[1]}x{thumb.shape[0]} - " + meta,
            )  # fmt: skip
            for level in range(1, len(shapes)):
                lr, lc = shapes[level]
                tw.write(
                    raw_tiles(level), shape=(lr, lc, 3), dtype=np.uint8, tile=(tile, tile),
                    photometric="rgb", description=f"{head} -> {lc}x{lr} {kind}", metadata=None,
                    **codec, **res,
                )  # fmt: skip
        os.replace(tmp, path)
    finally:
        for raw in raws[1:]:
            raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        tmpdir.rmdir()
    return path


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
    from napari_crystal.nedc import Annotation, Region

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
    from napari_crystal.nedc import write_annotation

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
            "regions": dict(sorted(counts.items(), key=lambda kv: LABELS.index(kv[0]))),
        }
    info = {"preset": p.name, "seed": seed, "mpp": p.mpp, "splits": summary}
    tmp = out / ".SYNTHETIC.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out / "SYNTHETIC.json")
    return out


__all__ = [
    "CONFUSE",
    "PRESETS",
    "Preset",
    "SlideCanvas",
    "corpus_plan",
    "generate_corpus",
    "generate_slide",
    "write_pyramid",
]
