"""Annotating rules without a viewer: class keys, region ids, colours, measurements, views."""

from __future__ import annotations

import numpy as np
import pytest

from napari_crystal import annotate, palette
from napari_crystal.geometry import polygon_area, polygon_length


def test_class_keys_follow_the_palette_then_zero():
    keys = annotate.class_keys()
    assert list(keys) == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
    assert keys["1"] == "bckg" and keys["8"] == "dcis" and keys["9"] == "indc"
    assert keys["0"] == "cnno"
    assert annotate.key_of("dcis", keys) == "8"
    assert annotate.key_of("cidc", keys) == ""  # no key: one click in the class list
    assert annotate.class_keys(["dcis", "indc"]) == {"1": "dcis", "2": "indc"}


@pytest.mark.parametrize(
    "classes, reason",
    [(list(palette.LABELS), "at most 10"), (["dcis", "dcis"], "only one key")],
)
def test_class_keys_refuse_too_many_or_repeated_classes(classes, reason):
    with pytest.raises(ValueError, match=reason):
        annotate.class_keys(classes)


def test_region_ids_made_unique_keeping_first_uses():
    # every drawn shape used to get id 0: the first keeps it, the others get new ids
    assert annotate.assign_region_ids([0, 0, 0]).tolist() == [0, 1, 2]
    assert annotate.assign_region_ids([3, None, 1, 3, float("nan"), "x"]).tolist() == [
        3,
        4,
        1,
        5,
        6,
        7,
    ]
    assert annotate.assign_region_ids([]).tolist() == []
    assert annotate.assign_region_ids([None, None]).tolist() == [1, 2]
    assert annotate.assign_region_ids([2.0, 5]).dtype == np.int64


def test_class_colours_are_the_palette():
    colours = annotate.class_colours(["dcis", "bckg", "dcis", "nonsense"], alpha=0.25)
    np.testing.assert_allclose(colours[0], palette.rgba("dcis", 0.25))
    np.testing.assert_allclose(colours[1], palette.rgba("bckg", 0.25))
    np.testing.assert_allclose(colours[2], colours[0])
    np.testing.assert_allclose(colours[3], palette.rgba(palette.UNKNOWN, 0.25))
    assert annotate.class_colours([]).shape == (0, 4)


def test_measurements_match_the_geometry_module_in_microns():
    rng = np.random.default_rng(1)
    square = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], float)
    closed = np.vstack([square, square[:1]]) + 100  # a closing vertex is not a vertex
    blob = rng.uniform(0, 500, size=(17, 2))
    table = annotate.measurements([square, closed, blob], ["dcis", "bckg", "indc"], [1, 2, 7], 0.5)
    assert list(table.columns) == list(annotate.MEASUREMENT_COLUMNS)
    assert table["region_id"].tolist() == [1, 2, 7]
    assert table["class"].tolist() == ["dcis", "bckg", "indc"]
    assert table["vertices"].tolist() == [4, 4, 17]
    np.testing.assert_allclose(table["area_um2"][:2], [100 * 0.25] * 2)
    np.testing.assert_allclose(table["perimeter_um"][:2], [40 * 0.5] * 2)
    np.testing.assert_allclose(table["area_um2"][2], polygon_area(blob) * 0.25)
    np.testing.assert_allclose(table["perimeter_um"][2], polygon_length(blob) * 0.5)


def test_measurements_without_pixel_size_say_pixels():
    table = annotate.measurements([np.array([[0, 0], [0, 4], [3, 0]], float)], ["x"], [1], None)
    assert list(table.columns) == ["region_id", "class", "area_px2", "perimeter_px", "vertices"]
    assert table["area_px2"][0] == pytest.approx(6.0)
    assert table["perimeter_px"][0] == pytest.approx(12.0)
    assert len(annotate.measurements([], [], [], 0.5)) == 0


def test_view_for_fits_the_region_with_a_margin():
    region = np.array([[100, 200], [100, 600], [300, 600], [300, 200]], float)
    centre, zoom = annotate.view_for(region, (500, 800), margin=0.25)
    np.testing.assert_allclose(centre, [200, 400])
    # 200 x 400 with 25% on each side: 300 x 600 in a 500 x 800 view
    assert zoom == pytest.approx(min(500 / 300, 800 / 600))
