"""Engineered feature sets beside the flattened-mask baseline, and stain normalisation.

``mask`` is the study's packed mask (`napari_crystal.dataset`); ``texture``, ``colour``,
``morphology`` and ``multiscale`` are small fixed-length vectors (`sets`) measured on each
region read at a chosen physical resolution (`extract`), stored as float32 feature datasets
(`build`).
"""

from napari_crystal.features.extract import (
    DEFAULT_MPP,
    FEATURE_SETS,
    FeatureSpec,
    Skipped,
    describe,
    feature_rows,
    region_crop,
    same_settings,
)
from napari_crystal.features.stain import StainNormaliser, fit_stain, fit_stain_on_slide

__all__ = [
    "DEFAULT_MPP",
    "FEATURE_SETS",
    "FeatureSpec",
    "Skipped",
    "StainNormaliser",
    "describe",
    "feature_rows",
    "fit_stain",
    "fit_stain_on_slide",
    "region_crop",
    "same_settings",
]
