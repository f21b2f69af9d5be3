"""tqdm progress bars behind the core's ``progress(done, total)`` callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress_bar(
    desc: str, unit: str = "it", quiet: bool = False
) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing one bar on stderr."""
    with tqdm(total=0, desc=desc, unit=unit, disable=quiet, leave=False) as bar:

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        yield progress


class StepBars:
    """``step_progress(step, done, total)``: one bar per step, the previous one closed."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar: tqdm | None = None
        self.step: str | None = None

    def __call__(self, step: str, done: int, total: int) -> None:
        if step != self.step:
            self.close()
            self.step = step
            self.bar = tqdm(total=total, desc=step, disable=self.quiet, leave=False)
        assert self.bar is not None
        if self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> StepBars:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
