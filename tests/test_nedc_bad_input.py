"""Bad NEDC input: each case gives one clear AnnotationError naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_crystal.errors import AnnotationError
from napari_crystal.io.nedc import read_annotation

GOOD = (Path(__file__).parent / "data" / "example.csv").read_text()
GOOD_XML = (Path(__file__).parent / "data" / "example.xml").read_text()
ROWS_START = 8  # line number of the first data row in the example


def _csv(**replace) -> str:
    text = GOOD
    for old, new in replace.values():
        assert old in text
        text = text.replace(old, new, 1)
    return text


CSV_CASES = {
    "missing version line": (
        GOOD.split("\n", 1)[1],
        1,
        "first line must be '# version = csv_v1.0.0'",
    ),
    "wrong version": (GOOD.replace("csv_v1.0.0", "csv_v2.0.0", 1), 1, "first line must be"),
    "header line without =": (
        _csv(a=("# tissue = breast", "# tissue breast")),
        5,
        "header line without '='",
    ),
    "bad size line": (
        _csv(a=("height = 35840 pixels", "height = lots")),
        4,
        "width = W pixels, height = H pixels",
    ),
    "bad pixel size": (_csv(a=("0.502200", "half")), 2, "MicronsPerPixel is not a number"),
    "wrong columns": (_csv(a=("coord_index,row,column", "coord_index,x,y")), 7, "column line"),
    "non-numeric row": (
        _csv(a=("0,1,breast,dcis,1,12010", "0,1,breast,dcis,1,12O10")),
        9,
        "row '12O10' is not a number",
    ),
    "non-numeric column": (_csv(a=("30644", "abc")), 9, "column 'abc' is not a number"),
    "empty column value": (_csv(a=("12122,30700", "12122,")), 10, "column is empty"),
    "coordinate out of range": (
        _csv(a=("30644", "1e300")),
        9,
        "column '1e300' is out of range",
    ),
    "regions not contiguous": (
        GOOD + "0,1,breast,dcis,4,12040,30511,0,1.0\n",
        16,
        "rows of region index 0 are not contiguous",
    ),
    "label changes inside a region": (
        _csv(a=("0,1,breast,dcis,2", "0,1,breast,indc,2")),
        10,
        "label changes within region index 0",
    ),
    "fewer than 3 distinct vertices": (
        _csv(a=("1,2,breast,bckg,2,7000,9000", "1,2,breast,bckg,2,5000,7000")),
        12,
        "region index 1 has fewer than 3 distinct vertices",
    ),
    "too few fields": (
        _csv(a=("0,1,breast,dcis,2,12122,30700,0,1.0", "0,1,breast,dcis,2,12122,30700")),
        10,
        "7 fields, expected 9",
    ),
    "too many fields": (
        _csv(a=("0,1,breast,dcis,2,12122,30700,0,1.0", "0,1,breast,dcis,2,12122,30700,0,1.0,9")),
        10,
        "10 fields, expected 9",
    ),
    "empty file": ("", 1, "empty file"),
    "only blanks": ("\n \n", 1, "empty file"),
    "header only, no column line": (
        "# version = csv_v1.0.0\n# bname = x\n#\n",
        3,
        "no column line",
    ),
    "cut off mid-row": (GOOD[: GOOD.rindex("5000,7000")], 15, "cut off mid-row"),
    "non-numeric index": (
        _csv(a=("1,2,breast,bckg,0", "x,2,breast,bckg,0")),
        12,
        "index 'x' is not an integer",
    ),
    "bad confidence": (
        _csv(a=("0,1,breast,dcis,0,12040,30510,0,1.0", "0,1,breast,dcis,0,12040,30510,0,high")),
        8,
        "confidence 'high'",
    ),
    "bad confidence in a later region": (
        _csv(a=("1,2,breast,bckg,0,5000,7000,0,1.0", "1,2,breast,bckg,0,5000,7000,0,1.0x")),
        12,
        "confidence '1.0x'",
    ),
    "region without area": (
        _csv(a=("1,2,breast,bckg,2,7000,9000", "1,2,breast,bckg,2,5000,8000")),
        12,
        "region 2 ('bckg', #1) has no area",
    ),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_bad_csv(tmp_path, case):
    text, line, message = CSV_CASES[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(AnnotationError) as info:
        read_annotation(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert message in err.message
    assert str(err).startswith(f"{path}:{line}: ")
    assert "\n" not in str(err)


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_bad_csv_as_columns(tmp_path, case):
    """The column reader (cell-level files in napari) refuses every file read_annotation
    refuses, with the same line and reason: both go through one set of checks."""
    from napari_crystal.io.formats import read_annotation_columns

    text, line, message = CSV_CASES[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(AnnotationError) as info:
        read_annotation_columns(path)
    assert (info.value.path, info.value.line) == (str(path), line)
    assert message in info.value.message


def test_binary_garbage_with_csv_suffix(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(AnnotationError, match=r"garbage\.csv:1: first line must be"):
        read_annotation(path)


def test_binary_garbage_after_a_valid_header(tmp_path):
    path = tmp_path / "garbage2.csv"
    path.write_bytes(GOOD.encode() + b"\x00\xff\x01,\x02" * 3 + b"\n")
    with pytest.raises(AnnotationError, match=r"garbage2\.csv:16: "):
        read_annotation(path)


def _xml(old: str, new: str) -> str:
    assert old in GOOD_XML
    return GOOD_XML.replace(old, new, 1)


BOMB = """<?xml version="1.0"?>
<!DOCTYPE Annotations [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Annotations MicronsPerPixel="0.5"><Annotation><Regions><Region Id="1" Text="&lol9;">
<Vertices><Vertex X="1" Y="1"/><Vertex X="5" Y="1"/><Vertex X="5" Y="5"/></Vertices>
</Region></Regions></Annotation></Annotations>
"""

EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE Annotations [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>
<Annotations MicronsPerPixel="0.5"><Annotation><Regions><Region Id="1" Text="&secret;">
<Vertices><Vertex X="1" Y="1"/><Vertex X="5" Y="1"/><Vertex X="5" Y="5"/></Vertices>
</Region></Regions></Annotation></Annotations>
"""

XML_CASES = {
    "not well formed": (_xml("</Regions>", "</Region>"), 20, "XML is not well formed"),
    "cut off": (GOOD_XML[: GOOD_XML.index("</Vertices>")], 18, "XML is not well formed"),
    "vertex without X": (
        _xml('<Vertex X="30644" Y="12010" Z="0"/>', '<Vertex Y="12010" Z="0"/>'),
        16,
        "<Vertex> without X",
    ),
    "non-numeric vertex": (_xml('X="30644"', 'X="far"'), 16, "<Vertex> X='far' is not a number"),
    "fewer than 3 distinct vertices": (
        _xml('X="30700" Y="12122"', 'X="30510" Y="12040"'),
        9,
        'Region Id="1"> has fewer than 3',
    ),
    "wrong root": ('<?xml version="1.0"?>\n<svg/>', 2, "root element is <svg>"),
    "entity expansion bomb": (BOMB, 2, "XML refused"),
    "external entity": (EXTERNAL, 2, "XML refused"),
    "empty": ("", 1, "empty file"),
    "bad region id": (_xml('Region Id="1"', 'Region Id="one"'), 9, "Id='one' is not a number"),
}


@pytest.mark.parametrize("case", list(XML_CASES))
def test_bad_xml(tmp_path, case):
    text, line, message = XML_CASES[case]
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(AnnotationError) as info:
        read_annotation(path)
    err = info.value
    assert (err.path, err.line) == (str(path), line)
    assert message in err.message
    assert "\n" not in str(err)


def test_bomb_is_refused_without_expanding(tmp_path):
    """A billion-laughs file is refused at its DTD, so reading it costs no memory or time."""
    import tracemalloc

    path = tmp_path / "bomb.xml"
    path.write_text(BOMB)
    tracemalloc.start()
    with pytest.raises(AnnotationError, match="XML refused"):
        read_annotation(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000
