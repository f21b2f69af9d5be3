"""napari sample data: a synthetic NEDC slide with its annotation, generated once into a cache."""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_VERSION = 1
SAMPLE_SHAPE = (4096, 6144)
SAMPLE_STEM = "synthetic_nedc_sample"
SAMPLE_PER_CLASS = 4


def cache_dir() -> Path:
    """``$NAPARI_CRYSTAL_CACHE``, else the platform's user cache folder for napari-crystal."""
    env = os.environ.get("NAPARI_CRYSTAL_CACHE")
    if env:
        return Path(env)
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("napari-crystal"))
    except ImportError:  # pragma: no cover - platformdirs comes with napari
        return Path.home() / ".cache" / "napari-crystal"


def sample_slide_path(seed: int = 42) -> Path:
    """The sample slide, generated on first use (slide + CSV + XML; a few seconds)."""
    from napari_crystal.palette import LABELS
    from napari_crystal.synthetic import generate_slide

    folder = cache_dir() / f"sample-v{SAMPLE_VERSION}-seed{seed}"
    path = folder / f"{SAMPLE_STEM}.svs"
    if not all(path.with_suffix(s).is_file() for s in (".svs", ".csv", ".xml")):
        labels = [label for label in LABELS for _ in range(SAMPLE_PER_CLASS)]
        generate_slide(
            path,
            labels,
            SAMPLE_SHAPE,
            seed=seed,
            calcified_parents={"nneo": 0.25, "dcis": 0.5, "indc": 0.5},
        )
    return path


def synthetic_slide() -> list:
    """Layers of the sample: multiscale RGB slide and its annotation layers."""
    from napari_crystal.plugin._slide_reader import read_slide

    return read_slide(sample_slide_path())
