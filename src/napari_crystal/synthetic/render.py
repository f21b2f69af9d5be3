"""Rendering: region looks (nuclei, lumens, calcifications), stroma and the slide canvas that
writes tiles on demand for the pyramid writer."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_crystal.palette import CRYSTAL_PARENT

Progress = Callable[[int, int], None]
TileSource = Callable[[int, int, int, int], np.ndarray]
SPLITS = ("train", "dev", "eval")
APERIO = "Aperio Image Library v12.0.15 \r\n"
WHITE = (244, 242, 244)


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
