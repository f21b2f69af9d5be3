"""Patch tables, the level rule, region patches and exact NEDC frame labelling."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import shapely

from napari_crystal.errors import AnnotationError, DatasetError
from napari_crystal.geometry import frame_grid, window_overlaps
from napari_crystal.patches import (
    Patch,
    PatchTable,
    choose_level,
    frame_patches,
    label_frames,
    region_patches,
)


def rect(top, left, bottom, right):
    return np.array(
        [[top, left], [top, right], [bottom, right], [bottom, left], [top, left]], float
    )


def region(i, label, coords):
    return SimpleNamespace(region_id=i, label=label, coords=np.asarray(coords, float))


def annotation(*regions, source="ann.csv"):
    return SimpleNamespace(regions=list(regions), source=source)


def fake_slide(shape=(10_000, 8_000), downsamples=(1.0, 4.0, 16.0)):
    return SimpleNamespace(path="s.svs", shape=shape, downsamples=list(downsamples))


def test_table_rows_slices_and_round_trip():
    rows = [Patch("a.svs", i, f"l{i}", i, 2 * i, 10, 20, 0, "region", i) for i in range(5)]
    table = PatchTable.from_rows(rows)
    assert len(table) == 5 and table[3] == rows[3]
    assert list(table[1:3]) == rows[1:3]
    assert list(table[np.array([4, 0])]) == [rows[4], rows[0]]
    assert PatchTable.from_columns(table.columns()) == table
    both = PatchTable.concat([table[:2], table[2:]])
    assert both == table and len(PatchTable.concat([])) == 0
    assert table.top.dtype == np.int64 and table.label.dtype.kind == "U"


def test_level_rule_picks_coarsest_level_still_at_least_size():
    ds = [1.0, 4.0, 16.0]
    assert choose_level(ds, 5000, 3000, 256) == 1  # 3000/16 < 256 <= 3000/4
    assert choose_level(ds, 10000, 4096, 256) == 2  # 4096/16 == 256
    assert choose_level(ds, 200, 900, 256) == 0  # smaller than size: level 0
    assert choose_level(ds, 1024, 1024, 256) == 1


def test_region_patches_bounding_boxes_clipped_and_level():
    ann = annotation(
        region(7, "dcis", rect(10, 20, 30, 60)),
        region(8, "bckg", rect(-50, 7900, 4500, 8300)),  # sticks out top and right
    )
    table = region_patches(fake_slide(), ann, size=256)
    a, b = table[0], table[1]
    assert (a.region_id, a.label, a.kind, a.index) == (7, "dcis", "region", 0)
    assert (a.top, a.left, a.height, a.width, a.level) == (10, 20, 21, 41, 0)
    assert (b.top, b.left, b.height, b.width) == (0, 7900, 4501, 100)
    assert b.slide == "s.svs" and b.level == 0  # 100 px wide: no coarser level serves


def test_region_wholly_outside_the_slide_names_file_and_region():
    """Just past the edge (within the bounds tolerance): no patch to make; far past it: the
    annotation does not belong to this slide (`check_annotation_bounds`)."""
    ann = annotation(
        region(1, "norm", rect(5, 5, 9, 9)), region(42, "indc", rect(10_100, 5, 10_200, 50))
    )
    with pytest.raises(
        DatasetError, match=r"ann\.csv: region 42 \(#1, indc\) lies wholly outside"
    ):
        region_patches(fake_slide(), ann)
    far = annotation(region(42, "indc", rect(20_000, 5, 20_100, 50)))
    with pytest.raises(AnnotationError, match=r"ann\.csv: region 42 .*outside the slide"):
        region_patches(fake_slide(), far)


def shapely_labels(polygons, shape, frame, window, threshold):
    """The per-frame, per-region shapely loop (NEDC's student tools), same tie tolerance."""
    n_rows, n_cols, margin = frame_grid(shape, frame, window)
    shapes = [shapely.Polygon(p[:, ::-1]) for p in polygons]
    need = threshold * window * window * (1 - 1e-9)
    out = np.full((n_rows, n_cols), -1)
    for r in range(n_rows):
        for c in range(n_cols):
            box = shapely.box(c * frame - margin, r * frame - margin,
                              c * frame - margin + window, r * frame - margin + window)  # fmt: skip
            for k, poly in enumerate(shapes):
                if box.intersection(poly).area >= need:
                    out[r, c] = k
                    break
    return out


def test_first_region_in_file_order_wins_and_ties_count():
    shape = (1000, 1000)  # 4 x 4 frames of 250, windows of 500 starting at -125
    big = rect(-125, -125, 875, 875)  # covers windows (0..2, 0..2) whole
    half = rect(-125, 375, 125, 875)  # exactly half of window (0, 2), a quarter of (0, 3)
    labels = label_frames([half, big], shape)
    assert labels[0, 2] == 0  # tie at 0.5 counts, and the first region wins
    assert labels[0, 3] == 1  # half of it under `big`, a quarter under `half`
    assert labels[1, 1] == 1 and labels[3, 3] == -1  # (3, 3): a quarter under `big`
    assert label_frames([big, half], shape)[0, 2] == 0  # now the big one is first
    np.testing.assert_array_equal(labels, shapely_labels([half, big], shape, 250, 500, 0.5))


def test_region_smaller_than_threshold_area_never_labels():
    tiny = rect(100, 100, 200, 200)
    assert (label_frames([tiny], (1000, 1000)) == -1).all()
    assert label_frames([tiny], (1000, 1000), threshold=0.04)[0, 0] == 0


def test_exact_overlaps_and_labels_match_shapely_on_random_polygons():
    rng = np.random.default_rng(3)
    shape, polygons = (3000, 3500), []
    while len(polygons) < 25:
        n = int(rng.integers(3, 30))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(200, 1200) * rng.uniform(0.4, 1, n)
        centre = rng.uniform(-300, 3800, 2)
        p = np.round(np.stack([centre[0] + rad * np.sin(ang), centre[1] + rad * np.cos(ang)], 1))
        if rng.random() < 0.5:
            p = p[::-1]  # both orientations
        if shapely.Polygon(p[:, ::-1]).is_valid:
            polygons.append(p)
    (r0, r1), (c0, c1), areas = window_overlaps(polygons[0], shape)
    _, _, margin = frame_grid(shape)
    poly = shapely.Polygon(polygons[0][:, ::-1])
    for r in range(r0, r1):
        for c in range(c0, c1):
            box = shapely.box(c * 250 - margin, r * 250 - margin, c * 250 + 375, r * 250 + 375)
            assert areas[r - r0, c - c0] == pytest.approx(box.intersection(poly).area, abs=1e-6)
    for frame, window, threshold in [(250, 500, 0.5), (500, 1000, 0.05), (200, 450, 0.3)]:
        ours = label_frames(polygons, shape, frame, window, threshold)
        ref = shapely_labels(polygons, shape, frame, window, threshold)
        np.testing.assert_array_equal(ours, ref)


def test_frame_patches_rows_boxes_and_labels():
    ann = annotation(region(5, "indc", rect(-125, -125, 875, 875)))
    table = frame_patches(ann, (1000, 1100), slide="s.svs", downsamples=[1.0, 2.0], size=200)
    assert len(table) == 4 * 5  # frames cover the whole slide
    first, last = table[0], table[len(table) - 1]
    assert (first.top, first.left, first.height, first.width) == (-125, -125, 500, 500)
    assert (first.label, first.region_id, first.kind, first.index) == ("indc", 5, "frame", 0)
    assert (last.label, last.region_id, last.top, last.left) == ("", -1, 625, 875)
    assert first.level == 1  # 500 / 2 >= 200
    # 3 x 3 windows wholly inside, 3 + 3 half inside (ties count), the corner a quarter
    assert (table.label == "indc").sum() == 15
