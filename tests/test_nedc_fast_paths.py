"""The CSV reader's fast path (newlines only, rows checked word by word) gives exactly what the
careful path gives: the same annotation, or the same error on the same line."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_crystal.errors import AnnotationError
from napari_crystal.io import nedc
from napari_crystal.io.nedc import Annotation, Region, format_csv, read_annotation

EXAMPLE = (Path(__file__).parent / "data" / "example.csv").read_text()


@contextmanager
def _careful_only():
    fast = nedc._FastBlock.parse
    nedc._FastBlock.parse = classmethod(lambda cls, *args: None)
    try:
        yield
    finally:
        nedc._FastBlock.parse = fast


@contextmanager
def _fast_taken(taken: list):
    fast = nedc._FastBlock.parse

    def spy(cls, *args):
        block = fast(*args)
        taken.append(block is not None)
        return block

    nedc._FastBlock.parse = classmethod(spy)
    try:
        yield
    finally:
        nedc._FastBlock.parse = fast


def _outcome(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ann = read_annotation(path)
        except AnnotationError as err:
            return ("error", str(err))
    regions = [
        (
            r.index,
            r.region_id,
            r.label,
            r.tissue,
            r.confidence,
            r.coords.tolist(),
            r.depth.tolist(),
        )
        for r in ann.regions
    ]
    return ("ok", ann.mpp, ann.width, ann.height, ann.bname, ann.tissue, regions)


def _both(path: Path, data: bytes) -> tuple[tuple, tuple, bool]:
    path.write_bytes(data)
    taken: list[bool] = []
    with _fast_taken(taken):
        fast = _outcome(path)
    with _careful_only():
        careful = _outcome(path)
    return fast, careful, any(taken)


def _annotation(n_regions: int = 5, n_vertices: int = 40, seed: int = 0, **region) -> Annotation:
    rng = np.random.default_rng(seed)
    labels = ["bckg", "norm", "dcis", "indc", "null"]
    regions = []
    for i in range(n_regions):
        coords = rng.integers(0, 90_000, size=(n_vertices, 2))
        fields = {"label": labels[i % len(labels)], "tissue": "breast", **region}
        regions.append(Region(i, i + 1, coords=coords, depth=None, **fields))
    return Annotation(regions, 0.5022, 90_000, 90_000, "fast", "breast")


def test_regular_file_takes_the_fast_path(tmp_path):
    text = format_csv(_annotation(12, 300)).encode()
    fast, careful, taken = _both(tmp_path / "a.csv", text)
    assert taken
    assert fast == careful and fast[0] == "ok"


def test_example_takes_the_fast_path(tmp_path):
    fast, careful, taken = _both(tmp_path / "a.csv", EXAMPLE.encode())
    assert taken and fast == careful


def _replace_data(text: str, fn) -> str:
    head, _, body = text.partition(
        "index,region_id,tissue,label,coord_index,row,column,depth,confidence\n"
    )
    lines = body.splitlines(keepends=True)
    return (
        head
        + "index,region_id,tissue,label,coord_index,row,column,depth,confidence\n"
        + "".join(fn(k, line) for k, line in enumerate(lines))
    )


def _base() -> str:
    return format_csv(_annotation(4, 30))


CASES = {
    "crlf": lambda: _base().replace("\n", "\r\n"),
    "lone cr": lambda: _base().replace("\n", "\r"),
    "blank lines": lambda: _replace_data(_base(), lambda k, s: s + ("\n" if k % 7 == 3 else "")),
    "trailing blanks": lambda: _base() + "\n \t\n\n",
    "no final newline": lambda: _base().rstrip("\n"),
    "eight-digit coordinates": lambda: format_csv(
        Annotation(
            [Region(0, 1, "dcis", "breast", [[12345678, 1], [2, 3], [4, 5]], None)],
            0.25,
            99_999_999,
            99_999_999,
            "big",
            "breast",
        )  # fmt: skip
    ),
    "nine-digit coordinates": lambda: format_csv(
        Annotation(
            [Region(0, 1, "dcis", "breast", [[123456789, 1], [2, 3], [4, 5]], None)],
            0.25,
            999_999_999,
            999_999_999,
            "big",
            "breast",
        )  # fmt: skip
    ),
    "depth per region": lambda: _base().replace(",0,1.0\n", ",3,1.0\n"),
    "depth varies in a region": lambda: _replace_data(
        _base(), lambda k, s: s.replace(",0,1.0\n", ",1,1.0\n") if k % 5 == 2 else s
    ),
    "confidence varies in a region": lambda: _replace_data(
        _base(), lambda k, s: s.replace(",0,1.0\n", ",0,0.5\n") if k % 5 == 2 else s
    ),
    "long confidence": lambda: _base().replace(",0,1.0\n", ",0,0.123456789\n"),
    "long depth": lambda: _base().replace(",0,1.0\n", ",123456789,1.0\n"),
    "short prefix": lambda: format_csv(_annotation(3, 10, tissue="", label="a")),
    "long label": lambda: format_csv(_annotation(3, 10, label="a_very_long_label_for_a_region")),
    "space before a number": lambda: _replace_data(
        _base(), lambda k, s: s.replace(",", ", ", 6) if k == 9 else s
    ),
    "negative coordinate": lambda: _replace_data(
        _base(),
        lambda k, s: (
            s[: s.index(",", s.index(",", 12) + 1) + 1]
            + "-"
            + s[s.index(",", s.index(",", 12) + 1) + 1 :]
            if k == 4
            else s
        ),  # fmt: skip
    ),
    "decimal coordinate": lambda: _replace_data(
        _base(), lambda k, s: s.replace(",0,1.0\n", ".5,0,1.0\n") if k == 8 else s
    ),
    "empty coord_index": lambda: _replace_data(
        _base(), lambda k, s: ",".join(f if i != 4 else "" for i, f in enumerate(s.split(",")))
    ),
    "text coord_index": lambda: _replace_data(
        _base(),
        lambda k, s: ",".join(f if i != 4 else "v" + f for i, f in enumerate(s.split(","))),
    ),
    "comma in coord_index": lambda: _replace_data(
        _base(),
        lambda k, s: (
            s.replace(",0,1.0\n", ",0\n").replace(",breast,", ",breast,x,", 1) if k == 11 else s
        ),  # fmt: skip
    ),
    "regions not contiguous": lambda: _base() + _base().splitlines()[8] + "\n",
    "same prefix, region split": lambda: _replace_data(
        _base(), lambda k, s: s.replace("0,1,breast,bckg,", "0,1,breast,bckx,", 1) if k == 3 else s
    ),
    "one region": lambda: format_csv(_annotation(1, 5)),
    "two vertices": lambda: format_csv(_annotation(2, 3)).replace(
        _base().splitlines()[9], _base().splitlines()[9]
    ),
    "reordered columns": lambda: _replace_data(
        _base().replace("coord_index,row,column", "coord_index,column,row"), lambda k, s: s
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_agrees_with_the_careful_path(tmp_path, case):
    fast, careful, _ = _both(tmp_path / "a.csv", CASES[case]().encode())
    assert fast == careful


MUTATION_CHARS = ",\n\r \t-.0159ax"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n_regions=st.integers(1, 4),
    n_vertices=st.integers(3, 12),
    confidence=st.sampled_from([1.0, 0.5, 0.123456]),
    depth=st.sampled_from([0, 2, 12345]),
    edits=st.lists(
        st.tuples(
            st.floats(0, 1, exclude_max=True),
            st.sampled_from(["insert", "replace", "delete"]),
            st.sampled_from(MUTATION_CHARS),
        ),  # fmt: skip
        max_size=3,
    ),
)
def test_mutated_files_read_the_same_either_way(
    tmp_path_factory, seed, n_regions, n_vertices, confidence, depth, edits
):
    ann = _annotation(n_regions, n_vertices, seed, confidence=confidence)
    for r in ann.regions:
        r.depth[:] = depth
    text = format_csv(ann)
    start = text.index("\n", text.index("index,region_id")) + 1
    data = bytearray(text.encode())
    for where, how, char in edits:
        pos = start + int(where * (len(data) - start))
        if how == "insert":
            data[pos:pos] = char.encode()
        elif how == "replace" and pos < len(data):
            data[pos] = ord(char)
        elif how == "delete" and pos < len(data):
            del data[pos]
    path = tmp_path_factory.mktemp("mutated") / "m.csv"
    fast, careful, taken = _both(path, bytes(data))
    assert fast == careful
    if not edits and len(f",{depth},{confidence!r}") <= 8:
        assert taken  # a regular file with a short depth/confidence tail
