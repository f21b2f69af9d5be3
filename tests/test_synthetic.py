"""The synthetic NEDC corpus: layout, class counts, Aperio slides, annotations aligned with texture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_crystal.io.nedc import read_annotation
from napari_crystal.io.slide import open_slide
from napari_crystal.palette import CRYSTAL_LABELS, LABELS, NEDC_LABELS
from napari_crystal.synthetic import PRESETS, corpus_plan, generate_corpus, generate_slide


def _slides(corpus, split):
    return sorted((corpus / split).glob("*.svs"))


def test_tiny_layout_and_counts(tiny_corpus):
    info = json.loads((tiny_corpus / "SYNTHETIC.json").read_text())
    assert info["preset"] == "tiny" and info["seed"] == 42
    total = 0
    for split in ("train", "dev", "eval"):
        slides = _slides(tiny_corpus, split)
        assert slides, split
        labels = []
        for svs in slides:
            assert svs.with_suffix(".csv").is_file() and svs.with_suffix(".xml").is_file()
            labels += [r.label for r in read_annotation(svs.with_suffix(".csv")).regions]
        counts = {label: labels.count(label) for label in set(labels)}
        assert counts == PRESETS["tiny"].counts[split] == info["splits"][split]["regions"]
        total += len(labels)
    assert set(PRESETS["tiny"].counts["train"]) == set(LABELS)  # all 12 classes to train on
    assert set(PRESETS["tiny"].counts["eval"]) <= set(NEDC_LABELS)  # eval: the 9 NEDC labels
    assert 100 <= total <= 200
    assert 4 <= sum(len(_slides(tiny_corpus, s)) for s in ("train", "dev", "eval")) <= 8


def test_slides_are_aperio_pyramids(tiny_corpus):
    svs = _slides(tiny_corpus, "train")[0]
    with tifffile.TiffFile(svs) as tif:
        assert tif.is_svs
        assert tif.pages[0].compression == 7  # JPEG tiles
        assert tif.pages[0].is_tiled
        assert "MPP = 0.4990" in tif.pages[0].description
    with open_slide(svs) as slide:
        assert len(slide.levels) >= 3
        assert slide.mpp == pytest.approx(0.499)
        assert slide.downsamples[:3] == [1.0, 4.0, 16.0]
        ann = read_annotation(svs.with_suffix(".csv"))
        assert (ann.height, ann.width) == slide.shape
        assert ann.mpp == pytest.approx(slide.mpp)


def test_csv_and_xml_agree(tiny_corpus):
    svs = _slides(tiny_corpus, "eval")[0]
    a = read_annotation(svs.with_suffix(".csv"))
    b = read_annotation(svs.with_suffix(".xml"))
    assert [r.label for r in a.regions] == [r.label for r in b.regions]
    for ra, rb in zip(a.regions, b.regions, strict=True):
        np.testing.assert_array_equal(ra.coords, rb.coords)
        assert ra.region_id == rb.region_id
        np.testing.assert_array_equal(ra.coords[0], ra.coords[-1])  # closed, as NEDC writes


def _inside_stats(slide, region, shift=(0, 0)):
    """Share of very dark (nucleus/calcification) pixels under the polygon, optionally shifted."""
    from PIL import Image, ImageDraw

    coords = region.coords + np.asarray(shift, float)
    top, left = np.floor(coords.min(axis=0)).astype(int)
    bottom, right = np.ceil(coords.max(axis=0)).astype(int) + 1
    rgb = slide.read_region(0, top, left, bottom - top, right - left).astype(float)
    img = Image.new("1", (right - left, bottom - top), 0)
    ImageDraw.Draw(img).polygon([(c - left, r - top) for r, c in coords], fill=1)
    inside = np.asarray(img, bool)
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    return float((grey[inside] < 95).mean())


def test_annotations_align_with_class_texture(tiny_corpus):
    """Crystal regions are full of dark calcifications under their polygons, and only there."""
    dark: dict[str, list[float]] = {}
    moved: list[float] = []
    for svs in _slides(tiny_corpus, "train"):
        ann = read_annotation(svs.with_suffix(".csv"))
        with open_slide(svs) as slide:
            for region in ann.regions:
                dark.setdefault(region.label, []).append(_inside_stats(slide, region))
                if region.label in CRYSTAL_LABELS:
                    moved.append(_inside_stats(slide, region, shift=(0, 300)))
    crystal = np.median([v for k in CRYSTAL_LABELS for v in dark[k]])
    plain = np.median(dark["bckg"] + dark["norm"] + dark["null"])
    assert crystal > 0.15
    assert crystal > 3 * plain
    assert np.median(moved) < crystal / 3  # off by 300 px, the texture is gone


def test_fcbr_preset_follows_the_study():
    """fcbr: 2,243 training patches (1,850 without crystals), 18,224 eval, crystals 51:168:220."""
    counts = PRESETS["fcbr"].counts
    train = counts["train"]
    assert sum(train.values()) == 2243
    assert sum(v for k, v in train.items() if k not in CRYSTAL_LABELS) == 1850
    assert sum(counts["eval"].values()) == 18224
    assert set(counts["eval"]) == set(NEDC_LABELS)
    crystals = [train[k] + counts["dev"][k] for k in CRYSTAL_LABELS]
    assert crystals == [51, 168, 220]
    for parent, child in (("nneo", "cnno"), ("dcis", "cdcs"), ("indc", "cidc")):
        assert train[parent] < train[child]  # crystals add most of the parents' examples
    plan = corpus_plan("fcbr")
    assert sum(len(s.labels) for s in plan["eval"]) == 18224
    plain = [s for s in plan["eval"] if not any(s.sizes)]  # slides grow only for large regions
    assert plain and all(s.shape[0] <= 6144 and s.shape[1] <= 8192 for s in plain)


def test_deterministic_for_a_seed(tmp_path):
    labels = ["bckg", "indc", "cdcs", "norm"]
    a = generate_slide(tmp_path / "a" / "s.svs", labels, (1024, 1280), seed=5)
    b = generate_slide(tmp_path / "b" / "s.svs", labels, (1024, 1280), seed=5)
    c = generate_slide(tmp_path / "c" / "s.svs", labels, (1024, 1280), seed=6)
    assert (tmp_path / "a" / "s.svs").read_bytes() == (tmp_path / "b" / "s.svs").read_bytes()
    assert (tmp_path / "a" / "s.csv").read_bytes() == (tmp_path / "b" / "s.csv").read_bytes()
    assert [r.label for r in a.regions] == labels
    assert all(
        np.array_equal(x.coords, y.coords) for x, y in zip(a.regions, b.regions, strict=True)
    )
    assert not all(
        np.array_equal(x.coords, y.coords) for x, y in zip(a.regions, c.regions, strict=True)
    )
    assert corpus_plan("small", 1) == corpus_plan("small", 1)


def test_progress_and_bad_preset(tmp_path):
    from napari_crystal.synthetic import Preset

    mini = Preset(
        "mini",
        {"train": {"dcis": 1, "cdcs": 1}, "dev": {"bckg": 1}, "eval": {"indc": 2}},
        slide_shape=(1024, 1024),
        cell=256,
        regions_per_slide=4,
    )
    calls = []
    out = generate_corpus(
        tmp_path / "mini", preset=mini, seed=1, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1] > 0
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(list(out.rglob("*.svs"))) == 4  # train, dev, eval and the matched/ pool
    assert len(list((out / "matched").glob("*.svs"))) == 1
    assert not list(out.rglob(".pyramid-*"))  # no temporary files left behind
    with pytest.raises(ValueError, match="unknown preset"):
        generate_corpus(tmp_path / "x", preset="huge")


def test_synth_command(tmp_path, monkeypatch, capsys):
    from napari_crystal import synthetic
    from napari_crystal.cli import main

    mini = synthetic.Preset(
        "tiny",
        {"train": {"cidc": 1, "norm": 1}, "dev": {"infl": 1}, "eval": {"null": 1}},
        slide_shape=(1024, 1024),
        cell=256,
        regions_per_slide=4,
    )
    monkeypatch.setitem(synthetic.PRESETS, "tiny", mini)
    assert main(["synth", str(tmp_path / "c"), "--preset", "tiny", "--seed", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train: 1 slides, 2 regions" in out and "wrote" in out
    assert len(list((tmp_path / "c").rglob("*.xml"))) == 4  # with the matched/ pool
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path / "d"), "--preset", "enormous"])
