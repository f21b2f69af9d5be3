"""Class rasters: right classes, bounded size, exact placement under level 0."""

from __future__ import annotations

import numpy as np
from skimage.draw import polygon as sk_polygon

from napari_crystal.geometry import (
    paint_spans,
    polygon_spans,
    raster_transform,
    rasterize_annotation,
)
from napari_crystal.io.nedc import Annotation, Region
from napari_crystal.palette import UNKNOWN_INDEX, class_index


def _region(i, label, coords):
    return Region(i, i + 1, label, "breast", np.asarray(coords, float), None)


def test_matches_skimage_and_later_regions_paint_over_earlier():
    rng = np.random.default_rng(3)
    for _ in range(100):
        polys = [rng.uniform(-5, 40, (rng.integers(3, 12), 2)) for _ in range(rng.integers(1, 4))]
        ours = np.zeros((30, 35), np.int32)
        paint_spans(ours, polygon_spans(polys, (30, 35)), chunk=7)
        expected = np.zeros((30, 35), np.int32)
        for k, rc in enumerate(polys):
            rr, cc = sk_polygon(rc[:, 0], rc[:, 1], (30, 35))
            expected[rr, cc] = k + 1
        np.testing.assert_array_equal(ours, expected)


def test_full_resolution_when_small():
    ann = Annotation(
        [
            _region(0, "bckg", [[0, 0], [0, 9], [9, 9], [9, 0]]),
            _region(1, "dcis", [[2, 2], [2, 4], [4, 4], [4, 2]]),
            _region(2, "brandnew", [[7, 7], [7, 8], [8, 8], [8, 7]]),
        ],
        mpp=0.5,
        width=12,
        height=10,
    )
    labels, downsample = rasterize_annotation(ann)
    assert downsample == 1.0 and labels.shape == (10, 12) and labels.dtype == np.uint8
    assert labels[3, 3] == class_index("dcis")
    assert labels[1, 1] == class_index("bckg")
    assert labels[7, 7] == UNKNOWN_INDEX
    assert labels[0, 11] == 0
    # pixel centres on the top/left edges are inside, on the bottom/right edges outside
    assert labels[2:4, 2:4].tolist() == [[class_index("dcis")] * 2] * 2
    assert labels[4, 4] == labels[2, 4] == class_index("bckg")


def test_large_slide_is_never_rasterised_at_level_0():
    square = [[40_000, 20_000], [40_000, 60_000], [79_999, 60_000], [79_999, 20_000]]
    ann = Annotation([_region(0, "indc", square)], mpp=0.25, width=80_000, height=40_000)
    # height 40,000 rows but the square runs past it: clipped, not an error
    labels, downsample = rasterize_annotation(ann)
    assert downsample == 80_000 / 4096
    assert labels.shape == (2048, 4096)
    assert labels.nbytes <= 4096 * 4096
    labels, downsample = rasterize_annotation(ann, max_side=1000)
    assert max(labels.shape) == 1000 and downsample == 80.0


def test_raster_lies_exactly_under_level_0():
    """A raster pixel i at downsample d covers level-0 pixels [i*d, (i+1)*d)."""
    d = 4.0
    scale, translate = raster_transform(d)
    assert scale == (4.0, 4.0) and translate == (1.5, 1.5)
    # level-0 pixels 8..15 (rows and columns) are raster pixels 2 and 3
    ann = Annotation(
        [_region(0, "norm", [[8, 8], [8, 15], [15, 15], [15, 8]])], mpp=1, width=64, height=64
    )
    labels, downsample = rasterize_annotation(ann, max_side=16)
    assert downsample == d
    inside = np.argwhere(labels > 0)
    assert inside.min(axis=0).tolist() == [2, 2] and inside.max(axis=0).tolist() == [3, 3]
    # the world extent of raster pixels 2..3 is level-0 [7.5, 15.5): pixels 8..15
    centre = np.array(translate) + np.array(scale) * 2
    assert (centre - d / 2 + 0.5 == 8).all()


def test_empty_annotation():
    labels, downsample = rasterize_annotation(Annotation([], 0.5, 100, 50))
    assert labels.shape == (50, 100) and not labels.any()
