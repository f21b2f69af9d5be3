"""Fuzzing every annotation and dataset reader: arbitrary bytes and mutated valid files give a
valid result or the project's own error (`CrystalError`), never another exception.

The examples per test come from the hypothesis profile (tests/conftest.py): ``ci`` (default,
bounded) or ``fuzz`` (``make fuzz``, ``HYPOTHESIS_PROFILE=fuzz``). A new reader joins by adding a
row to ``FILE_READERS`` (a reader of one file) or ``FOLDER_READERS`` (a reader of a folder).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_crystal.errors import CrystalError

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class FileReader:
    """A reader of one file: ``read(path)`` and the valid files its fuzzing mutates."""

    name: str
    suffix: str  # the file's name ends so (a reader may pick its format from it)
    read: Callable[[Path], object]
    samples: Callable[[], list[bytes]]


def _read_annotation(path: Path):
    from napari_crystal.io.nedc import read_annotation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown labels are kept with a warning: valid
        ann = read_annotation(path)
    for region in ann.regions:  # what a caller computes right away must work too
        assert np.isfinite(region.area) and np.isfinite(region.coords).all()
    return ann


def _sniff(path: Path):
    from napari_crystal.io.nedc import sniff_annotation

    kind = sniff_annotation(path)
    assert kind in (None, "csv", "xml")
    return kind


def _csv_samples() -> list[bytes]:
    good = (DATA / "example.csv").read_bytes()
    return [good, good.replace(b"\n", b"\r\n"), good.replace(b"dcis", b"Dcis-unknown")]


def _xml_samples() -> list[bytes]:
    return [(DATA / "example.xml").read_bytes()]


FILE_READERS = [
    FileReader("nedc-csv", ".csv", _read_annotation, _csv_samples),
    FileReader("nedc-xml", ".xml", _read_annotation, _xml_samples),
    FileReader("nedc-sniffed", ".txt", _read_annotation, lambda: _csv_samples() + _xml_samples()),
    FileReader("nedc-sniff", ".csv", _sniff, lambda: _csv_samples() + _xml_samples()),
]


@dataclass(frozen=True)
class FolderReader:
    """A reader of a folder (a zarr dataset): ``read(path)``, and ``build(path)`` of a valid one."""

    name: str
    read: Callable[[Path], object]
    build: Callable[[Path], None]


def _read_dataset(path: Path):
    from napari_crystal.dataset import load_dataset

    ds = load_dataset(path)
    for _, block in ds.iter_packed():  # every mask is read, so damage anywhere shows
        assert block.shape[1] == -(-ds.size * ds.size // 8)
    assert len(ds.labels) == len(ds)
    return ds


def _build_dataset(path: Path) -> None:
    from napari_crystal.dataset import Dataset, save_dataset

    rng = np.random.default_rng(0)
    packed = np.packbits(rng.random((40, 16 * 16)) < 0.3, axis=1)
    labels = rng.choice(["dcis", "bckg", "norm"], 40)
    save_dataset(Dataset.from_packed(packed, labels, 16), path)


FOLDER_READERS = [FolderReader("dataset", _read_dataset, _build_dataset)]

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck))


def _call(read, path: Path):
    """The reader's result, or its CrystalError; anything else fails the test."""
    try:
        return read(path)
    except CrystalError as exc:
        text = str(exc)
        assert "\n" not in text, text
        return exc


@st.composite
def mutated(draw, samples: list[bytes]) -> bytes:
    """A valid sample with a few edits: bytes flipped, cut, inserted, duplicated, truncated."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup", "truncate", "digit"]))
        n = len(data)
        at = draw(st.integers(0, max(0, n - 1)))
        if op == "flip" and n:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            extra = draw(
                st.sampled_from([b"1e30", b"-", b"99999999999999999999", b"\xef\xbc\x91", b"_"])
                | st.binary(max_size=16)
            )
            data[at:at] = extra
        elif op == "dup":
            chunk = data[at : at + draw(st.integers(1, 200))]
            data[at:at] = chunk
        elif op == "truncate":
            del data[at:]
        elif op == "digit":
            digits = [i for i, b in enumerate(data) if 48 <= b <= 57]
            if digits:
                data[draw(st.sampled_from(digits))] = draw(st.sampled_from(b"0123456789,.-e\n "))
    return bytes(data)


def _write_and_read(reader: FileReader, payload: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{reader.suffix}"
        path.write_bytes(payload)
        return _call(reader.read, path)


@pytest.mark.parametrize("reader", FILE_READERS, ids=lambda r: r.name)
@FUZZ
@given(payload=st.binary(max_size=2048))
def test_arbitrary_bytes(reader, payload):
    _write_and_read(reader, payload)


@pytest.mark.parametrize("reader", FILE_READERS, ids=lambda r: r.name)
@FUZZ
@given(data=st.data())
def test_mutated_valid_files(reader, data):
    payload = data.draw(mutated(reader.samples()))
    _write_and_read(reader, payload)


@pytest.mark.parametrize("reader", FILE_READERS, ids=lambda r: r.name)
def test_samples_are_valid(reader):
    """The unmutated samples read without error (so the mutations start from valid input)."""
    for payload in reader.samples():
        assert not isinstance(_write_and_read(reader, payload), CrystalError)


@pytest.fixture(scope="module", params=FOLDER_READERS, ids=lambda r: r.name)
def folder_sample(request, tmp_path_factory):
    reader = request.param
    path = tmp_path_factory.mktemp(reader.name) / "sample.zarr"
    reader.build(path)
    files = sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())
    assert not isinstance(_call(reader.read, path), CrystalError)
    return reader, path, files


@FUZZ
@given(data=st.data())
def test_mutated_folders(folder_sample, data):
    """One file of a valid folder replaced by arbitrary bytes or a mutation of itself, or gone."""
    import shutil

    reader, sample, files = folder_sample
    rel = data.draw(st.sampled_from(files))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / sample.name
        shutil.copytree(sample, path)
        target = path / rel
        how = data.draw(st.sampled_from(["bytes", "mutate", "delete"]))
        if how == "delete":
            target.unlink()
        elif how == "bytes":
            target.write_bytes(data.draw(st.binary(max_size=512)))
        else:
            target.write_bytes(data.draw(mutated([target.read_bytes()])))
        _call(reader.read, path)
