"""Reliability pieces below the command line: sweeping leftovers, report sets written whole,
the slide reader with a broken annotation or damaged tiles, bounds and memory checks."""

from __future__ import annotations

import gc
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_crystal._atomic import atomic_files, atomic_path, sweep_leftovers
from napari_crystal.errors import AnnotationError, CrystalError, DatasetError, reason_first
from napari_crystal.synthetic import write_pyramid


def test_sweep_removes_dead_runs_temporaries_only(tmp_path):
    target = tmp_path / "out.xml"
    dead = tmp_path / ".out.xml.999999999-abc.tmp"
    old_style = tmp_path / ".out.xml.3yk9w0nh.tmp"
    mine = tmp_path / f".out.xml.{os.getpid()}-abc.tmp"  # a run writing right now
    other = tmp_path / ".other.xml.999999999-abc.tmp"  # another output's
    folder = tmp_path / ".out.xml.tmp-999999999-x"
    for p in (dead, old_style, mine, other):
        p.write_bytes(b"x")
    folder.mkdir()
    (folder / "f").write_bytes(b"x")
    (tmp_path / "out.xml.work").mkdir()
    removed = sweep_leftovers(target)
    assert set(removed) == {dead, old_style, folder, tmp_path / "out.xml.work"}
    assert mine.exists() and other.exists()


def test_non_empty_work_folder_is_kept(tmp_path):
    work = tmp_path / "d.zarr.work"
    work.mkdir()
    (work / "00000-0000.npz").write_bytes(b"x")
    sweep_leftovers(tmp_path / "d.zarr")
    assert work.exists()  # finished chunks: the rerun resumes from them


def test_atomic_path_names_the_target_not_the_temporary(tmp_path):
    with pytest.raises(FileNotFoundError) as info, atomic_path(tmp_path / "no" / "out.xml", False):
        pass
    assert info.value.filename == str(tmp_path / "no" / "out.xml")


def test_report_set_is_written_whole_or_not_at_all(tmp_path):
    for name, text in (("report.json", "old"), ("report.md", "old"), ("confusion-a.png", "old")):
        (tmp_path / name).write_text(text)
    with pytest.raises(RuntimeError), atomic_files(tmp_path, stale="confusion-*.png") as stage:
        stage(tmp_path / "report.json").write_text("new")
        raise RuntimeError("the markdown writer failed")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "report.json": "old", "report.md": "old", "confusion-a.png": "old",
    }  # fmt: skip
    with atomic_files(tmp_path, stale="confusion-*.png") as stage:
        for name in ("report.json", "report.md", "confusion-b.png"):
            stage(tmp_path / name).write_text("new")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "report.json": "new", "report.md": "new", "confusion-b.png": "new",
    }  # fmt: skip


def test_reason_first():
    exc = AnnotationError("a.csv", "row 'x' is not a number", 8)
    assert reason_first(exc) == "row 'x' is not a number (a.csv:8)"
    assert reason_first(FileNotFoundError(2, "No such file or directory", "b")) == (
        "No such file or directory (b)"
    )


# ------------------------------------------------------------------------ slide reader


def _source(top, left, height, width):
    yy, xx = np.mgrid[top : top + height, left : left + width]
    return np.stack([yy % 256, xx % 256, (yy + xx) % 256], axis=-1).astype(np.uint8)


@pytest.fixture
def slide_with_csv(tmp_path, tiny_corpus):
    train = tiny_corpus / "train"
    svs = sorted(train.glob("*.svs"))[0]
    shutil.copy(svs, tmp_path)
    return tmp_path / svs.name, svs.with_suffix(".csv").read_text()


def test_slide_opens_when_the_annotation_beside_it_overflows(slide_with_csv):
    from napari_crystal.plugin._slide_reader import read_slide

    svs, text = slide_with_csv
    lines = text.split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("0,"))
    parts = lines[i].split(",")
    parts[5] = "9223372036854775808"
    lines[i] = ",".join(parts)
    svs.with_suffix(".csv").write_text("\n".join(lines))
    with pytest.warns(
        UserWarning, match=r"out of range \(.*\.csv:8\)\); the slide opened without"
    ):
        layers = read_slide(str(svs))
    assert [kind for *_, kind in layers] == ["image"]


def test_slide_opens_when_the_annotation_is_for_another_slide(slide_with_csv):
    from napari_crystal.plugin._slide_reader import read_slide

    svs, text = slide_with_csv
    lines = text.split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("0,"))
    parts = lines[i].split(",")
    parts[5] = "2000000000"
    lines[i] = ",".join(parts)
    svs.with_suffix(".csv").write_text("\n".join(lines))
    with pytest.warns(UserWarning, match="outside the slide"):
        layers = read_slide(str(svs))
    assert len(layers) == 1


def test_unreadable_annotation_is_found_and_reported(slide_with_csv, monkeypatch):
    """An annotation we may not read is the annotation beside the slide, not "none"."""
    from napari_crystal.io import nedc

    svs, text = slide_with_csv
    svs.with_suffix(".csv").write_text(text)
    real = os.access
    monkeypatch.setattr(
        nedc.os, "access", lambda p, mode: False if str(p).endswith(".csv") else real(p, mode)
    )
    assert nedc.find_annotation(svs) == svs.with_suffix(".csv")


def test_damaged_tile_shows_black_with_one_warning_and_files_close(tmp_path):
    from napari_crystal.plugin._slide_reader import read_slide

    good = write_pyramid(tmp_path / "good.svs", _source, (1024, 1536), 0.5, min_side=64)
    data = bytearray(good.read_bytes())
    with tifffile.TiffFile(good) as tif:
        base = tif.series[0].levels[0].pages[0]
        off, n = base.dataoffsets[0], base.databytecounts[0]
    data[off : off + n] = b"\x00" * n
    bad = tmp_path / "bad.svs"
    bad.write_bytes(bytes(data))
    layers = read_slide(str(bad))
    level0 = layers[0][0][0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tile = level0[0:64, 0:64]
        again = level0[0:10, 5:20]
        fine = level0[900:910, 1400:1410]
    assert tile.shape == (64, 64, 3) and not tile.any() and again.shape == (10, 15, 3)
    assert fine.any()  # undamaged tiles read as before
    assert len(caught) == 1 and "damaged image data at level 0" in str(caught[0].message)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del layers, level0
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# ------------------------------------------------------------------- bounds and memory


def test_memory_bound_is_checked_before_allocation(tiny_corpus, tmp_path):
    from napari_crystal.dataset import build_dataset

    with pytest.raises(DatasetError, match=r"100000 x 100000 mask needs about [\d.]+ GiB"):
        build_dataset(tiny_corpus, "dev", tmp_path / "d.zarr", size=100_000)
    assert list(tmp_path.iterdir()) == []


def test_memory_bound_setting_must_be_a_number(monkeypatch):
    from napari_crystal.patches import max_patch_bytes

    monkeypatch.setenv("NAPARI_CRYSTAL_MAX_PATCH_BYTES", "lots")
    with pytest.raises(CrystalError, match="NAPARI_CRYSTAL_MAX_PATCH_BYTES"):
        max_patch_bytes()
    monkeypatch.setenv("NAPARI_CRYSTAL_MAX_PATCH_BYTES", "8e9")
    assert max_patch_bytes() == 8_000_000_000


def test_split_outside_the_corpus_is_refused_by_the_parser():
    from napari_crystal.cli._args import split_name

    for bad in ("../other/train", "/abs", "a/b", "..", "."):
        with pytest.raises(Exception, match="one folder name"):
            split_name(bad)
    assert split_name("train") == "train"


def test_resumed_build_redoes_a_damaged_chunk_and_matches(tiny_corpus, tmp_path):
    from napari_crystal.dataset import build_dataset

    clean = build_dataset(tiny_corpus, "dev", tmp_path / "a.zarr", size=16, chunk=4)
    work = tmp_path / "b.zarr.work"
    work.mkdir()
    (work / "00000-0001.npz").write_bytes(b"PK\x03\x04 cut")
    (work / "00000-0002.npz").write_bytes(b"")
    again = build_dataset(tiny_corpus, "dev", tmp_path / "b.zarr", size=16, chunk=4)
    assert np.array_equal(again.unpack(), clean.unpack())
    assert not work.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "b.zarr"]


def test_dataset_files_record_is_checked(tiny_corpus, tmp_path):
    from napari_crystal.dataset import build_dataset, load_dataset

    build_dataset(tiny_corpus, "dev", tmp_path / "d.zarr", size=16)
    chunk = tmp_path / "d.zarr" / "table" / "top" / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[::-1])
    with pytest.raises(DatasetError, match=r"d\.zarr: damaged: table/top/c/0 differs"):
        load_dataset(tmp_path / "d.zarr")


def test_annotation_path_in_errors_is_the_users(tmp_path):
    from napari_crystal.io.nedc import read_annotation

    data = Path(__file__).parent / "data" / "example.csv"
    text = data.read_text().replace("0.502200", "-1", 1)
    (tmp_path / "x.csv").write_text(text)
    with pytest.raises(AnnotationError) as info:
        read_annotation(tmp_path / "x.csv")
    assert str(info.value).startswith(f"{tmp_path / 'x.csv'}:2: MicronsPerPixel must be")
