"""Evaluating frames on a slide: with ``tissue`` only frames on tissue are predicted, not glass."""

from __future__ import annotations

import numpy as np
import pytest

SHAPE = (1024, 2048)


def _half_tissue(top, left, h, w):
    """Pink tissue with dark dots in the left half, white glass in the right half."""
    rr, cc = np.mgrid[top : top + h, left : left + w]
    out = np.full((h, w, 3), 244, np.uint8)
    tissue = cc < SHAPE[1] // 2
    out[tissue] = (230, 160, 200)
    out[tissue & (rr % 40 < 8) & (cc % 40 < 8)] = (80, 40, 130)
    return out


@pytest.fixture(scope="module")
def slide_and_model(tiny_corpus, tmp_path_factory):
    from napari_crystal.dataset import build_dataset
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.synthetic.pyramid import write_pyramid
    from napari_crystal.training import save_model

    root = tmp_path_factory.mktemp("tissue-frames")
    slide = write_pyramid(root / "half.svs", _half_tissue, SHAPE, 0.5, min_side=256)
    masks = build_dataset(tiny_corpus, "train", root / "masks.zarr", size=16)
    model = save_model(train_on_dataset(masks, params={"n_estimators": 6}), root / "m.skops")
    return slide, model


def test_frames_on_tissue_only(slide_and_model):
    from napari_crystal.experiment import evaluate_models_on_slide

    slide, model = slide_and_model
    kwargs = {"patches": "frames", "frame": 128, "window": 256}
    everywhere = evaluate_models_on_slide([model], slide, None, **kwargs)
    on_tissue = evaluate_models_on_slide([model], slide, None, tissue=True, **kwargs)
    all_frames = everywhere.dataset.table
    kept = on_tissue.dataset.table
    assert len(all_frames) == (SHAPE[0] // 128) * (SHAPE[1] // 128)
    assert 0 < len(kept) < len(all_frames)
    # what is kept lies on the tissue half (a frame's window may reach a little past it)
    assert (kept.left < SHAPE[1] // 2).all()
    assert set(kept.index.tolist()) <= set(all_frames.index.tolist())  # frame numbers kept
