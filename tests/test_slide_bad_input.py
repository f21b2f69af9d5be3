"""Bad slide files: each gives one clear line naming the file, never a traceback from a codec."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_crystal.errors import CrystalError, SlideError
from napari_crystal.io.slide import is_slide, open_slide
from napari_crystal.synthetic import write_pyramid


def _source(top, left, height, width):
    yy, xx = np.mgrid[top : top + height, left : left + width]
    return np.stack([yy % 256, xx % 256, (yy + xx) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def good_slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "good.svs"
    return write_pyramid(path, _source, (1024, 1536), 0.5, min_side=64)


def _check(exc_info, path, words):
    exc = exc_info.value
    assert isinstance(exc, SlideError) and isinstance(exc, CrystalError)
    text = str(exc)
    assert "\n" not in text
    assert text.startswith(str(path))
    assert any(w in text.lower() for w in words), text


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.svs"
    path.write_bytes(b"")
    with pytest.raises(SlideError) as info:
        open_slide(path)
    _check(info, path, ["empty"])
    assert not is_slide(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(SlideError) as info:
        open_slide(tmp_path / "nope.svs")
    _check(info, tmp_path / "nope.svs", ["no such file"])
    with pytest.raises(SlideError) as info:
        open_slide(tmp_path)
    _check(info, tmp_path, ["folder"])


def test_not_a_tiff(tmp_path):
    path = tmp_path / "notes.svs"
    path.write_text("this is a text file with a slide's name\n")
    with pytest.raises(SlideError) as info:
        open_slide(path)
    _check(info, path, ["not a tiff"])
    assert not is_slide(path)


def test_truncated_slide(tmp_path, good_slide):
    data = good_slide.read_bytes()
    path = tmp_path / "truncated.svs"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideError) as info:
        open_slide(path)
    _check(info, path, ["truncated", "not a readable", "cannot"])


def test_truncated_header(tmp_path, good_slide):
    path = tmp_path / "stub.svs"
    path.write_bytes(good_slide.read_bytes()[:6])
    with pytest.raises(SlideError) as info:
        open_slide(path)
    _check(info, path, ["not a readable", "truncated"])


def test_corrupt_tile_data(tmp_path, good_slide):
    """Garbage in the coarsest level fails at open; garbage in level 0 fails on reading it."""
    path = tmp_path / "corrupt.svs"
    data = bytearray(good_slide.read_bytes())
    with tifffile.TiffFile(good_slide) as tif:
        levels = tif.series[0].levels
        coarse = levels[-1].pages[0]
        base = levels[0].pages[0]
        targets = [(coarse.dataoffsets[0], coarse.databytecounts[0])]
        base_tile = (base.dataoffsets[0], base.databytecounts[0])
    rng = np.random.default_rng(0)
    for off, n in targets:
        data[off : off + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(SlideError) as info:
        open_slide(path)
    _check(info, path, ["decode", "cannot"])

    path2 = tmp_path / "corrupt-level0.svs"
    data = bytearray(good_slide.read_bytes())
    off, n = base_tile
    data[off : off + n] = b"\x00" * n
    path2.write_bytes(bytes(data))
    slide = open_slide(path2)  # the probe reads the coarsest level only
    with pytest.raises(SlideError) as info:
        slide.read_region(0, 0, 0, 64, 64)
    _check(info, path2, ["cannot read"])
    slide.close()


def test_unsupported_compression(tmp_path):
    path = tmp_path / "odd.tif"
    data = _source(0, 0, 512, 512)
    tifffile.imwrite(path, data, tile=(256, 256), photometric="rgb", compression="zlib")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(50999)  # a codec nobody knows
    assert is_slide(path)  # tiled RGB: ours to open, and to explain
    with pytest.raises(SlideError) as info:
        open_slide(path)
    _check(info, path, ["decode", "compression", "cannot"])
