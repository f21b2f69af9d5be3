"""Atomic writes: all or nothing, and the permissions a plain write would give."""

from __future__ import annotations

import os

import pytest

from napari_crystal._atomic import atomic_path, atomic_write


def test_new_file_gets_umask_permissions_not_the_temp_files(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "sub" / "a.txt", b"hello")
    finally:
        os.umask(umask)
    target = tmp_path / "sub" / "a.txt"
    assert target.read_bytes() == b"hello"
    assert target.stat().st_mode & 0o777 == 0o644


def test_existing_file_keeps_its_mode(tmp_path):
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_no_parents_made_when_not_asked(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "a.txt", b"x", make_parents=False)
