"""The prediction overlay: predicted and true classes of every patch on the slide, and the errors.

Three Labels layers over a `predictions.PredictionMap` (one pixel per frame, or regions filled
at <= 4096 px a side) in the reader's palette, plus `OverlayControls`: errors only / one class's
errors, side by side (grid) or overlaid, and what the patch under the mouse is. Labels images
with a colour map, not 20,000 shapes, so it stays smooth on big slides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    Table,
)
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer

from napari_crystal import palette
from napari_crystal.annotate import view_for
from napari_crystal.correction import (
    HISTORY_COLUMNS,
    RetrainSetup,
    history_rows,
    patch_masks,
    relabel_map,
    retrain_on_annotation,
    round_path,
    score_round,
)
from napari_crystal.errors import CrystalError
from napari_crystal.geometry import raster_transform
from napari_crystal.plugin._napari_fixes import add_editing_later
from napari_crystal.plugin.widgets._layers import (
    is_annotation_layer,
    is_slide_layer,
    layers_of,
    preselect,
    shapes_annotation,
    slide_path,
    slide_shape,
)
from napari_crystal.plugin.widgets._persist import remember
from napari_crystal.plugin.widgets._runner import Runner, collection_paused
from napari_crystal.plugin.widgets._ui import confirm_overwrite, job_row, scroll_body, wrapped
from napari_crystal.predictions import PredictionMap, build_prediction_map

if TYPE_CHECKING:  # pragma: no cover
    import napari

ALL, ERRORS = "all patches", "errors only"
NEXT_ERROR, PREVIOUS_ERROR = ".", ","  # keys; napari gives them no other use
PICK_HINT = (
    f"click a patch to inspect it; {NEXT_ERROR} and {PREVIOUS_ERROR}: next and previous error"
)
MASK_PX = 96  # the inspected patch's mask is shown about this many pixels a side
ACCEPT = "/"  # accept the prediction as the inspected patch's truth; napari has no plain "/"
ERROR_COLOR = (0.0, 0.0, 0.0, 1.0)
ERROR_OUTLINE_PX = 8  # errors are outlined: at least this many outline steps per frame side


def class_colormap(alpha: float = 1.0) -> DirectLabelColormap:
    """The reader's class palette as a napari colour map (0 transparent)."""
    return DirectLabelColormap(color_dict=palette.label_colormap(alpha))


def error_colormap(color=ERROR_COLOR) -> DirectLabelColormap:
    """Every class index in one colour: errors are marked, their class is in the data."""
    colors = {0: np.zeros(4), None: np.zeros(4)}
    for i in range(1, palette.UNKNOWN_INDEX + 1):
        colors[i] = np.asarray(color, dtype=float)
    return DirectLabelColormap(color_dict=colors)


def text_overlay(viewer):
    """The canvas text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    text = getattr(overlays, "text", None)
    return text if text is not None else viewer.text_overlay


def legend_html(pmap: PredictionMap) -> str:
    """A colour square and name per class the overlay shows (palette order), and the outline."""
    shown = np.concatenate([pmap.predicted.astype(str), pmap.truth[pmap.truth != ""].astype(str)])
    items = [
        f'<span style="color:{palette.COLORS.get(label, palette.COLORS[palette.UNKNOWN])}">'
        f"&#9632;</span>&nbsp;{label}"
        for label in palette.count_by_class(shown)
    ]
    return "&nbsp; ".join(items) + "&nbsp; <b>&#9633;</b>&nbsp;wrong (outline: true class)"


def _upsampled(image: np.ndarray, factor: int) -> np.ndarray:
    return image if factor == 1 else np.repeat(np.repeat(image, factor, 0), factor, 1)


def _error_factor(pmap: PredictionMap) -> int:
    """Upsampling of the error map so an outline is thinner than a frame."""
    if pmap.raster.kind != "frame" or pmap.errors_map.size == 0:
        return 1
    side = max(pmap.errors_map.shape)
    return max(1, min(ERROR_OUTLINE_PX, 4096 // max(side, 1)))


class OverlayControls(Container):
    """Controls of one prediction overlay: which patches to show, grid or overlaid, hover info;
    inspecting a patch, correcting its region's truth, retraining, and the score per round."""

    def __init__(
        self, viewer: napari.viewer.Viewer, pmap: PredictionMap, layers: dict, slide=None,
        world=((1.0, 1.0), (0.0, 0.0)), setup: RetrainSetup | None = None,
    ):  # fmt: skip
        self.viewer = viewer
        # level-0 pixel k sits at world k * scale + translate
        self._world = (np.asarray(world[0], float), np.asarray(world[1], float))
        self.pmap = pmap
        self.prediction = layers["prediction"]
        self.truth = layers["truth"]
        self.errors = layers["errors"]
        self.slide = slide
        self.setup = setup
        self._factor = _error_factor(pmap)
        self._grid_state: dict[str, Any] | None = None
        self._grid_copy = None
        self._class_of: dict[str, str] = {}
        # choices from a function: napari's reset_choices keeps them (a list would come back)
        self.showing = ComboBox(
            label="show", choices=lambda _w: [ALL, ERRORS, *self._class_of], value=ALL
        )
        self.grid = CheckBox(text="prediction and truth side by side (grid)", value=False)
        self.summary = wrapped(Label(value=""))
        self.hover = wrapped(
            Label(value="hover a patch: true class, predicted class, probabilities")
        )
        self.legend = wrapped(Label(value=""))
        self.picked = wrapped(Label(value=PICK_HINT))
        self.legend.native.setTextFormat(Qt.TextFormat.RichText)
        self.mask_view = Label(value="")  # the inspected patch's mask, as the model saw it
        self.mask_view.visible = False
        #: ``masks(row)``: the mask of a map row (`correction.patch_masks`), None when unknown
        self.masks = None
        # correct and retrain
        self.true_class = ComboBox(label="true class", choices=list(palette.LABELS))
        self.set_truth_button = PushButton(text="Set truth")
        self.accept_button = PushButton(text=f"Accept prediction ({ACCEPT})")
        self.save_button = PushButton(text="Save annotation")
        self.retrain_button = PushButton(text="Retrain and re-evaluate")
        self.cancel_button = PushButton(text="Cancel")
        self.bar = ProgressBar(label="")
        self.status = wrapped(Label(value=""))
        self.history_table = Table(value={name: [] for name in HISTORY_COLUMNS})
        self.history_table.read_only = True
        self.history_table.native.verticalHeader().setVisible(False)
        self.history_table.native.setMinimumHeight(110)
        correct_row = Container(
            widgets=[self.true_class, self.set_truth_button], layout="horizontal", labels=False
        )
        actions = Container(
            widgets=[self.accept_button, self.save_button], layout="horizontal", labels=False
        )
        super().__init__()
        self.body = scroll_body(
            self,
            [
                self.summary, self.legend, self.showing, self.grid, self.hover, self.picked,
                self.mask_view,
                Label(value="<b>Correct</b> the inspected patch's region:"),
                correct_row, actions, self.retrain_button,
                job_row(self.bar, self.cancel_button), self.status, self.history_table,
            ],
            labels=False,
        )  # fmt: skip
        self.runner = Runner(
            self.bar,
            [self.set_truth_button, self.accept_button, self.save_button, self.retrain_button],
            self.cancel_button,
        )
        self.picked_row: int | None = None
        self.corrected: set[int] = set()  # region ids relabelled here (cumulative over rounds)
        self._error_at = -1
        self._show_map()
        model = Path(setup.model).name if setup is not None else ""
        self.history = [score_round(pmap, 1, model)]
        self._show_history()
        self.showing.changed.connect(self._on_show)
        self.grid.changed.connect(self._on_grid)
        self.set_truth_button.changed.connect(lambda *_: self.set_truth())
        self.accept_button.changed.connect(lambda *_: self.accept_prediction())
        self.save_button.changed.connect(lambda *_: self.save_annotation())
        self.retrain_button.changed.connect(lambda *_: self.retrain())
        viewer.mouse_move_callbacks.append(self._on_mouse_move)
        viewer.mouse_drag_callbacks.append(self._on_click)
        self._keys = {
            key: viewer.bind_key(key, handler, overwrite=True)
            for key, handler in (
                (NEXT_ERROR, self._next_error_key),
                (PREVIOUS_ERROR, self._previous_error_key),
                (ACCEPT, self._accept_key),
            )
        }
        viewer.layers.events.removed.connect(self._on_removed)

    def _show_map(self) -> None:
        """Summary, legend, class choices and error list of the current map."""
        pmap = self.pmap
        counts = pmap.error_counts()
        self._class_of = {f"errors of {c} ({n})": c for c, n in counts.items()}
        current = self.showing.value
        self.showing.reset_choices()
        self.showing.value = current if current in self.showing.choices else ALL
        wrong, labelled = int(pmap.wrong.sum()), int((pmap.truth != "").sum())
        self.summary.value = f"{len(pmap.table)} patches, {labelled} labelled, {wrong} wrong" + (
            f" ({100 * wrong / labelled:.1f}%)" if labelled else ""
        )
        if pmap.not_measured:  # a feature set skipped them (too small): not in the map
            self.summary.value += f"; {pmap.not_measured} not measured (not shown)"
        self.legend.value = legend_html(pmap)
        self._error_rows = np.flatnonzero(pmap.wrong)

    def _show_history(self) -> None:
        rows = history_rows(self.history)
        self.history_table.value = {
            name: [row[i] for row in rows] for i, name in enumerate(HISTORY_COLUMNS)
        }
        self.history_table.native.resizeColumnsToContents()

    @property
    def layers(self) -> list:
        """Prediction, truth and errors layers."""
        return [self.prediction, self.truth, self.errors]

    # ---------------------------------------------------------------- show
    def selection(self) -> np.ndarray | None:
        """Pixels of the maps currently shown (None: all)."""
        value = self.showing.value
        if value == ALL:
            return None
        if value == ERRORS:
            return self.pmap.errors_map != 0
        return self.pmap.errors_map == palette.class_index(self._class_of[value])

    def _on_show(self, *_: Any) -> None:
        keep = self.selection()
        p, t, e = self.pmap.predicted_map, self.pmap.truth_map, self.pmap.errors_map
        if keep is not None:
            p, t, e = (np.where(keep, m, 0).astype(np.uint8) for m in (p, t, e))
        self.prediction.data, self.truth.data = p, t
        self.errors.data = _upsampled(e, self._factor)

    # ---------------------------------------------------------------- hover
    def info_text(self, row: float, col: float) -> str:
        """What the hover label says at level-0 ``(row, col)``."""
        info = self.pmap.info_at(row, col)
        return "" if info is None else info.text()

    def _on_mouse_move(self, viewer, event) -> None:
        pos = viewer.cursor.position
        if len(pos) < 2:
            return
        scale, shift = self._world
        row, col = (np.asarray(pos[-2:], dtype=float) - shift) / scale
        text = self.info_text(row, col)
        if text:
            self.hover.value = text
        overlay = text_overlay(viewer)
        overlay.text = text
        overlay.visible = bool(text)

    def _on_removed(self, event) -> None:
        if any(event.value is layer for layer in self.layers):
            self.close_overlay()

    def close_overlay(self) -> None:
        """Stop listening to the viewer, give its keys back and take the panel and the hover
        text away (one of the overlay's layers was removed)."""
        if self.runner.busy:
            self.runner.cancel()
        if self._grid_state is not None:
            self.grid.value = False
        if self._on_mouse_move in self.viewer.mouse_move_callbacks:
            self.viewer.mouse_move_callbacks.remove(self._on_mouse_move)
        if self._on_click in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_click)
        for key, previous in self._keys.items():
            self.viewer.bind_key(key, None)
            if previous is not None:
                self.viewer.bind_key(key, previous)
        self._keys = {}
        try:
            self.viewer.layers.events.removed.disconnect(self._on_removed)
        except (TypeError, ValueError, RuntimeError):
            pass
        overlay = text_overlay(self.viewer)
        overlay.text, overlay.visible = "", False
        self._remove_dock()

    def _remove_dock(self) -> None:
        """Take this panel's dock out of the window (when it is docked)."""
        from qtpy.QtWidgets import QDockWidget

        window = getattr(self.viewer, "window", None)
        widget = self.native.parent()
        while widget is not None and not isinstance(widget, QDockWidget):
            widget = widget.parent()
        if window is None or widget is None:
            return
        qt_window = widget.parent()
        window.remove_dock_widget(widget)  # leaves the panel without a parent
        self.native.hide()
        if qt_window is not None:  # not a top-level window of its own: freed with the viewer
            self.native.setParent(qt_window)

    # ---------------------------------------------------------------- inspect
    def _level0(self, world) -> tuple[float, float]:
        scale, shift = self._world
        row, col = (np.asarray(world[-2:], dtype=float) - shift) / scale
        return float(row), float(col)

    def _on_click(self, viewer, event):
        """A click (not a drag) on a patch inspects it."""
        start = np.asarray(event.position, dtype=float)
        yield
        while event.type == "mouse_move":
            yield
        if event.type == "mouse_release" and np.allclose(event.position, start, atol=1e-6):
            row, col = self._level0(start)
            info = self.pmap.info_at(row, col)
            if info is not None:
                self.inspect(info.row)

    def inspect(self, row: int, *, go: bool = False) -> None:
        """Show patch ``row``: its classes and every probability, its region selected in the
        annotation layer it came from; with ``go``, centred in the view."""
        info = self.pmap.info(row)
        self.picked_row = row
        probs = sorted(info.proba.items(), key=lambda kv: -kv[1])
        lines = [info.text().split(" (")[0]]
        if probs:
            lines.append(", ".join(f"{k} {v:.2f}" for k, v in probs))
        self.picked.value = "\n".join(lines)
        self._show_mask(row)
        if info.kind == "region":
            self._select_region(info.region_id)
        if go:
            top, left, height, width = info.box
            corners = np.array([[top, left], [top + height, left + width]], dtype=float)
            scale, shift = self._world
            canvas = getattr(self.viewer, "canvas", None)
            size = getattr(canvas, "size", None) or (600, 800)
            centre, zoom = view_for(corners * scale + shift, tuple(size[-2:]), margin=1.0)
            camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else None
            camera = camera or self.viewer.camera
            camera.center = tuple(centre)
            camera.zoom = zoom

    def _show_mask(self, row: int) -> None:
        """The patch's mask (what the model classified) as a small image in the panel."""
        from qtpy.QtGui import QImage, QPixmap

        if self.masks is None:
            self.mask_view.visible = False
            return
        mask = np.ascontiguousarray(np.asarray(self.masks(row), dtype=bool), dtype=np.uint8)
        mask *= 255
        h, w = mask.shape
        image = QImage(mask.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        side = max(MASK_PX // max(h, w), 1) * max(h, w)
        self.mask_view.native.setPixmap(QPixmap.fromImage(image).scaled(side, side))
        self.mask_view.tooltip = f"the {h}x{w} mask the model classified"
        self.mask_view.visible = True

    def _select_region(self, region_id: int) -> None:
        """Select the region in the first annotation layer that has it."""
        found = self._region_shape(region_id)
        if found is not None:
            layer, index = found
            layer.selected_data = {index}

    def _region_shape(self, region_id: int):
        """(annotation layer, shape index) of a region id, the first layer that has it."""
        for layer in self.viewer.layers:
            if not is_annotation_layer(layer) or "region_id" not in layer.features.columns:
                continue
            hits = np.flatnonzero(layer.features["region_id"].to_numpy() == region_id)
            if len(hits):
                return layer, int(hits[0])
        return None

    def step_error(self, step: int) -> int | None:
        """Go to the next (``step`` 1) or previous (-1) wrong patch; None when there is none."""
        if not len(self._error_rows):
            show_info("napari-crystal: no wrong patches in this overlay")
            return None
        self._error_at = (self._error_at + step) % len(self._error_rows)
        row = int(self._error_rows[self._error_at])
        self.inspect(row, go=True)
        return row

    def _next_error_key(self, viewer) -> None:
        self.step_error(1)

    def _previous_error_key(self, viewer) -> None:
        self.step_error(-1)

    def _accept_key(self, viewer) -> None:
        self.accept_prediction()

    # ---------------------------------------------------------------- correct
    def _inspected_region(self, what: str):
        """(info, layer, shape index) of the inspected patch's region, or None after a
        notification that leads with why nothing changed."""
        if self.picked_row is None:
            show_info(
                f"napari-crystal: {what}: no patch selected, nothing changed; click a patch in "
                f"the overlay first (or {NEXT_ERROR} for the next error)"
            )
            return None
        info = self.pmap.info(self.picked_row)
        if info.kind != "region":
            show_info(
                f"napari-crystal: {what}: frame #{info.row} takes its truth from the regions "
                "around it, nothing changed; relabel those regions in Annotate"
            )
            return None
        found = self._region_shape(info.region_id)
        if found is None:
            show_info(
                f"napari-crystal: {what}: no annotation layer holds region {info.region_id}, "
                "nothing changed; open the slide's annotation (or draw it) first"
            )
            return None
        return info, *found

    def set_truth(self, label: str | None = None, *, what: str = "set truth") -> bool:
        """Give the inspected patch's region the true class ``label`` (default: the class box)
        in its annotation layer (label and colour, as Annotate's keys) and in the overlay;
        True when done."""
        from napari_crystal.plugin.widgets.annotate_widget import relabel

        label = self.true_class.value if label is None else str(label)
        found = self._inspected_region(what)
        if found is None:
            return False
        info, layer, index = found
        relabel(layer, [index], label)
        self.corrected.add(info.region_id)
        self.pmap = relabel_map(self.pmap, [info.region_id], label)
        self._show_map()
        self._on_show()
        self.inspect(info.row)
        self.status.value = (
            f"region {info.region_id}: truth {info.truth or 'unlabelled'} -> {label}; "
            f"{len(self.corrected)} corrected (Save annotation keeps them)"
        )
        return True

    def accept_prediction(self) -> bool:
        """Take the inspected patch's predicted class as its region's truth."""
        label = None if self.picked_row is None else self.pmap.info(self.picked_row).predicted
        return self.set_truth(label, what="accept prediction")

    def _annotation_layer(self):
        """The annotation layer of the overlay's regions (the first that holds one of them)."""
        ids = np.asarray(self.pmap.table.region_id)[np.asarray(self.pmap.table.kind) == "region"]
        for rid in [*sorted(self.corrected), *ids[:50].tolist()]:
            found = self._region_shape(int(rid))
            if found is not None:
                return found[0]
        layers = [x for x in self.viewer.layers if is_annotation_layer(x)]
        return layers[0] if len(layers) == 1 else None

    def save_annotation(self):
        """Save the corrected annotation layer to its file with Annotate's writer."""
        from napari_crystal.plugin.widgets.annotate_widget import (
            default_save_path,
            save_with_notice,
        )

        layer = self._annotation_layer()
        if layer is None:
            show_info(
                "napari-crystal: nothing saved: no annotation layer holds this overlay's regions"
            )
            return None
        path = default_save_path(layer, self.viewer)
        if path is None:
            show_info(
                "napari-crystal: nothing saved: the layer has no file yet; choose one with "
                "Annotate's Save to"
            )
            return None
        written = save_with_notice(layer, path)
        if written is not None:
            self.status.value = f"saved to {written}"
        return written

    # ---------------------------------------------------------------- retrain
    def retrain(self):
        """Retrain the overlay's model with the corrected annotation, in the background, then
        re-evaluate it and show the new overlay and round (None when nothing started)."""
        try:
            if self.setup is None:
                raise CrystalError(
                    None,
                    "this overlay has no model file: build it from Evaluate or Prediction overlay",
                )
            if self.slide is None or self.slide not in self.viewer.layers:
                raise CrystalError(None, "the overlay's slide layer is not open")
            if not self.corrected:
                raise CrystalError(
                    None,
                    "no corrections yet: set the truth of a patch first (Set truth, "
                    f"Accept prediction or {ACCEPT})",
                )
            layer = self._annotation_layer()
            if layer is None:
                raise CrystalError(None, "no annotation layer holds this overlay's regions")
            annotation = shapes_annotation(layer, self.slide)
            path, shape = slide_path(self.slide), slide_shape(self.slide)
        except CrystalError as exc:
            show_info(f"napari-crystal: retrain: {exc.brief()}; nothing changed")
            return None
        number = len(self.history) + 1
        out = round_path(self.setup.model, number)
        if out.exists() and not confirm_overwrite(self.native, out):
            self.status.value = f"not retrained: {out.name} kept as it was"
            return None
        corrections = len(self.corrected)
        self.status.value = f"round {number}: retraining with {corrections} corrected regions..."
        return self.runner.start(
            retrain_on_annotation, self.setup.model, path, annotation, out,
            regions=sorted(self.corrected), evaluate_on=self.setup.dataset, shape=shape,
            slide_options=self.setup.slide_options, label=f"retrain (round {number})",
            on_done=lambda result: self._retrained(result, number, corrections),
            on_error=lambda exc: setattr(self.status, "value", f"round {number} not done: {exc}"),
        )  # fmt: skip

    def _retrained(self, result, number: int, corrections: int) -> None:
        self.setup.model = str(result.path)
        self.update_map(result.pmap)
        self.masks = patch_masks(result.run, slide_path(self.slide), slide_shape(self.slide))
        note = "optimistic" if any("optimistic" in w for w in result.warnings) else ""
        self.history.append(score_round(result.pmap, number, result.path.name, corrections, note))
        self._show_history()
        for text in result.warnings:
            show_warning(f"napari-crystal: round {number}: {text}")
        r = self.history[-1]
        self.status.value = (
            f"round {number}: {result.n_train} training patches ({result.added} from this "
            f"slide's corrections); {r.wrong} of {r.n} wrong; model saved to {result.path}"
        )

    def update_map(self, pmap: PredictionMap) -> None:
        """Show a new map of the same slide in the overlay's layers (a retrained model's)."""
        self.pmap = pmap
        self._factor = _error_factor(pmap)
        a, b = self._world
        for layer, step in (
            (self.prediction, pmap.raster.scale),
            (self.truth, pmap.raster.scale),
            (self.errors, pmap.raster.scale / self._factor),
        ):
            layer.scale, layer.translate = raster_transform(step, world=(a, b))
        self.picked_row, self._error_at = None, -1
        self.picked.value = PICK_HINT  # the old inspection was of the old model
        self.mask_view.visible = False
        self._show_map()
        self._on_show()
        self.hover.value = ""
        self._on_mouse_move(self.viewer, None)  # the hover text under the cursor, new model's

    # ---------------------------------------------------------------- grid
    def _on_grid(self, value: bool) -> None:
        if value:
            self._grid_on()
        else:
            self._grid_off()

    def _grid_on(self) -> None:
        """Two viewboxes: [errors, prediction, slide view] and [truth, slide]; others hidden."""
        layers = self.viewer.layers
        ours = {id(x) for x in self.layers}
        slide = self.slide if self.slide in layers else None
        self._grid_state = {
            "visible": {id(x): x.visible for x in layers},
            "stride": self.viewer.grid.stride,
            "slide_index": layers.index(slide) if slide is not None else None,
        }
        for layer in layers:
            if id(layer) not in ours and layer is not slide:
                layer.visible = False
        order = [self.truth]
        if slide is not None:
            from napari.layers import Image

            self._grid_copy = Image(
                slide.data, rgb=slide.rgb, multiscale=slide.multiscale, name=f"{slide.name} (grid)",
                scale=slide.scale, translate=slide.translate, contrast_limits=slide.contrast_limits,
            )  # fmt: skip
            layers.append(self._grid_copy)
            order = [slide, self.truth, self._grid_copy]
        for layer in [*order, self.prediction, self.errors]:
            layer.visible = True
            layers.move(layers.index(layer), len(layers))
        self.viewer.grid.stride = -(3 if slide is not None else 2)
        self.viewer.grid.enabled = True

    def _grid_off(self) -> None:
        self.viewer.grid.enabled = False
        state, self._grid_state = self._grid_state, None
        layers = self.viewer.layers
        if self._grid_copy is not None and self._grid_copy in layers:
            layers.remove(self._grid_copy)
        self._grid_copy = None
        if state is None:
            return
        self.viewer.grid.stride = state["stride"]
        for layer in layers:
            if id(layer) in state["visible"]:
                layer.visible = state["visible"][id(layer)]
        if self.slide in layers and state["slide_index"] is not None:
            layers.move(layers.index(self.slide), min(state["slide_index"], len(layers) - 1))


def add_overlay_layers(
    viewer: napari.viewer.Viewer,
    pmap: PredictionMap,
    *,
    name: str = "",
    slide=None,
    dock=True,
    setup: RetrainSetup | None = None,
    on_ready: Callable[[OverlayControls], Any] | None = None,
) -> OverlayControls | None:
    """Add a built `PredictionMap` to the viewer (main thread): truth, prediction, errors.

    ``setup`` (model file and evaluation source) lets the panel retrain and re-evaluate.
    With ``on_ready`` (the widgets' way), one layer is added per turn of the Qt event loop,
    since napari takes about a tenth of a second to set up each Labels layer and the window
    should not freeze for all of them at once (each layer's editing tools are set up in a
    turn of their own, `_napari_fixes.add_editing_later`); ``on_ready(controls)`` is called after the
    last and None is returned. Without it, everything is added now and the controls returned.
    """
    steps = _overlay_steps(viewer, pmap, name, slide, dock, setup)
    if on_ready is not None:
        _in_turns(steps, on_ready)
        return None
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _in_turns(steps: Iterator, on_ready: Callable[[Any], Any]) -> None:
    """Run one step of the generator ``steps`` per turn of the Qt event loop, then hand its
    return value to ``on_ready``. A 1 ms timer, not 0: Qt runs zero-delay calls posted
    during a turn in that same turn, back to back, and repaints would wait for all of them."""

    paused = collection_paused()  # a full collection of napari's heap would be a stall of its own
    paused.__enter__()

    def turn() -> None:
        try:
            next(steps)
        except StopIteration as done:
            paused.__exit__(None, None, None)
            on_ready(done.value)
        except BaseException:
            paused.__exit__(None, None, None)
            raise
        else:
            QTimer.singleShot(1, turn)

    QTimer.singleShot(1, turn)


def _added_in_turns(viewer, layer):
    """Add ``layer``, then its editing tools in the next turn: napari's set-up of a Labels
    layer is the longest step of the overlay, so it is split in two."""
    restore = add_editing_later(viewer, layer)
    yield
    restore()
    yield


def _overlay_steps(viewer, pmap: PredictionMap, name: str, slide, dock: bool, setup):
    """`add_overlay_layers` as a generator: it pauses after each layer, returns the controls."""
    prefix = f"{name} " if name else ""
    a, b = np.ones(2), np.zeros(2)
    if slide is not None:  # maps are in level-0 pixels; follow the slide layer's world transform
        a, b = np.asarray(slide.scale[-2:], float), np.asarray(slide.translate[-2:], float)

    def placed(step: float) -> dict:
        scale, translate = raster_transform(step, world=(a, b))
        return {"scale": scale, "translate": translate}

    meta = {"napari_crystal": "prediction overlay", "classes": list(pmap.classes)}
    # the truth is hidden: overlaid mode shows the prediction over the slide; grid shows both
    truth = Labels(
        pmap.truth_map, name=f"{prefix}truth", colormap=class_colormap(), opacity=0.55,
        metadata=meta, visible=False, **placed(pmap.raster.scale),
    )  # fmt: skip
    yield
    yield from _added_in_turns(viewer, truth)
    prediction = Labels(
        pmap.predicted_map, name=f"{prefix}prediction", colormap=class_colormap(), opacity=0.55,
        metadata=meta, **placed(pmap.raster.scale),
    )  # fmt: skip
    yield
    yield from _added_in_turns(viewer, prediction)
    factor = _error_factor(pmap)
    errors = Labels(
        _upsampled(pmap.errors_map, factor), name=f"{prefix}errors", colormap=error_colormap(),
        opacity=1.0, metadata=meta, visible=False, **placed(pmap.raster.scale / factor),
    )  # fmt: skip
    yield
    yield from _added_in_turns(viewer, errors)  # shown once outlined
    errors.contour = 1 if pmap.raster.kind == "frame" else 2  # outlines: the classes stay visible
    errors.visible = True
    yield
    controls = OverlayControls(
        viewer,
        pmap,
        {"prediction": prediction, "truth": truth, "errors": errors},
        slide,
        (a, b),
        setup,
    )
    if dock and getattr(viewer, "window", None) is not None:
        yield
        viewer.window.add_dock_widget(controls, name=f"{prefix}overlay".strip(), area="right")
    return controls


def add_prediction_overlay(
    viewer: napari.viewer.Viewer,
    table,
    predicted,
    truth,
    proba=None,
    classes=(),
    annotation=None,
    *,
    shape=None,
    frame: int | None = None,
    slide=None,
    name: str = "",
    dock: bool = True,
) -> OverlayControls:
    """Build and add the overlay of one slide's patches; returns the controls (``.layers``).

    ``annotation`` (an ``nedc.Annotation``) gives region patches their polygons; without it
    their boxes are filled. ``shape`` is the slide's level-0 (rows, cols), ``slide`` its
    Image layer (for grid mode and its world transform).
    """
    from napari_crystal.predictions import region_polygons

    polygons = None
    if annotation is not None and len(table) and set(np.unique(table.kind)) == {"region"}:
        polygons = region_polygons(table, annotation)
    pmap = build_prediction_map(
        table, predicted, truth, proba, classes, polygons, shape, frame=frame
    )
    return add_overlay_layers(viewer, pmap, name=name, slide=slide, dock=dock)


# -------------------------------------------------------------------- layer-menu widget


def overlay_job(
    model_path, dataset_path, slide_file, shape, annotation, progress=None, cancel=None
):
    """Worker: load a saved model and dataset, predict the slide's patches, build the maps."""
    from napari_crystal.dataset import load_dataset
    from napari_crystal.experiment import dataset_prediction_map
    from napari_crystal.training import load_model

    model = load_model(model_path)
    dataset = load_dataset(dataset_path)
    return dataset_prediction_map(
        model, dataset, slide_file, shape, annotation, progress=progress, cancel=cancel
    )


class PredictionOverlayWidget(Container):
    """Prediction overlay from a saved model and dataset, without the Evaluate widget."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = viewer
        self.model = FileEdit(label="model", mode="r", filter="*.skops")
        self.dataset = FileEdit(label="dataset", mode="d")
        self.slide = ComboBox(label="slide", choices=lambda _w: layers_of(viewer, "image"))
        self.annotation_layer = ComboBox(
            label="annotation",
            choices=lambda _w: [("(region boxes)", None), *layers_of(viewer, "shapes")],
        )
        self.build = PushButton(text="Build overlay")
        self.cancel = PushButton(text="Cancel")
        self.bar = ProgressBar(label="")
        super().__init__(
            widgets=[
                self.model, self.dataset, self.slide, self.annotation_layer, self.build, self.cancel,
                self.bar,
            ]
        )  # fmt: skip
        controls = [self.model, self.dataset, self.slide, self.annotation_layer, self.build]
        self.runner = Runner(self.bar, controls, self.cancel)
        self.build.changed.connect(self.run)
        self.controls: OverlayControls | None = None
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        self._refresh()
        remember("overlay", {"model": self.model, "dataset": self.dataset})

    def _refresh(self, *_: Any) -> None:
        preselect(self.slide, is_slide_layer)
        preselect(self.annotation_layer, is_annotation_layer)

    def run(self, *_: Any):
        """Check the inputs, then build the overlay in a worker."""

        try:
            if not str(self.model.value) or not Path(self.model.value).is_file():
                raise CrystalError(self.model.value, "choose a model file (.skops)")
            if not str(self.dataset.value) or not Path(self.dataset.value).is_dir():
                raise CrystalError(self.dataset.value, "choose a dataset (.zarr folder)")
            layer = self.slide.value
            if layer is None:
                raise CrystalError(None, "no slide layer chosen: open a slide first")
            ann = self.annotation_layer.value
            annotation = None if ann is None else shapes_annotation(ann, layer)
            path, shape = slide_path(layer), slide_shape(layer)
        except CrystalError as exc:
            show_error(f"napari-crystal: prediction overlay: {exc.brief()}")
            return None
        return self.runner.start(
            overlay_job, self.model.value, self.dataset.value, path, shape, annotation,
            label="prediction overlay", on_done=lambda pmap: self._done(pmap, layer),
        )  # fmt: skip

    def _done(self, pmap: PredictionMap, layer) -> None:
        setup = RetrainSetup(str(self.model.value), dataset=str(self.dataset.value))
        add_overlay_layers(
            self.viewer, pmap, name=layer.name, slide=layer, setup=setup, on_ready=self._ready
        )

    def _ready(self, controls: OverlayControls) -> None:
        self.controls, pmap = controls, controls.pmap
        show_info(
            f"napari-crystal: overlay of {len(pmap.table)} patches, {int(pmap.wrong.sum())} wrong"
        )
