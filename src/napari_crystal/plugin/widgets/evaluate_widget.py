"""Evaluate widget: a model (and optionally a second one) on a dataset file or the open slide.

Shows what the study reports: overall accuracy, per-class accuracy/precision/recall/F1/support,
the confusion matrix (matplotlib, following napari's theme) and, for two models, the accuracy
difference with its confidence intervals and McNemar's p. Exports the report with the same
writer as the CLI, and builds the prediction overlay for the open slide. All work runs through
`Runner` on the core functions of `experiment` and `predictions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
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
from napari_crystal.plugin.widgets._layers import (
    layers_of,
    shapes_annotation,
    slide_path,
    slide_shape,
)
from napari_crystal.plugin.widgets._runner import Runner
from napari_crystal.plugin.widgets._ui import FixedRadioButtons
from napari_crystal.plugin.widgets.overlay import add_overlay_layers

if TYPE_CHECKING:  # pragma: no cover
    import napari

DATASET, SLIDE = "dataset file", "open slide"
FRAMES = "(none: NEDC frames)"
COLUMNS = ("accuracy", "precision", "recall", "F1", "support")


@dataclass
class EvalResult:
    """One run: per model its evaluation (and, on a slide, its predictions), the comparison."""

    names: list[str]
    models: list[Any]
    evaluations: list[Any]
    comparison: Any = None
    dataset: Any = None
    dataset_path: str | None = None
    slide: list[Any] = field(default_factory=list)  # predictions.SlidePredictions per model
    annotation: Any = None
    slide_file: str | None = None
    shape: tuple[int, int] | None = None
    missing: list[list[str]] = field(default_factory=list)

    @property
    def reports(self) -> list:
        """Reports of the models that could be scored."""
        return [e.report for e in self.evaluations if e is not None]


def _names(paths: list[Path]) -> list[str]:
    names = [p.stem for p in paths]
    if len(names) == 2 and names[0] == names[1]:
        names = [f"{n} ({i})" for i, n in enumerate(names, start=1)]
    return names


def evaluate_dataset_job(model_paths, dataset_path, progress=None, cancel=None) -> EvalResult:
    """Worker: load the models and the dataset, check they fit, evaluate, compare."""
    from napari_crystal.dataset import load_dataset
    from napari_crystal.evaluation import model_truth
    from napari_crystal.experiment import compare_evaluations, evaluate_model
    from napari_crystal.predictions import check_classes
    from napari_crystal.training import check_compatible, load_model

    paths = [Path(p) for p in model_paths]
    models = [load_model(p) for p in paths]
    dataset = load_dataset(dataset_path)
    names, test_set = _names(paths), Path(dataset_path).stem
    missing = []
    for model in models:  # every input checked before the long work
        check_compatible(model, size=dataset.size, method=dataset.method, path=dataset_path)
        missing.append(check_classes(model, model_truth(model, dataset.labels), dataset_path))
    evaluations = []
    for k, (model, name) in enumerate(zip(models, names, strict=True)):
        tick = None if progress is None else (
            lambda d, t, k=k: progress(k * t + d, len(models) * t)
        )  # fmt: skip
        evaluations.append(
            evaluate_model(
                model, dataset, name=name, test_set=test_set, progress=tick, cancel=cancel
            )  # fmt: skip
        )
    comparison = None
    if len(evaluations) == 2:
        comparison = compare_evaluations(*evaluations, names=tuple(names), test_set=test_set)
    return EvalResult(
        names, models, evaluations, comparison, dataset, str(dataset_path), missing=missing
    )


def evaluate_slide_job(
    model_paths, slide_file, shape, annotation, patches, frame, window, threshold,
    progress=None, cancel=None,
) -> EvalResult:  # fmt: skip
    """Worker: masks of the open slide's patches made each model's way, predicted, scored."""
    from napari_crystal.experiment import compare_evaluations, predict_slide
    from napari_crystal.io.slide import open_slide
    from napari_crystal.training import load_model

    paths = [Path(p) for p in model_paths]
    models = [load_model(p) for p in paths]
    names = _names(paths)
    runs = []
    slide = open_slide(slide_file)
    try:
        for k, (model, name) in enumerate(zip(models, names, strict=True)):
            tick = None if progress is None else (
                lambda d, t, k=k: progress(k * t + d, len(models) * t)
            )  # fmt: skip
            same = [r for r, m in zip(runs, models, strict=False)
                    if (m.size, m.method) == (model.size, model.method)]  # fmt: skip
            runs.append(
                predict_slide(
                    model,
                    slide,
                    annotation,
                    patches=patches,
                    frame=frame,
                    window=window,
                    threshold=threshold,
                    name=name,
                    progress=tick,
                    cancel=cancel,
                    dataset=same[0].dataset if same else None,
                )  # fmt: skip
            )
    finally:
        slide.close()
    evaluations = [r.evaluation for r in runs]
    comparison = None
    if len(runs) == 2 and all(e is not None for e in evaluations):
        if len(evaluations[0].truth) == len(evaluations[1].truth):
            comparison = compare_evaluations(
                *evaluations, names=tuple(names), test_set=Path(slide_file).stem
            )
    return EvalResult(
        names, models, evaluations, comparison, runs[0].dataset, None, runs, annotation,
        str(slide_file), tuple(shape), [r.missing for r in runs],
    )  # fmt: skip


def overlay_map_job(result: EvalResult, slide_file, shape, annotation, progress=None, cancel=None):
    """Worker: the first model's `PredictionMap` on the open slide."""
    from napari_crystal.experiment import dataset_prediction_map
    from napari_crystal.predictions import build_prediction_map

    model = result.models[0]
    if result.slide:
        run = result.slide[0]
        table = run.dataset.table
        polygons = None
        if annotation is not None and set(np.unique(table.kind).tolist()) == {"region"}:
            from napari_crystal.predictions import region_polygons

            polygons = region_polygons(table, annotation)
        return build_prediction_map(
            table, run.predicted, run.truth, run.proba, model.classes, polygons, shape,
            frame=run.frame,
        )  # fmt: skip
    return dataset_prediction_map(
        model, result.dataset, slide_file, shape, annotation, evaluation=result.evaluations[0],
        progress=progress, cancel=cancel,
    )  # fmt: skip


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
            label.native.setWordWrap(True)
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.out = FileEdit(label="export to", mode="d")
        self.export_button = PushButton(text="Export report (JSON, Markdown, PNG)")
        self.overlay_button = PushButton(text="Show predictions on the slide")
        self.figure = Figure(figsize=(5, 4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(340)
        inputs = [
            self.model, self.model_b, self.source, self.dataset, self.slide, self.annotation_layer,
            self.patches, self.frame, self.window, self.threshold,
        ]  # fmt: skip
        super().__init__(
            widgets=[
                *inputs, self.run_button, self.cancel_button, self.bar, self.summary,
                self.comparison, self.which, self.table, self.out, self.export_button,
                self.overlay_button,
            ]
        )  # fmt: skip
        self.native.layout().addWidget(self.canvas)
        self.runner = Runner(
            self.bar,
            [*inputs, self.run_button, self.export_button, self.overlay_button, self.which],
            self.cancel_button,
        )
        self.result: EvalResult | None = None
        self.overlay = None
        self.files: dict[str, Path] = {}
        self.run_button.changed.connect(self.run)
        self.export_button.changed.connect(self.export)
        self.overlay_button.changed.connect(self.build_overlay)
        self.source.changed.connect(self._on_source)
        self.annotation_layer.changed.connect(self._on_annotation)
        self.which.changed.connect(self._show_report)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        viewer.events.theme.connect(self._show_report)
        self._on_source()
        self._set_results_visible(False)

    # ---------------------------------------------------------------- form
    def _refresh(self, *_: Any) -> None:
        self.slide.reset_choices()
        self.annotation_layer.reset_choices()

    def _on_source(self, *_: Any) -> None:
        on_slide = self.source.value == SLIDE
        self.dataset.visible = not on_slide
        for w in (self.patches, self.frame, self.window, self.threshold):
            w.visible = on_slide
        self._on_annotation()

    def _on_annotation(self, *_: Any) -> None:
        if self.source.value == SLIDE and self.annotation_layer.value is None:
            self.patches.value = "frames"

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
                args, fn = (paths, ds), evaluate_dataset_job
            else:
                _, path, shape, annotation = self._slide_inputs()
                patches = self.patches.value
                if annotation is None:
                    from napari_crystal.io.nedc import Annotation

                    annotation, patches = Annotation(regions=[], source=str(path)), "frames"
                args = (
                    paths, path, shape, annotation, patches, self.frame.value,
                    self.window.value, self.threshold.value,
                )  # fmt: skip
                fn = evaluate_slide_job
        except CrystalError as exc:
            show_error(f"napari-crystal: evaluation: {exc}")
            return None
        return self.runner.start(fn, *args, label="evaluation", on_done=self._done)

    def _done(self, result: EvalResult) -> None:
        self.result = result
        for name, missing in zip(result.names, result.missing, strict=False):
            if missing:
                show_warning(
                    f"napari-crystal: {name} cannot predict {', '.join(missing)} (not among its "
                    "classes): those patches are all counted wrong"
                )
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
                    "dataset": self.result.dataset_path, "slide": self.result.slide_file}  # fmt: skip
            self.files = write_reports(
                out, self.result.reports, comparisons, title="Evaluation", meta=meta
            )
        except (CrystalError, OSError) as exc:
            show_error(f"napari-crystal: export: {exc}")
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
            show_error(f"napari-crystal: prediction overlay: {exc}")
            return None
        return self.runner.start(
            overlay_map_job, self.result, path, shape, annotation,
            label="prediction overlay", on_done=lambda pmap: self._overlay_done(pmap, layer),
        )  # fmt: skip

    def _overlay_done(self, pmap, layer) -> None:
        self.overlay = add_overlay_layers(self.viewer, pmap, name=layer.name, slide=layer)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def comparison_text(c) -> str:
    """One line per statistic of a `evaluation.Comparison` (empty without one)."""
    if c is None:
        return ""
    pct = 100 * c.level
    return (
        f"{c.name_a} - {c.name_b}: {100 * c.difference:+.1f} points "
        f"(Wald {pct:g}% CI [{100 * c.wald_ci[0]:+.1f}, {100 * c.wald_ci[1]:+.1f}], "
        f"paired [{100 * c.paired_ci[0]:+.1f}, {100 * c.paired_ci[1]:+.1f}])\n"
        f"McNemar p = {c.mcnemar_p:.3g} ({c.mcnemar_method}; b = {c.b}, c = {c.c}, n = {c.n})"
    )
