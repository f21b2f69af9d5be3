"""Label mapping, training (sub-forests joined), model files and their refusal."""

from __future__ import annotations

import json
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_crystal import training
from napari_crystal.errors import Cancelled, DatasetError, ModelError
from napari_crystal.training import (
    DEFAULT_PARAMS,
    check_compatible,
    load_model,
    map_labels,
    save_model,
    train_model,
    truth_labels,
)

SIZE = 16
LABELS = ("nneo", "dcis", "indc", "bckg", "cnno", "cdcs", "cidc")


def synthetic(n: int = 240, size: int = SIZE, seed: int = 0):
    """Packed masks whose filled width depends on the class, plus noise, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.array(LABELS)[rng.integers(0, len(LABELS), n)]
    masks = rng.random((n, size, size)) < 0.2
    width = {label: 2 * i for i, label in enumerate(LABELS)}
    for i, label in enumerate(labels):
        masks[i, :, : width[label]] = True
    return np.packbits(masks.reshape(n, -1), axis=1), labels


def dense(packed, size=SIZE):
    return np.unpackbits(packed, axis=1, count=size * size).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def model(data):
    packed, labels = data
    return train_model(
        packed, labels, SIZE, params={"n_estimators": 7}, meta={"method": "polygon", "level_rule": "closest"}
    )  # fmt: skip


def test_map_labels_merge():
    labels = ["cnno", "nneo", "cdcs", "cidc", "indc", "zzzz", "bckg"]
    mapped, keep = map_labels(labels, "merge")
    assert mapped.tolist() == ["nneo", "nneo", "dcis", "indc", "indc", "zzzz", "bckg"]
    assert keep.all() and keep.shape == (7,)


def test_map_labels_keep():
    labels = ["cnno", "nneo", "cdcs", "cidc", "zzzz"]
    mapped, keep = map_labels(labels, "keep")
    assert mapped.tolist() == labels and keep.all()


def test_map_labels_drop():
    labels = ["cnno", "nneo", "cdcs", "cidc", "indc", "zzzz"]
    mapped, keep = map_labels(labels, "drop")
    assert mapped.tolist() == ["nneo", "indc", "zzzz"]
    assert keep.tolist() == [False, True, False, False, True, True]


def test_map_labels_rejects_unknown_mode():
    with pytest.raises(ValueError, match="crystals"):
        map_labels(["nneo"], "fold")


def test_truth_labels_per_mode():
    labels = ["cidc", "dcis"]
    assert truth_labels(labels, "keep").tolist() == ["cidc", "dcis"]
    assert truth_labels(labels, "merge").tolist() == ["indc", "dcis"]
    assert truth_labels(labels, "drop").tolist() == ["indc", "dcis"]  # scored as the parent


def test_default_params_are_the_papers():
    assert DEFAULT_PARAMS == {
        "n_estimators": 100,
        "criterion": "gini",
        "max_features": "sqrt",
        "max_depth": None,
        "min_samples_split": 2,
        "min_samples_leaf": 1,
        "sampling_strategy": "all",
        "replacement": True,
        "bootstrap": False,
        "random_state": 42,
    }


def test_model_records_how_it_was_made(model, data):
    packed, labels = data
    assert model.classes == ("bckg", "dcis", "indc", "nneo")  # crystals merged
    assert model.crystals == "merge" and model.size == SIZE
    assert model.method == "polygon" and model.level_rule == "closest"
    assert model.params == {**DEFAULT_PARAMS, "n_estimators": 7}
    assert set(model.versions) == {"sklearn", "imblearn", "numpy", "napari_crystal"}
    mapped, _ = map_labels(labels, "merge")
    assert model.class_counts == {c: int(np.sum(mapped == c)) for c in model.classes}
    assert model.training_hash == training.training_hash(packed, labels, SIZE)
    assert len(model.estimator.estimators_) == 7
    # the saved estimator carries the integer seed, not a RandomState
    assert model.estimator.get_params()["random_state"] == 42


def test_training_hash_sees_labels_and_masks(data):
    packed, labels = data
    h = training.training_hash(packed, labels, SIZE)
    other = labels.copy()
    other[0] = "artf" if other[0] != "artf" else "norm"
    flipped = packed.copy()
    flipped[3, 0] ^= 1
    assert training.training_hash(packed, other, SIZE) != h
    assert training.training_hash(flipped, labels, SIZE) != h


@pytest.mark.parametrize("n_jobs", [None, 2, -1])
def test_same_seed_same_model_whatever_the_threads(data, n_jobs):
    """Sub-forests have their own seeds: the forest depends on the seed, not on n_jobs."""
    packed, labels = data
    params = {"n_estimators": 25}
    seen = []
    model = train_model(
        packed, labels, SIZE, params=params, n_jobs=n_jobs,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    again = train_model(packed, labels, SIZE, params=params)
    X = dense(synthetic(n=120, seed=9)[0])
    np.testing.assert_array_equal(
        model.estimator.predict_proba(X), again.estimator.predict_proba(X)
    )
    for ours, theirs in zip(model.estimator.estimators_, again.estimator.estimators_, strict=True):
        np.testing.assert_array_equal(ours.tree_.threshold, theirs.tree_.threshold)
    # 25 trees in sub-forests of 13 and 12: one progress step each, in any order
    assert training.sub_forest_sizes(25) == [13, 12]
    assert seen[0] == (0, 25) and seen[-1] == (25, 25) and len(seen) == 3
    assert all(t == 25 for _, t in seen) and seen[1][0] in (12, 13)
    # another seed, another forest
    other = train_model(packed, labels, SIZE, params={**params, "random_state": 7})
    assert not np.array_equal(other.estimator.predict_proba(X), model.estimator.predict_proba(X))


@pytest.mark.parametrize("total", [1, 2, 3, 10, 25, 41, 100, 200, 999])
def test_sub_forest_sizes(total):
    """All the trees, none above SUB_FOREST_TREES, near-equal sizes, an even number of
    sub-forests (two threads finish together); the study's 100 trees give 6 progress steps."""
    sizes = training.sub_forest_sizes(total)
    assert sum(sizes) == total and max(sizes) <= training.SUB_FOREST_TREES
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert total == 1 or len(sizes) % 2 == 0
    if total == 100:
        assert len(sizes) == 6


def test_joined_forest_is_a_whole_forest(data):
    """All the trees, distinct draws, classes and parameters of the whole forest; its
    probabilities are the average over the trees."""
    packed, labels = data
    model = train_model(packed, labels, SIZE, params={"n_estimators": 23})
    forest = model.estimator
    assert len(forest.estimators_) == len(forest.samplers_) == len(forest.pipelines_) == 23
    assert forest.n_estimators == 23 and forest.random_state == DEFAULT_PARAMS["random_state"]
    assert tuple(forest.classes_) == model.classes
    draws = {tuple(s.sample_indices_) for s in forest.samplers_}
    assert len(draws) == 23  # no sub-forest repeats another's samples
    X = dense(synthetic(n=60, seed=3)[0])
    mean = np.mean([tree.predict_proba(X) for tree in forest.estimators_], axis=0)
    np.testing.assert_allclose(forest.predict_proba(X), mean)
    assert training.sub_forest_seeds(42, 3) == training.sub_forest_seeds(42, 3)
    assert len(set(training.sub_forest_seeds(42, 3))) == 3


def test_accuracy_close_to_a_one_shot_fit():
    """Equal in distribution, not bit-identical: held-out accuracy like one fit's."""
    from imblearn.ensemble import BalancedRandomForestClassifier

    packed, labels = synthetic(n=600, seed=1)
    test_packed, test_labels = synthetic(n=600, seed=2)
    params = {"n_estimators": 40}
    model = train_model(packed, labels, SIZE, params=params, n_jobs=2)
    y, _ = map_labels(labels, "merge")
    truth, _ = map_labels(test_labels, "merge")
    X = dense(test_packed)
    ours = np.mean(model.estimator.predict(X) == truth)
    one_shot = BalancedRandomForestClassifier(**{**DEFAULT_PARAMS, **params}).fit(dense(packed), y)
    theirs = np.mean(one_shot.predict(X) == truth)
    assert ours > 0.8 and abs(ours - theirs) < 0.05, (ours, theirs)


def test_drop_mode_removes_crystal_patches(data):
    packed, labels = data
    model = train_model(packed, labels, SIZE, crystals="drop", params={"n_estimators": 2})
    kept = ~np.isin(labels, ["cnno", "cdcs", "cidc"])
    assert sum(model.class_counts.values()) == int(kept.sum())
    assert model.crystals == "drop"
    keep_model = train_model(packed, labels, SIZE, crystals="keep", params={"n_estimators": 2})
    assert set(keep_model.classes) == set(LABELS)


def test_params_are_overridable(data):
    packed, labels = data
    model = train_model(packed, labels, SIZE, params={"n_estimators": 3, "max_depth": 2})
    assert model.estimator.max_depth == 2
    assert max(t.get_depth() for t in model.estimator.estimators_) <= 2


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_cancel_stops_between_sub_forests(data, n_jobs):
    packed, labels = data
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 10:
            cancel.set()

    with pytest.raises(Cancelled):
        train_model(
            packed, labels, SIZE, params={"n_estimators": 200}, progress=progress,
            cancel=cancel, n_jobs=n_jobs,
        )  # fmt: skip
    # sub-forests of 20: one done, then at most those already growing (one per thread)
    assert training.sub_forest_sizes(200) == [20] * 10
    assert seen[0] == 0 and seen[1] == 20 and seen[-1] <= 20 + 20 * (n_jobs or 0)


def test_refuses_a_single_class(data):
    packed, _ = data
    with pytest.raises(DatasetError, match="at least 2 classes") as err:
        train_model(packed, ["dcis"] * len(packed), SIZE, meta={"dataset": "train.zarr"})
    assert str(err.value).startswith("train.zarr: ")
    # two labels, but one class once crystals are merged or dropped
    two = ["cdcs", "dcis"] * (len(packed) // 2)
    with pytest.raises(DatasetError, match="found dcis"):
        train_model(packed, two, SIZE)
    with pytest.raises(DatasetError, match="found dcis"):
        train_model(packed, two, SIZE, crystals="drop")


def test_refuses_mismatched_inputs(data):
    packed, labels = data
    with pytest.raises(DatasetError, match="another mask size"):
        train_model(packed, labels, 32)
    with pytest.raises(DatasetError, match="labels"):
        train_model(packed, labels[:-1], SIZE)


def test_save_load_round_trip(model, tmp_path):
    path = save_model(model, tmp_path / "m.skops")
    loaded = load_model(path)
    X = dense(synthetic(n=100, seed=3)[0])
    np.testing.assert_array_equal(loaded.estimator.predict(X), model.estimator.predict(X))
    np.testing.assert_array_equal(
        loaded.estimator.predict_proba(X), model.estimator.predict_proba(X)
    )
    for key in ("classes", "crystals", "size", "method", "level_rule", "params", "versions"):
        assert getattr(loaded, key) == getattr(model, key), key
    assert loaded.training_hash == model.training_hash
    assert loaded.class_counts == model.class_counts
    assert loaded.path == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.skops"]  # no temp file left


def test_save_is_atomic(model, tmp_path, monkeypatch):
    import skops.io

    path = tmp_path / "m.skops"
    path.write_bytes(b"previous")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(skops.io, "dump", broken)
    with pytest.raises(OSError):
        save_model(model, path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.skops"]


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_refuses_pickle_posing_as_model(model, tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps({"estimator": model.estimator, "x": payload}))
    with pytest.raises(ModelError, match="pickle") as err:
        load_model(path)
    assert str(err.value).startswith(str(path))
    assert not marker.exists()


def test_refuses_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.skops"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a napari-crystal model"):
        load_model(text)
    other_zip = tmp_path / "other.skops"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ModelError, match="skops schema"):
        load_model(other_zip)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.skops")


def test_refuses_skops_file_without_metadata(model, tmp_path):
    import skops.io

    path = tmp_path / "bare.skops"
    skops.io.dump(model.estimator, path)
    with pytest.raises(ModelError, match="metadata"):
        load_model(path)


def _rewrite_metadata(src: Path, dst: Path, change) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == training.META_MEMBER:
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)


def test_refuses_other_format_version(model, tmp_path):
    good = save_model(model, tmp_path / "good.skops")
    bad = tmp_path / "future.skops"
    _rewrite_metadata(good, bad, lambda m: m.update(format_version=99))
    with pytest.raises(ModelError, match="format version 99"):
        load_model(bad)
    missing = tmp_path / "missing.skops"
    _rewrite_metadata(good, missing, lambda m: m.pop("size"))
    with pytest.raises(ModelError, match="lacks size"):
        load_model(missing)
    lying = tmp_path / "lying.skops"
    _rewrite_metadata(good, lying, lambda m: m.update(classes=["a", "b"]))
    with pytest.raises(ModelError, match="classes disagree"):
        load_model(lying)


def test_warns_on_other_library_version(model, tmp_path):
    good = save_model(model, tmp_path / "good.skops")
    old = tmp_path / "old.skops"
    _rewrite_metadata(good, old, lambda m: m["versions"].update(sklearn="0.1"))
    with pytest.warns(UserWarning, match="sklearn 0.1"):
        load_model(old)


def test_refuses_untrusted_types(model, tmp_path):
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.skops"
    skops.io.dump(FunctionTransformer(func=eval), path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(training.META_MEMBER, json.dumps(model.metadata()))
    with pytest.raises(ModelError, match="untrusted types.*builtins.eval"):
        load_model(path)


def test_check_compatible(model):
    check_compatible(model, size=SIZE, method="polygon")
    check_compatible(model)
    with pytest.raises(ModelError, match="32x32 masks but the model was trained on 16x16"):
        check_compatible(model, size=32, path="eval.zarr")
    with pytest.raises(ModelError, match="method 'threshold'"):
        check_compatible(model, method="threshold")
