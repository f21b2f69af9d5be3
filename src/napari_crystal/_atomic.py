"""Writing files all at once: a temporary file beside the target, renamed over it on success.

Annotations, models, reports and timings all go through here, so a crash or a Ctrl-C never
leaves a half-written file where a good one was, and new files get the usual permissions
(the temporary file's private 0600 is not kept).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _final_mode(target: Path) -> int:
    """The mode the file had, or what a plain ``open`` would give it under the umask."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, payload: bytes, make_parents: bool = True) -> None:
    """Write ``payload`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path, make_parents) as tmp, open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
