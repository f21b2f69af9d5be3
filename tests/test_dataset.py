"""Datasets on the tiny corpus: build, packed round trip, bad input, resume and skip."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_crystal import dataset as masks
from napari_crystal.dataset import build_dataset, dataset_for_slide, load_dataset, save_dataset
from napari_crystal.errors import AnnotationError, Cancelled, DatasetError
from napari_crystal.io import nedc
from napari_crystal.io.slide import open_slide
from napari_crystal.masks import make_mask
from napari_crystal.patches import LEVEL_RULE, PatchTable, choose_level


@pytest.fixture
def dev(tiny_corpus, tmp_path) -> Path:
    """A private copy of the tiny corpus's dev split (tests may break it)."""
    out = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "dev", out / "dev")
    return out


@pytest.fixture(scope="module")
def reference(tiny_corpus, tmp_path_factory):
    """The dev split built once, uninterrupted, with default settings."""
    out = tmp_path_factory.mktemp("ref") / "dev.zarr"
    calls: list[tuple[int, int]] = []
    ds = build_dataset(tiny_corpus, "dev", out, progress=lambda d, t: calls.append((d, t)))
    return ds, out, calls


def test_build_round_trip_and_contents(tiny_corpus, reference):
    ds, out, calls = reference
    slides = sorted((tiny_corpus / "dev").glob("*.svs"))
    anns = [nedc.read_annotation(nedc.find_annotation(s)) for s in slides]
    labels = [r.label for a in anns for r in a.regions]
    assert len(ds) == len(labels) > 0 and list(ds.labels) == labels
    assert calls[-1] == (len(ds), len(ds))
    assert not out.with_name(out.name + ".work").exists()  # the work folder is cleaned up
    loaded = load_dataset(out)
    assert isinstance(loaded.packed, zarr.Array)  # lazy: rows are read when sliced
    assert loaded.packed.shape == (len(ds), 256 * 256 // 8) and loaded.packed.dtype == np.uint8
    assert loaded.table == ds.table
    np.testing.assert_array_equal(loaded.packed[3:7], np.asarray(ds.packed[3:7]))
    meta = loaded.meta
    assert (meta["method"], meta["size"], meta["split"], meta["version"]) == (
        "threshold", 256, "dev", masks.VERSION)  # fmt: skip
    assert meta["level_rule"] == LEVEL_RULE and meta["corpus"] == str(tiny_corpus.resolve())
    # a stored row is the mask of its patch, and masks are not trivially empty
    p = loaded.table[5]
    with open_slide(p.slide) as slide:
        expected = make_mask(slide, p, anns[0].regions[p.index].coords)
    np.testing.assert_array_equal(loaded.mask(5), expected)
    feats = np.concatenate([f for _, f in loaded.iter_features(chunk=4)])
    assert feats.shape == (len(ds), 65536) and 0 < feats.mean() < 1


def test_single_slide_dataset_picks_coarser_levels_and_saves(tiny_corpus, tmp_path):
    slide_path = sorted((tiny_corpus / "dev").glob("*.svs"))[0]
    ann = nedc.read_annotation(nedc.find_annotation(slide_path))
    ticks: list[tuple[int, int]] = []
    with open_slide(slide_path) as slide:
        ds = dataset_for_slide(slide, ann, "polygon", size=32, progress=lambda *a: ticks.append(a))
        downsamples = list(slide.downsamples)
    assert ticks[-1] == (len(ann.regions), len(ann.regions))
    t = ds.table
    expected_levels = [
        choose_level(downsamples, h, w, 32) for h, w in zip(t.height, t.width, strict=True)
    ]
    assert list(t.level) == expected_levels and max(expected_levels) > 0
    assert all(ds.mask(i).any() for i in range(len(ds)))
    path = save_dataset(ds, tmp_path / "one.zarr")
    back = load_dataset(path)
    assert back.table == ds.table and back.method == "polygon" and back.size == 32
    np.testing.assert_array_equal(back.packed[:], ds.packed)


def test_corpus_without_annotations(dev, tmp_path):
    for f in (dev / "dev").iterdir():
        if f.suffix in (".csv", ".xml"):
            f.unlink()
    with pytest.raises(DatasetError, match="no NEDC annotations"):
        build_dataset(dev, "dev", tmp_path / "x.zarr")
    with pytest.raises(DatasetError, match="no such corpus folder"):
        build_dataset(dev, "train", tmp_path / "x.zarr")


def test_slide_without_annotation_is_named_before_any_work(dev, tmp_path):
    svs = next((dev / "dev").glob("*.svs"))
    shutil.copy(svs, dev / "dev" / "zz_extra.svs")
    with pytest.raises(DatasetError, match=r"zz_extra\.svs: no annotation"):
        build_dataset(dev, "dev", tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr.work").exists() and not (tmp_path / "x.zarr").exists()


def test_region_outside_the_slide(dev, tmp_path):
    csv = next((dev / "dev").glob("*.csv"))
    lines = csv.read_text().splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("index,")][0]
    cols = lines[header].split(",")
    row_col, idx_col = cols.index("row"), cols.index("index")
    for i in range(header + 1, len(lines)):
        parts = lines[i].split(",")
        if len(parts) == len(cols) and parts[idx_col] == "1":
            parts[row_col] = str(int(float(parts[row_col])) + 500_000)
            lines[i] = ",".join(parts)
    csv.write_text("\n".join(lines) + "\n")
    csv.with_suffix(".xml").unlink(missing_ok=True)
    # 500,000 rows down is far beyond the slide: the annotation's line is named (bounds check)
    with pytest.raises(
        AnnotationError,
        match=rf"{csv.name}:\d+: region \d+ \('\w+', #1\) has a vertex .* outside the slide",
    ):
        build_dataset(dev, "dev", tmp_path / "x.zarr")


def test_not_a_dataset(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a napari-crystal dataset"):
        load_dataset(tmp_path / "notes")
    ds = masks.Dataset(PatchTable.from_rows([]), np.zeros((0, 2), np.uint8), 4, "polygon")
    with pytest.raises(DatasetError, match="not overwriting"):
        save_dataset(ds, tmp_path / "notes")
    with pytest.raises(DatasetError, match="not overwriting"):
        build_dataset(tmp_path, None, tmp_path / "notes")  # refused before any work
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def counting(monkeypatch) -> list:
    """Count (and still run) the per-chunk dask tasks."""
    calls: list = []
    real = masks._build_part

    def wrapper(*args):
        calls.append(args[6])
        return real(*args)

    monkeypatch.setattr(masks, "_build_part", wrapper)
    return calls


def test_interrupted_build_resumes_and_matches(dev, tmp_path, reference, monkeypatch):
    out = tmp_path / "dev.zarr"
    stop = threading.Event()

    def progress(done, total):
        if done > 0:
            stop.set()  # interrupt after the first finished chunk

    with pytest.raises(Cancelled):
        build_dataset(dev, "dev", out, progress=progress, scheduler="sync", cancel=stop, chunk=4)
    parts = sorted(out.with_name("dev.zarr.work").glob("*.npz"))
    assert 1 <= len(parts) < 5 and not out.exists()
    calls = counting(monkeypatch)
    ds = build_dataset(dev, "dev", out, scheduler="sync", chunk=4)
    n_parts = -(-len(ds) // 4)  # one slide in dev
    assert len(calls) == n_parts - len(parts)  # finished chunks were not redone
    ref, _, _ = reference
    assert ds.table.label.tolist() == ref.table.label.tolist()
    np.testing.assert_array_equal(ds.packed[:], ref.packed[:])


def test_unchanged_rebuild_is_skipped_changed_inputs_rebuild(dev, tmp_path, monkeypatch):
    out = tmp_path / "dev.zarr"
    build_dataset(dev, "dev", out, method="polygon", size=64)
    calls = counting(monkeypatch)
    ticks: list = []
    again = build_dataset(
        dev, "dev", out, method="polygon", size=64, progress=lambda *a: ticks.append(a)
    )
    assert calls == [] and ticks == [(len(again), len(again))]
    csv = next((dev / "dev").glob("*.csv"))
    st = csv.stat()
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # annotation touched
    build_dataset(dev, "dev", out, method="polygon", size=64)
    assert len(calls) > 0
    calls.clear()
    rebuilt = build_dataset(dev, "dev", out, method="polygon", size=32)  # another mask size
    assert len(calls) > 0 and rebuilt.size == 32 and load_dataset(out).size == 32
