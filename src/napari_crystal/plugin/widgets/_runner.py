"""Long work off the GUI thread: a progress bar, controls disabled, Cancel, errors as notifications.

Every widget runs core functions (which take ``progress(done, total)`` and ``cancel``) through
`Runner`, so the window never freezes and all widgets behave the same way.
"""

from __future__ import annotations

import functools
import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from magicgui.widgets import ProgressBar, PushButton, Widget
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from napari_crystal.errors import Cancelled, CrystalError

# A GUI thread waiting for the GIL gets it after at most this long (Python's default 5 ms):
# a repaint makes dozens of calls that release and take back the GIL (OpenGL through ctypes),
# so with a worker running Python code each repaint otherwise waits up to 5 ms per call.
HANDOFF_S = 0.0005


class _WhileJobsRun:
    """A process-wide setting held while at least one job runs: applied when the first begins,
    the earlier value put back when the last ends. Jobs overlap (two widgets, or a job during
    the import warm-up), so they are counted."""

    def __init__(self, get: Callable[[], Any], put: Callable[[Any], Any], value: Any):
        self._get, self._put, self._value = get, put, value
        self._lock = threading.Lock()
        self._jobs = 0
        self._saved: Any = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._jobs == 0:
                self._saved = self._get()
                self._put(self._value)
            self._jobs += 1
        try:
            yield
        finally:
            with self._lock:
                self._jobs -= 1
                if self._jobs == 0:
                    self._put(self._saved)


collection_paused = _WhileJobsRun(
    gc.isenabled, lambda on: gc.enable() if on else gc.disable(), False
)
collection_paused.__doc__ = """Hold off the cyclic garbage collector while a worker makes many short-lived objects.

skops builds about half a million objects to save a 100-tree forest, and importing
scikit-learn makes as many lasting ones; with napari's few hundred thousand live objects
each full collection they trigger holds the GIL, and so the event loop, for ~200 ms. The
objects die by reference counting anyway. Left off at the end if it was off at the start.
"""
quick_handoff = _WhileJobsRun(sys.getswitchinterval, sys.setswitchinterval, HANDOFF_S)
quick_handoff.__doc__ = "Python's GIL switch interval at `HANDOFF_S` while background work runs."


def _handing_off(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def job(*args: Any, **kwargs: Any) -> Any:
        with quick_handoff():
            return fn(*args, **kwargs)

    return job


class Runner:
    """Runs one job at a time in a ``thread_worker`` on behalf of a widget.

    ``controls`` are disabled while a job runs; ``cancel_button`` is enabled only then and sets
    the job's cancel event. The job function receives ``progress`` and ``cancel`` keywords.
    """

    def __init__(
        self,
        bar: ProgressBar,
        controls: Sequence[Widget],
        cancel_button: PushButton | None = None,
        min_interval: float = 0.05,
    ):
        self.bar = bar
        self.controls = list(controls)
        self.cancel_button = cancel_button
        self.min_interval = min_interval
        self.worker = None
        self.cancel_event: threading.Event | None = None
        self.last_error: BaseException | None = None
        self._last_update = 0.0
        if cancel_button is not None:
            cancel_button.enabled = False
            cancel_button.changed.connect(self.cancel)
        bar.visible = False

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.worker is not None

    def cancel(self, *_: Any) -> None:
        """Ask the running job to stop at its next check."""
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.bar.label = f"{self.bar.label} (cancelling)"

    def start(
        self,
        fn: Callable[..., Any],
        *args: Any,
        label: str,
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
        **kwargs: Any,
    ):
        """Run ``fn(*args, progress=..., cancel=..., **kwargs)`` in a worker thread."""
        if self.busy:
            show_info("napari-crystal: a job is already running; wait for it or cancel it")
            return None
        self.cancel_event = threading.Event()
        self.last_error = None
        self.bar.label = label
        self.bar.min, self.bar.max, self.bar.value = 0, 1, 0
        self.bar.visible = True
        self._set_enabled(False)
        worker = create_worker(
            _handing_off(fn),
            *args,
            progress=self._progress,
            cancel=self.cancel_event,
            _start_thread=False,
            _ignore_errors=True,  # handled by _errored: a notification, not a traceback
            **kwargs,
        )
        worker.returned.connect(on_done)
        worker.errored.connect(lambda exc: self._errored(exc, label, on_error))
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return worker

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last_update < self.min_interval:
            return  # thousands of patches: a few updates per second are enough
        self._last_update = now
        self._show_progress(done, total)

    @ensure_main_thread
    def _show_progress(self, done: int, total: int) -> None:
        if self.worker is None:
            return
        self.bar.max = max(int(total), 1)
        self.bar.value = min(int(done), self.bar.max)

    def _errored(self, exc: BaseException, label: str, on_error) -> None:
        self.last_error = exc
        if isinstance(exc, Cancelled):
            show_info(f"napari-crystal: {label} cancelled; nothing was saved")
        else:
            reason = exc.brief() if isinstance(exc, CrystalError) else str(exc)
            show_error(f"napari-crystal: {label} failed: {reason}")
        if on_error is not None:
            on_error(exc)

    def _finished(self) -> None:
        self.worker = None
        self.cancel_event = None
        self.bar.visible = False
        self._set_enabled(True)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in self.controls:
            widget.enabled = enabled
        if self.cancel_button is not None:
            self.cancel_button.enabled = not enabled
