"""Evaluate widget: a model (and optionally a second one) on a dataset file or the open slide.

Shows what the study reports: overall accuracy, per-class accuracy/precision/recall/F1/support,
the confusion matrix (matplotlib, following napari's theme) and, for two models, the accuracy
difference with its confidence intervals and McNemar's p. Exports the report with the same
writer as the CLI, and builds the prediction overlay for the open slide. All work runs through
`Runner` on the API functions of `experiment` (the CLI's ``evaluate``/``compare`` run the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    Table,
)
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt

from napari_crystal.errors import CrystalError
from napari_crystal.experiment import (
    EvaluationRun,
    check_evaluation_inputs,
    evaluate_models,
    evaluate_models_on_slide,
    run_prediction_map,
)
from napari_crystal.plugin.widgets._layers import (
    layers_of,
    shapes_annotation,
    slide_path,
    slide_shape,
)
from napari_crystal.plugin.widgets._persist import remember
from napari_crystal.plugin.widgets._runner import Runner
from napari_crystal.plugin.widgets._ui import FixedRadioButtons, scroll_body, wrapped
from napari_crystal.plugin.widgets.overlay import add_overlay_layers
from napari_crystal.reports import comparison_text

if TYPE_CHECKING:  # pragma: no cover
    import napari

DATASET, SLIDE = "dataset file", "open slide"
FRAMES = "(none: NEDC frames)"
COLUMNS = ("accuracy", "precision", "recall", "F1", "support")


def is_dark(viewer) -> bool:
    """Whether the viewer's theme is dark (the plot's colours follow it)."""
    from napari.utils.theme import get_theme

    try:
        return get_theme(viewer.theme).type != "light"
    except (ValueError, KeyError, AttributeError):
        return True


class EvaluateWidget(Container):
    """Per-class evaluation of one or two models, on a dataset file or the open slide."""

    def __init__(self, viewer: napari.viewer.Viewer):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = viewer
        self.model = FileEdit(label="model", mode="r", filter="*.skops")
        self.model_b = FileEdit(
            label="compare with (optional)", mode="r", filter="*.skops", nullable=True
        )
        self.source = FixedRadioButtons(
            label="data", choices=[DATASET, SLIDE], value=DATASET, orientation="horizontal"
        )
        self.dataset = FileEdit(label="dataset", mode="d")
        self.slide = ComboBox(label="slide", choices=lambda _w: layers_of(viewer, "image"))
        self.annotation_layer = ComboBox(
            label="annotation",
            choices=lambda _w: [*layers_of(viewer, "shapes"), (FRAMES, None)],
        )
        self.patches = ComboBox(label="patches", choices=["regions", "frames"], value="regions")
        self.frame = SpinBox(label="frame (px)", value=250, min=8, max=10_000)
        self.window = SpinBox(label="window (px)", value=500, min=8, max=20_000)
        self.threshold = FloatSpinBox(label="frame threshold", value=0.5, min=0.01, max=1.0,
                                      step=0.05)  # fmt: skip
        self.tissue = CheckBox(text="frames on tissue only (skip glass)", value=True)
        self.run_button = PushButton(text="Evaluate")
        self.cancel_button = PushButton(text="Cancel")
        self.bar = ProgressBar(label="")
        self.summary = Label(value="")
        self.comparison = Label(value="")
        self.which = ComboBox(label="show model", choices=[])
        self.table = Table(value={"data": [], "columns": list(COLUMNS)})
        self.table.read_only = True
        self.table.native.setMinimumHeight(300)
        for label in (self.summary, self.comparison):
            wrapped(label)  # wraps within the dock's width, never widens it
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.out = FileEdit(label="export to", mode="d")
        self.export_button = PushButton(text="Export report (JSON, Markdown, PNG)")
        self.overlay_button = PushButton(text="Show predictions on the slide")
        self.figure = Figure(figsize=(5, 4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(340)
        inputs = [
            self.model, self.model_b, self.source, self.dataset, self.slide, self.annotation_layer,
            self.patches, self.frame, self.window, self.threshold, self.tissue,
        ]  # fmt: skip
        super().__init__()
        self.body = scroll_body(
            self,
            [
                *inputs, self.run_button, self.cancel_button, self.bar, self.summary,
                self.comparison, self.which, self.table, self.out, self.export_button,
                self.overlay_button,
            ],
        )  # fmt: skip
        self.body.native.layout().addWidget(self.canvas)
        self.runner = Runner(
            self.bar,
            [*inputs, self.run_button, self.export_button, self.overlay_button, self.which],
            self.cancel_button,
        )
        self.result: EvaluationRun | None = None
        self._slide_options: dict = {}  # of the last evaluation on the open slide
        self.overlay = None
        self.files: dict[str, Path] = {}
        self.run_button.changed.connect(self.run)
        self.export_button.changed.connect(self.export)
        self.overlay_button.changed.connect(self.build_overlay)
        self.source.changed.connect(self._on_source)
        for field in (self.model, self.model_b, self.dataset):
            field.changed.connect(self._check_fields)
        self._refused: str | None = None
        self.annotation_layer.changed.connect(self._on_annotation)
        self.which.changed.connect(self._show_report)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        viewer.events.theme.connect(self._show_report)
        self._on_source()
        self._set_results_visible(False)
        remember("evaluate", {
            "model": self.model, "model_b": self.model_b, "dataset": self.dataset,
            "patches": self.patches, "frame": self.frame, "window": self.window,
            "threshold": self.threshold, "tissue": self.tissue,
        })  # fmt: skip

    # ---------------------------------------------------------------- form
    def _refresh(self, *_: Any) -> None:
        self.slide.reset_choices()
        self.annotation_layer.reset_choices()

    def _on_source(self, *_: Any) -> None:
        on_slide = self.source.value == SLIDE
        self.dataset.visible = not on_slide
        for w in (self.patches, self.frame, self.window, self.threshold, self.tissue):
            w.visible = on_slide
        self._on_annotation()

    def _on_annotation(self, *_: Any) -> None:
        if self.source.value == SLIDE and self.annotation_layer.value is None:
            self.patches.value = "frames"

    def _check_fields(self, *_: Any) -> None:
        """Once the model(s) and the dataset are chosen, say at once when they do not fit
        (mask size, method, channel, feature set), as ``run`` would refuse them."""
        from napari_crystal.errors import ModelError

        ds = str(self.dataset.value or "")
        try:
            paths = self._model_paths()
            if self.source.value != DATASET or not Path(ds).is_dir():
                return
            check_evaluation_inputs(paths, ds)
        except ModelError as exc:
            text = f"napari-crystal: evaluation: {exc.brief()}"
            if text != self._refused:  # once per refusal, not per keystroke
                show_error(text)
            self._refused = text
            return
        except CrystalError:
            return  # fields still being filled in: ``run`` says what is missing
        self._refused = None

    def _set_results_visible(self, visible: bool) -> None:
        for w in (self.table, self.out, self.export_button, self.overlay_button):
            w.visible = visible
        self.which.visible = visible and len(self.which.choices) > 1
        self.canvas.setVisible(visible)

    def _model_paths(self) -> list[str]:
        paths = []
        for edit, what in ((self.model, "model"), (self.model_b, "second model")):
            value = "" if edit.value is None else str(edit.value)
            if value in ("", ".") or not edit.line_edit.value:
                if edit is self.model:
                    raise CrystalError(None, "choose a model file (.skops)")
                continue
            if not Path(value).is_file():
                raise CrystalError(value, f"{what} file not found")
            paths.append(value)
        return paths

    def _slide_inputs(self):

        layer = self.slide.value
        if layer is None:
            raise CrystalError(None, "no slide layer chosen: open a slide (.svs) first")
        shapes = self.annotation_layer.value
        annotation = None if shapes is None else shapes_annotation(shapes, layer)
        return layer, slide_path(layer), slide_shape(layer), annotation

    # ---------------------------------------------------------------- run
    def run(self, *_: Any):
        """Check the form, then evaluate in a worker."""
        try:
            paths = self._model_paths()
            if self.source.value == DATASET:
                ds = str(self.dataset.value or "")
                if ds in ("", ".") or not Path(ds).exists():
                    raise CrystalError(ds or None, "choose a dataset (.zarr folder)")
                check_evaluation_inputs(paths, ds)  # the CLI's refusal, before any work
                fn, args, kwargs = evaluate_models, (paths, ds), {}
            else:
                _, path, shape, annotation = self._slide_inputs()
                fn, args = evaluate_models_on_slide, (paths, path, annotation)
                self._slide_options = {
                    "patches": self.patches.value, "frame": self.frame.value,
                    "window": self.window.value, "threshold": self.threshold.value,
                    "tissue": self.tissue.value,
                }  # fmt: skip
                kwargs = {"shape": shape, **self._slide_options}
        except CrystalError as exc:
            show_error(f"napari-crystal: evaluation: {exc.brief()}")
            return None
        return self.runner.start(fn, *args, label="evaluation", on_done=self._done, **kwargs)

    def _done(self, result: EvaluationRun) -> None:
        self.result = result
        for text in result.warnings:
            show_warning(f"napari-crystal: warning: {text}")
        reports = result.reports
        self.which.choices = [r.name for r in reports]
        if reports:
            self.which.value = reports[0].name
        lines = [
            f"{r.name}: accuracy {100 * r.accuracy:.1f}% ({r.correct} of {r.n} correct, "
            f"{r.incorrect} wrong) on {r.test_set}"
            for r in reports
        ]
        if not reports:
            n = len(result.slide[0].predicted) if result.slide else 0
            lines = [f"{n} frames predicted; none is labelled, so there is nothing to score"]
        self.summary.value = "\n".join(lines)
        self.comparison.value = comparison_text(result.comparison)
        self._set_results_visible(True)
        self.table.visible = bool(reports)
        self.canvas.setVisible(bool(reports))
        self._show_report()

    def report(self):
        """The report shown (the model picked in ``show model``)."""
        if self.result is None or not self.result.reports:
            return None
        for r in self.result.reports:
            if r.name == self.which.value:
                return r
        return self.result.reports[0]

    def _show_report(self, *_: Any) -> None:
        from napari_crystal.reports import plot_confusion

        report = self.report()
        if report is None:
            return
        self.table.value = {
            "data": [
                [_pct(s.accuracy), _pct(s.precision), _pct(s.recall), _pct(s.f1), s.support]
                for s in report.per_class.values()
            ],
            "index": list(report.per_class),
            "columns": list(COLUMNS),
        }
        self.table.native.resizeColumnsToContents()
        self.figure.clear()
        plot_confusion(report, ax=self.figure.add_subplot(), dark=is_dark(self.viewer))
        self.canvas.draw_idle()

    # ---------------------------------------------------------------- export
    def export(self, *_: Any):
        """Write report.json, report.md and confusion PNGs with the CLI's writer."""
        from napari_crystal.experiment import write_reports

        out = str(self.out.value or "")
        try:
            if self.result is None or not self.result.reports:
                raise CrystalError(None, "nothing to export: evaluate first")
            if out in ("", "."):
                raise CrystalError(None, "choose a folder to export the report to")
            comparisons = [self.result.comparison] if self.result.comparison else []
            meta = {"models": [m.path for m in self.result.models],
                    "dataset": self.result.dataset_path, "slide": self.result.slide_file,
                    "methods": self.result.methods()}  # fmt: skip
            self.files = write_reports(
                out, self.result.reports, comparisons, title="Evaluation", meta=meta
            )
        except (CrystalError, OSError) as exc:
            show_error(
                f"napari-crystal: export: {exc.brief() if isinstance(exc, CrystalError) else exc}"
            )
            return None
        show_info(f"napari-crystal: report written to {out} ({len(self.files)} files)")
        return self.files

    # ---------------------------------------------------------------- overlay
    def build_overlay(self, *_: Any):
        """The first model's predictions on the open slide, as the prediction overlay."""
        try:
            if self.result is None:
                raise CrystalError(None, "evaluate first")
            if self.result.slide:
                layer = self.slide.value
                if layer is None:
                    raise CrystalError(None, "no slide layer chosen")
                path, shape = self.result.slide_file, self.result.shape
                annotation = self.result.annotation
            else:
                layer, path, shape, annotation = self._slide_inputs()
        except CrystalError as exc:
            show_error(f"napari-crystal: prediction overlay: {exc.brief()}")
            return None
        return self.runner.start(
            run_prediction_map, self.result, path, shape, annotation,
            label="prediction overlay", on_done=lambda pmap: self._overlay_done(pmap, layer),
        )  # fmt: skip

    def _overlay_done(self, pmap, layer) -> None:
        from napari_crystal.correction import RetrainSetup

        result, setup = self.result, None
        if result is not None and result.models and result.models[0].path:
            options = self._slide_options if result.slide else {}
            setup = RetrainSetup(str(result.models[0].path), result.dataset_path, dict(options))
        add_overlay_layers(
            self.viewer, pmap, name=layer.name, slide=layer, setup=setup,
            on_ready=lambda controls: self._overlay_ready(controls, result, layer),
        )  # fmt: skip

    def _overlay_ready(self, controls, result, layer) -> None:
        """The overlay's layers are all in (added one per event-loop turn)."""
        self.overlay = controls
        if result is not None:
            from napari_crystal.correction import patch_masks

            self.overlay.masks = patch_masks(result, slide_path(layer), slide_shape(layer))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"
