"""Prediction overlay for 20,000 frame patches: Labels images vs a Shapes layer of rectangles.

Both are built and drawn for the first time in one shown viewer (Xvfb through
pyvirtualdisplay when no DISPLAY is set): the project's way is `add_prediction_overlay`
(prediction, truth and error Labels layers plus controls); the baseline is one Shapes layer
with a coloured rectangle per patch, the naive way the issue warns against. "First draw" is
the time until the canvas has been rendered (``viewer.screenshot`` forces the render).
"""

from __future__ import annotations

import time

import numpy as np
from scripts._screen import screen

from napari_crystal import palette

# Build + first draw at least this many times faster than the shapes, and under TARGET_SECONDS.
# The overlay's time is mostly napari's fixed cost of adding three layers (about 0.2-0.7 s each
# depending on load), not the patches: the class maps themselves take milliseconds.
TARGET_RATIO = 5.0
TARGET_SECONDS = 3.0


def patches(n_rows: int, n_cols: int, seed: int = 0):
    """Frame patches of an (n_rows x n_cols)-frame slide, random truth and noisy predictions."""
    from napari_crystal.patches import frame_patches

    shape = (n_rows * 250, n_cols * 250)
    table = frame_patches([], shape, frame=250, window=500)
    rng = np.random.default_rng(seed)
    labels = np.array(palette.NEDC_LABELS)
    truth = labels[rng.integers(0, len(labels), len(table))]
    predicted = np.where(
        rng.random(len(table)) < 0.6, truth, labels[rng.integers(0, 9, len(table))]
    )
    proba = rng.dirichlet(np.ones(len(labels)), len(table)).astype(np.float32)
    return shape, table, predicted, truth, proba, tuple(labels)


def timed_once(fn, *args) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _draw(viewer) -> None:
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    viewer.screenshot(canvas_only=True, flash=False)


def run(record, quick: bool = False) -> None:
    """Record build + first draw time of the overlay against 20,000 rectangles."""
    import napari

    from napari_crystal.plugin.widgets.overlay import add_prediction_overlay, class_colormap

    n_rows, n_cols = (50, 100) if quick else (100, 200)
    shape, table, predicted, truth, proba, classes = patches(n_rows, n_cols)
    n = len(table)
    from napari_crystal.predictions import build_prediction_map

    t_map = min(
        timed_once(build_prediction_map, table, predicted, truth, proba, classes, None, shape)
        for _ in range(3)
    )
    with screen((1400, 900)):
        viewer = napari.Viewer(show=True)
        try:
            viewer.window.resize(1400, 900)
            viewer.add_image(np.full((n_rows, n_cols, 3), 235, np.uint8), rgb=True, scale=(250, 250),
                             name="slide stand-in")  # fmt: skip
            # warm up: first-use imports and shader compilation of both layer types are not timed
            for warm in (
                viewer.add_labels(np.ones((2, 2), np.uint8), colormap=class_colormap()),
                viewer.add_shapes([[[0, 0], [1, 1]]], shape_type="rectangle"),
            ):
                _draw(viewer)
                viewer.layers.remove(warm)
            _draw(viewer)

            start = time.perf_counter()
            controls = add_prediction_overlay(
                viewer, table, predicted, truth, proba, classes, shape=shape, dock=False
            )
            built = time.perf_counter()
            _draw(viewer)
            t_build, t_ours = built - start, time.perf_counter() - start
            for layer in controls.layers:
                viewer.layers.remove(layer)
            _draw(viewer)

            start = time.perf_counter()
            tops, lefts = table.top + 125, table.left + 125
            rects = np.stack(
                [np.stack([tops, lefts], 1), np.stack([tops + 250, lefts + 250], 1)], 1
            ).astype(float)
            colours = np.array([palette.rgba(c, 0.55) for c in predicted])
            viewer.add_shapes(list(rects), shape_type="rectangle", face_color=colours,
                              edge_width=0, name="prediction shapes")  # fmt: skip
            built_b = time.perf_counter()
            _draw(viewer)
            t_build_b, t_base = built_b - start, time.perf_counter() - start
        finally:
            viewer.close()
    ratio = t_base / t_ours
    record(
        f"prediction overlay ({n} frame patches): build + first draw",
        f"Labels overlay {t_ours:.2f} s (layers {t_build:.2f} s, class maps {1e3 * t_map:.0f} ms)",
        f"Shapes layer of {n} rectangles {t_base:.1f} s (build {t_build_b:.1f} s)",
        ratio,
        f">= {TARGET_RATIO:g}x and < {TARGET_SECONDS:g} s",
        ratio >= TARGET_RATIO and t_ours < TARGET_SECONDS,
        patches=n,
        seconds_project=t_ours,
        seconds_project_build=t_build,
        seconds_class_maps=t_map,
        seconds_baseline=t_base,
        seconds_baseline_build=t_build_b,
    )
