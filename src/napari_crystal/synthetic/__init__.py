"""A synthetic NEDC breast corpus: Aperio-style pyramidal slides with CSV + XML annotations.

There is no public NEDC data here, so tests, the demo, benchmarks and the sample menu use this.
``corpus`` plans slides and splits from a preset, ``render`` draws each class's look and the
slide canvas, ``pyramid`` writes any tile source as an Aperio-style pyramidal TIFF.
"""

from napari_crystal.synthetic.corpus import (
    PRESETS,
    PROTOCOLS,
    Preset,
    SlidePlan,
    calcification_rates,
    corpus_plan,
    design,
    generate_corpus,
    generate_slide,
)
from napari_crystal.synthetic.pyramid import write_pyramid
from napari_crystal.synthetic.render import CONFUSE, SlideCanvas

__all__ = [
    "CONFUSE",
    "PRESETS",
    "PROTOCOLS",
    "Preset",
    "SlidePlan",
    "SlideCanvas",
    "calcification_rates",
    "corpus_plan",
    "design",
    "generate_corpus",
    "generate_slide",
    "write_pyramid",
]
