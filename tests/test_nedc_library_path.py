"""The CSV reader's library path (pandas' C parser) gives exactly what the careful line-by-line
parser gives: the same annotation, or the same error on the same line. Whatever the library
path declines, the careful parser reads or explains."""

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
    library = nedc._library_table

    def declined(*args):
        raise nedc._Declined

    nedc._library_table = declined
    try:
        yield
    finally:
        nedc._library_table = library


@contextmanager
def _library_taken(taken: list):
    """Appends whether the file was read without the careful parser."""
    careful = nedc._careful_table
    called = []

    def spy(*args):
        called.append(True)
        return careful(*args)

    nedc._careful_table = spy
    try:
        yield
    finally:
        nedc._careful_table = careful
        taken.append(not called)


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
    with _library_taken(taken):
        library = _outcome(path)
    with _careful_only():
        careful = _outcome(path)
    return library, careful, taken[0]


def _annotation(n_regions: int = 5, n_vertices: int = 40, seed: int = 0, **region) -> Annotation:
    rng = np.random.default_rng(seed)
    labels = ["bckg", "norm", "dcis", "indc", "null"]
    regions = []
    for i in range(n_regions):
        coords = rng.integers(0, 90_000, size=(n_vertices, 2))
        fields = {"label": labels[i % len(labels)], "tissue": "breast", **region}
        regions.append(Region(i, i + 1, coords=coords, depth=None, **fields))
    return Annotation(regions, 0.5022, 90_000, 90_000, "library", "breast")


def test_regular_file_takes_the_library_path(tmp_path):
    text = format_csv(_annotation(12, 300)).encode()
    library, careful, taken = _both(tmp_path / "a.csv", text)
    assert taken
    assert library == careful and library[0] == "ok"


def test_example_takes_the_library_path(tmp_path):
    library, careful, taken = _both(tmp_path / "a.csv", EXAMPLE.encode())
    assert taken and library == careful


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
    "columns in another order": lambda: _base().replace(
        "index,region_id,tissue,label,coord_index,row,column",
        "index,region_id,label,tissue,coord_index,column,row",
    ),
    "reordered columns": lambda: _replace_data(
        _base().replace("coord_index,row,column", "coord_index,column,row"), lambda k, s: s
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_library_path_agrees_with_the_careful_path(tmp_path, case):
    library, careful, _ = _both(tmp_path / "a.csv", CASES[case]().encode())
    assert library == careful


IRREGULAR_BUT_VALID = [
    "crlf",
    "blank lines",
    "trailing blanks",
    "no final newline",
    "nine-digit coordinates",
    "depth varies in a region",
    "long confidence",
    "long depth",
    "short prefix",
    "long label",
    "negative coordinate",
    "decimal coordinate",
    "empty coord_index",
    "text coord_index",
    "columns in another order",
]


@pytest.mark.parametrize("case", IRREGULAR_BUT_VALID)
def test_irregular_valid_files_take_the_library_path(tmp_path, case):
    """Blank lines, CRLF, decimals, signs, odd columns: read by pandas, not left to Python."""
    library, careful, taken = _both(tmp_path / "a.csv", CASES[case]().encode())
    assert library[0] == "ok", library
    assert taken and library == careful


def test_decimals_are_truncated_either_way(tmp_path):
    text = _replace_data(
        _base(), lambda k, s: s.replace(",0,1.0\n", ".75,0,1.0\n") if k % 3 == 0 else s
    )
    library, careful, taken = _both(tmp_path / "a.csv", text.encode())
    assert taken and library == careful
    exact = read_annotation(tmp_path / "a.csv")
    plain = _annotation(4, 30)
    assert [r.coords.tolist() for r in exact.regions] == [r.coords.tolist() for r in plain.regions]


ERRORS = {
    "whitespace-only line": lambda: _replace_data(
        _base(), lambda k, s: s + (" \t\n" if k == 5 else "")
    ),
    "bad UTF-8 label": lambda: _base().replace(",breast,bckg,", ",breast,b\udcffckg,", 1),
    "empty row value": lambda: _replace_data(
        _base(),
        lambda k, s: (
            ",".join(f if i != 5 else "" for i, f in enumerate(s.split(","))) if k == 7 else s
        ),  # fmt: skip
    ),
    "infinite coordinate": lambda: _replace_data(
        _base(), lambda k, s: s.replace(",0,1.0\n", "e999,0,1.0\n") if k == 6 else s
    ),
    "too many fields in the first row": lambda: _replace_data(
        _base(), lambda k, s: s.replace(",0,1.0\n", ",0,1.0,7\n") if k == 0 else s
    ),
    "too few fields in the first row": lambda: _replace_data(
        _base(), lambda k, s: s.replace(",0,1.0\n", ",0\n") if k == 0 else s
    ),
    "boolean depth": lambda: _base().replace(",0,1.0\n", ",True,1.0\n"),
    "leading zero splits a region": lambda: _replace_data(
        _base(), lambda k, s: "0" + s if k == 3 else s
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_explained_by_the_careful_parser(tmp_path, case):
    """What pandas would read differently or cannot place on a line: the careful parser says
    what is wrong, with the line."""
    data = ERRORS[case]().encode("utf-8", errors="surrogateescape")
    library, careful, taken = _both(tmp_path / "a.csv", data)
    assert library == careful
    assert library[0] == "error" and not taken
    assert str(tmp_path / "a.csv") + ":" in library[1]


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
    library, careful, taken = _both(path, bytes(data))
    assert library == careful
    if not edits:
        assert taken  # a regular file never needs the careful parser
