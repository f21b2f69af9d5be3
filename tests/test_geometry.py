"""The one geometry: level boxes, raster placement, the scanline fill and its boundary rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.draw import polygon2mask
from skimage.measure import grid_points_in_poly

from napari_crystal.geometry import (
    _by_key_then_x,
    fill_polygon,
    level_box,
    paint_spans,
    polygon_area,
    polygon_length,
    polygon_mask,
    polygon_spans,
    raster_grid,
    raster_index,
    raster_transform,
    to_raster,
)


def _random_polygon(rng, integer: bool):
    k = int(rng.integers(3, 25))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = rng.uniform(2, 18) * rng.uniform(0.3, 1, k)
    poly = np.stack([15 + rad * np.sin(ang), 17 + rad * np.cos(ang)], 1)
    return np.round(poly) if integer else poly


def _scan_and_boundary(shape, poly):
    scan = np.zeros(shape, np.int32)
    paint_spans(scan, polygon_spans([poly], shape))
    where = grid_points_in_poly(shape, poly, binarize=False)  # 2 vertex, 3 edge
    return (scan > 0) | (where >= 2)


def test_fill_is_the_scanline_plus_the_boundary():
    """Masks = scanline interior + every pixel centre on an edge or vertex, nothing else;
    for simple polygons that is skimage's polygon2mask."""
    rng = np.random.default_rng(5)
    shape = (30, 34)
    for t in range(200):
        poly = _random_polygon(rng, integer=t % 2 == 0)
        if t % 5 == 0:
            poly = np.vstack([poly, poly[:1]])  # closing vertex repeated
        ours = fill_polygon(shape, poly)
        np.testing.assert_array_equal(ours, _scan_and_boundary(shape, poly))
        np.testing.assert_array_equal(ours, polygon2mask(shape, poly))


def test_fill_of_self_intersecting_and_degenerate_polygons():
    """Where edges cross, points_in_poly's even-odd count decides (polygon2mask differs)."""
    bowtie = np.array([[0, 0], [10, 10], [0, 10], [10, 0]], float)
    line = np.array([[2, 2], [8, 8], [5, 5]], float)
    for poly in (bowtie, line, bowtie * 0.7 + 0.3):
        ours = fill_polygon((12, 12), poly)
        np.testing.assert_array_equal(ours, grid_points_in_poly((12, 12), poly))
    assert not fill_polygon((12, 12), bowtie)[5, 5]  # the crossing point
    assert not fill_polygon((5, 5), np.array([[1, 1], [3, 3]], float)).any()
    assert fill_polygon((0, 4), bowtie).shape == (0, 4)


def test_polygon_mask_at_a_level_is_polygon2mask_of_the_mapped_polygon():
    rng = np.random.default_rng(2)
    for d in (1.0, 2.0, 4.0, 2.5):
        poly = _random_polygon(rng, integer=True) * 6
        top, left = 8 * d, 4 * d
        local = to_raster(poly, d, (top, left))
        np.testing.assert_array_equal(
            polygon_mask(poly, (25, 30), top, left, d), polygon2mask((25, 30), local)
        )


def test_level_box_covers_the_level0_box():
    assert level_box(10, 10, 7, 1, 4.0) == (2, 2, 3, 1)  # rows 10..16 -> 2..4, col 10 -> 2
    assert level_box(10, 10, 7, 3, 4.0) == (2, 2, 3, 2)  # cols 10..12 -> 2..3
    assert level_box(0, 0, 0, 0, 4.0) == (0, 0, 1, 1)  # at least a pixel
    assert level_box(-5, 3, 10, 10, 2.0) == (-3, 1, 6, 6)


def test_raster_grid_and_placement_agree():
    assert raster_grid((40_000, 80_000), 4096) == (80_000 / 4096, (2048, 4096))
    assert raster_grid((1000, 1500), 700, whole=True) == (3.0, (334, 500))
    assert raster_grid((0, 0), 10, whole=True) == (1.0, (0, 0))
    scale, translate = raster_transform(4.0)
    assert scale == (4.0, 4.0) and translate == (1.5, 1.5)
    # raster pixel 2 covers level-0 pixels 8..11: centres 8..11 map back to raster pixel 2
    assert raster_index([7.49, 7.5, 11.49, 11.5], 4.0).tolist() == [1, 2, 2, 3]
    # a raster placed at level-0 origin (10, 20), anisotropic, on a slide shown at 0.5x + shift
    scale, translate = raster_transform((2.0, 3.0), origin=(10, 20), world=((0.5, 0.5), (1, 2)))
    assert scale == (1.0, 1.5)
    assert translate == ((10 + 0.5) * 0.5 + 1, (20 + 1.0) * 0.5 + 2)
    # to_raster is the inverse placement: the centre of raster pixel i maps to i
    centre = np.array([[2 * 4.0 + 1.5, 3 * 4.0 + 1.5]])
    assert to_raster(centre, 4.0).tolist() == [[2.0, 3.0]]


@pytest.mark.parametrize("closed", [False, True])
def test_area_and_length(closed):
    square = np.array([[0, 0], [0, 4], [3, 4], [3, 0]], float)
    if closed:
        square = np.vstack([square, square[:1]])
    assert polygon_area(square) == 12.0
    assert polygon_length(square) == 14.0


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from([0.0, 0.5, 1.0, -2.0, 3.25]))))
def test_scanline_crossings_are_ordered_as_lexsort_orders_them(crossings):
    """The crossings' order (by polygon row, then x; ties in their order) is lexsort's for
    any mix of pairs, odd groups and ties, not only the pairs cells give."""
    key = np.array([k for k, _ in crossings], dtype=np.int64)
    x = np.array([v for _, v in crossings], dtype=np.float64)
    np.testing.assert_array_equal(_by_key_then_x(key, x), np.lexsort((x, key)))
