"""Slide access: the real Aperio SVS, synthetic pyramids (exact and JPEG), OME subIFDs, fallbacks.

OpenSlide formats (the real library, no stand-in) are in ``test_slide_openslide.py``.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_crystal.io.slide import is_slide, open_slide
from napari_crystal.synthetic import write_pyramid


def _noise_source(seed: int):
    """A deterministic source whose pixels depend only on their coordinates."""

    def source(top, left, height, width):
        yy, xx = np.mgrid[top : top + height, left : left + width]
        base = (yy * 7 + xx * 13 + seed) % 251
        return np.stack([base, (base * 3) % 256, (yy ^ xx) % 256], axis=-1).astype(np.uint8)

    return source


def _smooth_source(top, left, height, width):
    yy, xx = np.mgrid[top : top + height, left : left + width].astype(np.float32)
    r = 128 + 100 * np.sin(yy / 60.0)
    g = 128 + 100 * np.cos(xx / 45.0)
    b = 128 + 60 * np.sin((yy + xx) / 80.0)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def deflate_slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("slides") / "exact.svs"
    write_pyramid(path, _noise_source(3), (1301, 2103), 0.25, compression="zlib", min_side=64)
    return path


def test_real_svs_opens_with_shape_levels_and_mpp(real_svs):
    with open_slide(real_svs) as slide:
        assert slide.shape == (2967, 2220)
        assert len(slide.levels) == 1  # this excerpt of CMU-1 has no reduced levels
        assert slide.downsamples == [1.0]
        assert slide.mpp == pytest.approx(0.4990)
        assert slide.levels[0].shape == (2967, 2220, 3)
        assert slide.levels[0].dtype == np.uint8
        region = slide.read_region(0, 1000, 500, 300, 400)
        with tifffile.TiffFile(real_svs) as tif:
            expected = tif.pages[0].asarray()[1000:1300, 500:900]
        np.testing.assert_array_equal(region, expected)
    assert is_slide(real_svs)


def test_synthetic_pyramid_read_region_matches_pixels_written(deflate_slide):
    source = _noise_source(3)
    with open_slide(deflate_slide) as slide:
        assert slide.shape == (1301, 2103)  # not multiples of 4: levels floor, as Aperio's do
        assert slide.level_shape(1) == (325, 525)
        assert len(slide.levels) >= 3
        assert slide.mpp == pytest.approx(0.25)
        assert slide.downsamples[:3] == pytest.approx([1.0, 4.0, 16.0], rel=0.02)
        for top, left, h, w in [(0, 0, 256, 256), (300, 700, 517, 333), (1300, 2102, 1, 1)]:
            np.testing.assert_array_equal(
                slide.read_region(0, top, left, h, w), source(top, left, h, w)
            )
        # level 1 is the 4 x 4 box mean of level 0 (floored), computed independently here
        full = source(0, 0, 1300, 2100).astype(np.int64)
        mean = full.reshape(325, 4, 525, 4, 3).sum(axis=(1, 3)) // 16
        np.testing.assert_array_equal(
            slide.read_region(1, 400, 800, 50, 60), mean[100:150, 200:260]
        )
        assert slide.level_for_downsample(1) == 0
        assert slide.level_for_downsample(5) == 1
        assert slide.level_for_downsample(1000) == len(slide.levels) - 1


def test_read_region_clips_and_pads_white(deflate_slide):
    source = _noise_source(3)
    with open_slide(deflate_slide) as slide:
        out = slide.read_region(0, -10, 2053, 30, 80)
        assert out.shape == (30, 80, 3)
        assert (out[:10] == 255).all() and (out[:, 50:] == 255).all()
        np.testing.assert_array_equal(out[10:, :50], source(0, 2053, 20, 50))
        assert (slide.read_region(0, 5000, 5000, 8, 8) == 255).all()
        # coarse levels take level-0 top/left and a size in the level's pixels
        lvl = slide.read_region(2, 16 * 10, 16 * 20, 5, 6)
        np.testing.assert_array_equal(lvl, np.asarray(slide.levels[2][10:15, 20:26]))


def test_jpeg_pyramid_close_to_pixels_written(tmp_path):
    path = write_pyramid(tmp_path / "jpeg.svs", _smooth_source, (900, 1200), 0.5, min_side=64)
    with open_slide(path) as slide:
        got = slide.read_region(0, 123, 456, 300, 400).astype(int)
        want = _smooth_source(123, 456, 300, 400).astype(int)
        assert np.abs(got - want).mean() < 3
        with tifffile.TiffFile(path) as tif:
            assert tif.is_svs
            assert [s.name for s in tif.series][:2] == ["Baseline", "Thumbnail"]


def test_open_is_lazy(tmp_path):
    """Opening decodes a tile or two, not a level: allocations stay far below the level size."""
    path = write_pyramid(tmp_path / "big.svs", _smooth_source, (2048, 3072), 0.5)
    tracemalloc.start()
    slide = open_slide(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    level0_bytes = 2048 * 3072 * 3
    assert peak < level0_bytes / 8
    assert not isinstance(slide.levels[0], np.ndarray)
    slide.close()


def test_ome_subifd_pyramid(tmp_path):
    path = tmp_path / "pyramid.ome.tif"
    data = _smooth_source(0, 0, 512, 768)
    with tifffile.TiffWriter(path, ome=True) as tw:
        opts = {"tile": (128, 128), "photometric": "rgb", "compression": "zlib"}
        tw.write(data, subifds=2, metadata={"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}, **opts)
        tw.write(data[::2, ::2], subfiletype=1, **opts)
        tw.write(data[::4, ::4], subfiletype=1, **opts)
    assert is_slide(path)
    with open_slide(path) as slide:
        assert [lv.shape for lv in slide.levels] == [(512, 768, 3), (256, 384, 3), (128, 192, 3)]
        assert slide.downsamples == pytest.approx([1, 2, 4])
        assert slide.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(
            slide.read_region(1, 100, 200, 10, 10), data[::2, ::2][50:60, 100:110]
        )


def test_grey_uint16_tiled_tiff_is_shown_as_rgb(tmp_path):
    path = tmp_path / "grey.tif"
    data = (np.arange(256 * 320, dtype=np.uint32).reshape(256, 320) * 7 % 65536).astype(np.uint16)
    tifffile.imwrite(
        path, data, tile=(64, 64), resolution=(40000, 40000), resolutionunit="CENTIMETER"
    )
    assert not is_slide(path)  # grey and single-level: left to other readers, still openable
    with open_slide(path) as slide:
        assert slide.levels[0].shape == (256, 320, 3) and slide.levels[0].dtype == np.uint8
        assert slide.mpp == pytest.approx(0.25)
        out = slide.read_region(0, 10, 20, 4, 5)
        np.testing.assert_array_equal(out[..., 0], (data[10:14, 20:25] >> 8).astype(np.uint8))
        np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_plain_tiff_is_not_a_slide(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8))
    assert not is_slide(path)
    assert not is_slide(tmp_path / "missing.svs")


def test_concurrent_reads_are_consistent(deflate_slide):
    """napari reads the zarr levels from threads while widgets call read_region: same file handle."""
    from concurrent.futures import ThreadPoolExecutor

    source = _noise_source(3)
    rng = np.random.default_rng(1)
    boxes = [(int(rng.integers(0, 1100)), int(rng.integers(0, 1900))) for _ in range(40)]
    with open_slide(deflate_slide) as slide:

        def read(i):
            top, left = boxes[i]
            if i % 2:
                return np.asarray(slide.levels[0][top : top + 150, left : left + 150])
            return slide.read_region(0, top, left, 150, 150)

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(read, range(len(boxes))))
    for (top, left), got in zip(boxes, results, strict=True):
        want = source(top, left, 150, 150)
        np.testing.assert_array_equal(got, want[: got.shape[0], : got.shape[1]])


def test_single_level_pyramid_is_written_and_reads_back(tmp_path):
    """A slide small enough for one level (like the real CMU-1 excerpt) writes and opens."""
    source = _noise_source(5)
    path = write_pyramid(
        tmp_path / "one.svs", source, (300, 400), 0.5, compression="zlib", min_levels=1
    )
    with open_slide(path) as slide:
        assert len(slide.levels) == 1
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 300, 400), source(0, 0, 300, 400))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.svs"]
