"""Slides through OpenSlide (openslide-bin wheels): the real SVS read the same through both
paths, a Philips TIFF and a generic tiled TIFF written here, the way they route, ``info``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_crystal.cli import main
from napari_crystal.dataset import slide_files
from napari_crystal.io.slide import SLIDE_SUFFIXES, TIFFFILE_VENDORS, is_slide, open_slide

openslide = pytest.importorskip("openslide")

SHAPE = (1000, 1500)  # rows, cols of level 0
MPP = 0.25


def _pixels(shape=SHAPE) -> np.ndarray:
    """RGB where every pixel depends on its position, so any misplaced read shows."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    channels = [(yy * 7 + xx * 13) % 251, (yy ^ xx) % 256, (xx * 3 + yy) % 256]
    return np.stack(channels, axis=-1).astype(np.uint8)


def _philips_xml(levels: int) -> str:
    """The ImageDescription a Philips scanner writes (DPUfsImport), with per-level spacing (mm)."""
    reps = "".join(
        '<DataObject ObjectType="PixelDataRepresentation">'
        '<Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" '
        f'PMSVR="IDoubleArray">&quot;{MPP * 2**lv / 1000:.6f}&quot; '
        f"&quot;{MPP * 2**lv / 1000:.6f}&quot;</Attribute>"
        '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_NUMBER" Group="0x101D" '
        f'Element="0x2001" PMSVR="IUInt16">{lv}</Attribute>'
        "</DataObject>"
        for lv in range(levels)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        '<DataObject ObjectType="DPUfsImport">'
        '<Attribute Name="DICOM_MANUFACTURER" Group="0x0008" Element="0x0070" '
        'PMSVR="IString">PHILIPS</Attribute>'
        '<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" '
        'PMSVR="IDataObjectArray"><Array><DataObject ObjectType="DPScannedImage">'
        '<Attribute Name="PIM_DP_IMAGE_TYPE" Group="0x301D" Element="0x1004" '
        'PMSVR="IString">WSI</Attribute>'
        '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" Group="0x1001" '
        f'Element="0x8B01" PMSVR="IDataObjectArray"><Array>{reps}</Array></Attribute>'
        "</DataObject></Array></Attribute></DataObject>\n"
    )


def write_tiled_pyramid(path, vendor: str = "generic", levels: int = 3) -> np.ndarray:
    """A tiled, lossless (deflate) pyramid, one TIFF page per level, as ``vendor`` writes it:
    ``"generic"`` (OpenSlide's generic tiled TIFF) or ``"philips"`` (Philips TIFF: Software
    ``Philips...`` and the DPUfsImport XML description). Returns level 0's pixels."""
    image = _pixels()
    with tifffile.TiffWriter(path) as tw:
        for lv in range(levels):
            ds = 2**lv
            extra = {}
            if vendor == "philips":
                extra = {"software": "Philips DP v1.0", "metadata": None}
                if lv == 0:
                    extra["description"] = _philips_xml(levels)
            else:
                res = 1e4 / MPP / ds  # pixels per centimetre
                extra = {"resolution": (res, res), "resolutionunit": "CENTIMETER"}
            tw.write(
                image[::ds, ::ds],
                tile=(256, 256),
                compression="zlib",
                photometric="rgb",
                subfiletype=1 if lv else 0,
                **extra,
            )
    return image


def _boxes(shape, n: int, size: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    boxes = [
        (int(rng.integers(-size // 2, shape[0])), int(rng.integers(-size // 2, shape[1])))
        for _ in range(n)
    ]
    return [*boxes, (0, 0), (shape[0] - size // 2, shape[1] - size // 2)]  # corners, edges


def test_real_svs_reads_the_same_through_tifffile_and_openslide(real_svs):
    with open_slide(real_svs) as fast, open_slide(real_svs, backend="openslide") as osl:
        assert (fast.backend, osl.backend) == ("tifffile", "openslide")
        assert fast.vendor == osl.vendor == "aperio"
        assert fast.shape == osl.shape and fast.downsamples == osl.downsamples
        assert fast.mpp == pytest.approx(osl.mpp) and fast.mpp == pytest.approx(0.499)
        assert fast.objective_power == osl.objective_power == 20
        for top, left in _boxes(fast.shape, 25, 512):
            np.testing.assert_array_equal(
                fast.read_region(0, top, left, 512, 512), osl.read_region(0, top, left, 512, 512)
            )
        window = np.s_[700:1400, 300:1100]
        np.testing.assert_array_equal(
            np.asarray(fast.levels[0][window]), np.asarray(osl.levels[0][window])
        )


def test_generic_tiled_tiff_reads_the_same_either_way(tmp_path):
    path = tmp_path / "generic.tif"
    image = write_tiled_pyramid(path)
    assert is_slide(path)
    with open_slide(path) as fast, open_slide(path, backend="openslide") as osl:
        assert "generic-tiff" in TIFFFILE_VENDORS  # tifffile is the faster of the two here
        assert (fast.backend, osl.backend) == ("tifffile", "openslide")
        assert fast.vendor == osl.vendor == "generic-tiff"
        assert fast.downsamples == osl.downsamples == [1.0, 2.0, 4.0]
        assert fast.mpp == pytest.approx(MPP) and osl.mpp == pytest.approx(MPP)
        for level in range(3):
            for top, left in _boxes(fast.shape, 6, 300, seed=level):
                a = fast.read_region(level, top, left, 300, 300)
                b = osl.read_region(level, top, left, 300, 300)
                np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(osl.read_region(0, 0, 0, *SHAPE), image)
        np.testing.assert_array_equal(np.asarray(osl.levels[2]), image[::4, ::4])


def test_philips_tiff_opens_through_openslide(tmp_path):
    path = tmp_path / "scan.tiff"
    image = write_tiled_pyramid(path, vendor="philips")
    assert openslide.OpenSlide.detect_format(str(path)) == "philips"
    assert is_slide(path)
    with open_slide(path) as slide:
        assert slide.backend == "openslide" and slide.vendor == "philips"
        assert slide.shape == SHAPE and slide.downsamples == [1.0, 2.0, 4.0]
        np.testing.assert_array_equal(
            slide.read_region(0, 123, 456, 200, 300), image[123:323, 456:756]
        )
        np.testing.assert_array_equal(
            slide.read_region(1, 400, 600, 100, 100), image[::2, ::2][200:300, 300:400]
        )
        # past the right and bottom edges: white, as on the tifffile path
        edge = slide.read_region(0, SHAPE[0] - 10, SHAPE[1] - 20, 30, 40)
        np.testing.assert_array_equal(edge[:10, :20], image[-10:, -20:])
        assert (edge[10:] == 255).all() and (edge[:, 20:] == 255).all()
        assert np.asarray(slide.levels[1][100:140, 50:90]).tolist() == (
            image[::2, ::2][100:140, 50:90].tolist()
        )


def test_forcing_a_backend(tmp_path):
    path = tmp_path / "scan.tiff"
    write_tiled_pyramid(path, vendor="philips")
    with open_slide(path, backend="tifffile") as slide:  # tifffile reads its pages too
        assert slide.backend == "tifffile" and slide.vendor == "philips"
    with pytest.raises(ValueError, match="backend"):
        open_slide(path, backend="bioformats")
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((64, 64), np.uint8))
    from napari_crystal.errors import SlideError

    with pytest.raises(SlideError, match="OpenSlide does not recognise"):
        open_slide(plain, backend="openslide")


def test_one_list_of_slide_suffixes_for_reader_dataset_and_manifest(tmp_path):
    import yaml

    from napari_crystal import dataset
    from napari_crystal.plugin import _slide_reader

    assert dataset.SLIDE_SUFFIXES is SLIDE_SUFFIXES
    assert _slide_reader.SLIDE_SUFFIXES is SLIDE_SUFFIXES
    for suffix in (".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".tiff", ".dcm", ".vms", ".czi"):
        assert suffix in SLIDE_SUFFIXES
    manifest = yaml.safe_load((Path(_slide_reader.__file__).parent / "napari.yaml").read_text())
    reader = next(
        r for r in manifest["contributions"]["readers"] if r["command"].endswith("read_slide")
    )
    assert sorted(reader["filename_patterns"]) == sorted(f"*{s}" for s in SLIDE_SUFFIXES)
    assert reader["accepts_directories"]
    nested = tmp_path / "patient1"
    nested.mkdir()
    for name in ("a.ndpi", "b.mrxs", "c.svs", "notes.txt", "d.csv"):
        (nested / name).write_bytes(b"x")
    assert [p.name for p in slide_files(tmp_path)] == ["a.ndpi", "b.mrxs", "c.svs"]


def test_napari_reader_takes_openslide_formats(tmp_path):
    from napari_crystal.plugin._slide_reader import get_slide_reader

    path = tmp_path / "scan.tiff"
    write_tiled_pyramid(path, vendor="philips")
    reader = get_slide_reader(str(path))
    assert reader is not None
    image, *annotation = reader(str(path))
    data, meta, kind = image
    assert kind == "image" and meta["multiscale"] and len(data) == 3
    assert meta["metadata"]["vendor"] == "philips"
    assert meta["metadata"]["backend"] == "openslide"
    assert len(annotation) == 1  # a blank annotation layer to draw on
    assert get_slide_reader(str(tmp_path)) is None  # a folder that is not a DICOM slide
    broken = tmp_path / "broken.mrxs"
    broken.write_bytes(b"not a slide")
    assert get_slide_reader(str(broken)) is not None  # ours to explain


def test_info_prints_levels_mpp_vendor_and_power(real_svs, tmp_path, capsys):
    path = tmp_path / "scan.tiff"
    write_tiled_pyramid(path, vendor="philips")
    assert main(["info", str(real_svs), str(path)]) == 0
    out = capsys.readouterr().out
    assert "vendor:          aperio (read with tifffile)" in out
    assert "pixel size:      0.4990 um/px" in out
    assert "objective power: 20x" in out
    assert "vendor:          philips (read with openslide)" in out
    assert "levels:          3" in out
    assert main(["info", "--json", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [lv["downsample"] for lv in summary["levels"]] == [1.0, 2.0, 4.0]
    assert summary["levels"][0]["width"] == SHAPE[1]


def test_info_on_a_broken_slide_is_one_line_with_status_2(tmp_path, capsys):
    bad = tmp_path / "broken.ndpi"
    bad.write_bytes(b"II*\x00 definitely not a slide")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"napari-crystal: error: {bad}") and "\n" not in err


def test_dataset_building_through_openslide_matches_tifffile(tmp_path):
    """A corpus of a Philips TIFF (OpenSlide) builds the same masks as the same pixels in a
    generic pyramidal TIFF (tifffile)."""
    from napari_crystal.dataset import build_dataset
    from napari_crystal.io.nedc import Annotation, Region, write_annotation

    rng = np.random.default_rng(3)
    regions = []
    for i in range(4):
        top, left = int(rng.integers(50, 600)), int(rng.integers(50, 1100))
        square = [[top, left], [top, left + 300], [top + 300, left + 300], [top + 300, left]]
        regions.append(Region(i, i + 1, ["dcis", "bckg"][i % 2], "breast", square, None))
    ann = Annotation(regions, MPP, SHAPE[1], SHAPE[0], "scan", "breast")
    built = {}
    for vendor, name in (("philips", "scan.tiff"), ("generic", "scan.tif")):
        corpus = tmp_path / vendor
        corpus.mkdir()
        write_tiled_pyramid(corpus / name, vendor=vendor)
        write_annotation(ann, corpus / "scan.csv")
        assert slide_files(corpus) == [corpus / name]
        built[vendor] = build_dataset(corpus, None, tmp_path / f"{vendor}.zarr", size=64)
    a, b = built["philips"], built["generic"]
    assert len(a.table) == len(b.table) == 4
    np.testing.assert_array_equal(np.asarray(a.packed[:]), np.asarray(b.packed[:]))
    assert np.asarray(a.packed[:]).any()
