"""Running independent tasks with dask: local threads or processes, or a distributed cluster.

Dataset building (one task per chunk of a slide's patches) and prediction (one task per chunk
of masks) both go through `run_tasks`, so every step takes the same ``scheduler`` values and
gives the same results whatever runs it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from napari_crystal.errors import Cancelled

SCHEDULERS = ("threads", "processes", "sync")


def scheduler_kind(scheduler: Any) -> str:
    """``threads``, ``processes``, ``sync``, ``distributed`` (an address) or ``client``."""
    if scheduler is None or scheduler in ("threads", "threading"):
        return "threads"
    if scheduler in ("processes", "multiprocessing"):
        return "processes"
    if scheduler in ("sync", "synchronous", "single-threaded"):
        return "sync"
    if isinstance(scheduler, str) and ("://" in scheduler or ":" in scheduler):
        return "distributed"
    if hasattr(scheduler, "submit") and hasattr(scheduler, "gather"):
        return "client"
    raise ValueError(
        f"unknown scheduler {scheduler!r}: use threads, processes, sync or a dask.distributed "
        "address such as tcp://host:8786"
    )


def run_tasks(
    fn: Callable[..., Any],
    calls: Sequence[tuple],
    scheduler: Any = None,
    on_done: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[Any]:
    """``[fn(*call) for call in calls]`` as dask tasks; ``on_done(i)`` as task ``i`` finishes.

    ``scheduler``: None or "threads" (all cores), "processes", "sync", a dask.distributed
    address ("tcp://host:8786") or a ``Client``. ``cancel`` stops the run between tasks
    (`errors.Cancelled`). Results come back in the order of ``calls``.
    """
    kind = scheduler_kind(scheduler)
    results: list[Any] = [None] * len(calls)
    if not calls:
        return results
    if kind in ("distributed", "client"):
        from distributed import Client, as_completed

        client = Client(scheduler) if kind == "distributed" else scheduler
        try:
            futures = [client.submit(fn, *c, pure=False) for c in calls]
            index = {f.key: i for i, f in enumerate(futures)}
            for fut in as_completed(futures):
                i = index[fut.key]
                results[i] = fut.result()
                if on_done is not None:
                    on_done(i)
                if cancel is not None and cancel.is_set():
                    client.cancel(futures)
                    raise Cancelled()
        finally:
            if kind == "distributed":
                client.close()
        return results
    import dask
    from dask.callbacks import Callback

    tasks = [dask.delayed(fn, pure=False)(*c) for c in calls]
    index = {t.key: i for i, t in enumerate(tasks)}

    class _Done(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in index and on_done is not None:
                on_done(index[key])
            if cancel is not None and cancel.is_set():
                raise Cancelled()

    options: dict[str, Any] = {"scheduler": kind}
    if kind == "threads":
        options["num_workers"] = os.cpu_count() or 1
    with _Done():
        return list(dask.compute(*tasks, **options))
