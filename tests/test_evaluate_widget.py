"""Evaluate widget driven in a real viewer on the tiny corpus: results, export, overlay, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_crystal import palette

pytest.importorskip("napari")

from napari_crystal.plugin.widgets import _runner, evaluate_widget  # noqa: E402
from napari_crystal.plugin.widgets.evaluate_widget import DATASET, SLIDE, EvaluateWidget  # noqa: E402
from napari_crystal.reports import comparison_text  # noqa: E402

pytestmark = pytest.mark.viewer


@pytest.fixture(scope="module")
def artefacts(tiny_corpus, tmp_path_factory):
    """Datasets (32-px masks) of train and eval, and two 10-tree models (merge, drop)."""
    from napari_crystal.dataset import build_dataset
    from napari_crystal.experiment import train_on_dataset
    from napari_crystal.training import save_model

    out = tmp_path_factory.mktemp("evaluate")
    train = build_dataset(tiny_corpus, "train", out / "train.zarr", size=32, scheduler="sync")
    build_dataset(tiny_corpus, "eval", out / "eval.zarr", size=32, scheduler="sync")
    for name, crystals in (("merge", "merge"), ("drop", "drop")):
        model = train_on_dataset(train, crystals=crystals, params={"n_estimators": 10}, n_jobs=1)
        save_model(model, out / f"{name}.skops")
    return out


@pytest.fixture
def messages(monkeypatch):
    """Notifications the widgets and the runner show, as (kind, text)."""
    seen = []
    for module in (_runner, evaluate_widget):
        for kind in ("show_error", "show_info", "show_warning"):
            if hasattr(module, kind):
                monkeypatch.setattr(module, kind, lambda m, k=kind: seen.append((k, m)))
    return seen


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=60_000)


def _open_slide(viewer, path):
    """The slide as the reader lays it out, and its regions as a labelled Shapes layer."""
    from napari_crystal.io.nedc import read_annotation
    from napari_crystal.io.slide import open_slide
    from napari_crystal.plugin._slide_reader import slide_layer

    slide = open_slide(path)
    data, meta, _ = slide_layer(slide)
    image = viewer.add_image(data, **meta)
    ann = read_annotation(path.with_suffix(".csv"))
    shapes = viewer.add_shapes(
        [r.coords for r in ann.regions], shape_type="polygon", name="regions",
        features={"label": [r.label for r in ann.regions],
                  "region_id": [r.region_id for r in ann.regions]},
    )  # fmt: skip
    return image, shapes, ann


def test_dataset_evaluation_comparison_export_and_theme(
    make_napari_viewer, qtbot, artefacts, tmp_path, messages
):
    from napari_crystal.dataset import load_dataset
    from napari_crystal.experiment import evaluate_model
    from napari_crystal.training import load_model

    viewer = make_napari_viewer()
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Evaluate classifier")
    w.model.value = artefacts / "merge.skops"
    w.model_b.value = artefacts / "drop.skops"
    w.dataset.value = artefacts / "eval.zarr"
    w.run()
    assert not w.run_button.enabled  # controls disabled while it runs
    _wait(qtbot, w)
    assert w.run_button.enabled and w.result is not None, messages
    # the same numbers as the core (what the CLI prints)
    direct = evaluate_model(
        load_model(artefacts / "merge.skops"), load_dataset(artefacts / "eval.zarr")
    )
    report = w.report()
    assert report.accuracy == pytest.approx(direct.report.accuracy)
    assert f"accuracy {100 * direct.report.accuracy:.1f}%" in w.summary.value
    table = w.table.to_dict("split")
    assert list(table["index"]) == list(direct.report.per_class)
    assert [int(r[4]) for r in table["data"]] == [
        s.support for s in direct.report.per_class.values()
    ]
    dcis = direct.report.per_class["dcis"]
    assert table["data"][table["index"].index("dcis")][3] == f"{100 * dcis.f1:.1f}%"
    # comparison: difference with CIs and McNemar p, in the core's words
    c = w.result.comparison
    assert w.comparison.value == comparison_text(c)
    assert "95% CI Wald" in w.comparison.value and "McNemar p" in w.comparison.value
    assert w.which.choices == ("merge", "drop") and not w.which.native.isHidden()
    # confusion plot follows the theme
    assert w.figure.get_facecolor()[:3] != (1.0, 1.0, 1.0)
    viewer.theme = "light"
    assert w.figure.get_facecolor()[:3] == (1.0, 1.0, 1.0)
    w.which.value = "drop"
    assert "drop" in w.figure.axes[0].get_title()
    # export with the CLI's writer
    w.out.value = tmp_path / "report"
    files = w.export()
    assert (tmp_path / "report" / "report.md").is_file() and len(files) == 4
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    assert doc["reports"][0]["accuracy"] == pytest.approx(direct.report.accuracy)
    assert doc["comparisons"][0]["mcnemar_p"] == pytest.approx(c.mcnemar_p)
    assert any(Path(f).suffix == ".png" and Path(f).stat().st_size > 1000 for f in files.values())


def test_open_slide_evaluation_and_overlay(make_napari_viewer, qtbot, artefacts, tiny_corpus,
                                           messages):  # fmt: skip
    viewer = make_napari_viewer()
    path = sorted((tiny_corpus / "eval").glob("*.svs"))[0]
    image, shapes, ann = _open_slide(viewer, path)
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Evaluate classifier")
    w.model.value = artefacts / "merge.skops"
    w.source.value = SLIDE
    w.slide.value, w.annotation_layer.value = image, shapes
    w.run()
    _wait(qtbot, w)
    assert w.result is not None, messages
    report = w.report()
    assert report.n == len(ann.regions) and report.test_set == path.stem
    w.build_overlay()
    _wait(qtbot, w)
    qtbot.waitUntil(lambda: w.overlay is not None, timeout=10_000)  # a layer per loop turn
    o = w.overlay
    assert o is not None and o.prediction in viewer.layers, messages
    run = w.result.slide[0]
    # each region's interior shows its predicted class; wrong ones are in the errors layer
    checked = 0
    for i in range(len(run.dataset.table)):
        info = o.pmap.info(i)
        rows = np.argwhere(o.pmap.raster.index == i)
        if not len(rows):
            continue
        r, c = rows[len(rows) // 2]
        assert o.prediction.data[r, c] == palette.class_index(info.predicted)
        want = palette.class_index(info.truth) if info.truth != info.predicted else 0
        assert o.pmap.errors_map[r, c] == want
        checked += 1
    assert checked >= len(run.dataset.table) * 0.8
    assert int(o.pmap.wrong.sum()) == report.incorrect


def test_bad_input_is_a_notification_and_the_widget_stays_usable(
    make_napari_viewer, qtbot, artefacts, tiny_corpus, tmp_path, messages
):
    from napari_crystal.dataset import Dataset, load_dataset, save_dataset

    viewer = make_napari_viewer()
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Evaluate classifier")
    # no model
    w.dataset.value = artefacts / "eval.zarr"
    assert w.run() is None and "choose a model file" in messages[-1][1]
    # open slide with no slide layer chosen
    w.model.value = artefacts / "merge.skops"
    w.source.value = SLIDE
    assert w.run() is None and "no slide layer chosen" in messages[-1][1]
    # a model whose classes do not match the data's
    eval_ds = load_dataset(artefacts / "eval.zarr")
    table = eval_ds.table[np.arange(len(eval_ds))]
    table.label = np.full(len(table), "mystery")
    weird = save_dataset(
        Dataset(table, np.asarray(eval_ds.packed[:]), eval_ds.size, eval_ds.method,
                dict(eval_ds.meta)), tmp_path / "weird.zarr",
    )  # fmt: skip
    w.source.value = DATASET
    w.dataset.value = weird
    w.run()
    _wait(qtbot, w)
    assert messages[-1][0] == "show_error" and "no class in common" in messages[-1][1]
    assert w.result is None and w.run_button.enabled
    # a dataset and a slide that do not belong together: train patches, eval slide open
    w.dataset.value = artefacts / "train.zarr"
    w.run()
    _wait(qtbot, w)
    assert w.result is not None
    image, shapes, _ = _open_slide(viewer, sorted((tiny_corpus / "eval").glob("*.svs"))[0])
    w.slide.value, w.annotation_layer.value = image, shapes
    n_layers = len(viewer.layers)
    w.build_overlay()
    _wait(qtbot, w)
    assert messages[-1][0] == "show_error" and "has no patches of slide" in messages[-1][1]
    assert len(viewer.layers) == n_layers and w.overlay is None
    assert w.overlay_button.enabled and w.export_button.enabled


def test_cli_and_widget_say_the_same(make_napari_viewer, qtbot, artefacts, tmp_path, messages,
                                     capsys):  # fmt: skip
    """Class-coverage warnings and the comparison: one core text, in the CLI and the widget."""
    from napari_crystal.cli import main
    from napari_crystal.dataset import Dataset, load_dataset, save_dataset

    # eval data where a third of the patches carry a class neither model knows
    eval_ds = load_dataset(artefacts / "eval.zarr")
    table = eval_ds.table[np.arange(len(eval_ds))]
    table.label = np.where(np.arange(len(table)) % 3 == 0, "mystery", table.label)
    odd = save_dataset(
        Dataset(table, np.asarray(eval_ds.packed[:]), eval_ds.size, eval_ds.method,
                dict(eval_ds.meta)), tmp_path / "odd.zarr",
    )  # fmt: skip
    models = [artefacts / "merge.skops", artefacts / "drop.skops"]
    args = ["compare", *map(str, models), str(odd), "--out", str(tmp_path / "r"), "--quiet"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    cli_warnings = [
        line for line in err.splitlines() if line.startswith("napari-crystal: warning: ")
    ]
    assert len(cli_warnings) == 2 and all("cannot predict mystery" in x for x in cli_warnings)

    viewer = make_napari_viewer()
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Evaluate classifier")
    w.model.value, w.model_b.value = models
    w.dataset.value = odd
    w.run()
    _wait(qtbot, w)
    assert w.result is not None, messages
    assert [m for k, m in messages if k == "show_warning"] == cli_warnings
    assert w.comparison.value == comparison_text(w.result.comparison)
    assert w.comparison.value in out  # the CLI printed the very same lines
    # same-stem models get the same names in both
    from napari_crystal.experiment import model_names

    assert model_names([tmp_path / "a" / "m.skops", tmp_path / "b" / "m.skops"]) == [
        "m (A)", "m (B)",
    ]  # fmt: skip


def test_evaluating_on_the_training_slides_warns_like_the_cli(
    make_napari_viewer, qtbot, artefacts, tiny_corpus, tmp_path, messages, capsys
):
    """The model records its training slides: evaluating on them is flagged, reason first."""
    from napari_crystal.cli import main

    assert main(["evaluate", str(artefacts / "merge.skops"), str(artefacts / "train.zarr"),
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0  # fmt: skip
    cli = [x for x in capsys.readouterr().err.splitlines() if "optimistic figures" in x]
    assert len(cli) == 1 and cli[0].startswith("napari-crystal: warning: optimistic figures: ")

    viewer = make_napari_viewer()
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Evaluate classifier")
    w.model.value, w.dataset.value = artefacts / "merge.skops", artefacts / "train.zarr"
    w.run()
    _wait(qtbot, w)
    assert w.result is not None, messages
    assert [m for k, m in messages if k == "show_warning"] == cli
    w.out.value = tmp_path / "exported"
    w.export()
    text = (tmp_path / "exported" / "report.md").read_text()
    assert "## Methods" in text and "of them are in the evaluation data" in text
    # an unseen slide, opened in the viewer: no warning; a training slide: the warning
    for split, warned in (("eval", False), ("train", True)):
        messages.clear()
        image, shapes, _ = _open_slide(viewer, sorted((tiny_corpus / split).glob("*.svs"))[0])
        w.source.value = SLIDE
        w.slide.value, w.annotation_layer.value = image, shapes
        w.run()
        _wait(qtbot, w)
        shown = [m for k, m in messages if k == "show_warning"]
        assert bool(shown) is warned, messages
        if warned:
            assert shown[0].startswith("napari-crystal: warning: optimistic figures: merge was")


def test_a_dataset_of_another_channel_is_refused_before_any_work(
    make_napari_viewer, qtbot, artefacts, tiny_corpus, tmp_path, messages, capsys, monkeypatch
):
    """Haematoxylin masks offered to a grey-channel model: refused with the CLI's reason,
    when the fields are set and again on Evaluate, without starting the job."""
    from napari_crystal.cli import main
    from napari_crystal.dataset import build_dataset

    other = tmp_path / "eval-h.zarr"
    build_dataset(tiny_corpus, "eval", other, size=32, scheduler="sync", channel="haematoxylin")
    assert main(["evaluate", str(artefacts / "merge.skops"), str(other), "--out",
                 str(tmp_path / "r"), "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    reason = "dataset masks were thresholded on the 'haematoxylin' channel but the model was "
    assert reason in err

    viewer = make_napari_viewer()
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Evaluate classifier")
    w.model.value = artefacts / "merge.skops"
    w.dataset.value = other  # the fields are checked as soon as both are set
    assert messages[-1][0] == "show_error"
    assert messages[-1][1].startswith(f"napari-crystal: evaluation: {reason}")
    started = []
    monkeypatch.setattr(w.runner, "start", lambda *a, **k: started.append(a))
    messages.clear()
    assert w.run() is None and not started
    assert messages == [("show_error", messages[0][1])] and reason in messages[0][1]
    # the matching dataset passes the same check
    w.dataset.value = artefacts / "eval.zarr"
    w.run()
    assert len(started) == 1
