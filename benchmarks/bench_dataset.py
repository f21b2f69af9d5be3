"""Dataset building: ``build_dataset`` vs the naive one-patch-at-a-time level-0 pipeline.

The corpus is synthetic but sized like NEDC regions at 20x (bounding boxes 600-3,000 px; the
``synthetic`` presets' regions are under 256 px, where every level rule picks level 0). The
naive baseline is the same algorithm written plainly: level-0 crop, ``rgb2gray``, the polygon
rasterised at level 0, ``threshold_otsu`` inside it, ``skimage.transform.resize(order=0)``,
one patch at a time. Masks are checked two ways: at the same level (project forced to level 0)
they must be identical; at the level the project really uses, their pixel agreement with the
baseline is measured and reported (a coarser level's pixels are averages, so they cannot be
bit-identical).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import DATA
from napari_crystal.dataset import build_dataset, load_dataset
from napari_crystal.io.slide import open_slide
from napari_crystal.masks import make_mask
from napari_crystal.patches import Patch
from napari_crystal.synthetic import write_pyramid

LABELS = ("bckg", "norm", "nneo", "dcis", "indc")
SIZE = 256


def _texture(seed: int, shape):
    """Tile source: pink stroma with purple nuclei clusters, deterministic per strip."""

    def source(top, left, height, width):
        rng = np.random.default_rng([seed, top, left])
        cells = rng.random((-(-height // 8), -(-width // 8)))
        dark = np.repeat(np.repeat(cells > 0.82, 8, 0), 8, 1)[:height, :width]
        rgb = np.empty((height, width, 3), np.uint8)
        rgb[:] = (232, 196, 214)
        rgb[dark] = (92, 58, 128)
        noise = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
        return np.clip(rgb + noise, 0, 255).astype(np.uint8)

    return source


def _polygon(rng, shape):
    side = rng.uniform(600, 3000)
    k = int(rng.integers(12, 40))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = side / 2 * rng.uniform(0.7, 1.0, k)
    cy = rng.uniform(side / 2, shape[0] - side / 2)
    cx = rng.uniform(side / 2, shape[1] - side / 2)
    return np.round(np.stack([cy + rad * np.sin(ang), cx + rad * np.cos(ang)], axis=1))


def _write_csv(path: Path, polygons, labels, shape, stem: str) -> None:
    lines = [
        "# version = csv_v1.0.0",
        "# MicronsPerPixel = 0.499000",
        f"# bname = {stem}",
        f"# width = {shape[1]} pixels, height = {shape[0]} pixels",
        "# tissue = breast",
        "#",
        "index,region_id,tissue,label,coord_index,row,column,depth,confidence",
    ]
    for i, (poly, label) in enumerate(zip(polygons, labels, strict=True)):
        closed = np.vstack([poly, poly[:1]]).astype(int)
        for j, (r, c) in enumerate(closed):
            lines.append(f"{i},{i + 1},breast,{label},{j},{r},{c},0,1.0")
    path.write_text("\n".join(lines) + "\n")


def make_corpus(root: Path, slides: int, shape, regions: int) -> Path:
    """``root/train/slide_NN.svs`` + ``.csv``; reused when already complete."""
    split = root / "train"
    if len(list(split.glob("*.csv"))) == slides:
        return root
    shutil.rmtree(root, ignore_errors=True)
    split.mkdir(parents=True)
    for s in range(slides):
        rng = np.random.default_rng(s)
        stem = f"slide_{s:02d}"
        write_pyramid(split / f"{stem}.svs", _texture(s, shape), shape, 0.499)
        polygons = [_polygon(rng, shape) for _ in range(regions)]
        labels = [LABELS[int(i)] for i in rng.integers(0, len(LABELS), regions)]
        _write_csv(split / f"{stem}.csv", polygons, labels, shape, stem)
    return root


def naive_mask(slide, polygon, top, left, height, width, size=SIZE, fast_raster=False):
    """One patch the plain way: level-0 crop, Otsu in the polygon, skimage resize.

    ``fast_raster`` swaps skimage's ``polygon2mask`` for the project's equal but faster fill,
    to show how much of the speed-up is the level rule rather than the rasteriser.
    """
    from skimage.color import rgb2gray
    from skimage.draw import polygon2mask
    from skimage.filters import threshold_otsu
    from skimage.transform import resize

    from napari_crystal.geometry import fill_polygon

    rgb = slide.read_region(0, top, left, height, width)
    grey = rgb2gray(rgb)
    local = np.asarray(polygon, float) - (top, left)
    fill = fill_polygon if fast_raster else polygon2mask
    inside = fill((height, width), local)
    values = grey[inside]
    if values.size == 0 or values.min() == values.max():
        mask = np.zeros((height, width), bool)
    else:
        mask = (grey <= threshold_otsu(values)) & inside
    return resize(mask, (size, size), order=0, anti_aliasing=False, preserve_range=True) > 0.5


def naive_build(table, polygons_of, fast_raster=False) -> np.ndarray:
    """Naive masks of every patch of ``table``, one at a time, as packed rows."""
    out = np.empty((len(table), SIZE * SIZE // 8), np.uint8)
    current, slide = None, None
    for i, p in enumerate(table):
        if p.slide != current:
            if slide is not None:
                slide.close()
            current, slide = p.slide, open_slide(p.slide)
        poly = polygons_of[p.slide][p.index]
        mask = naive_mask(slide, poly, p.top, p.left, p.height, p.width, fast_raster=fast_raster)
        out[i] = np.packbits(mask.reshape(-1))
    if slide is not None:
        slide.close()
    return out


def run(record, quick: bool = False) -> None:
    """Record dataset-building patches/s against the naive pipeline, with mask checks."""
    from napari_crystal.io.nedc import read_annotation

    slides, shape, regions = (2, (6144, 6144), 8) if quick else (3, (8192, 8192), 20)
    corpus = make_corpus(DATA / ("dataset-corpus-quick" if quick else "dataset-corpus"),
                         slides, shape, regions)  # fmt: skip
    out = DATA / "bench-dataset.zarr"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name(out.name + ".work"), ignore_errors=True)
    start = time.perf_counter()
    ds = build_dataset(corpus, "train", out, method="threshold", size=SIZE)
    t_project = time.perf_counter() - start
    table = ds.table
    polygons_of = {
        str(p.resolve()): [r.coords for r in read_annotation(p.with_suffix(".csv")).regions]
        for p in sorted((corpus / "train").glob("*.svs"))
    }
    start = time.perf_counter()
    naive = naive_build(table, polygons_of)
    t_naive = time.perf_counter() - start
    start = time.perf_counter()
    naive_fast = naive_build(table, polygons_of, fast_raster=True)
    t_naive_fast = time.perf_counter() - start
    n = len(table)
    project = np.asarray(ds.packed[:])
    bits_p = np.unpackbits(project, axis=1)
    bits_n = np.unpackbits(naive, axis=1)
    agreement = float((bits_p == bits_n).mean())
    identical_rows = int((project == naive).all(axis=1).sum())
    # Same algorithm check: the project's make_mask at level 0 equals the baseline exactly.
    check = list(range(0, n, max(1, n // 12)))
    same_level_equal = True
    for i in check:
        p: Patch = table[i]
        with open_slide(p.slide) as slide:
            ours = make_mask(slide, p, polygons_of[p.slide][p.index], "threshold", SIZE, level=0)
        same_level_equal &= bool(np.array_equal(np.packbits(ours.reshape(-1)), naive[i]))
    levels = {
        int(k): int(v) for k, v in zip(*np.unique(table.level, return_counts=True), strict=True)
    }
    same_level_equal &= bool(np.array_equal(naive_fast, naive))
    ratio = t_naive / t_project
    load_dataset(out)  # the saved file opens
    record(
        "dataset building (threshold masks, 256 x 256)",
        f"build_dataset {n / t_project:.1f} patches/s ({n} patches, levels {levels})",
        f"naive level-0 one-at-a-time {n / t_naive:.1f} patches/s",
        ratio,
        ">= 10x; same masks at the same level",
        ratio >= 10 and same_level_equal,
        patches=n,
        seconds_project=t_project,
        seconds_baseline=t_naive,
        same_level_identical=same_level_equal,
        same_level_checked=len(check),
        pixel_agreement_at_chosen_level=agreement,
        identical_masks_at_chosen_level=identical_rows,
        levels=levels,
        seconds_baseline_fast_raster=t_naive_fast,
        ratio_vs_baseline_fast_raster=t_naive_fast / t_project,
    )
    print(
        f"   masks: identical at level 0 on {len(check)} checked patches: {same_level_equal}; "
        f"at the chosen levels {agreement:.2%} of pixels agree with the level-0 baseline "
        f"({identical_rows}/{n} masks bit-identical); against the naive pipeline with the "
        f"project's polygon fill the speed-up is {t_naive_fast / t_project:.1f}x",
        flush=True,
    )
    shutil.rmtree(out, ignore_errors=True)
