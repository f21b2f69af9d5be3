"""Predict slide widget: a model over the tissue of a whole slide, shown as probability maps.

The work is `slidemap.predict_slide_map` (what ``napari-crystal predict`` runs) in a `Runner`
worker with progress and Cancel; the written maps are read back (`slidemap.load_slide_map`)
and shown as one multiscale probability layer per class (transparent to the class colour),
the class map, and the frame's probabilities in the status bar under the cursor. Each
probability layer's contrast runs from 0 to the class's highest probability on the slide, so
a class that is never likely still shows where it is likeliest; hover gives the values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)

from napari_crystal import palette
from napari_crystal.io.slide import SLIDE_SUFFIXES
from napari_crystal.plugin.widgets._persist import remember
from napari_crystal.plugin.widgets._runner import Runner
from napari_crystal.plugin.widgets._ui import job_row, scroll_body, wrapped
from napari_crystal.slidemap import PRESETS, LoadedMap, load_slide_map, predict_slide_map

if TYPE_CHECKING:
    import napari

__all__ = ["PredictWidget", "predict_and_load"]

PRESET_CHOICES = [
    ("NEDC 128/256", "nedc"),
    ("student tools 250/500", "student"),
    ("custom", "custom"),
]


def predict_and_load(slide, model, out, frame, window, progress=None, cancel=None) -> LoadedMap:
    """Worker job: write the slide's maps, then read them back for display."""
    result = predict_slide_map(
        slide, model, out, frame=frame, window=window, progress=progress, cancel=cancel
    )
    return load_slide_map(result.out)


class PredictWidget(Container):
    """Choose a slide, a model and frame sizes; *Predict slide* adds the probability maps."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self.slide = FileEdit(
            label="slide", filter=" ".join(f"*{suffix}" for suffix in SLIDE_SUFFIXES)
        )
        self.model = FileEdit(label="model", filter="*.skops")
        self.out = FileEdit(
            label="maps folder", mode="d", tooltip="default: <slide>-maps beside it"
        )
        self.preset = ComboBox(label="frames", choices=PRESET_CHOICES, value="nedc")
        self.frame = SpinBox(label="frame (px)", min=16, max=8192, value=128)
        self.window = SpinBox(label="window (px)", min=16, max=16384, value=256)
        self.opacity = FloatSlider(label="map opacity", min=0.0, max=1.0, value=0.6)
        self.button = PushButton(text="Predict slide")
        self.bar = ProgressBar(label="", visible=False)
        self.cancel = PushButton(text="Cancel")
        self.info = wrapped(Label(value=""))
        self.runner = Runner(
            self.bar,
            [self.slide, self.model, self.out, self.preset, self.frame, self.window, self.button],
            self.cancel,
        )
        self.loaded: LoadedMap | None = None
        self.layers: list = []
        self.preset.changed.connect(self._preset_changed)
        self.opacity.changed.connect(self._opacity_changed)
        self.button.changed.connect(self.run)
        self.body = scroll_body(
            self,
            [self.slide, self.model, self.out, self.preset, self.frame, self.window,
             self.opacity, self.button, job_row(self.bar, self.cancel), self.info],
        )  # fmt: skip
        remember("predict", {
            "model": self.model, "preset": self.preset, "frame": self.frame,
            "window": self.window,
        })  # fmt: skip
        viewer.mouse_move_callbacks.append(self._hover)

    def _preset_changed(self, value: str) -> None:
        if value in PRESETS:
            self.frame.value, self.window.value = PRESETS[value]

    def _opacity_changed(self, value: float) -> None:
        for layer in self.layers:
            if layer.metadata.get("crystal_map") == "probability":
                layer.opacity = value

    def out_folder(self) -> Path:
        """The maps folder: the chosen one, else ``<slide stem>-maps`` beside the slide."""
        chosen = Path(self.out.value)
        if str(self.out.value) not in ("", ".") and chosen != Path("."):
            return chosen
        slide = Path(self.slide.value)
        return slide.with_name(f"{slide.stem}-maps")

    def run(self, *_):
        """Start the prediction in the background (returns the worker, None if refused)."""
        slide, model = Path(self.slide.value), Path(self.model.value)
        if not slide.is_file() or not model.is_file():
            self.info.value = "choose a slide file and a model file first"
            return None
        self.info.value = ""
        return self.runner.start(
            predict_and_load, slide, model, self.out_folder(), int(self.frame.value),
            int(self.window.value), label=f"predict {slide.name}", on_done=self._show,
            on_error=self._failed,
        )  # fmt: skip

    def _failed(self, exc: BaseException) -> None:
        self.info.value = str(exc)

    def _show(self, loaded: LoadedMap) -> None:
        """Replace the previous maps with this slide's layers."""
        for layer in self.layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers = []
        self.loaded = loaded
        scale, translate = loaded.transform
        stem = Path(loaded.summary["slide"]).stem
        counts = np.bincount(loaded.class_map.ravel(), minlength=palette.UNKNOWN_INDEX + 1)
        top = max(loaded.classes, key=lambda c: counts[palette.class_index(c)])
        for cls in loaded.classes:
            layer = self.viewer.add_image(
                [level for level in loaded.probabilities[cls]], multiscale=True,
                name=f"{stem} p({cls})", colormap=_colormap(cls),
                contrast_limits=(0, max(1, int(loaded.probabilities[cls][0].max()))),
                opacity=self.opacity.value, blending="translucent", scale=scale,
                translate=translate, visible=cls == top,
                metadata={"crystal_map": "probability", "class": cls},
            )  # fmt: skip
            self.layers.append(layer)
        labels = self.viewer.add_labels(
            loaded.class_map, name=f"{stem} classes", scale=scale, translate=translate,
            opacity=0.5, metadata={"crystal_map": "classes"},
        )  # fmt: skip
        from napari.utils.colormaps import DirectLabelColormap

        labels.colormap = DirectLabelColormap(color_dict=palette.label_colormap(0.8))
        self.layers.append(labels)
        s = loaded.summary
        self.info.value = (
            f"{s['n_tissue']} tissue frames of {s['n_frames']} ({s['frame']}/{s['window']} px), "
            f"{s['skipped']} skipped, {s['seconds']:.1f} s; maps in {Path(s['files']['csv']).parent}"
        )

    def hover_text(self, row: float, col: float) -> str:
        """Status text for level-0 (row, col): the frame's class probabilities, highest first."""
        if self.loaded is None:
            return ""
        values = self.loaded.values_at(row, col)
        if values is None:
            return ""
        ranked = sorted(values.items(), key=lambda kv: -kv[1])
        return "frame: " + ", ".join(f"{c} {p:.2f}" for c, p in ranked[:4])

    def _hover(self, viewer, event) -> None:
        if self.loaded is None:
            return
        pos = viewer.cursor.position
        text = self.hover_text(pos[-2], pos[-1])
        if text:
            viewer.status = text


def _colormap(cls: str):
    """Transparent to the class colour."""
    from napari.utils.colormaps import Colormap

    rgba = palette.rgba(cls) if cls in palette.LABELS else np.array([1.0, 1.0, 1.0, 1.0])
    colours = np.array([[*rgba[:3], 0.0], [*rgba[:3], 1.0]])
    return Colormap(colours, name=f"napari-crystal {cls}")
