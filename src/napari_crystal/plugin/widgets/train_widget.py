"""Train classifier widget: a balanced random forest on a mask dataset, off the GUI thread.

The training is `experiment.train_on_dataset` (what the CLI's ``train`` runs) and the file is
`training.save_model` (skops, atomic), both in a `Runner` worker: progress per sub-forest, Cancel,
controls disabled, and the model file is written only after training finished.
"""

from __future__ import annotations

import gc
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
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error
from psygnal import Signal
from qtpy.QtCore import QTimer

from napari_crystal import palette
from napari_crystal.dataset import Dataset, load_dataset
from napari_crystal.errors import Cancelled, CrystalError, DatasetError, ModelError
from napari_crystal.experiment import train_on_dataset
from napari_crystal.features import DEFAULT_MPP, FEATURE_SETS
from napari_crystal.features.build import check_feature_choice
from napari_crystal.plugin.widgets._layers import mask_annotations, mask_dataset
from napari_crystal.plugin.widgets._persist import remember
from napari_crystal.plugin.widgets._runner import Runner, collection_paused, quick_handoff
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
STAINS = [("none", None), ("Macenko", "macenko"), ("Reinhard", "reinhard")]


def train_and_save(
    dataset: Dataset | str | os.PathLike,
    out: str | os.PathLike,
    crystals: str,
    params: dict[str, Any],
    n_jobs: int | None = None,
    progress=None,
    cancel: threading.Event | None = None,
    features: dict[str, Any] | None = None,
    annotations: dict | None = None,
) -> tuple[Model, Path, float]:
    """Worker job: load the dataset if given a path, make the rows of the chosen feature set
    (``features``: `features.build.with_feature_set` keywords, ``name`` first; None: the
    dataset as it is), train, then save the model atomically.

    Nothing is written unless training ran to the end; returns (model, path, seconds).
    """
    # Loading (zarr), fitting (scikit-learn makes objects per tree) and saving (skops) would
    # trigger collections of napari's whole heap, each holding the GIL for a tenth of a second.
    if not isinstance(dataset, Dataset):
        with collection_paused():
            dataset = load_dataset(dataset)
    start = time.perf_counter()
    if features is not None:
        from napari_crystal.features.build import with_feature_set

        dataset = with_feature_set(
            dataset, **features, annotations=annotations, progress=progress, cancel=cancel
        )
    with collection_paused():
        model = train_on_dataset(
            dataset, crystals=crystals, params=params, progress=progress, cancel=cancel,
            n_jobs=n_jobs,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        if cancel is not None and cancel.is_set():
            raise Cancelled("training cancelled")
        path = save_model(model, out)
    return model, path, seconds


def _import_training_libraries() -> None:
    """Import scikit-learn, imbalanced-learn and skops (seconds of work, some holding the GIL)."""
    # imports make many lasting objects (full collections otherwise) and run Python code for
    # seconds: the GUI thread must get the GIL back quickly to repaint
    with collection_paused(), quick_handoff():
        import imblearn.ensemble  # noqa: F401
        import skops.io  # noqa: F401

        # The ~130,000 objects the imports made live as long as the process. Left young, the
        # collector walks them all at once (~90 ms holding the GIL) as soon as it is back on,
        # again a generation later, then makes a full collection due. Freezing and at once
        # unfreezing moves them, with everything else, straight to the oldest generation:
        # nothing stays frozen, and the next full collection, when napari's own use makes
        # one due, walks them once.
        gc.freeze()
        gc.unfreeze()


WARMUP_DELAY_MS = 250


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
        self.features = ComboBox(label="features", choices=list(FEATURE_SETS), value="mask")
        self.features.tooltip = (
            "mask: the flattened mask (the study's); texture, colour, morphology, multiscale: "
            "engineered sets measured on each region at the resolution below (made from the "
            "masks' regions; a feature dataset file is used as it is)"
        )
        self.mpp = FloatSpinBox(
            label="resolution (um/px)", value=DEFAULT_MPP, min=0.05, max=64.0, step=0.25
        )
        self.stain = ComboBox(label="stain normalisation", choices=STAINS, value=None)
        self.stain.tooltip = "fitted on the dataset's first slide, stored in the model"
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
            "sub-forests of up to 20 trees grown at once (same forest; progress per sub-forest)"
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
            self.source, self.dataset_path, self.crystals, self.features, self.mpp, self.stain,
            *self._params, self.n_jobs, self.out, self.run_button,
        ]  # fmt: skip
        self.body = scroll_body(
            self,
            [
                self.source,
                self.dataset_path,
                self.dataset_info,
                self.crystals,
                self.features,
                self.mpp,
                self.stain,
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
        self.dataset_path.changed.connect(self._on_dataset_file)
        self.features.changed.connect(self._on_features)
        self.run_button.changed.connect(self.run)
        viewer.layers.events.inserted.connect(self._describe_source)
        viewer.layers.events.removed.connect(self._describe_source)
        self._on_source()
        self._on_features()
        # the first training would otherwise import the libraries mid-run, stalling the loop;
        # started once the new dock is drawn (its first paint is the heaviest of opening and
        # would have to share the GIL with the imports)
        self.warmup = threading.Thread(target=_import_training_libraries, daemon=True)
        QTimer.singleShot(WARMUP_DELAY_MS, self._start_warmup)
        names = [
            "n_estimators", "criterion", "max_features", "max_depth", "min_samples_split",
            "min_samples_leaf", "sampling_strategy", "replacement", "bootstrap", "random_state",
        ]  # fmt: skip
        remember("train", {
            "dataset": self.dataset_path, "crystals": self.crystals, "n_jobs": self.n_jobs,
            "features": self.features, "mpp": self.mpp, "stain": self.stain,
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

    @property
    def feature_options(self) -> dict[str, Any] | None:
        """The chosen feature set as `features.build.with_feature_set` keywords (None: mask)."""
        if self.features.value == "mask":
            return None
        return {"name": self.features.value, "mpp": float(self.mpp.value),
                "stain": self.stain.value}  # fmt: skip

    def _on_features(self, *_: Any) -> None:
        engineered = self.features.value != "mask"
        self.mpp.visible = self.stain.visible = engineered

    def _start_warmup(self) -> None:
        if self.warmup.ident is None:  # not started yet
            self.warmup.start()

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
            self.dataset_info.value = self._file_info()

    def _file_meta(self) -> dict | None:
        """The chosen dataset file's metadata (None while no dataset file is chosen)."""
        from napari_crystal.dataset import read_dataset_meta

        value = str(self.dataset_path.value or "")
        try:
            return read_dataset_meta(value) if value not in ("", ".") else None
        except CrystalError:
            return None

    def _on_dataset_file(self, *_: Any) -> None:
        """A feature dataset file chosen: its set becomes the choice."""
        meta = self._file_meta() or {}
        chosen = (meta.get("features") or {}).get("feature_set", "mask")
        if chosen != "mask":
            self.features.value = chosen
        self._describe_source()

    def _file_info(self) -> str:
        """What the chosen dataset file holds."""
        from napari_crystal.features import describe

        meta = self._file_meta()
        if not meta:
            return ""
        if (meta.get("features") or {}).get("feature_set", "mask") != "mask":
            return f"{meta.get('n')} patches of feature rows: {describe(meta['features'])}"
        return f"{meta.get('n')} masks of {meta.get('size')}x{meta.get('size')} ({meta.get('method')})"

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
                check_feature_choice(self._file_meta() or {}, self.features.value, value)
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
        what = self.features.value
        self.status.value = f"training {params['n_estimators']} trees on {name} ({what})..."
        return self.runner.start(
            train_and_save,
            dataset,
            out,
            self.crystals.value,
            params,
            int(self.n_jobs.value),
            label=f"train {what} ({params['n_estimators']} trees)",
            on_done=self._done,
            on_error=self._failed,
            features=self.feature_options,
            annotations=mask_annotations(self.viewer) if self.source.value == FROM_MASKS else None,
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
        from napari_crystal.features import describe

        what = describe((model.meta or {}).get("features") or {"size": model.size})
        self.status.value = (
            f"trained {n_trees} trees on {sum(counts.values())} patches ({what}), "
            f"{len(model.classes)} classes (crystals: {model.crystals}) in {seconds:.1f} s; "
            f"saved to {path}"
        )
        self.model_ready.emit(model)
