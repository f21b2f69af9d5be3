"""Train classifier widget: a balanced random forest on a mask dataset, off the GUI thread.

The training is `experiment.train_on_dataset` (what the CLI's ``train`` runs) and the file is
`training.save_model` (skops, atomic), both in a `Runner` worker: progress per sub-forest, Cancel,
controls disabled, and the model file is written only after training finished.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error
from psygnal import Signal

from napari_crystal import palette
from napari_crystal.dataset import Dataset, load_dataset
from napari_crystal.errors import Cancelled, CrystalError, DatasetError, ModelError
from napari_crystal.experiment import train_on_dataset
from napari_crystal.plugin.widgets._layers import mask_dataset
from napari_crystal.plugin.widgets._persist import remember
from napari_crystal.plugin.widgets._runner import Runner, collection_paused
from napari_crystal.plugin.widgets._ui import (
    confirm_overwrite,
    count_table,
    job_row,
    scroll_body,
    wrapped,
)
from napari_crystal.plugin.widgets.mask_widget import PROGRESS_S
from napari_crystal.training import CRYSTAL_MODES, DEFAULT_PARAMS, Model, save_model

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget", "train_and_save"]

FROM_MASKS, FROM_FILE = "mask widget", "dataset file"
MAX_FEATURES = [("sqrt", "sqrt"), ("log2", "log2"), ("all (None)", None)]
STRATEGIES = ["all", "not minority", "not majority", "majority", "auto"]


def train_and_save(
    dataset: Dataset | str | os.PathLike,
    out: str | os.PathLike,
    crystals: str,
    params: dict[str, Any],
    n_jobs: int | None = None,
    progress=None,
    cancel: threading.Event | None = None,
) -> tuple[Model, Path, float]:
    """Worker job: load the dataset if given a path, train, then save the model atomically.

    Nothing is written unless training ran to the end; returns (model, path, seconds).
    """
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    start = time.perf_counter()
    model = train_on_dataset(
        dataset, crystals=crystals, params=params, progress=progress, cancel=cancel,
        n_jobs=n_jobs,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if cancel is not None and cancel.is_set():
        raise Cancelled("training cancelled")
    with collection_paused():
        path = save_model(model, out)
    return model, path, seconds


def _import_training_libraries() -> None:
    """Import scikit-learn, imbalanced-learn and skops (seconds of work, some holding the GIL)."""
    with collection_paused():  # imports make many lasting objects: full collections otherwise
        import imblearn.ensemble  # noqa: F401
        import skops.io  # noqa: F401


class TrainWidget(Container):
    """Train a balanced random forest (the paper's defaults) and save it as a skops file."""

    model_ready = Signal(object)  # the trained Model (its file is at `model_path`)

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self.model: Model | None = None
        self.model_path: Path | None = None
        p = DEFAULT_PARAMS
        self.source = ComboBox(label="dataset from", choices=[FROM_MASKS, FROM_FILE])
        self.dataset_path = FileEdit(label="dataset file", mode="d")
        self.dataset_info = wrapped(Label(value=""))
        self.crystals = ComboBox(label="crystal classes", choices=list(CRYSTAL_MODES))
        self.crystals.tooltip = (
            "merge: cnno/cdcs/cidc count as nneo/dcis/indc (the study); keep: own classes; "
            "drop: leave crystal patches out (the 'without crystals' model)"
        )
        self.n_estimators = SpinBox(label="trees", value=p["n_estimators"], min=1, max=10_000)
        self.criterion = ComboBox(
            label="criterion", choices=["gini", "entropy", "log_loss"], value=p["criterion"]
        )
        self.max_features = ComboBox(
            label="max features", choices=MAX_FEATURES, value=p["max_features"]
        )
        self.max_depth = SpinBox(
            label="max depth (0 = none)", value=p["max_depth"] or 0, max=10_000
        )
        self.min_samples_split = SpinBox(
            label="min samples split", value=p["min_samples_split"], min=2, max=100_000
        )
        self.min_samples_leaf = SpinBox(
            label="min samples leaf", value=p["min_samples_leaf"], min=1, max=100_000
        )
        self.sampling_strategy = ComboBox(
            label="sampling strategy", choices=STRATEGIES, value=p["sampling_strategy"]
        )
        self.replacement = CheckBox(label="replacement", value=p["replacement"])
        self.bootstrap = CheckBox(label="bootstrap", value=p["bootstrap"])
        self.random_state = SpinBox(
            label="random seed", value=p["random_state"], min=0, max=2**31 - 1
        )
        self.n_jobs = SpinBox(label="threads", value=1, min=1, max=os.cpu_count() or 1)
        self.n_jobs.tooltip = (
            "sub-forests of 10 trees grown at once (same forest; progress per sub-forest)"
        )
        self.out = FileEdit(label="model file", mode="w", filter="*.skops")
        self.run_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel")
        self.bar = ProgressBar(label="")
        self.status = wrapped(Label(value=""))
        self.counts = count_table({"class": [], "patches": []})
        self._params = [
            self.n_estimators, self.criterion, self.max_features, self.max_depth,
            self.min_samples_split, self.min_samples_leaf, self.sampling_strategy,
            self.replacement, self.bootstrap, self.random_state,
        ]  # fmt: skip
        heading = Label(value="<b>Balanced random forest</b> (defaults: the study's)")
        controls = [
            self.source, self.dataset_path, self.crystals, *self._params, self.n_jobs,
            self.out, self.run_button,
        ]  # fmt: skip
        self.body = scroll_body(
            self,
            [
                self.source,
                self.dataset_path,
                self.dataset_info,
                self.crystals,
                heading,
                *self._params,
                self.n_jobs,
                self.out,
                self.run_button,
                job_row(self.bar, self.cancel_button),
                self.status,
                self.counts,
            ],  # fmt: skip
        )
        self.runner = Runner(self.bar, controls, self.cancel_button, min_interval=PROGRESS_S)
        self.source.changed.connect(self._on_source)
        self.run_button.changed.connect(self.run)
        viewer.layers.events.inserted.connect(self._describe_source)
        viewer.layers.events.removed.connect(self._describe_source)
        self._on_source()
        # the first training would otherwise import the libraries mid-run, stalling the loop
        self.warmup = threading.Thread(target=_import_training_libraries, daemon=True)
        self.warmup.start()
        names = [
            "n_estimators", "criterion", "max_features", "max_depth", "min_samples_split",
            "min_samples_leaf", "sampling_strategy", "replacement", "bootstrap", "random_state",
        ]  # fmt: skip
        remember("train", {
            "dataset": self.dataset_path, "crystals": self.crystals, "n_jobs": self.n_jobs,
            **{name: getattr(self, name) for name in names},
        })  # fmt: skip

    @property
    def params(self) -> dict[str, Any]:
        """The forest's settings as ``BalancedRandomForestClassifier`` keywords."""
        return {
            "n_estimators": int(self.n_estimators.value),
            "criterion": self.criterion.value,
            "max_features": self.max_features.value,
            "max_depth": int(self.max_depth.value) or None,
            "min_samples_split": int(self.min_samples_split.value),
            "min_samples_leaf": int(self.min_samples_leaf.value),
            "sampling_strategy": self.sampling_strategy.value,
            "replacement": bool(self.replacement.value),
            "bootstrap": bool(self.bootstrap.value),
            "random_state": int(self.random_state.value),
        }

    def _on_source(self, *_: Any) -> None:
        self.dataset_path.visible = self.source.value == FROM_FILE
        self._describe_source()

    def _describe_source(self, *_: Any) -> None:
        if self.source.value == FROM_MASKS:
            dataset, _ = mask_dataset(self.viewer)
            self.dataset_info.value = (
                "no masks yet: run Generate masks, or pick a dataset file"
                if dataset is None
                else f"{len(dataset)} masks of {dataset.size}x{dataset.size} ({dataset.method})"
            )
        else:
            self.dataset_info.value = ""

    def _out_path(self) -> Path | None:
        value = str(self.out.value) if self.out.value is not None else ""
        return Path(value) if value and value != "." else None

    def run(self, *_: Any):
        """Train on the chosen dataset, then save the model; the worker (None on bad input)."""
        try:
            if self.source.value == FROM_MASKS:
                dataset, path = mask_dataset(self.viewer)
                if dataset is None:
                    raise DatasetError(
                        None, "no dataset from the mask widget yet: generate masks first"
                    )
                name = Path(path).name if path else "the mask widget's dataset"
            else:
                value = str(self.dataset_path.value or "")
                if not value or value == ".":
                    raise DatasetError(None, "choose a dataset file (a .zarr folder)")
                dataset, name = Path(value), Path(value).name
            out = self._out_path()
            if out is None:
                raise ModelError(None, "choose a model file to save to (.skops)")
            if out.is_dir():
                raise ModelError(out, "is a folder; choose a model file name (.skops)")
        except CrystalError as exc:
            show_error(f"napari-crystal: {exc.brief()}")
            self.status.value = str(exc)
            return None
        if out.exists() and not confirm_overwrite(self.native, out):
            self.status.value = f"not trained: {out.name} kept as it was"
            return None
        self._describe_source()
        params = self.params
        self.status.value = f"training {params['n_estimators']} trees on {name}..."
        return self.runner.start(
            train_and_save,
            dataset,
            out,
            self.crystals.value,
            params,
            int(self.n_jobs.value),
            label=f"train ({params['n_estimators']} trees)",
            on_done=self._done,
            on_error=self._failed,
        )

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self.status.value = "cancelled; no model file was written"
        else:
            self.status.value = f"failed: {exc}"

    def _done(self, result: tuple[Model, Path, float]) -> None:
        model, path, seconds = result
        self.model, self.model_path = model, Path(path)
        counts = model.class_counts
        order = palette.label_order(counts)
        self.counts.value = {
            "class": [*order, "total"],
            "patches": [counts[c] for c in order] + [sum(counts.values())],
        }
        n_trees = model.params.get("n_estimators")
        self.status.value = (
            f"trained {n_trees} trees on {sum(counts.values())} patches, {len(model.classes)} "
            f"classes (crystals: {model.crystals}) in {seconds:.1f} s; saved to {path}"
        )
        self.model_ready.emit(model)
