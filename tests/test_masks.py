"""Masks against hand-made polygons and crops with known stained pixels; the level used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.transform import resize

from napari_crystal.geometry import polygon_mask
from napari_crystal.masks import make_mask, resize_mask, threshold_mask
from napari_crystal.patches import Patch


class ArraySlide:
    """An in-memory pyramid with ``Slide.read_region`` semantics (level-0 top/left, white pad)."""

    def __init__(self, rgb: np.ndarray, downsamples=(1, 2, 4)):
        self.path = Path("array.svs")
        self.downsamples = [float(d) for d in downsamples]
        self.levels = [rgb[:: int(d), :: int(d)] for d in downsamples]
        self.shape = rgb.shape[:2]
        self.reads: list[int] = []

    def read_region(self, level, top, left, height, width):
        self.reads.append(level)
        ds = self.downsamples[level]
        top, left = int(np.floor(top / ds)), int(np.floor(left / ds))
        out = np.full((height, width, 3), 255, np.uint8)
        arr = self.levels[level]
        r0, r1 = max(top, 0), min(top + height, arr.shape[0])
        c0, c1 = max(left, 0), min(left + width, arr.shape[1])
        if r1 > r0 and c1 > c0:
            out[r0 - top : r1 - top, c0 - left : c1 - left] = arr[r0:r1, c0:c1]
        return out

    def close(self):
        pass


def square(top, left, bottom, right):
    return np.array(
        [[top, left], [top, right], [bottom, right], [bottom, left], [top, left]], float
    )


def test_polygon_mask_of_a_square_and_a_triangle():
    expected = np.zeros((8, 8), bool)
    expected[2:6, 3:7] = True
    np.testing.assert_array_equal(polygon_mask(square(12, 13, 15, 16), (8, 8), 10, 10), expected)
    tri = np.array([[0, 0], [0, 4], [4, 0]], float)
    np.testing.assert_array_equal(
        polygon_mask(tri, (5, 5)).astype(int),
        [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]],
    )
    # at downsample 2 a pixel is in when the centre of its 2x2 block is
    coarse = polygon_mask(square(0, 0, 7, 3), (4, 4), 0, 0, 2.0)
    np.testing.assert_array_equal(coarse, np.array([[1, 1, 0, 0]] * 4, bool))


def test_polygon_mask_equals_skimage_polygon2mask_on_random_polygons():
    from skimage.draw import polygon2mask

    rng = np.random.default_rng(11)
    for t in range(150):
        k = int(rng.integers(3, 30))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(1, 25) * rng.uniform(0.3, 1, k)
        poly = np.stack([20 + rad * np.sin(ang), 22 + rad * np.cos(ang)], 1)
        poly = np.round(poly) if t % 2 else poly[::-1]  # integer vertices, both orientations
        shape = (40, 45) if t % 3 else (25, 30)  # some polygons stick out of the crop
        np.testing.assert_array_equal(polygon_mask(poly, shape), polygon2mask(shape, poly))


@pytest.mark.parametrize("shape", [(1, 1), (3, 700), (255, 256), (257, 1000), (1024, 512)])
def test_resize_mask_is_skimage_nearest(shape):
    mask = np.random.default_rng(0).random(shape) > 0.5
    ref = resize(mask, (256, 256), order=0, anti_aliasing=False, preserve_range=True)
    np.testing.assert_array_equal(resize_mask(mask, 256), ref.astype(bool))


def test_polygon_method_is_the_region_shape_and_reads_no_pixels():
    slide = ArraySlide(np.full((64, 64, 3), 200, np.uint8), downsamples=(1,))
    patch = Patch("a.svs", 1, "norm", 8, 8, 32, 32, 0, "region", 0)
    mask = make_mask(slide, patch, square(8, 8, 39, 23), method="polygon", size=32)
    expected = np.zeros((32, 32), bool)
    expected[:, :16] = True
    np.testing.assert_array_equal(mask, expected)
    assert slide.reads == []


def test_threshold_mask_finds_dark_pixels_inside_the_polygon_only():
    rgb = np.full((40, 40, 3), 235, np.uint8)
    rgb[5:15, 5:25] = (60, 30, 90)  # stained block, inside the polygon
    rgb[30:38, 30:38] = (20, 20, 20)  # darker still, but outside the polygon
    rgb[20:28, 4:30] = (230, 200, 215)  # pale eosin-pink tissue, inside
    slide = ArraySlide(rgb, downsamples=(1,))
    patch = Patch("a.svs", 1, "dcis", 0, 0, 30, 30, 0, "region", 0)
    mask = make_mask(slide, patch, square(0, 0, 29, 29), "threshold", size=30)
    expected = np.zeros((30, 30), bool)
    expected[5:15, 5:25] = True
    np.testing.assert_array_equal(mask, expected)
    inside = np.zeros((40, 40), bool)
    inside[:30, :30] = True
    hema = threshold_mask(rgb, inside, channel="haematoxylin")
    np.testing.assert_array_equal(hema[:30, :30], expected)
    assert not hema[30:].any()


def test_constant_crop_has_no_stained_pixels():
    slide = ArraySlide(np.full((16, 16, 3), 128, np.uint8), downsamples=(1,))
    patch = Patch("a.svs", 1, "null", 0, 0, 16, 16, 0, "region", 0)
    assert not make_mask(slide, patch, None, "threshold", size=16).any()


def test_crop_is_read_at_the_patch_level_not_level_0():
    rgb = np.full((1024, 1024, 3), 240, np.uint8)
    rgb[256:768, 256:512] = 40
    slide = ArraySlide(rgb, downsamples=(1, 2, 4))
    patch = Patch("a.svs", 1, "indc", 0, 0, 1024, 1024, 2, "region", 0)
    coarse = make_mask(slide, patch, square(0, 0, 1023, 1023), size=128)
    assert slide.reads == [2]
    fine = make_mask(slide, patch, square(0, 0, 1023, 1023), size=128, level=0)
    assert slide.reads == [2, 0]
    expected = np.zeros((128, 128), bool)
    expected[32:96, 32:64] = True
    np.testing.assert_array_equal(coarse, expected)
    np.testing.assert_array_equal(fine, expected)


def test_unknown_method_is_refused():
    slide = ArraySlide(np.zeros((8, 8, 3), np.uint8), downsamples=(1,))
    patch = Patch("a.svs", 1, "x", 0, 0, 8, 8, 0, "region", 0)
    with pytest.raises(ValueError, match="unknown mask method"):
        make_mask(slide, patch, None, method="otsu")
