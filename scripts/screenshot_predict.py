"""Screenshot for docs/: the Predict slide widget's probability map on the synthetic sample slide.

Trains a small texture model (2 um/px) on the tiny synthetic corpus, predicts the sample slide
with NEDC's 128/256 frames in the Predict slide widget of a shown napari viewer (Xvfb when
there is no display), shows one class's probability map over the slide with the frame values
in the status bar, and writes docs/predict-slide.png.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from scripts._screen import save_screenshot, screen, settle, wait_for_job

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TREES = 50


def texture_model(work: Path) -> Path:
    """A 50-tree texture model (crystals merged) of the tiny corpus at 2 um/px."""
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.features import FeatureSpec
    from napari_crystal.features.build import build_feature_dataset
    from napari_crystal.synthetic import generate_corpus
    from napari_crystal.training import save_model

    corpus = generate_corpus(work / "corpus", preset="tiny", seed=42)
    spec = FeatureSpec("texture", mpp=2.0)
    train = build_feature_dataset(corpus, "train", work / "train.zarr", spec)
    model = train_on_dataset(train, params={"n_estimators": TREES})
    return save_model(model, work / "texture.skops")


def main() -> int:
    """Make the screenshot; returns the exit status."""
    with screen((1700, 1100)):
        import napari

        from napari_crystal.plugin._sample_data import sample_slide_path
        from napari_crystal.plugin.widgets.predict_widget import PredictWidget

        DOCS.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="napari-crystal-docs-") as tmp:
            model = texture_model(Path(tmp))
            svs = sample_slide_path()
            viewer = napari.Viewer(show=True, title="napari-crystal: predict slide")
            viewer.window._qt_window.resize(1650, 1060)
            viewer.open(str(svs), plugin="napari-crystal")
            image = next(x for x in viewer.layers if x._type_string == "image")
            widget = PredictWidget(viewer)
            dock = viewer.window.add_dock_widget(widget, name="Predict slide", area="right")
            dock.setMinimumWidth(420)
            widget.slide.value, widget.model.value = svs, model
            widget.out.value = Path(tmp) / "maps"
            widget.run()
            wait_for_job(widget)
            loaded = widget.loaded
            tissue = loaded.class_map > 0  # the class whose probability varies most on tissue
            shown = max(loaded.classes, key=lambda c: loaded.probabilities[c][0][tissue].std())
            for layer in viewer.layers:
                layer.visible = layer in (image, *[
                    ly for ly in widget.layers if ly.metadata.get("class") == shown
                ])  # fmt: skip
            viewer.layers.selection.active = next(
                ly for ly in widget.layers if ly.metadata.get("class") == shown
            )
            viewer.reset_view()
            settle()
            # hover a frame where the shown class is likely
            grid = loaded.probabilities[shown][0]
            r, c = np.unravel_index(int(np.argmax(grid)), grid.shape)
            viewer.cursor.position = ((r + 0.5) * loaded.frame, (c + 0.5) * loaded.frame)
            settle(0.5)
            widget._hover(viewer, None)  # the frame's probabilities in the status bar
            save_screenshot(viewer, DOCS / "predict-slide.png", 0.05)
            viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
