"""Writing files all at once: a temporary file beside the target, renamed over it on success.

Annotations, models, reports and timings all go through here, so a crash or a Ctrl-C never
leaves a half-written file where a good one was, and new files get the usual permissions
(the temporary file's private 0600 is not kept).

Temporaries are named ``.NAME.<pid>-<random>.tmp`` (folders ``.NAME.tmp-<pid>-<random>``):
`sweep_leftovers` removes the ones a killed run left beside ``NAME`` (its process is gone),
and every write to ``NAME`` calls it first, so ``kill -9`` leaves nothing for long.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
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


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM): alive
        return True
    return True


_PID = re.compile(r"(?:^|[.-])(\d+)-[^.]*\.tmp$|tmp-(\d+)-|\.old-(\d+)$")


def _leftover(name: str, target_name: str) -> bool:
    """Whether ``name`` is one of our temporaries for ``target_name`` whose writer is gone."""
    prefix = f".{target_name}."
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    if not (rest.endswith(".tmp") or rest.startswith("tmp-") or rest.startswith("old-")):
        return False
    m = _PID.search(name)
    pid = next((int(g) for g in m.groups() if g), None) if m else None
    return pid is None or not _alive(pid)  # no pid: an older version's leftover


def sweep_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove what interrupted runs left beside ``path``: ``.NAME.*.tmp`` files,
    ``.NAME.tmp-*`` / ``.NAME.old-*`` folders and an empty ``NAME.work`` folder.

    Only names of this project's own making, and only when the process that made them is
    gone (a run writing the same output right now keeps its temporaries). Returns what went.
    """
    target = Path(path)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not _leftover(entry.name, target.name):
            continue
        p = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    work = target.with_name(target.name + ".work")
    try:
        if work.is_dir() and not work.is_symlink() and not any(work.iterdir()):
            work.rmdir()
            removed.append(work)
    except OSError:
        pass
    return removed


def temp_name(target: Path, kind: str = "file") -> str:
    """A prefix for ``mkstemp``/``mkdtemp`` that `sweep_leftovers` recognises."""
    if kind == "dir":
        return f".{target.name}.tmp-{os.getpid()}-"
    return f".{target.name}.{os.getpid()}-"


def _as_target_error(exc: OSError, target: Path, tmp: str | None) -> OSError:
    """The same OS error, naming the user's file instead of our temporary one."""
    if tmp is not None and exc.filename not in (None, tmp) and exc.filename != str(target):
        return exc
    err = type(exc)(exc.errno or errno.EIO, exc.strerror or str(exc), str(target))
    return err


@contextmanager
def atomic_path(path: str | os.PathLike, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_name(target), suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _as_target_error(exc, target, None) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _as_target_error(exc, target, tmp) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, payload: bytes, make_parents: bool = True) -> None:
    """Write ``payload`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path, make_parents) as tmp, open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())


def sweep_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove every ``.*.<pid>-*.tmp`` file in ``folder`` whose writing process is gone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")) or entry.is_dir():
            continue
        m = _PID.search(name)
        pid = int(m.group(1)) if m and m.group(1) else None
        if pid is None or not _alive(pid):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


class _Stage:
    """Staged files of one `atomic_files` group: ``stage(target)`` gives the path to write."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.staged: dict[Path, Path] = {}

    def __call__(self, target: str | os.PathLike) -> Path:
        target = Path(target)
        sweep_leftovers(target)
        fd, tmp = tempfile.mkstemp(prefix=temp_name(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
        self.staged[target] = Path(tmp)
        return Path(tmp)


@contextmanager
def atomic_files(
    folder: str | os.PathLike, stale: str | tuple[str, ...] | None = None
) -> Iterator[_Stage]:
    """Write a set of files as a whole: every file is staged beside its target, and the
    targets are replaced only once all are written (a failure leaves the old set untouched).
    ``stale``: globs of files of the old set to remove when the new set is in place (an
    old report's confusion PNGs for models the new one does not have)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stage = _Stage(folder)
    try:
        yield stage
        patterns = (stale,) if isinstance(stale, str) else stale or ()
        old = {p for pattern in patterns for p in folder.glob(pattern)}
        for target, tmp in stage.staged.items():
            os.chmod(tmp, _final_mode(target))
            os.replace(tmp, target)
        for path in old - set(stage.staged):
            path.unlink(missing_ok=True)
    except BaseException:
        for tmp in stage.staged.values():
            tmp.unlink(missing_ok=True)
        raise
