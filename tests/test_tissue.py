"""Tissue mask: Otsu on a thumbnail's saturation; box coverage; frames on tissue only."""

from __future__ import annotations

import numpy as np
import pytest

from napari_crystal.errors import SlideError
from napari_crystal.geometry import box_coverage
from napari_crystal.io.slide import open_slide
from napari_crystal.patches import frame_patches
from napari_crystal.synthetic import write_pyramid
from napari_crystal.synthetic.render import WHITE
from napari_crystal.tissue import TissueMask, on_tissue, thumbnail, tissue_mask

SHAPE = (1200, 1600)
CENTRE, RADIUS = (500.0, 700.0), 380.0  # level-0 disk of "tissue"


def _disk_source(top, left, height, width):
    """Pink, textured tissue in a disk on slightly noisy grey glass."""
    yy, xx = np.mgrid[top : top + height, left : left + width]
    rng = np.random.default_rng(top * 7919 + left)
    out = np.empty((height, width, 3), np.float32)
    out[:] = WHITE
    out += rng.normal(0, 2, out.shape)
    inside = np.hypot(yy - CENTRE[0], xx - CENTRE[1]) < RADIUS
    tissue = np.array((226, 150, 196), np.float32) + rng.normal(0, 12, (height, width, 1))
    out[inside] = tissue[inside]
    return np.clip(out, 0, 255).astype(np.uint8)


def _blank_source(top, left, height, width):
    rng = np.random.default_rng(top * 31 + left)
    out = np.empty((height, width, 3), np.float32)
    out[:] = WHITE
    out += rng.normal(0, 2, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def disk_slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("tissue") / "disk.svs"
    write_pyramid(path, _disk_source, SHAPE, 0.5, compression="zlib", min_side=128)
    return path


def test_box_coverage_matches_level0_counts():
    rng = np.random.default_rng(0)
    mask = rng.random((13, 17)) < 0.4
    d = 4
    full = mask.repeat(d, 0).repeat(d, 1)  # level-0 pixels
    padded = np.zeros((full.shape[0] + 40, full.shape[1] + 40), bool)
    padded[20:-20, 20:-20] = full  # boxes may stick out by up to 20 px
    top = rng.integers(-20, full.shape[0], 200)
    left = rng.integers(-20, full.shape[1], 200)
    height = rng.integers(1, 20, 200)
    width = rng.integers(1, 20, 200)
    ours = box_coverage(mask, d, top, left, height, width)
    for k in range(200):
        t, lf = top[k] + 20, left[k] + 20
        window = padded[t : t + height[k], lf : lf + width[k]]
        expected = window.sum() / (height[k] * width[k])  # the window is never clipped here
        assert ours[k] == pytest.approx(expected, abs=1e-9), k


def test_box_coverage_fractional_downsample_is_area_weighted():
    mask = np.array([[True, False]])
    # downsample 2.5: pixel 0 covers columns [0, 2.5); a box [0, 5) x [0, 1) is half covered
    assert box_coverage(mask, 2.5, 0, 0, 1, 5) == pytest.approx(0.5)
    assert box_coverage(mask, 2.5, 0, 1, 1, 2) == pytest.approx(0.75)
    assert box_coverage(mask, 2.5, 0, 100, 1, 10) == 0.0  # outside the mask


def test_thumbnail_averages_blocks_of_a_single_level(tmp_path):
    import tifffile

    path = tmp_path / "one.tif"
    tifffile.imwrite(path, _disk_source(0, 0, 300, 500), tile=(64, 64), photometric="rgb")
    with open_slide(path) as slide:
        assert len(slide.levels) == 1
        thumb, ds = thumbnail(slide, max_side=200)
        level0 = np.asarray(slide.levels[0][:]).astype(np.float64)
    assert ds == 3.0 and thumb.shape == (100, 167, 3)
    padded = np.full((300, 501, 3), 255.0)
    padded[:, :500] = level0
    expected = np.floor(padded.reshape(100, 3, 167, 3, 3).mean(axis=(1, 3)) + 0.5)
    np.testing.assert_array_equal(thumb, expected.astype(np.uint8))


def test_tissue_mask_finds_the_disk(disk_slide):
    with open_slide(disk_slide) as slide:
        tissue = tissue_mask(slide, max_side=400)
        assert len(slide.levels) > 1  # read from a coarse level, not level 0
    mask, ds = tissue
    assert ds == 4.0 and mask.shape == (300, 400)
    yy, xx = (np.mgrid[: mask.shape[0], : mask.shape[1]] + 0.5) * ds
    truth = np.hypot(yy - CENTRE[0], xx - CENTRE[1]) < RADIUS
    assert (mask == truth).mean() > 0.99
    assert tissue.fraction == pytest.approx(truth.mean(), abs=0.01)


def test_tissue_mask_accepts_a_path(disk_slide):
    from_path = tissue_mask(disk_slide, max_side=400)
    assert isinstance(from_path, TissueMask) and from_path.mask.any()


def test_blank_slide_is_a_clear_error(tmp_path):
    path = tmp_path / "blank.svs"
    write_pyramid(path, _blank_source, (600, 800), 0.5, compression="zlib", min_side=128)
    with pytest.raises(SlideError, match=r"blank\.svs: no tissue found"):
        tissue_mask(path)
    empty = tissue_mask(path, allow_empty=True)
    assert not empty.mask.any() and empty.fraction == 0.0


def test_frames_keep_only_tissue(disk_slide):
    tissue = tissue_mask(disk_slide, max_side=400)
    every = frame_patches([], SHAPE, frame=100, window=200)
    kept = frame_patches([], SHAPE, frame=100, window=200, tissue=tissue, min_tissue=0.5)
    assert 0 < len(kept) < len(every)
    # kept frames are those whose window is mostly inside the disk; numbers are kept
    centre_r = kept.top + kept.height / 2
    centre_c = kept.left + kept.width / 2
    assert (np.hypot(centre_r - CENTRE[0], centre_c - CENTRE[1]) < RADIUS + 100).all()
    assert np.array_equal(every[kept.index].top, kept.top)
    share = tissue.box_fraction(every.top, every.left, every.height, every.width)
    assert np.array_equal(kept.index, np.flatnonzero(share >= 0.5))
    assert len(on_tissue(every, tissue, 0.0)) == len(every)
    with pytest.raises(ValueError, match="min_fraction"):
        on_tissue(every, tissue, 1.5)


def test_real_svs_tissue(real_svs):
    with open_slide(real_svs) as slide:
        tissue = tissue_mask(slide)
        rows, cols = slide.shape
    mask, ds = tissue
    assert mask.shape == (-(-rows // 3), -(-cols // 3)) and ds == 3.0  # one level: 3x blocks
    assert 0.25 < tissue.fraction < 0.6
    # glass on the left, tissue in the middle of the section (looked at on the thumbnail)
    assert tissue.box_fraction(1500, 0, 1300, 400) < 0.02
    assert tissue.box_fraction(1300, 1000, 300, 300) > 0.9


def test_saturation_is_hsv_saturation():
    from skimage.color import rgb2hsv

    from napari_crystal.tissue import _saturation

    rgb = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    rgb[0, :3] = 0  # black: saturation 0
    np.testing.assert_allclose(_saturation(rgb), rgb2hsv(rgb)[..., 1], atol=1e-6)


def test_synthetic_corpus_slide(tiny_corpus):
    from napari_crystal.io.nedc import read_annotation

    path = sorted((tiny_corpus / "train").glob("*.svs"))[0]
    ann = read_annotation(path.with_suffix(".csv"))
    with open_slide(path) as slide:
        tissue = tissue_mask(slide)
        thumb, ds = thumbnail(slide)
    assert ds == tissue.downsample and thumb.shape[:2] == tissue.mask.shape
    glass = np.abs(thumb.astype(int) - WHITE).max(axis=-1) < 12
    assert (tissue.mask == ~glass).mean() > 0.9  # the ragged tissue edge is mixed
    for region in ann.regions:  # regions are drawn on tissue
        lo, hi = region.coords.min(axis=0), region.coords.max(axis=0)
        assert tissue.box_fraction(lo[0], lo[1], *(hi - lo)) > 0.9, region.region_id
