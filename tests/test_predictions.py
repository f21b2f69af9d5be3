"""The overlay's core: class rasters of predictions aligned with level 0, hover lookup, matching."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_crystal import palette
from napari_crystal.errors import DatasetError, ModelError
from napari_crystal.patches import PatchTable, frame_patches
from napari_crystal.predictions import (
    build_prediction_map,
    check_classes,
    class_indices,
    infer_frame,
    region_polygons,
    rows_of_slide,
)

SHAPE = (1000, 1500)  # 4 x 6 frames of 250


def _frames(labels=None):
    table = frame_patches([], SHAPE, frame=250, window=500, slide="/data/s.svs")
    if labels is not None:
        table.label = np.asarray(labels, dtype=str)
    return table


def _region_table(boxes, labels, slide="/data/s.svs"):
    n = len(boxes)
    return PatchTable(
        slide=[slide] * n, region_id=[10 + i for i in range(n)], label=labels,
        top=[b[0] for b in boxes], left=[b[1] for b in boxes], height=[b[2] for b in boxes],
        width=[b[3] for b in boxes], level=[0] * n, kind=["region"] * n, index=range(n),
    )  # fmt: skip


def test_frame_maps_hold_classes_at_frame_positions():
    table = _frames()
    n = len(table)
    assert n == 24
    truth = np.array(["nneo"] * n, dtype=object)
    truth[5] = ""  # unlabelled frame
    predicted = np.array(["nneo"] * n, dtype=object)
    predicted[7] = "indc"  # frame row 1, col 1: an error
    predicted[5] = "dcis"
    classes = ("dcis", "indc", "nneo")
    proba = np.zeros((n, 3), dtype=np.float32)
    proba[:, 2] = 1
    proba[7] = (0.1, 0.7, 0.2)
    m = build_prediction_map(table, predicted, truth, proba, classes, shape=SHAPE)
    assert m.predicted_map.shape == (4, 6) and m.scale == (250.0, 250.0)
    assert m.translate == (124.5, 124.5)
    nneo, indc, dcis = (palette.class_index(c) for c in ("nneo", "indc", "dcis"))
    assert m.predicted_map[1, 1] == indc and m.predicted_map[0, 0] == nneo
    assert m.predicted_map[0, 5] == dcis and m.truth_map[0, 5] == 0
    assert m.errors_map[1, 1] == nneo  # the true class of the wrong frame
    assert np.count_nonzero(m.errors_map) == 1  # unlabelled frame 5 is not an error
    # hover: level-0 pixel (260, 499) lies in frame (1, 1); (249.4, 0) still in frame (0, 0)
    info = m.info_at(260, 499)
    assert info.row == 7 and info.truth == "nneo" and info.predicted == "indc"
    assert info.proba == pytest.approx({"dcis": 0.1, "indc": 0.7, "nneo": 0.2})
    assert "true nneo, predicted indc" in info.text()
    assert m.info_at(249.4, 0).row == 0 and m.info_at(250, 0).row == 6
    assert m.info_at(-5, 0) is None and m.info_at(0, 1500) is None
    assert m.error_counts() == {"nneo": 1}


def test_frame_size_is_inferred_from_a_subset_of_frames():
    table = _frames()
    keep = np.zeros(len(table), dtype=bool)
    keep[[0, 2, 13, 23]] = True
    sub = table[keep]
    assert infer_frame(sub) == 250
    m = build_prediction_map(sub, ["dcis"] * 4, ["dcis"] * 4, shape=SHAPE)
    assert np.argwhere(m.predicted_map).tolist() == [[0, 0], [0, 2], [2, 1], [3, 5]]


def test_region_maps_fill_polygons_and_nested_regions_show_inner():
    # a big bckg square containing a small dcis triangle; a separate indc square
    big = np.array([[0, 0], [0, 400], [400, 400], [400, 0]], float)
    tri = np.array([[100, 100], [100, 300], [300, 100]], float)
    sq = np.array([[500, 600], [500, 900], [800, 900], [800, 600]], float)
    table = _region_table(
        [(0, 0, 401, 401), (100, 100, 201, 201), (500, 600, 301, 301)], ["bckg", "dcis", "indc"]
    )
    m = build_prediction_map(
        table, ["bckg", "indc", "indc"], ["bckg", "dcis", "indc"], polygons=[big, tri, sq],
        shape=SHAPE, max_side=500,
    )  # fmt: skip
    assert m.raster.scale == 3.0 and m.predicted_map.shape == (334, 500)
    ci = palette.class_index
    at = lambda r, c: (m.predicted_map[r // 3, c // 3], m.errors_map[r // 3, c // 3])  # noqa: E731
    assert at(120, 120) == (ci("indc"), ci("dcis"))  # inside the triangle: wrong, true dcis
    assert at(280, 280) == (ci("bckg"), 0)  # outside the triangle, inside the big square
    assert at(650, 750) == (ci("indc"), 0)
    assert at(900, 100) == (0, 0)
    assert m.info_at(120, 120).region_id == 11 and m.info_at(650, 750).region_id == 12
    assert m.info_at(280, 280).region_id == 10
    # the truth map shows the true classes in the same places
    assert m.truth_map[40, 40] == ci("dcis") and m.truth_map[200, 230] == ci("indc")


def test_tiny_region_keeps_a_pixel_and_boxes_without_polygons():
    table = _region_table([(10, 10, 2, 2), (100, 100, 50, 50)], ["dcis", "indc"])
    m = build_prediction_map(table, ["dcis", "nneo"], ["dcis", "indc"], shape=(2000, 2000),
                             max_side=100)  # fmt: skip
    assert m.raster.scale == 20.0
    assert m.predicted_map[0, 0] == palette.class_index("dcis")
    assert m.errors_map[5:8, 5:8].tolist() == [[palette.class_index("indc")] * 3] * 3


def test_twenty_thousand_frames():
    shape = (100 * 250, 200 * 250)
    table = frame_patches([], shape, 250, 500)
    rng = np.random.default_rng(0)
    labels = np.array(palette.NEDC_LABELS)
    truth, pred = labels[rng.integers(0, 9, len(table))], labels[rng.integers(0, 9, len(table))]
    m = build_prediction_map(table, pred, truth, shape=shape)
    assert len(table) == 20_000 and m.predicted_map.shape == (100, 200)
    assert (m.errors_map != 0).sum() == (truth != pred).sum()
    wrong = np.flatnonzero(truth != pred)[:50]
    assert all(m.info_at(table.top[i] + 250, table.left[i] + 250).row == i for i in wrong)


def test_class_indices_and_unknown_labels():
    assert class_indices(["", "nneo", "weird", "nneo"]).tolist() == [
        0, palette.class_index("nneo"), palette.UNKNOWN_INDEX, palette.class_index("nneo"),
    ]  # fmt: skip


def test_rows_of_slide_matches_path_then_name_and_rejects_others(tmp_path):
    table = _region_table([(0, 0, 10, 10), (5, 5, 10, 10)], ["dcis", "indc"])
    table.slide = np.array(["/data/s.svs", "/data/t.svs"])
    assert rows_of_slide(table, "/data/s.svs").tolist() == [True, False]
    assert rows_of_slide(table, tmp_path / "t.svs").tolist() == [False, True]  # moved corpus
    with pytest.raises(DatasetError, match="no patches of slide u.svs.*s.svs, t.svs"):
        rows_of_slide(table, "/data/u.svs", dataset="ds.zarr")
    with pytest.raises(DatasetError, match="another slide of that name"):
        rows_of_slide(table, "/data/s.svs", shape=(8, 8))


def test_region_polygons_refuse_a_foreign_annotation():
    table = _region_table([(0, 0, 10, 10)], ["dcis"])
    poly = np.array([[0, 0], [0, 9], [9, 9]], float)
    good = SimpleNamespace(regions=[SimpleNamespace(region_id=10, label="dcis", coords=poly)])
    assert np.array_equal(region_polygons(table, good)[0], poly)
    bad = SimpleNamespace(regions=[SimpleNamespace(region_id=3, label="nneo", coords=poly)])
    with pytest.raises(DatasetError, match="do not belong together"):
        region_polygons(table, bad, where="x.csv")
    with pytest.raises(DatasetError, match="has 0 regions"):
        region_polygons(table, SimpleNamespace(regions=[]), where="x.csv")


def test_check_classes():
    model = SimpleNamespace(classes=("dcis", "indc", "nneo"), path="m.skops")
    assert check_classes(model, ["dcis", "bckg", ""]) == ["bckg"]
    with pytest.raises(ModelError, match="m.skops: model classes .* no class in common"):
        check_classes(model, ["bckg", "norm"])
