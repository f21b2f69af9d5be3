"""The widgets' job runner: controls disabled while running, cancel, errors, event loop alive."""

from __future__ import annotations

import time

import pytest
from magicgui.widgets import ProgressBar, PushButton

from napari_crystal.errors import Cancelled

pytest.importorskip("napari")

from napari_crystal.plugin.widgets._runner import (  # noqa: E402
    HANDOFF_S,
    Runner,
    collection_paused,
)


def _job(n, progress=None, cancel=None, fail=False):
    for i in range(n):
        if cancel.is_set():
            raise Cancelled("stop")
        if fail and i == 2:
            raise ValueError("broken input")
        time.sleep(0.01)
        progress(i + 1, n)
    return n * 2


@pytest.fixture
def runner(qtbot):
    run_button, cancel = PushButton(text="Run"), PushButton(text="Cancel")
    return Runner(ProgressBar(), [run_button], cancel)


def test_runs_disables_and_returns(runner, qtbot):
    results = []
    runner.start(_job, 20, label="job", on_done=results.append)
    assert runner.busy and not runner.controls[0].enabled and runner.cancel_button.enabled
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert results == [40]
    assert runner.controls[0].enabled and not runner.cancel_button.enabled


def test_cancel_stops_the_job(runner, qtbot):
    results = []
    runner.start(_job, 10_000, label="job", on_done=results.append)
    runner.cancel_button.changed.emit(True)
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert results == [] and isinstance(runner.last_error, Cancelled)
    assert runner.controls[0].enabled


def test_error_is_reported_and_widget_stays_usable(runner, qtbot):
    errors = []
    runner.start(_job, 10, fail=True, label="job", on_done=print, on_error=errors.append)
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert isinstance(errors[0], ValueError) and "broken input" in str(errors[0])
    assert runner.controls[0].enabled
    done = []
    runner.start(_job, 3, label="again", on_done=done.append)
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert done == [6]


def test_collection_pause_is_counted_across_overlapping_jobs():
    """Two jobs in two threads, the first ending while the second still runs: the collector
    stays off until the last ends, then comes back; left off when it was off to begin with."""
    import gc
    import threading

    assert gc.isenabled()
    first_in, first_out, second_in = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with collection_paused():
            first_in.set()
            second_in.wait(5)
        seen["after first"] = gc.isenabled()
        first_out.set()

    def second():
        first_in.wait(5)
        with collection_paused():
            second_in.set()
            first_out.wait(5)
            seen["second still running"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"after first": False, "second still running": False}
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()  # someone else's pause is not ours to end
    finally:
        gc.enable()


def test_jobs_run_with_a_short_gil_switch_interval_and_put_it_back(runner, qtbot):
    """While a job runs the GUI thread gets the GIL back within `HANDOFF_S`; after it, the
    interpreter's own interval is back (whatever it was)."""
    import sys

    before = sys.getswitchinterval()
    seen = []

    def job(progress=None, cancel=None):
        seen.append(sys.getswitchinterval())

    runner.start(job, label="job", on_done=lambda _: None)
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert seen == [pytest.approx(HANDOFF_S)]
    assert HANDOFF_S < before
    assert sys.getswitchinterval() == pytest.approx(before)
