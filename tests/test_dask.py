"""Dataset building gives identical results whatever the dask scheduler."""

from __future__ import annotations

import numpy as np
import pytest

from napari_crystal.dataset import build_dataset


@pytest.fixture(scope="module")
def single(tiny_corpus, tmp_path_factory):
    """The train split built in one thread, no dask parallelism."""
    out = tmp_path_factory.mktemp("sync") / "train.zarr"
    return build_dataset(tiny_corpus, "train", out, scheduler="sync", chunk=16)


def same(a, b) -> None:
    assert a.table == b.table
    np.testing.assert_array_equal(np.asarray(a.packed[:]), np.asarray(b.packed[:]))


@pytest.mark.slow
def test_local_cluster_with_two_workers_matches_single_process(tiny_corpus, single, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        ticks: list = []
        ds = build_dataset(
            tiny_corpus, "train", tmp_path / "cluster.zarr", scheduler=cluster.scheduler_address,
            chunk=16, progress=lambda *a: ticks.append(a),
        )  # fmt: skip
    same(ds, single)
    assert ticks[-1] == (len(ds), len(ds)) and len(ticks) > 2


@pytest.mark.parametrize("scheduler", [None, "threads", "processes"])
def test_local_schedulers_match_single_process(tiny_corpus, single, tmp_path, scheduler):
    ds = build_dataset(tiny_corpus, "train", tmp_path / "t.zarr", scheduler=scheduler, chunk=16)
    same(ds, single)


def test_unknown_scheduler_is_refused_up_front(tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown scheduler 'bogus'"):
        build_dataset(tiny_corpus, "train", tmp_path / "t.zarr", scheduler="bogus")
    assert not (tmp_path / "t.zarr.work").exists()
