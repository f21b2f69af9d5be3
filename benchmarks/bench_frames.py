"""NEDC frame labelling: exact vectorised overlaps vs a per-frame, per-region shapely loop.

The baseline is the approach of NEDC's student tools: for each frame, intersect its window
with each region in file order until one covers the threshold. It is timed on every
``stride``-th row of frames (all columns) and scaled to the whole slide by frame count; the
labels of those rows must equal ours exactly (same tie tolerance in both).
"""

from __future__ import annotations

import numpy as np
import shapely

from benchmarks._harness import timed
from napari_crystal.geometry import frame_grid
from napari_crystal.patches import TIE_TOLERANCE, label_frames


def synthetic_regions(n: int, shape, seed: int = 0) -> list[np.ndarray]:
    """``n`` valid star-shaped polygons (row/col, integer vertices) of mixed sizes."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < n:
        k = int(rng.integers(8, 60))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        radius = float(rng.choice([rng.uniform(150, 600), rng.uniform(600, 2500)]))
        rad = radius * rng.uniform(0.6, 1.0, k)
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        poly = np.round(np.stack([cy + rad * np.sin(ang), cx + rad * np.cos(ang)], axis=1))
        if shapely.Polygon(poly[:, ::-1]).is_valid:
            out.append(np.vstack([poly, poly[:1]]))
    return out


def shapely_loop(polygons, shape, rows, frame=250, window=500, threshold=0.5) -> np.ndarray:
    """Per-frame, per-region shapely intersections for the frame rows ``rows``."""
    _, n_cols, margin = frame_grid(shape, frame, window)
    regions = [shapely.Polygon(p[:, ::-1]) for p in polygons]
    need = threshold * window * window * (1 - TIE_TOLERANCE)
    out = np.full((len(rows), n_cols), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        for c in range(n_cols):
            top, left = r * frame - margin, c * frame - margin
            box = shapely.box(left, top, left + window, top + window)
            for k, region in enumerate(regions):
                if box.intersection(region).area >= need:
                    out[i, c] = k
                    break
    return out


def run(record, quick: bool = False) -> None:
    """Record the frame-labelling speed-up on a slide with 200 regions and 250-px frames."""
    # a typical NEDC breast slide is about 80,000 x 40,000 pixels (nedc-format.md)
    shape = (20_000, 20_000) if quick else (80_000, 40_000)
    stride = 8 if quick else 16
    polygons = synthetic_regions(200, shape)
    n_rows, n_cols, _ = frame_grid(shape)
    t_ours, ours = timed(label_frames, polygons, shape, repeat=3)
    rows = list(range(0, n_rows, stride))
    t_base, base = timed(shapely_loop, polygons, shape, rows)
    t_base_full = t_base * n_rows / len(rows)
    equal = bool(np.array_equal(ours[rows], base))
    ratio = t_base_full / t_ours
    record(
        "frame labelling (200 regions, 250-px frames, 500-px windows)",
        f"exact vectorised overlaps {t_ours * 1e3:.0f} ms for {n_rows * n_cols} frames",
        f"per-frame shapely loop {t_base_full:.1f} s (timed on {len(rows) * n_cols} frames, "
        "scaled)",
        ratio,
        ">= 50x, same labels",
        equal and ratio >= 50,
        slide_shape=list(shape),
        frames=n_rows * n_cols,
        baseline_frames=len(rows) * n_cols,
        labelled=int((ours >= 0).sum()),
        labels_equal=equal,
        seconds_project=t_ours,
        seconds_baseline_sampled=t_base,
    )
