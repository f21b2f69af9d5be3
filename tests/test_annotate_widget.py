"""The Annotate widget in a real viewer, driven by key presses and mouse clicks (qtbot)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import QPoint, Qt  # noqa: E402

from napari_crystal import palette  # noqa: E402
from napari_crystal.io import read_annotation  # noqa: E402
from napari_crystal.plugin import _preferences  # noqa: E402
from napari_crystal.plugin.widgets import annotate_widget  # noqa: E402
from napari_crystal.plugin.widgets.annotate_widget import AnnotateWidget  # noqa: E402

pytestmark = pytest.mark.viewer
DATA = Path(__file__).parent / "data"


@pytest.fixture
def notes(monkeypatch):
    """Notifications the widget shows, as (kind, text)."""
    seen: list[tuple[str, str]] = []
    for kind in ("info", "warning", "error"):
        monkeypatch.setattr(
            annotate_widget, f"show_{kind}", lambda text, kind=kind: seen.append((kind, text))
        )
    return seen


@pytest.fixture
def fresh_settings(monkeypatch):
    """napari settings that are never saved, and npe2's writer order restored afterwards."""
    import napari.settings
    from napari.settings import NapariSettings

    monkeypatch.setattr(napari.settings, "_SETTINGS", NapariSettings(config_path=None))
    from npe2 import PluginManager

    def builtins_first():
        # napari's own writers first, as in a usual install; registration order otherwise
        # depends on how entry points are discovered (a src/*.egg-info on PYTHONPATH comes first)
        pm = PluginManager.instance()
        order = {mf.name: i for i, mf in enumerate(pm.iter_manifests())}
        order["napari"] = -1
        contrib, entries = _preferences._writer_entries()
        contrib._writers = sorted(entries, key=lambda e: order.get(e[-1].plugin_name, len(order)))

    builtins_first()
    yield napari.settings.get_settings()
    builtins_first()  # plugins may have reordered or registered during the test


@pytest.fixture
def annotated(make_napari_viewer, tmp_path, fresh_settings):
    """A shown viewer with example.csv open (a dcis and a bckg triangle) and the widget
    docked; the view centred on the square."""
    path = tmp_path / "example.csv"
    shutil.copy(DATA / "example.csv", path)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin="napari-crystal")
    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Annotate")
    layer = widget.layer
    assert layer is not None and layer.name == "example"  # the only annotation: preselected
    return viewer, widget, layer, path


def canvas_of(viewer):
    return viewer.window._qt_viewer.canvas.native


def look_at(viewer, qtbot, centre, zoom):
    camera = viewer.scene.camera
    camera.center = centre
    camera.zoom = zoom
    qtbot.wait(20)


def screen_point(viewer, rc) -> QPoint:
    """Canvas pixel of a world (row, col) point for the current camera."""
    canvas = canvas_of(viewer)
    camera = viewer.scene.camera
    centre = np.asarray(camera.center[-2:])
    y, x = (np.asarray(rc, float) - centre) * camera.zoom
    return QPoint(int(round(x + canvas.width() / 2)), int(round(y + canvas.height() / 2)))


def click(viewer, qtbot, rc):
    canvas = canvas_of(viewer)
    qtbot.mouseMove(canvas, screen_point(viewer, rc))
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=screen_point(viewer, rc))
    qtbot.wait(10)


def press(viewer, qtbot, key: str):
    qtbot.keyClick(canvas_of(viewer), getattr(Qt.Key, f"Key_{key}"))
    qtbot.wait(10)


def draw_polygon(viewer, qtbot, layer, corners):
    """Draw a polygon with clicks in add-polygon mode; Escape finishes it."""
    layer.mode = "add_polygon"
    for rc in corners:
        click(viewer, qtbot, rc)
    qtbot.mouseMove(canvas_of(viewer), screen_point(viewer, corners[0]))
    qtbot.keyClick(canvas_of(viewer), Qt.Key.Key_Escape)
    qtbot.wait(10)


def counts(widget) -> dict[str, int]:
    """The class list's region counts as shown."""
    native = widget.classes.native
    return {lab: int(native.item(row, 2).text()) for row, lab in enumerate(palette.LABELS)}


def test_class_key_relabels_and_recolours_the_clicked_shape(annotated, qtbot):
    viewer, widget, layer, _ = annotated
    look_at(viewer, qtbot, (6000, 8000), 0.1)  # the bckg triangle (5000, 7000) (5000, 9000)
    layer.mode = "select"  # (7000, 9000)
    click(viewer, qtbot, (5500, 8500))
    assert set(layer.selected_data) == {1}
    press(viewer, qtbot, "9")  # indc
    assert list(layer.features["label"]) == ["dcis", "indc"]
    np.testing.assert_allclose(layer.edge_color[1], palette.rgba("indc"))
    np.testing.assert_allclose(layer.face_color[1][:3], palette.rgba("indc")[:3])
    np.testing.assert_allclose(layer.edge_color[0], palette.rgba("dcis"))  # untouched
    assert list(layer.text.values) == ["dcis", "indc"]
    assert widget.current == "indc"
    qtbot.waitUntil(lambda: counts(widget)["indc"] == 1 and counts(widget)["bckg"] == 0)
    assert counts(widget)["dcis"] == 1


def test_clicking_a_class_row_labels_the_selection(annotated, qtbot):
    viewer, widget, layer, _ = annotated
    layer.mode = "select"
    layer.selected_data = {0}
    native = widget.classes.native
    row = palette.LABELS.index("cidc")  # a class with no key
    rect = native.visualItemRect(native.item(row, 1))
    qtbot.mouseClick(native.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert layer.features["label"][0] == "cidc"
    np.testing.assert_allclose(layer.edge_color[0], palette.rgba("cidc"))
    assert widget.current == "cidc"


def test_drawn_shapes_take_the_key_class_unique_ids_and_save(annotated, qtbot, notes):
    viewer, widget, layer, path = annotated
    look_at(viewer, qtbot, (20000, 20000), 0.02)
    layer.mode = "add_polygon"
    press(viewer, qtbot, "8")  # while drawing: the class of shapes drawn next
    assert widget.current == "dcis"
    draw_polygon(viewer, qtbot, layer, [(17000, 17000), (17000, 19000), (19000, 19000)])
    assert list(layer.features["label"]) == ["dcis", "bckg", "dcis"]
    assert set(layer.selected_data) == {2}  # napari selects what was just drawn
    press(viewer, qtbot, "2")  # draw, then key: the new shape and the next are norm
    assert list(layer.features["label"]) == ["dcis", "bckg", "norm"]
    draw_polygon(viewer, qtbot, layer, [(21000, 21000), (21000, 23000), (23000, 23000)])
    assert layer.nshapes == 4
    assert list(layer.features["label"]) == ["dcis", "bckg", "norm", "norm"]
    ids = list(layer.features["region_id"])
    assert ids[:2] == [1, 2] and len(set(ids)) == 4
    np.testing.assert_allclose(layer.edge_color[3], palette.rgba("norm"))
    assert list(layer.text.values)[2:] == ["norm", "norm"]

    # Save writes the layer's own file (the path it was opened from) and remembers it
    assert Path(widget.path.value) == path
    qtbot.mouseClick(widget.save_button.native, Qt.MouseButton.LeftButton)
    assert notes[-1] == ("info", "napari-crystal: saved 4 regions to example.csv"), notes
    saved = read_annotation(path)
    assert [r.label for r in saved.regions] == ["dcis", "bckg", "norm", "norm"]
    assert [r.region_id for r in saved.regions] == ids
    assert saved.mpp == 0.5022
    xml = path.with_suffix(".xml")
    widget.path.value = xml
    widget.save()
    assert layer.metadata["source"] == str(xml)
    assert [r.label for r in read_annotation(xml).regions] == [r.label for r in saved.regions]
    geojson = path.with_suffix(".geojson")  # QuPath's format, through the same save
    widget.path.value = geojson
    assert widget.save() == geojson
    assert [r.label for r in read_annotation(geojson).regions] == [r.label for r in saved.regions]


def test_bad_keys_notify_and_change_nothing(annotated, qtbot, notes):
    viewer, widget, layer, _ = annotated
    before = layer.features.copy()
    colours = layer.edge_color.copy()
    layer.mode = "select"
    layer.selected_data = set()
    press(viewer, qtbot, "8")  # no shape selected
    assert "no shape selected, nothing changed" in notes[-1][1]
    other = viewer.add_shapes(
        [np.array([[0, 0], [0, 50], [50, 50]])], shape_type="polygon", name="scribbles"
    )
    other.mode = "select"
    other.selected_data = {0}
    press(viewer, qtbot, "8")  # a Shapes layer that is not the annotation layer
    assert "'scribbles' is not it, nothing changed" in notes[-1][1]
    assert "label" not in other.features.columns
    viewer.layers.selection.active = viewer.layers["example classes"]
    press(viewer, qtbot, "8")  # Labels has no use for 8 in napari: ours explains
    assert "layer 'example classes' is selected, nothing changed" in notes[-1][1]
    assert before.equals(layer.features)
    np.testing.assert_array_equal(colours, layer.edge_color)
    assert widget.current == "bckg"  # key 1's class, unchanged


def test_measurement_row_click_selects_and_zooms_to_the_region(annotated, qtbot):
    viewer, widget, layer, _ = annotated
    frame = widget.measurements()
    assert list(frame.columns) == ["id", "class", "area µm²", "perimeter µm", "vertices"]
    assert frame["area µm²"][1] == pytest.approx(2000 * 2000 / 2 * 0.5022**2)
    assert frame["vertices"].tolist() == [3, 3]
    look_at(viewer, qtbot, (20000, 20000), 0.001)
    view = widget.table
    rect = view.visualRect(widget._model.index(1, 1))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert set(layer.selected_data) == {1}
    assert viewer.layers.selection.active is layer
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], [6000, 8000])
    assert viewer.scene.camera.zoom > 0.05  # the 2000-px square fills much of the view


def test_closing_the_widget_gives_the_number_keys_back(annotated, qtbot):
    viewer, widget, layer, _ = annotated
    assert len(layer.keymap) == 10
    viewer.window.remove_dock_widget(widget.native)
    qtbot.wait(10)
    assert len(layer.keymap) == 0
    layer.mode = "select"
    press(viewer, qtbot, "6")  # napari's own shortcut again: pan/zoom mode
    assert layer.mode == "pan_zoom"
    assert list(layer.features["label"]) == ["dcis", "bckg"]
    from qtpy.QtCore import QCoreApplication, QEvent

    widget.native.deleteLater()  # out of the dock it is napari's no more: delete it now
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def test_save_without_slide_header_is_refused(make_napari_viewer, tmp_path, notes, fresh_settings):
    viewer = make_napari_viewer()
    viewer.add_shapes([np.array([[0, 0], [0, 50], [50, 50]])], shape_type="polygon", name="drawn")
    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    layer = viewer.layers["drawn"]
    assert widget.layer is layer  # the only Shapes layer, adopted
    assert list(layer.features["label"]) == [palette.UNKNOWN]
    widget.path.value = tmp_path / "drawn.csv"
    assert widget.save() is None
    assert notes[-1][0] == "error"
    assert notes[-1][1].startswith("napari-crystal: not saved: the layer has no mpp, width")
    assert not (tmp_path / "drawn.csv").exists()


def test_preferences_only_on_click_then_save_selected_layers_writes_nedc(annotated, qtbot):
    viewer, widget, layer, path = annotated
    from napari.plugins.utils import get_preferred_reader
    from napari.settings import get_settings

    plugins = get_settings().plugins
    # opening the widget set nothing; napari's builtin shapes CSV comes first
    assert plugins.extension2reader.get("*.svs") is None
    assert plugins.extension2writer.get(".csv") is None
    assert _preferences.first_writer(".csv") == "napari"
    assert "Save Selected Layers" in widget.hint.value

    qtbot.mouseClick(widget.prefer_button.native, Qt.MouseButton.LeftButton)
    assert plugins.extension2reader["*.svs"] == "napari-crystal"
    assert plugins.extension2writer[".csv"] == "napari-crystal"
    assert get_preferred_reader("slide.svs") == "napari-crystal"
    assert _preferences.first_writer(".csv") == "napari-crystal"
    assert _preferences.is_preferred()
    assert "Save Selected Layers" not in widget.hint.value

    # what File > Save Selected Layers does with a .csv name now: an NEDC file with labels
    viewer.layers.selection = {layer}
    out = path.with_name("saved.csv")
    viewer.layers.save(str(out), selected=True)
    assert [r.label for r in read_annotation(out).regions] == ["dcis", "bckg"]


def test_linear_text_coordinates_equal_napari_own():
    from napari.layers import Shapes

    from napari_crystal.plugin import _napari_fixes

    rng = np.random.default_rng(3)
    data = [rng.uniform(0, 100, size=(int(rng.integers(3, 9)), 2)) for _ in range(40)]
    layer = Shapes(data, shape_type="polygon", features={"label": ["x"] * 40}, text="{label}")
    original = Shapes.__dict__["_view_text_coords"]
    expected = original.fget(layer)
    if _napari_fixes.apply():  # napari still has the quadratic version
        assert Shapes.__dict__["_view_text_coords"].fget is _napari_fixes._view_text_coords
    got = _napari_fixes._view_text_coords(layer)
    np.testing.assert_allclose(got[0], expected[0])
    assert got[1:] == expected[1:]
    np.testing.assert_allclose(layer._view_text_coords[0], expected[0])


def test_class_names_hidden_on_large_layers(make_napari_viewer, fresh_settings):
    viewer = make_napari_viewer()
    square = np.array([[0, 0], [0, 4], [4, 4], [4, 0]], float)
    n = annotate_widget.TEXT_LIMIT + 1
    layer = viewer.add_shapes(
        [square + 10 * i for i in range(n)],
        shape_type="polygon",
        features={"label": ["dcis"] * n, "region_id": np.arange(1, n + 1)},
        text="{label}",
    )
    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.layer is layer and not layer.text.visible
    assert "Class names hidden above 1,000 regions" in widget.hint.value
    layer.selected_data = {3}
    annotate_widget.relabel(layer, layer.selected_data, "indc")
    layer.text.visible = True  # hidden names were left stale, and come back right
    assert layer.text.values[3] == "indc" and layer.text.values[2] == "dcis"
