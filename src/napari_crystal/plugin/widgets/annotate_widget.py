"""Annotate widget: label regions by key, see counts and measurements, save to the layer's file.

QuPath's class list and napari-feature-classifier's number keys as anchors: keys 1-9 and 0 set
the class of the selected shapes (and of shapes drawn next) on an annotation Shapes layer; the
shapes recolour and relabel at once; drawn shapes get unique region ids. The rules (keys, ids,
colours, measurements) are :mod:`napari_crystal.annotate`; saving is the core writer.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Table
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QAbstractTableModel, QEvent, QModelIndex, QObject, Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QVBoxLayout

from napari_crystal import annotate, palette
from napari_crystal.errors import CrystalError
from napari_crystal.io import write_annotation
from napari_crystal.plugin import _napari_fixes, _preferences
from napari_crystal.plugin._reader import FACE_ALPHA
from napari_crystal.plugin.widgets._ui import scroll_body, wrapped

__all__ = ["AnnotateWidget", "is_annotation_layer", "relabel"]

DRAW_MODES = {"add_polygon", "add_polygon_lasso", "add_rectangle", "add_ellipse", "add_path"}
REFRESH_MS = 150  # counts and measurements follow edits at most this often
HEADER_KEYS = ("mpp", "width", "height")
SAVE_SUFFIXES = (".csv", ".xml", ".geojson", ".json")
# Above this many regions the class names are hidden (unreadable, and napari recomputes every
# name's position on each recolour); colours and the class list show the class, and the
# layer controls' "display text" brings the names back.
TEXT_LIMIT = 1_000


def _unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy`` (docked widgets get a proxied viewer)."""
    return getattr(obj, "__wrapped__", obj)


def _short(path) -> str:
    """A path as its file name (notifications lead with the reason, not a long folder)."""
    return Path(str(path)).name


def is_annotation_layer(layer) -> bool:
    """A Shapes layer that holds labelled regions: a ``label`` feature column."""
    import napari.layers

    return isinstance(layer, napari.layers.Shapes) and "label" in layer.features.columns


def _face_alpha(layer) -> float:
    """The face opacity the layer's shapes use (outline layers have none)."""
    if layer.nshapes and len(layer.face_color):
        return float(layer.face_color[0][3])
    return FACE_ALPHA


def _paint(layer, indices: np.ndarray, labels) -> None:
    """Edge and face colours of ``indices`` from the palette in one batched update, then one
    colour event (napari redraws colours and text together on it)."""
    if not len(indices):
        return
    edge = annotate.class_colours(labels)
    face = annotate.class_colours(labels, _face_alpha(layer))
    view = layer._data_view
    with view.batched_updates():
        view.update_edge_colors(indices, edge)
        view.update_face_colors(indices, face)
    layer.events.face_color()


def _refresh_names(layer) -> None:
    """Class names from the features again, without a text event (the colour event that
    follows redraws them); hidden names are only marked stale and made when shown."""
    if layer.text.visible:
        with layer.text.events.blocker_all():
            layer.refresh_text()
    else:
        layer.text.string._clear()  # napari recomputes cleared names when it next shows them


def relabel(layer, indices, label: str) -> None:
    """Give shapes ``indices`` of an annotation layer the class ``label``: feature, colours, text."""
    indices = np.asarray(sorted(int(i) for i in indices), dtype=np.int64)
    if not len(indices):
        return
    features = layer.features
    features.iloc[indices, features.columns.get_loc("label")] = label
    _refresh_names(layer)
    _paint(layer, indices, [label] * len(indices))
    layer.events.features()


def _prepare(layer, viewer) -> None:
    """Make a Shapes layer an annotation layer: label/region_id features, unique ids, palette
    colours, the label as text, and the slide's header when it has none."""
    features = layer.features.copy()
    n = layer.nshapes
    if "label" not in features.columns:
        features["label"] = pd.Series([palette.UNKNOWN] * n, dtype=object)
    if "region_id" not in features.columns:
        features["region_id"] = pd.Series([None] * n, dtype=object)
    ids = annotate.assign_region_ids(features["region_id"].tolist())
    changed = "label" not in layer.features.columns or not np.array_equal(
        ids, np.asarray(layer.features.get("region_id", pd.Series(dtype=float)))
    )
    if changed:
        features["region_id"] = ids
        layer.features = features
        _paint(layer, np.arange(n), features["label"].astype(str).tolist())
    if getattr(layer.text.string, "format", None) != "{label}":
        layer.text = {"string": "{label}", "color": "white", "size": 10, "anchor": "center"}
    if n > TEXT_LIMIT and layer.text.visible:
        layer.text.visible = False
    meta = layer.metadata
    if any(meta.get(k) is None for k in HEADER_KEYS):
        slide = _slide_header(viewer)
        for key, value in slide.items():
            meta.setdefault(key, value)
            if meta.get(key) is None:
                meta[key] = value


def _slide_header(viewer) -> dict:
    """mpp/width/height/bname of the only slide image open (reader metadata), else nothing."""
    import napari.layers

    slides = [
        layer
        for layer in viewer.layers
        if isinstance(layer, napari.layers.Image) and (layer.metadata or {}).get("shape")
    ]
    if len(slides) != 1:
        return {}
    meta = slides[0].metadata
    rows, cols = meta["shape"][:2]
    header = {"mpp": meta.get("mpp"), "width": int(cols), "height": int(rows)}
    if meta.get("path"):
        header["bname"] = Path(meta["path"]).stem
    return header


def default_save_path(layer, viewer) -> Path | None:
    """Where Save writes: the file the layer came from (or was last saved to), else a ``.csv``
    beside the slide it was drawn on."""
    source = (layer.metadata or {}).get("source")
    if source:
        return Path(source)
    import napari.layers

    bname = (layer.metadata or {}).get("bname")
    for other in viewer.layers:
        path = (
            (other.metadata or {}).get("path") if isinstance(other, napari.layers.Image) else None
        )
        if path and (not bname or Path(path).stem == bname):
            return Path(path).with_suffix(".csv")
    return None


def save_with_notice(layer, path: Path) -> Path | None:
    """`save_layer`, with the outcome as a notification (reason first); None when not saved.

    The layer remembers the file it was saved to (``metadata["source"]``).
    """
    try:
        written = save_layer(layer, Path(path))
    except CrystalError as exc:
        show_error(f"napari-crystal: not saved: {exc.message} ({_short(path)})")
        return None
    except OSError as exc:
        show_error(f"napari-crystal: not saved: {exc.strerror or exc} ({_short(path)})")
        return None
    layer.metadata["source"] = str(written)
    show_info(f"napari-crystal: saved {layer.nshapes} regions to {_short(written)}")
    return written


def save_layer(layer, path: Path) -> Path:
    """Write an annotation layer to ``path`` (format from the suffix) with the core writers."""
    from napari_crystal.plugin.widgets._layers import shapes_annotation

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_SUFFIXES:
        raise CrystalError(path, "save as .csv or .xml (NEDC) or .geojson")
    missing = [k for k in HEADER_KEYS if (layer.metadata or {}).get(k) is None]
    if missing:
        raise CrystalError(
            path,
            f"the layer has no {', '.join(missing)}: open the slide it belongs to, then "
            "choose the layer again",
        )
    ann = shapes_annotation(layer)
    if not ann.bname:
        ann.bname = path.stem
    write_annotation(ann, path)  # the format from the suffix (GeoJSON where io supports it)
    return path


class _FrameModel(QAbstractTableModel):
    """A read-only Qt model over a DataFrame: only visible cells are drawn, so thousands of
    regions cost nothing until scrolled to (a QTableWidget builds an item per cell)."""

    def __init__(self):
        super().__init__()
        self.frame = pd.DataFrame()

    def set_frame(self, frame: pd.DataFrame) -> None:
        self.beginResetModel()
        self.frame = frame
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):  # noqa: B008, N802 (Qt's names)
        return 0 if parent.isValid() else len(self.frame)

    def columnCount(self, parent=QModelIndex()):  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.frame.columns)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        value = self.frame.iat[index.row(), index.column()]
        if isinstance(value, float | np.floating):
            return f"{value:,.1f}"
        return str(value)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return str(self.frame.columns[section]).replace("_", " ")
        return None


HEADINGS = {
    "region_id": "id",
    "class": "class",
    "area_um2": "area µm²",
    "perimeter_um": "perimeter µm",
    "area_px2": "area px²",
    "perimeter_px": "perimeter px",
    "vertices": "vertices",
}


class _CloseWatcher(QObject):
    """Calls ``on_close`` when the widget is closed or taken out of its dock (napari's dock
    close button unparents the widget rather than deleting it)."""

    def __init__(self, on_close):
        super().__init__()
        self.on_close = on_close
        self.had_parent = False

    def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind == QEvent.Type.ParentChange:
            if obj.parent() is not None:
                self.had_parent = True
            elif self.had_parent:
                self.on_close()
        elif kind == QEvent.Type.Close:
            self.on_close()
        return False


class AnnotateWidget(Container):
    """Class palette with keys, colours and counts; measurements; save; napari preferences."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):  # noqa: F821
        super().__init__(labels=False)
        _napari_fixes.apply()  # relabelling thousands of shapes must not cost seconds
        self.viewer = napari_viewer
        self.keys = annotate.class_keys()
        self.current = self.keys["1"]
        self.layer: Any = None
        self._bound: list[weakref.ref] = []
        self._viewer_bound: dict[str, Any] = {}
        self._count_before = 0
        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)

        self.layer_box = ComboBox(
            label="Layer", choices=self._shapes_choices, nullable=True, tooltip="Shapes to label"
        )
        self.hint = Label(value="")
        self.hint.native.setWordWrap(True)
        self.classes = Table(value={"key": [], "class": [], "regions": []})
        self.classes.read_only = True
        self.classes.native.verticalHeader().setVisible(False)
        self.classes.native.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.classes.native.cellClicked.connect(self._class_clicked)
        self.classes.min_height = 12 * 26

        self.table_holder = Container(labels=False)
        self._model = _FrameModel()
        self.table = QTableView()
        self.table.setModel(self._model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(160)
        self.table.clicked.connect(self._row_clicked)
        layout = self.table_holder.native.layout()
        if layout is None:
            layout = QVBoxLayout(self.table_holder.native)
        layout.addWidget(self.table)

        self.path = FileEdit(mode="w", label="Save to", filter="*.csv *.xml *.geojson")
        self.save_button = PushButton(text="Save")
        self.save_button.changed.connect(self.save)
        self.prefer_button = PushButton(text="Use napari-crystal for .svs and .csv")
        self.prefer_button.tooltip = (
            "Sets napari's own extension preferences (Preferences > Plugins): .svs files open "
            "with napari-crystal, Shapes saved as .csv become NEDC annotations"
        )
        self.prefer_button.changed.connect(self.make_preferred)
        save_row = Container(
            widgets=[self.save_button, self.prefer_button], layout="horizontal", labels=False
        )
        self.body = scroll_body(
            self,
            [
                self.layer_box,
                wrapped(
                    Label(value="Classes: press the key or click the row to label the selection")
                ),
                self.classes,
                self.hint,
                wrapped(Label(value="Regions: click a row to go to it")),
                self.table_holder,
                self.path,
                save_row,
            ],
        )
        self.layer_box.changed.connect(self._layer_chosen)
        layers = _unwrap(self.viewer).layers
        layers.events.inserted.connect(self._layers_changed)
        layers.events.removed.connect(self._layers_changed)
        self._bind_viewer()
        self._layers_changed()
        self._preselect()
        self._closer = _CloseWatcher(self.close_bindings)
        self.native.installEventFilter(self._closer)
        self.refresh()

    # ------------------------------------------------------------------ layers and keys

    def _shapes_choices(self, *_):
        import napari.layers

        return [
            (layer.name, layer)
            for layer in _unwrap(self.viewer).layers
            if isinstance(layer, napari.layers.Shapes)
        ]

    def _preselect(self) -> None:
        """The only annotation layer (or only Shapes layer) is chosen without asking."""
        choices = [layer for _, layer in self._shapes_choices()]
        labelled = [layer for layer in choices if is_annotation_layer(layer)]
        for group in (labelled, choices):
            if len(group) == 1:
                self.layer_box.value = group[0]
                return

    def _layers_changed(self, *_) -> None:
        self.layer_box.reset_choices()
        import napari.layers

        for layer in _unwrap(self.viewer).layers:
            if isinstance(layer, napari.layers.Shapes) and not self._is_bound(layer):
                for key in self.keys:
                    layer.bind_key(key, self._key_handler(key), overwrite=True)
                self._bound.append(weakref.ref(layer))
        if self.layer is not None and self.layer not in _unwrap(self.viewer).layers:
            self._attach(None)
        elif self.layer is None:
            self._preselect()

    def _key_handler(self, key: str, viewer: bool = False):
        """A named function per key (napari's key handling wants ``__name__``)."""
        target = self._on_viewer_key if viewer else self._on_key

        def set_class(obj) -> None:
            target(key, obj)

        set_class.__name__ = f"napari_crystal_class_key_{key}"
        return set_class

    def _is_bound(self, layer) -> bool:
        return any(ref() is layer for ref in self._bound)

    def _bind_viewer(self) -> None:
        """Number keys on other layer types (where napari has no use for them) explain why
        nothing happens, instead of doing nothing silently."""
        viewer = _unwrap(self.viewer)
        for key in self.keys:
            self._viewer_bound[key] = viewer.bind_key(
                key, self._key_handler(key, viewer=True), overwrite=True
            )

    def close_bindings(self, *_) -> None:
        """Give the number keys back to napari (shape modes) and stop following the layers."""
        for ref in self._bound:
            layer = ref()
            if layer is not None:
                for key in self.keys:
                    layer.bind_key(key, None)
        self._bound.clear()
        viewer = _unwrap(self.viewer)
        for key, previous in self._viewer_bound.items():
            viewer.bind_key(key, None)
            if previous is not None:
                viewer.bind_key(key, previous)
        self._viewer_bound.clear()
        try:
            viewer.layers.events.inserted.disconnect(self._layers_changed)
            viewer.layers.events.removed.disconnect(self._layers_changed)
        except (TypeError, ValueError, RuntimeError):
            pass
        self._timer.stop()
        self._detach()
        self.native.removeEventFilter(self._closer)

    def _layer_chosen(self, layer) -> None:
        self._attach(layer)

    def _detach(self) -> None:
        old, self.layer = self.layer, None
        if old is not None:
            for event, slot in (("data", self._data_changed), ("features", self._schedule)):
                try:
                    getattr(old.events, event).disconnect(slot)
                except (TypeError, ValueError, RuntimeError):
                    pass

    def _attach(self, layer) -> None:
        self._detach()
        self.layer = layer
        if layer is not None:
            _prepare(layer, _unwrap(self.viewer))
            self._count_before = layer.nshapes
            layer.events.data.connect(self._data_changed)
            layer.events.features.connect(self._schedule)
            self._set_current(self.current)
            path = default_save_path(layer, _unwrap(self.viewer))
            if path is not None:
                self.path.value = path
        self.refresh()

    def _on_key(self, key: str, layer) -> None:
        """A class key on a Shapes layer: label the selection (or the next shapes drawn)."""
        label = self.keys[key]
        if not is_annotation_layer(layer) or layer is not self.layer:
            show_info(
                f"napari-crystal: key {key} labels shapes of the annotation layer chosen in "
                f"Annotate; {layer.name!r} is not it, nothing changed"
            )
            return
        selected = sorted(layer.selected_data)
        if not selected:
            if layer.mode in DRAW_MODES:
                self._set_current(label)
                return
            show_info(
                f"napari-crystal: key {key} ({label}): no shape selected, nothing changed; "
                "select shapes first (S), or press it while drawing to label new shapes"
            )
            return
        self._set_current(label)
        relabel(layer, selected, label)

    def _on_viewer_key(self, key: str, viewer) -> None:
        active = viewer.layers.selection.active
        name = "no layer" if active is None else f"layer {active.name!r}"
        show_info(
            f"napari-crystal: key {key} labels shapes of an annotation layer; {name} is "
            "selected, nothing changed"
        )

    def _set_current(self, label: str) -> None:
        """The class of shapes drawn next (and the row marked in the class list)."""
        self.current = label
        if self.layer is not None:
            defaults = self.layer.feature_defaults.iloc[:1].copy()
            defaults["label"] = label
            self.layer.feature_defaults = defaults
        self._update_hint()
        self._mark_current()

    def _class_clicked(self, row: int, _column: int) -> None:
        label = palette.LABELS[row] if row < len(palette.LABELS) else None
        if label is None:
            return
        self._set_current(label)
        if self.layer is not None and self.layer.selected_data:
            relabel(self.layer, self.layer.selected_data, label)

    def _data_changed(self, event) -> None:
        """New shapes: the current class, its colours and an unused region id."""
        layer = self.layer
        action = str(getattr(event, "action", ""))
        if action.endswith("adding"):
            self._count_before = layer.nshapes
            return
        n = layer.nshapes
        if action.endswith("added") and n > self._count_before:
            new = np.arange(self._count_before, n)
            features = layer.features
            features.iloc[new, features.columns.get_loc("label")] = self.current
            ids = features["region_id"].tolist()
            for i in new:  # a new shape's default id is a copy of another's
                ids[i] = None
            features["region_id"] = annotate.assign_region_ids(ids)
            _refresh_names(layer)
            _paint(layer, new, [self.current] * len(new))
        self._count_before = n
        self._schedule()

    # ------------------------------------------------------------------ display

    def _schedule(self, *_) -> None:
        self._timer.start()

    def refresh(self) -> None:
        """Counts per class and the measurement table, from the layer as it is now."""
        layer = self.layer
        labels = [] if layer is None else layer.features["label"].astype(str).tolist()
        counts = palette.count_by_class(labels) if labels else {}
        self.classes.value = {
            "key": [annotate.key_of(label, self.keys) for label in palette.LABELS],
            "class": [f"{label}  {palette.MEANINGS[label]}" for label in palette.LABELS],
            "regions": [counts.get(label, 0) for label in palette.LABELS],
        }
        native = self.classes.native
        for row, label in enumerate(palette.LABELS):
            item = native.item(row, 0)
            if item is not None:
                colour = QColor(palette.COLORS[label])
                item.setBackground(colour)
                item.setForeground(QColor("black"))
        native.resizeColumnsToContents()
        native.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self._mark_current()
        self._model.set_frame(self.measurements())
        self._update_hint()

    def measurements(self) -> pd.DataFrame:
        """The measurement table of the current layer (level-0 pixels through its scale)."""
        layer = self.layer
        if layer is None or not layer.nshapes:
            return pd.DataFrame(columns=[HEADINGS[c] for c in annotate.MEASUREMENT_COLUMNS])
        scale = np.asarray(layer.scale[-2:], dtype=float)
        coords = [np.asarray(d, dtype=float)[:, -2:] * scale for d in layer.data]
        frame = annotate.measurements(
            coords,
            layer.features["label"].astype(str).tolist(),
            layer.features["region_id"].tolist(),
            (layer.metadata or {}).get("mpp"),
        )
        return frame.rename(columns=HEADINGS)

    def _mark_current(self) -> None:
        native = self.classes.native
        if self.current in palette.LABELS:
            native.selectRow(palette.LABELS.index(self.current))

    def _update_hint(self) -> None:
        if self.layer is None:
            self.hint.value = "Choose or open an annotation layer (a slide opens with one)."
            return
        key = annotate.key_of(self.current, self.keys)
        text = f"New shapes: {self.current}" + (f" (key {key})" if key else "")
        if not self.layer.text.visible and self.layer.nshapes > TEXT_LIMIT:
            text += (
                f". Class names hidden above {TEXT_LIMIT:,} regions ('display text' shows them)"
            )
        if not _preferences.is_preferred():
            text += (
                ". File > Save Selected Layers as .csv uses napari's Shapes CSV (no labels) "
                "unless 'NEDC CSV annotation' is chosen; Save here keeps them."
            )
        self.hint.value = text

    def _row_clicked(self, index) -> None:
        """Select that region in the layer and bring it into view."""
        self.go_to(index.row())

    def go_to(self, row: int) -> None:
        """Select shape ``row`` of the layer and centre and zoom the view on it."""
        layer, viewer = self.layer, _unwrap(self.viewer)
        if layer is None or not 0 <= row < layer.nshapes:
            return
        world = np.asarray([layer.data_to_world(v) for v in layer._data_view.shapes[row].data])
        canvas = getattr(viewer, "canvas", None)  # napari >= 0.9
        size = getattr(canvas, "size", None) or getattr(viewer, "_canvas_size", (600, 800))
        centre, zoom = annotate.view_for(world[:, -2:], tuple(size[-2:]))
        viewer.layers.selection.active = layer
        layer.mode = "select"
        layer.selected_data = {row}
        scene = getattr(viewer, "scene", None)  # napari >= 0.9; viewer.camera before
        camera = scene.camera if scene is not None else viewer.camera
        camera.center = tuple(centre)
        camera.zoom = zoom

    # ------------------------------------------------------------------ save, preferences

    def save(self, *_) -> Path | None:
        """Save the layer to the file in the box (NEDC CSV/XML, GeoJSON) and remember it."""
        layer = self.layer
        if layer is None:
            show_info("napari-crystal: nothing saved: choose an annotation layer first")
            return None
        path = self.path.value
        if path is None or not str(path) or Path(str(path)).is_dir():
            show_info("napari-crystal: nothing saved: choose a file name (.csv, .xml, .geojson)")
            return None
        return save_with_notice(layer, Path(path))

    def make_preferred(self, *_) -> None:
        """Only on this button: napari's extension preferences name napari-crystal."""
        done = _preferences.make_preferred()
        if _preferences.first_writer(".csv") != _preferences.PLUGIN:
            show_warning(
                "napari-crystal: preference saved, but napari still offers another .csv "
                "writer first; choose 'NEDC CSV annotation' when saving"
            )
        else:
            show_info(f"napari-crystal: napari now uses napari-crystal to {', '.join(done)}")
        self._update_hint()
