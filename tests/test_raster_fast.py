"""rasterize_annotation (all regions' spans in one pass) against skimage, region by region."""

from __future__ import annotations

import numpy as np
from skimage.draw import polygon as sk_polygon

from napari_crystal.geometry import rasterize_annotation
from napari_crystal.io.nedc import Annotation, Region
from napari_crystal.palette import class_index

LABELS = ["bckg", "dcis", "indc", "brandnew"]


def test_downsampled_raster_matches_skimage():
    rng = np.random.default_rng(11)
    for _ in range(60):
        regions = []
        for i in range(rng.integers(1, 6)):
            # Non-integer vertices: skimage and the scanline agree away from exact ties.
            coords = rng.uniform(-20, 260, (rng.integers(3, 15), 2))
            regions.append(Region(i, i + 1, LABELS[i % 4], "breast", coords, None))
        ann = Annotation(regions, mpp=0.5, width=240, height=200)
        max_side = int(rng.choice([24, 50, 240]))
        ours, d = rasterize_annotation(ann, max_side=max_side)
        expected = np.zeros(ours.shape, np.uint8)
        offset = (d - 1) / 2
        for r in regions:  # later regions paint over earlier ones
            rc = (r.coords - offset) / d
            rr, cc = sk_polygon(rc[:, 0], rc[:, 1], ours.shape)
            expected[rr, cc] = class_index(r.label)
        np.testing.assert_array_equal(ours, expected)
