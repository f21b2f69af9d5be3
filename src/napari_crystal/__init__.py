"""napari-crystal: NEDC breast histopathology in napari.

The core (annotations, slides, masks, training, evaluation) imports no Qt and no napari; the
napari layer (readers, writers, widgets) sits on top and the CLI uses the same core.
"""

__version__ = "0.1.0"
