"""napari widgets and overlays of napari-crystal (the only modules here that import Qt)."""
