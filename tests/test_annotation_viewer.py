"""The annotation reader and writers inside a real napari viewer (Qt under Xvfb)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_crystal import palette
from napari_crystal.errors import AnnotationError
from napari_crystal.io.nedc import read_annotation
from napari_crystal.plugin._reader import get_annotation_reader
from napari_crystal.plugin._writer import shapes_to_annotation, write_csv, write_xml

pytestmark = pytest.mark.viewer
DATA = Path(__file__).parent / "data"


@pytest.fixture
def example_files(tmp_path):
    for name in ("example.csv", "example.xml"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path / "example.csv", tmp_path / "example.xml"


def _layers(viewer):
    labels = [layer for layer in viewer.layers if layer._type_string == "labels"]
    shapes = [layer for layer in viewer.layers if layer._type_string == "shapes"]
    return labels, shapes


def test_open_csv_and_xml_through_the_plugin(make_napari_viewer, example_files):
    csv_path, xml_path = example_files
    viewer = make_napari_viewer()
    viewer.open(str(csv_path), plugin="napari-crystal")
    labels, shapes = _layers(viewer)
    assert len(labels) == len(shapes) == 1
    layer = shapes[0]
    assert layer.name == "example" and layer.nshapes == 2
    assert list(layer.shape_type) == ["polygon", "polygon"]
    assert list(layer.features["label"]) == ["dcis", "bckg"]
    assert list(layer.features["region_id"]) == [1, 2]
    assert list(layer.features["tissue"]) == ["breast", "breast"]
    assert list(layer.features["confidence"]) == [1.0, 1.0]
    assert list(layer.features["depth"]) == [0, 0]
    # the closing vertex is napari's job: three corners of the dcis triangle
    np.testing.assert_array_equal(layer.data[0], [[12040, 30510], [12010, 30644], [12122, 30700]])
    np.testing.assert_allclose(layer.edge_color[0], palette.rgba("dcis"))
    np.testing.assert_allclose(layer.edge_color[1], palette.rgba("bckg"))
    np.testing.assert_allclose(layer.face_color[0][:3], palette.rgba("dcis")[:3])
    assert layer.text.string.format == "{label}"
    assert layer.metadata["mpp"] == 0.5022 and layer.metadata["width"] == 60120
    assert layer.metadata["bname"] == "00000042_s000_0hne_0000_a001_lvl001_t000"

    raster = labels[0]
    d = 60120 / 4096
    np.testing.assert_allclose(raster.scale, [d, d])
    np.testing.assert_allclose(raster.translate, [(d - 1) / 2, (d - 1) / 2])
    assert max(raster.data.shape) == 4096 and raster.data.dtype == np.uint8
    # the raster pixel under the bckg square's centre holds the bckg class
    r, c = ((np.array([6000, 8000]) - (d - 1) / 2) / d).round().astype(int)
    assert raster.data[r, c] == palette.class_index("bckg")
    np.testing.assert_allclose(
        raster.colormap.map(np.array([palette.class_index("dcis")]))[0][:3],
        palette.rgba("dcis")[:3],
    )
    # the labels lie under the shapes: same world extent as level 0
    assert raster.extent.world[1][1] == pytest.approx(60120 - 0.5, abs=d)

    viewer.open(str(xml_path), plugin="napari-crystal")
    labels, shapes = _layers(viewer)
    assert len(shapes) == 2 and shapes[1].nshapes == 1
    assert list(shapes[1].features["label"]) == ["dcis"]


def test_reader_refuses_other_files_fast(tmp_path):
    plain = tmp_path / "table.csv"
    plain.write_text("a,b\n1,2\n")
    assert get_annotation_reader(str(plain)) is None
    assert get_annotation_reader(str(tmp_path / "image.png")) is None
    assert get_annotation_reader([str(plain), str(plain)]) is None


def test_broken_file_raises_and_opens_nothing(make_napari_viewer, tmp_path):
    bad = tmp_path / "broken.csv"
    bad.write_text((DATA / "example.csv").read_text().replace("30644", "x30644"))
    reader = get_annotation_reader(str(bad))
    assert reader is not None  # an NEDC file, so ours to report on
    with pytest.raises(AnnotationError, match=r"broken\.csv:9: column 'x30644' is not a number"):
        reader(str(bad))
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match="x30644"):
        viewer.open(str(bad), plugin="napari-crystal")
    assert len(viewer.layers) == 0


def test_draw_label_save_and_reread(make_napari_viewer, example_files, tmp_path):
    csv_path, _ = example_files
    viewer = make_napari_viewer()
    viewer.open(str(csv_path), plugin="napari-crystal")
    layer = _layers(viewer)[1][0]
    layer.add_polygons(
        [np.array([[100.2, 100.0], [100.0, 400.0], [300.0, 400.0], [300.0, 100.0]])]
    )
    layer.add_rectangles([np.array([[1000.0, 1000.0], [1200.0, 1500.0]])])
    assert layer.nshapes == 4
    # new shapes have no label yet: saving must say so, and write nothing
    layer.features.loc[2:, "label"] = ""
    out = tmp_path / "edited.csv"
    with pytest.raises(AnnotationError, match="shape 2 has no label"):
        write_csv(str(out), layer.data, layer._get_state())
    assert not out.exists()
    layer.features.loc[2, "label"] = "indc"
    layer.features.loc[3, "label"] = "cdcs"
    layer.features.loc[2:, "region_id"] = np.nan
    viewer.layers.selection = {layer}
    saved = viewer.layers.save(str(out), selected=True, plugin="napari-crystal")
    assert saved == [str(out)]
    ann = read_annotation(out)
    assert [r.label for r in ann.regions] == ["dcis", "bckg", "indc", "cdcs"]
    assert [r.region_id for r in ann.regions] == [1, 2, 3, 4]
    assert ann.bname == "00000042_s000_0hne_0000_a001_lvl001_t000" and ann.mpp == 0.5022
    np.testing.assert_array_equal(
        ann.regions[2].coords, [[100, 100], [100, 400], [300, 400], [300, 100], [100, 100]]
    )
    assert ann.regions[3].coords.shape == (5, 2)
    # the two regions read from the file come back exactly as they were
    assert ann.regions[:2] == read_annotation(csv_path).regions
    xml_out = tmp_path / "edited.xml"
    assert write_xml(str(xml_out), layer.data, layer._get_state()) == [str(xml_out)]
    assert read_annotation(xml_out).regions == ann.regions


def test_shapes_to_annotation_without_metadata_or_labels():
    square = [np.array([[0.0, 0.0], [0.0, 5.0], [5.0, 5.0], [5.0, 0.0]])]
    with pytest.raises(AnnotationError, match="no 'label' feature"):
        shapes_to_annotation(square, {}, {}, ["polygon"])
    with pytest.raises(AnnotationError, match="shape 0 is a line"):
        shapes_to_annotation(square, {"label": ["dcis"]}, {}, ["line"])
    ellipse = shapes_to_annotation(square, {"label": ["dcis"]}, {}, ["ellipse"], False)
    assert ellipse.regions[0].kind == "ellipse" and len(ellipse.regions[0].coords) == 129
    assert ellipse.regions[0].area == pytest.approx(np.pi * 2.5 * 2.5, rel=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ann = shapes_to_annotation(square, {"label": ["dcis"]}, {}, "polygon")
    assert ann.regions[0].tissue == "breast" and ann.regions[0].region_id == 1
    with pytest.raises(AnnotationError, match=r"out\.csv: the layer's metadata has no mpp"):
        write_csv("out.csv", square, {"features": {"label": ["dcis"]}, "shape_type": ["polygon"]})


_SETTINGS_SCRIPT = """
import json, sys
from pathlib import Path
from napari.settings import get_settings
from napari.utils.triangulation_backend import TriangulationBackend, get_backend
settings = get_settings()  # from NAPARI_CONFIG
settings.experimental.triangulation_backend = TriangulationBackend.pure_python  # saved
config = Path(settings.config_path)
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=False)
QApplication.processEvents()
before = config.read_bytes()
seen = []  # the backend in use as napari adds each layer
viewer.layers.events.inserted.connect(lambda e: seen.append(str(get_backend())))
viewer.open(sys.argv[1], plugin="napari-crystal")
shapes = viewer.layers[-1]
during = seen[-1]
QApplication.processEvents()
result = {
    "unchanged": config.read_bytes() == before,
    "diff": [before.decode(), config.read_bytes().decode()],
    "setting": str(get_settings().experimental.triangulation_backend),
    "during": during,
    "after": str(get_backend()),
    "labels": list(shapes.features["label"]),
    "first": shapes.data[0].tolist(),
}
viewer.close()
print(json.dumps(result))
"""


def test_opening_an_annotation_leaves_napari_settings_alone(example_files, tmp_path):
    """The fast triangulation is used without writing napari's settings file (a real one,
    in a temporary config folder, saying 'pure python'), and the layer is right."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("bermuda")
    config = tmp_path / "config" / "settings.yaml"
    config.parent.mkdir()
    env = {**os.environ, "NAPARI_CONFIG": str(config)}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH")])
    )
    run = subprocess.run(
        [sys.executable, "-c", _SETTINGS_SCRIPT, str(example_files[0])],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["unchanged"], result["diff"]
    assert result["setting"] == "Pure python"
    assert result["during"] == "Fastest available"  # napari built the layers with it
    assert result["after"] == "Pure python"  # and the user's choice is back
    assert result["labels"] == ["dcis", "bckg"]
    assert result["first"] == [[12040, 30510], [12010, 30644], [12122, 30700]]
