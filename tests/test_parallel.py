"""Prediction as dask tasks gives exactly the local chunked prediction, whatever the scheduler."""

from __future__ import annotations

import numpy as np
import pytest

from napari_crystal.dataset import Dataset, load_dataset, save_dataset
from napari_crystal.errors import Cancelled
from napari_crystal.evaluation import predict_chunked
from napari_crystal.parallel import run_tasks, scheduler_kind
from napari_crystal.training import train_model

SIZE = 16


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    rng = np.random.default_rng(7)
    n = 300
    labels = np.array(["bckg", "dcis", "indc"])[rng.integers(0, 3, n)]
    masks = rng.random((n, SIZE * SIZE)) < np.where(labels == "bckg", 0.2, 0.6)[:, None]
    packed = np.packbits(masks, axis=1)
    model = train_model(packed, labels, SIZE, params={"n_estimators": 6})
    path = tmp_path_factory.mktemp("parallel") / "d.zarr"
    save_dataset(Dataset.from_packed(packed, labels, SIZE, slide="s.svs"), path)
    return model, packed, path


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
def test_tasks_equal_local_prediction(model_and_data, scheduler):
    model, packed, path = model_and_data
    pred, proba = predict_chunked(model, packed, chunk=64)
    seen = []
    p2, q2 = predict_chunked(
        model, packed, chunk=64, scheduler=scheduler, progress=lambda d, t: seen.append(d)
    )
    assert np.array_equal(pred, p2) and np.array_equal(proba, q2)
    assert seen[0] == 0 and seen[-1] == len(packed)
    stored = load_dataset(path)
    p3, q3 = predict_chunked(model, stored.packed, chunk=50, scheduler=scheduler, source=path)
    assert np.array_equal(pred, p3) and np.array_equal(proba, q3)


def test_local_cluster_prediction(model_and_data):
    distributed = pytest.importorskip("distributed")
    model, packed, path = model_and_data
    pred, proba = predict_chunked(model, packed, chunk=100)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        p2, q2 = predict_chunked(model, packed, chunk=100, scheduler=client, source=path)
    assert np.array_equal(pred, p2) and np.array_equal(proba, q2)


def test_run_tasks_order_cancel_and_bad_scheduler():
    assert run_tasks(pow, [(2, k) for k in range(6)], "sync") == [1, 2, 4, 8, 16, 32]
    import threading

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run_tasks(pow, [(2, 1)], "sync", cancel=cancel)
    with pytest.raises(ValueError, match="unknown scheduler"):
        scheduler_kind("gpu")
    assert scheduler_kind("tcp://127.0.0.1:8786") == "distributed"
