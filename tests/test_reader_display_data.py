"""The reader's vectorised display vertices equal the per-region ones, for any region shapes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_crystal.plugin._reader import OUTLINE_VERTICES, _display_data, _display_vertices


def _one_by_one(coords, outline):
    data = [_display_vertices(c) for c in coords]
    if outline is None:
        outline = sum(len(d) for d in data) > OUTLINE_VERTICES
    return ([np.vstack([d, d[:1]]) for d in data] if outline else data), outline


@pytest.mark.parametrize("outline", [None, True, False])
def test_display_data_matches_display_vertices(outline):
    rng = np.random.default_rng(7)
    for _ in range(400):
        # Few distinct values: repeated neighbours and closing vertices are common.
        coords = [
            rng.integers(0, 3, size=(rng.integers(1, 9), 2)).astype(np.float64)
            for _ in range(rng.integers(0, 6))
        ]
        ours, ours_outline = _display_data(coords, outline)
        expected, expected_outline = _one_by_one(coords, outline)
        assert ours_outline == expected_outline
        assert len(ours) == len(expected)
        for a, b in zip(ours, expected, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_display_data_switches_to_outlines_above_the_threshold():
    t = np.linspace(0, 2 * np.pi, 1001)[:-1]
    ring = np.column_stack([np.sin(t), np.cos(t)]) * 1000
    coords = [np.vstack([ring, ring[:1]]) + i for i in range(OUTLINE_VERTICES // 1000 + 1)]
    data, outline = _display_data(coords)
    assert outline
    assert all(len(d) == 1001 and (d[0] == d[-1]).all() for d in data)
    data, outline = _display_data(coords[:3])
    assert not outline
    assert all(len(d) == 1000 for d in data)
