"""One read/write/sniff for every format, label maps, loss reports, CLI and napari entry points."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from format_samples import asap_sample, imagescope_sample, qupath_sample_04
from napari_crystal.cli import main
from napari_crystal.errors import AnnotationError
from napari_crystal.io import (
    Annotation,
    ConversionWarning,
    Region,
    UnknownLabelWarning,
    find_annotation,
    map_labels,
    read_annotation,
    read_label_map,
    sniff_annotation,
    write_annotation,
)

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.filterwarnings("ignore::napari_crystal.io.ConversionWarning")


@pytest.fixture
def samples(tmp_path) -> dict[str, Path]:
    out = {
        "imagescope": tmp_path / "scope.xml",
        "asap": tmp_path / "camelyon.xml",
        "geojson": tmp_path / "qupath.geojson",
    }
    out["imagescope"].write_bytes(imagescope_sample())
    out["asap"].write_bytes(asap_sample())
    out["geojson"].write_bytes(qupath_sample_04())
    return out


def test_sniffing_by_content_not_name(samples, tmp_path):
    assert sniff_annotation(DATA / "example.csv") == "csv"
    assert sniff_annotation(DATA / "example.xml") == "xml"
    assert sniff_annotation(samples["imagescope"]) == "xml"
    assert sniff_annotation(samples["asap"]) == "asap"
    assert sniff_annotation(samples["geojson"]) == "geojson"
    renamed = tmp_path / "annotations.txt"
    renamed.write_bytes(qupath_sample_04())
    assert sniff_annotation(renamed) == "geojson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownLabelWarning)
        assert len(read_annotation(renamed).regions) == 4
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(AnnotationError, match=r"notes\.txt:1: not an annotation file"):
        read_annotation(other)


def test_find_annotation_beside_slide_takes_every_format(tmp_path):
    slide = tmp_path / "s1.svs"
    (tmp_path / "s1.json").write_text('{"name": "not ours"}')
    assert find_annotation(slide) is None
    (tmp_path / "s1.geojson").write_bytes(qupath_sample_04())
    assert find_annotation(slide) == tmp_path / "s1.geojson"
    (tmp_path / "s1.xml").write_bytes(asap_sample())
    assert find_annotation(slide) == tmp_path / "s1.xml"
    (tmp_path / "s1.csv").write_bytes((DATA / "example.csv").read_bytes())
    assert find_annotation(slide) == tmp_path / "s1.csv"


def test_label_map_file_and_function(tmp_path, samples):
    table = tmp_path / "map.csv"
    table.write_text("name,label\n# CAMELYON\nmetastasis,indc\nExclusion, artf\n\n")
    assert read_label_map(table) == {"metastasis": "indc", "Exclusion": "artf"}
    with pytest.warns(UnknownLabelWarning) as rec:
        ann = read_annotation(samples["asap"], labels=table)
    unknown = [str(w.message) for w in rec if issubclass(w.category, UnknownLabelWarning)]
    assert len(unknown) == 1 and "'', '_2'" in unknown[0] and "map.csv" in unknown[0]
    assert [r.label for r in ann.regions] == ["indc", "indc", "artf", "_2", ""]
    assert ann.regions[0].extra["source_label"] == "metastasis"
    assert ann.class_colors["indc"] == "#ff0000"  # the class colour follows the class
    # case-insensitive match, and no warning once every label is known
    plain = Annotation([Region(0, 1, "TUMOR", "", [[0, 0], [0, 5], [5, 5]], None)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert map_labels(plain, {"Tumor": "indc"}).regions[0].label == "indc"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,c\n", r"map\.csv:1: label map rows are 'name,label'"),
        ("x,indc\nx,dcis\n", r"map\.csv:2: 'x' is mapped twice"),
        ("x,\n", "empty name or label"),
        ("# nothing\n", "holds no 'name,label' rows"),
    ],
)
def test_bad_label_maps(tmp_path, text, message):
    table = tmp_path / "map.csv"
    table.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_label_map(table)


def test_conversions_report_what_they_lose(samples, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ann = read_annotation(samples["imagescope"])
    ann.width, ann.height = 10_000, 10_000
    with pytest.warns(ConversionWarning) as rec:
        write_annotation(ann, tmp_path / "out.csv")
    (message,) = [str(w.message) for w in rec]
    assert "NEDC CSV cannot carry holes of 1 region(s)" in message
    assert "colours of 4 region(s)" in message and "sub-pixel coordinates" in message
    with pytest.warns(ConversionWarning, match="holes of 1 region") as rec:
        write_annotation(ann, tmp_path / "out.xml")
    assert "colours" not in str(rec[0].message)  # XML layers carry colours
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_annotation(ann, tmp_path / "out.geojson")  # GeoJSON carries everything
    back = read_annotation(tmp_path / "out.geojson")
    assert len(back.regions[0].holes) == 1 and back.regions[1].kind == "ellipse"


def test_cli_info_and_convert_every_format(samples, tmp_path, capsys):
    assert main(["info", str(samples["asap"]), str(samples["geojson"])]) == 0
    captured = capsys.readouterr()
    assert "metastasis" in captured.out and "Tumor" in captured.out
    assert "napari-crystal: warning: " in captured.err and "dot(s)" in captured.err
    assert main(["info", "--json", "--detections", str(samples["geojson"])]) == 0
    assert json.loads(capsys.readouterr().out)["regions"] == 6
    table = tmp_path / "map.csv"
    table.write_text("Tumor,indc\nStroma,bckg\n")
    out = tmp_path / "q.csv"
    assert main(["convert", str(samples["geojson"]), str(out), "--labels", str(table)]) == 2
    assert "cannot write: pixel size (mpp) is unknown" in capsys.readouterr().err
    assert not out.exists()
    for src, dst in [
        (DATA / "example.csv", tmp_path / "a.geojson"),
        (tmp_path / "a.geojson", tmp_path / "b.xml"),
        (tmp_path / "b.xml", tmp_path / "c.json"),
        (tmp_path / "c.json", tmp_path / "d.csv"),
        (samples["imagescope"], tmp_path / "e.geojson"),
        (samples["asap"], tmp_path / "f.geojson"),
    ]:
        assert main(["convert", str(src), str(dst)]) == 0, capsys.readouterr().err
    assert (tmp_path / "d.csv").read_bytes() == (DATA / "example.csv").read_bytes()
    assert main(["convert", str(samples["geojson"]), str(tmp_path / "g.xml"), "--to", "asap"]) == 0
    assert sniff_annotation(tmp_path / "g.xml") == "asap"
    assert "(ASAP XML)" in capsys.readouterr().out


def test_cli_convert_takes_header_from_slide(samples, tmp_path, capsys, tiny_corpus):
    slide = sorted(tiny_corpus.rglob("*.svs"))[0]
    out = tmp_path / "q.csv"
    table = tmp_path / "map.csv"
    table.write_text("Tumor,indc\nStroma,bckg\n")
    argv = ["convert", str(samples["geojson"]), str(out), "--slide", str(slide)]
    assert main([*argv, "--labels", str(table)]) == 0
    err = capsys.readouterr().err
    assert "holes of 1 region(s)" in err and "unknown label" not in err
    ann = read_annotation(out)
    assert [r.label for r in ann.regions] == ["indc", "indc", "bckg", "bckg"]
    assert ann.mpp is not None and ann.width is not None


def test_napari_writer_keeps_classes_and_colours(samples, tmp_path):
    from napari_crystal.plugin._reader import read_annotation_layers
    from napari_crystal.plugin._writer import write_geojson

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = read_annotation_layers(str(samples["imagescope"]))
    data, kwargs, kind = layers[-1]
    assert kind == "shapes"
    # the layer shows the source's colours: green Tumor, red 'fibrous'
    np.testing.assert_allclose(kwargs["edge_color"][0], [0, 1, 0, 1])
    np.testing.assert_allclose(kwargs["edge_color"][3], [1, 0, 0, 1])
    meta = {
        "features": kwargs["features"],
        "metadata": kwargs["metadata"],
        "shape_type": [kwargs["shape_type"]] * len(data),
    }
    out = tmp_path / "layer.geojson"
    assert write_geojson(str(out), data, meta) == [str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = read_annotation(out)
        source = read_annotation(samples["imagescope"])
    assert [r.label for r in back.regions] == [r.label for r in source.regions]
    assert [back.color_of(r) for r in back.regions] == [source.color_of(r) for r in source.regions]
    assert [r.kind for r in back.regions] == [r.kind for r in source.regions]
    # sub-pixel vertices survive a GeoJSON save (napari drops the closing vertex)
    np.testing.assert_allclose(back.regions[0].coords[:4], source.regions[0].coords[:4])


def test_napari_reader_claims_geojson(samples):
    from napari_crystal.plugin._reader import get_annotation_reader, read_annotation_layers

    reader = get_annotation_reader(str(samples["geojson"]))
    assert reader is read_annotation_layers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = reader(str(samples["geojson"]))
    assert layers[-1][0] and len(layers[-1][0]) == 4
    assert layers[-1][1]["features"]["label"].tolist() == ["Tumor", "Tumor", "Stroma", "Stroma"]


def test_dataset_from_geojson_with_a_label_map(tiny_corpus, tmp_path, capsys):
    """A corpus annotated in QuPath with its own class names trains on NEDC labels."""
    from napari_crystal.dataset import build_dataset

    corpus = tmp_path / "corpus"
    slides = sorted((tiny_corpus / "dev").glob("*.svs"))[:2]
    (corpus / "dev").mkdir(parents=True)
    expected = []
    foreign = {}
    for slide in slides:
        (corpus / "dev" / slide.name).symlink_to(slide)
        ann = read_annotation(slide.with_suffix(".csv"))
        expected += [r.label for r in ann.regions]
        for r in ann.regions:
            foreign[r.label] = f"QuPath {r.label.upper()}"
            r.label = foreign[r.label]
        write_annotation(ann, corpus / "dev" / f"{slide.stem}.geojson")
    table = tmp_path / "map.csv"
    table.write_text("".join(f"{v},{k}\n" for k, v in foreign.items()))
    ds = build_dataset(corpus, "dev", tmp_path / "ds.zarr", size=32, labels=table)
    assert list(ds.labels) == expected
    argv = ["dataset", str(corpus), "--split", "dev", "--out", str(tmp_path / "cli.zarr")]
    assert main([*argv, "--size", "32", "--labels", str(table), "--quiet"]) == 0
    assert f"{len(expected)} patches" in capsys.readouterr().out


def test_a_shape_drawn_later_gets_no_copied_colour_or_kind(samples, make_napari_viewer):
    from napari_crystal.plugin._reader import read_annotation_layers
    from napari_crystal.plugin._writer import shapes_to_annotation

    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, kwargs, _ = read_annotation_layers(str(samples["imagescope"]))[-1]
    layer = viewer.add_shapes(data, **kwargs)
    layer.add_polygons([np.array([[0.0, 0.0], [0.0, 40.0], [30.0, 40.0]])])
    ann = shapes_to_annotation(layer.data, layer.features, layer.metadata, layer.shape_type)
    new = ann.regions[-1]
    assert (new.label, new.kind, new.color) == ("fibrous", "polygon", None)
    assert ann.color_of(new) == "#ff0000"  # its class's colour
