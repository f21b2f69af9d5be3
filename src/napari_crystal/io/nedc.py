"""NEDC annotation model and CSV (``csv_v1.0.0``) / ImageScope XML reading and writing.

The format is described in ``../shared/docs/nedc-format.md``. Coordinates are level-0 pixels in
(row, column) order. CSV rows are read by pandas' C parser (a slide can carry a million
vertices); a careful line-by-line parser takes any file pandas might read differently and names
the line of its first problem. XML goes through defusedxml; every problem becomes one
:class:`AnnotationError` line.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from napari_crystal._atomic import atomic_write
from napari_crystal.errors import AnnotationError
from napari_crystal.io._common import parse_events
from napari_crystal.io._common import show as _show
from napari_crystal.io.annotation import (
    MAX_COORDINATE,
    Annotation,
    Region,
    RegionColumns,
    _warn_unknown,
    check_regions,
    collinear,
    region_tissues,
)

VERSION = "csv_v1.0.0"
VERSION_LINE = f"# version = {VERSION}"
COLUMNS = (
    "index", "region_id", "tissue", "label", "coord_index", "row", "column", "depth", "confidence",
)  # fmt: skip
SNIFF_BYTES = 4096
_NONSPACE = re.compile(rb"\S")
# Numbers as NEDC writes them: ASCII only (Python's int/float also take "1_000" and "１２").
_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_NUMBER_TEXT = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*", re.ASCII)
_INT64 = 2**63


def _ascii_int(text: str) -> int | None:
    """An ASCII integer within int64, else None."""
    if not _INT_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if -_INT64 <= value < _INT64 else None


def _ascii_float(text: str) -> float | None:
    """An ASCII decimal number (finite), else None."""
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _ascii_ints(texts: list[str]) -> list[int | None]:
    """`_ascii_int` of each text; plain digit strings (every region's ids) in one pass."""
    joined = "".join(texts)
    if joined.isascii() and joined.isdigit() and all(texts):
        values = list(map(int, texts))
        if max(values) < _INT64:
            return values
    return [_ascii_int(text) for text in texts]


def _fmt_float(value: float) -> str:
    """Six decimals as NEDC writes them, unless that would lose digits."""
    six = f"{value:.6f}"
    return six if float(six) == value else repr(float(value))


# ----------------------------------------------------------------------------------- sniffing


def sniff_annotation(path: str | PathLike) -> str | None:
    """``"csv"`` or ``"xml"`` if the start of the file looks like an NEDC annotation, else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    return _sniff_bytes(head)


def _sniff_bytes(head: bytes) -> str | None:
    head = head.removeprefix(b"\xef\xbb\xbf")
    if head.startswith(b"#"):
        first = head.split(b"\n", 1)[0]
        # Any version line claims the file, so a wrong version gets a clear error, not "no reader".
        return "csv" if re.match(rb"#\s*version\s*=", first) else None
    text = head.lstrip()
    while text.startswith(b"<?") or text.startswith(b"<!--"):
        end = text.find(b"?>" if text.startswith(b"<?") else b"-->")
        if end < 0:
            return None
        text = text[end + (2 if text.startswith(b"<?") else 3) :].lstrip()
    if text.startswith(b"<!DOCTYPE"):
        # A DTD is refused when reading; claim the file only if it names our root element.
        return "xml" if re.match(rb"<!DOCTYPE\s+Annotations\b", text) else None
    return "xml" if re.match(rb"<Annotations[\s>/]", text) else None


def find_annotation(slide_path: str | PathLike) -> Path | None:
    """The NEDC annotation beside a slide: same stem, ``.csv`` preferred, then ``.xml``."""
    slide_path = Path(slide_path)
    for suffix, kind in ((".csv", "csv"), (".CSV", "csv"), (".xml", "xml"), (".XML", "xml")):
        candidate = slide_path.with_suffix(suffix)
        if candidate.is_file() and not os.access(candidate, os.R_OK):
            return candidate  # unreadable: reading it says so, not "no annotation beside it"
        if candidate.is_file() and sniff_annotation(candidate) == kind:
            return candidate
    return None


# --------------------------------------------------------------------------------- reading


def read_annotation(path: str | PathLike) -> Annotation:
    """Read an NEDC ``.csv`` or ``.xml`` annotation (other suffixes: sniffed from the content)."""
    path = Path(path)
    raw = path.read_bytes()
    if _kind(path, raw) == "csv":
        columns = _read_csv(path, raw)
        ann = columns.annotation()
        _warn_unknown(path, labels=columns.labels)
        return ann
    ann = _parse_xml(path, raw)
    ann.source = str(path)
    check_regions(path, ann)
    _warn_unknown(path, ann.regions)
    return ann


def read_columns(path: str | PathLike) -> RegionColumns | None:
    """An NEDC CSV's regions as columns, with :func:`read_annotation`'s checks and errors but
    no :class:`Region` objects (cell-level files hold 100,000s of regions); None for an
    ImageScope XML file (:func:`read_annotation` reads it)."""
    path = Path(path)
    raw = path.read_bytes()
    if _kind(path, raw) != "csv":
        return None
    columns = _read_csv(path, raw)
    _warn_unknown(path, labels=columns.labels)
    return columns


def _kind(path: Path, raw: bytes) -> str:
    """``csv`` or ``xml``: from the suffix, else from the content."""
    kind = {".csv": "csv", ".xml": "xml"}.get(path.suffix.lower()) or _sniff_bytes(
        raw[:SNIFF_BYTES]
    )
    if kind is None:
        raise AnnotationError(
            path, "not an NEDC annotation file (neither csv_v1.0.0 nor ImageScope XML)", 1
        )
    return kind


def _read_csv(path: Path, raw: bytes) -> RegionColumns:
    columns = _parse_csv(path, raw)
    columns.source = str(path)
    return columns


def _parse_header(
    path: Path, data: bytes, size: int
) -> tuple[dict[str, tuple[str, int]], list[str], int, int]:
    """Header key -> (value, line), column names, the data block's offset and first line."""
    if _NONSPACE.search(data, 0, size) is None:
        raise AnnotationError(path, "empty file", 1)
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    lineno = 0
    header: dict[str, tuple[str, int]] = {}
    while True:
        if pos >= size:
            raise AnnotationError(path, "header has no column line (index,region_id,...)", lineno)
        end = data.find(b"\n", pos, size)
        end = size if end < 0 else end
        raw = bytes(data[pos:end]).rstrip(b"\r")
        pos = end + 1
        lineno += 1
        line = raw.strip()
        if lineno == 1:
            if line != VERSION_LINE.encode():
                raise AnnotationError(
                    path, f"first line must be {VERSION_LINE!r}, found {_show(line)}", 1
                )
            continue
        if not line:
            continue
        if not line.startswith(b"#"):
            break
        body = line[1:].strip()
        if not body:
            continue  # the lone "#" that ends the header
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise AnnotationError(path, "header line is not UTF-8 text", lineno) from None
        if "=" not in text:
            raise AnnotationError(path, f"header line without '=': {_show(body)}", lineno)
        key, value = (s.strip() for s in text.split("=", 1))
        header[key] = (value, lineno)
    columns = [c.strip() for c in line.decode("utf-8", errors="replace").split(",")]
    if sorted(columns) != sorted(COLUMNS):
        raise AnnotationError(
            path, f"column line must name {','.join(COLUMNS)}, found {_show(line, 80)}", lineno
        )
    return header, columns, pos, lineno + 1


def _header_fields(path: Path, header: dict[str, tuple[str, int]]) -> dict:
    out: dict = {
        "bname": header.get("bname", ("", 0))[0],
        "tissue": header.get("tissue", ("", 0))[0],
    }
    out["mpp"] = out["width"] = out["height"] = None
    if "MicronsPerPixel" in header:
        mpp, line = header["MicronsPerPixel"]
        value = _ascii_float(mpp)
        if value is None:
            raise AnnotationError(
                path, f"MicronsPerPixel is not a number: {_show(mpp.encode())}", line
            )
        if value <= 0:
            raise AnnotationError(path, f"MicronsPerPixel must be positive, got {mpp}", line)
        out["mpp"] = value
    if "width" in header:
        size, line = header["width"]
        m = re.fullmatch(r"(\d+)\s*pixels\s*,\s*height\s*=\s*(\d+)\s*pixels", size, re.ASCII)
        if m is None:
            raise AnnotationError(
                path, "size line must read '# width = W pixels, height = H pixels'", line
            )
        out["width"], out["height"] = int(m[1]), int(m[2])
    return out


class _Declined(Exception):
    """The library reader leaves this file to the careful parser (which accepts it or says why)."""


_COLS = {name: k for k, name in enumerate(COLUMNS)}
_HEAD = ("index", "region_id", "tissue", "label")
_BLANKISH_LINE = re.compile(rb"(?:^|\n)[ \t]+(?:\n|$)")


def _data_block(raw: bytes, offset: int) -> bytes:
    """The data rows with ``\\n`` line ends and no trailing blanks, as both parsers see them."""
    if raw.find(b"\r", offset) >= 0:
        return raw[offset:].replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n\t ")
    end = len(raw)
    while end > offset and raw[end - 1] in b"\n\t ":
        end -= 1
    return raw[offset:end]


def _parse_csv(path: Path, raw: bytes) -> RegionColumns:
    header, columns, offset, first_line = _parse_header(path, raw, len(raw))
    fields = _header_fields(path, header)
    block = _data_block(raw, offset)
    if not block:
        return _empty_columns(fields)
    try:
        table = _library_table(block, columns)
    except _Declined:
        table = _careful_table(path, block, columns, first_line)
        return _columns(path, table, fields)
    if b"\n\n" not in block:  # no blank lines: row k is line first_line + k
        table.lines = first_line + np.arange(len(table.heads["index"]), dtype=np.int64)
    del block  # a copy of the file: not kept while the columns are made
    try:
        return _columns(path, table, fields)
    except AnnotationError:
        # The library table has no line numbers that count blank lines: ask the careful parser.
        block = _data_block(raw, offset)
        return _columns(path, _careful_table(path, block, columns, first_line), fields)


def _empty_columns(fields: dict) -> RegionColumns:
    none = np.zeros(0, dtype=np.int64)
    text = np.zeros(0, dtype=object)
    return RegionColumns(
        np.zeros((0, 2)), none, none, none, none, text, text, np.zeros(0), **fields
    )


@dataclass
class _Table:
    """The data rows by column, as either parser returns them."""

    heads: dict[str, np.ndarray]  # index, region_id, tissue, label -> text (object) per row
    confidence: np.ndarray  # the text (object) in every row
    change: np.ndarray  # the rows where a region starts, after the first
    lines: np.ndarray | None  # each row's line number; None: not known (blank lines uncounted)
    numbers: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]  # row, column, depth


def _library_table(block: bytes, columns: list[str]) -> _Table:
    """Parse the rows with pandas' C reader; decline anything it might read differently from
    the careful parser (wrong field counts, whitespace-only lines, odd numbers, bad UTF-8)."""
    import pandas as pd

    if b"\0" in block or ((b" " in block or b"\t" in block) and _BLANKISH_LINE.search(block)):
        raise _Declined  # pandas would skip a line of blanks that the careful parser refuses
    text_cols = (*_HEAD, "confidence")
    # coord_index is never used; it is parsed only when last, for the short-row check below.
    skip = {"coord_index"} if columns[-1] != "coord_index" else set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = pd.read_csv(
                io.BytesIO(block),
                engine="c",
                header=None,
                names=columns,
                index_col=False,
                usecols=[c for c in columns if c not in skip],
                dtype=dict.fromkeys(text_cols, object),
                quoting=csv.QUOTE_NONE,
                na_filter=False,
                skip_blank_lines=True,
                encoding="utf-8",
                encoding_errors="strict",
            )
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        raise _Declined from None
    n = len(frame)
    # pandas pads short rows with "" and drops the extra fields of long ones. With eight
    # commas a row on average, a long row means a short one: a padded (empty) last field.
    last = frame[columns[-1]].to_numpy()
    if block.count(b",") != (len(COLUMNS) - 1) * n or (
        last.dtype == object and (last == "").any()
    ):
        raise _Declined
    numbers = {}
    for name in ("row", "column", "depth"):
        values = frame[name].to_numpy()
        if values.dtype.kind == "f":
            # Decimals are truncated, as the careful parser and NEDC's tool do; values beyond
            # float precision are left to the careful parser's exact integers.
            if not (np.isfinite(values).all() and (np.abs(values) < 2**53).all()):
                raise _Declined
            values = np.trunc(values).astype(np.int64)
        elif values.dtype != np.int64:
            raise _Declined
        numbers[name] = values
    heads = {name: frame[name].to_numpy() for name in _HEAD}
    differs = np.zeros(n, dtype=bool)
    for values in heads.values():
        differs[1:] |= values[1:] != values[:-1]
    row, column, depth = (numbers[name] for name in ("row", "column", "depth"))
    return _Table(
        heads,
        frame["confidence"].to_numpy(),
        np.flatnonzero(differs),
        None,
        lambda: (row, column, depth),
    )


def _careful_table(path: Path, block: bytes, columns: list[str], first_line: int) -> _Table:
    """Parse the rows one at a time in Python, naming the line of the first problem."""
    ncols = len(COLUMNS)
    lines = block.split(b"\n")
    rows, line_numbers = [], []
    for k, line in enumerate(lines):
        if not line:
            continue  # blank lines are allowed between rows
        fields = line.split(b",")
        if len(fields) != ncols:
            cut = k == len(lines) - 1 and len(fields) < ncols
            hint = " (file cut off mid-row?)" if cut else ""
            raise AnnotationError(
                path, f"data row has {len(fields)} fields, expected {ncols}{hint}", first_line + k
            )
        rows.append(fields)
        line_numbers.append(first_line + k)
    by_name = dict(zip(columns, zip(*rows, strict=True), strict=True))
    keys = list(zip(*(by_name[name] for name in _HEAD), strict=True))
    change = [k for k in range(1, len(keys)) if keys[k] != keys[k - 1]]

    def text(name: str) -> np.ndarray:
        values = np.empty(len(rows), dtype=object)
        values[:] = [raw.decode("utf-8", errors="replace") for raw in by_name[name]]
        return values

    def integers(name: str) -> np.ndarray:
        return np.array(
            [
                _careful_int(path, raw, name, line)
                for raw, line in zip(by_name[name], line_numbers, strict=True)
            ],
            dtype=np.int64,
        )

    return _Table(
        {name: text(name) for name in _HEAD},
        text("confidence"),
        np.array(change, dtype=np.int64),
        np.array(line_numbers, dtype=np.int64),
        # Parsed only when asked, after the region checks: a file with several problems
        # always gets the same one named.
        lambda: (integers("row"), integers("column"), integers("depth")),
    )


def _careful_int(path: Path, raw: bytes, name: str, line: int) -> int:
    """A row, column or depth value: an integer, or a decimal truncated as NEDC's tool does."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        raise AnnotationError(path, f"{name} is empty", line)
    shown = _show(text.encode())
    value = _ascii_int(text)
    if value is not None:
        return value
    if _INT_TEXT.fullmatch(text):
        raise AnnotationError(path, f"{name} {shown} is out of range", line)
    number = _ascii_float(text)
    if number is None:
        if _NUMBER_TEXT.fullmatch(text):  # inf, or beyond float range
            raise AnnotationError(path, f"{name} {shown} is out of range", line)
        raise AnnotationError(path, f"{name} {shown} is not a number", line)
    if abs(number) >= _INT64:
        raise AnnotationError(path, f"{name} {shown} is out of range", line)
    return int(number)


def _columns(path: Path, table: _Table, fields: dict) -> RegionColumns:
    """Region columns from a parsed table, after the checks every NEDC file must pass."""
    lines = table.lines
    n = len(table.heads["index"])
    rstart = np.concatenate([[0], table.change]).astype(np.int64)
    rend = np.concatenate([table.change, [n]]).astype(np.int64)

    def line_of(row: int) -> int | None:
        return None if lines is None else int(lines[row])

    starts = rstart.tolist()
    heads = {name: values[rstart].tolist() for name, values in table.heads.items()}
    index = _ascii_ints(heads["index"])
    region_id = _ascii_ints(heads["region_id"])
    if None in index or None in region_id:  # name the first bad value in file order
        for k in starts:
            for name in ("index", "region_id"):
                text = table.heads[name][k]
                if _ascii_int(text) is None:
                    raise AnnotationError(
                        path, f"{name} {_show(text.encode())} is not an integer", line_of(k)
                    )
    if len(set(index)) != len(index):
        labels = heads["label"]
        previous: dict[int, int] = {}
        for r, value in enumerate(index):
            line = line_of(starts[r])
            if r and index[r - 1] == value:
                what = (
                    "region_id"
                    if region_id[r] != region_id[r - 1]
                    else "label"
                    if labels[r] != labels[r - 1]
                    else "tissue"
                )
                raise AnnotationError(path, f"{what} changes within region index {value}", line)
            if value in previous:
                raise AnnotationError(
                    path,
                    f"rows of region index {value} are not contiguous "
                    f"(it also appears at line {previous[value]})",
                    line,
                )
            previous[value] = line
    rows_, cols_, depth = table.numbers()
    coords = np.empty((len(rows_), 2))  # float64, filled in place: one array of the vertices
    coords[:, 0], coords[:, 1] = rows_, cols_
    # coord_index is not parsed: the vertex order is the row order, as in NEDC's reader.
    region_of_row = np.repeat(np.arange(len(rstart)), rend - rstart)
    _check_distinct(
        path,
        (rows_ << 32) ^ (cols_ & 0xFFFFFFFF),
        rstart,
        rend,
        region_of_row,
        lines,
        index,
    )
    # Confidence is a region's value (1.0 in every file seen): taken from its first row.
    import pandas as pd

    codes, texts = pd.factorize(table.confidence[rstart])  # a few values ("1.0") in every region
    values = [_ascii_float(text) for text in texts]
    if None in values:  # name the first bad value in file order
        r = int(np.flatnonzero(np.equal(values, None)[codes])[0])
        text = texts[codes[r]]
        raise AnnotationError(
            path, f"confidence {_show(text.encode())} is not a number", line_of(starts[r])
        )
    columns = RegionColumns(
        coords,
        depth,
        rstart,
        np.array(index, dtype=np.int64),
        np.array(region_id, dtype=np.int64),
        table.heads["label"][rstart],
        table.heads["tissue"][rstart],
        np.array(values, dtype=np.float64)[codes],
        None if lines is None else lines[rstart],
        **fields,
    )
    check_regions(path, columns)  # here: a library table's error is redone with lines
    return columns


def _check_distinct(path, keys, rstart, rend, region_of_row, lines, index) -> None:
    """Every region needs at least three distinct vertices (``keys``: one int per vertex),
    checked without a per-region loop."""
    d0 = keys != keys[rstart][region_of_row]
    pos = np.flatnonzero(d0)
    if pos.size:
        cand = np.minimum(np.searchsorted(pos, rstart), pos.size - 1)
        has_second = (pos[cand] >= rstart) & (pos[cand] < rend)
        second_row = np.where(has_second, pos[cand], rstart)
    else:
        has_second = np.zeros(len(rstart), dtype=bool)
        second_row = rstart
    d1 = d0 & (keys != keys[second_row][region_of_row])
    third = np.logical_or.reduceat(d1, rstart)
    bad = np.flatnonzero(~(has_second & third))
    if bad.size:
        r = int(bad[0])
        raise AnnotationError(
            path,
            f"region index {index[r]} has fewer than 3 distinct vertices",
            None if lines is None else int(lines[rstart[r]]),
        )


class _XmlTarget:
    """expat target that collects regions without building an element tree."""

    def __init__(self, path: Path):
        self.path = path
        self.parser = None
        self.stack: list[str] = []
        self.mpp: float | None = None
        self.attrs: dict[str, str] = {}
        self.regions: list[Region] = []
        self.region: dict | None = None
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.zs: list[float] = []

    def line(self) -> int | None:
        return None if self.parser is None else self.parser.parser.CurrentLineNumber

    def error(self, message: str) -> AnnotationError:
        return AnnotationError(self.path, message, self.line())

    def number(self, attrib: dict, key: str, element: str, default: str | None = None) -> float:
        text = attrib.get(key, default)
        if text is None:
            raise self.error(f"<{element}> without {key}")
        value = _ascii_float(text)
        if value is None:
            shown = _show(text.encode())
            if _NUMBER_TEXT.fullmatch(text):
                raise self.error(f"<{element}> {key}={shown} is not a finite number")
            raise self.error(f"<{element}> {key}={shown} is not a number")
        if key in ("X", "Y", "Z") and abs(value) > MAX_COORDINATE:
            raise self.error(f"<{element}> {key}={_show(text.encode())} is out of range")
        return value

    def start(self, tag: str, attrib: dict) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is None and tag != "Annotations":
            raise self.error(f"root element is <{tag}>, expected <Annotations> (ImageScope XML)")
        if tag == "Vertex" and parent == "Vertices" and self.region is not None:
            self.xs.append(self.number(attrib, "X", "Vertex"))
            self.ys.append(self.number(attrib, "Y", "Vertex"))
            self.zs.append(self.number(attrib, "Z", "Vertex", "0"))
        elif tag == "Region" and parent == "Regions":
            rid = attrib.get("Id")
            number = None if rid is None else _ascii_float(rid)
            if rid is not None and (number is None or abs(number) >= _INT64):
                raise self.error(f"<Region> Id={_show(rid.encode())} is not a number")
            region_id = int(number) if number is not None else len(self.regions) + 1
            self.region = {
                "id": region_id,
                "label": attrib.get("Text", ""),
                "tissue": None,
                "line": self.line(),
            }
            self.xs, self.ys, self.zs = [], [], []
        elif tag == "Attribute" and self.stack[-2:] == ["Region", "Attributes"]:
            if self.region is not None and self.region["tissue"] is None:
                self.region["tissue"] = attrib.get("Value", "")
        elif tag == "Attribute" and self.stack[-2:] == ["Annotation", "Attributes"]:
            name = attrib.get("Name", "").strip().lower()
            if name and name not in self.attrs:
                self.attrs[name] = attrib.get("Value", "")
        elif tag == "Annotations" and parent is None:
            if "MicronsPerPixel" in attrib:
                self.mpp = self.number(attrib, "MicronsPerPixel", "Annotations")
                if self.mpp <= 0:
                    raise self.error(
                        f"MicronsPerPixel must be positive, got {attrib['MicronsPerPixel']}"
                    )
        self.stack.append(tag)

    def end(self, tag: str) -> None:
        self.stack.pop()
        if tag == "Region" and self.region is not None and self.stack[-1:] == ["Regions"]:
            reg = self.region
            # NEDC's tool truncates decimal ImageScope coordinates to integers.
            coords = np.trunc(np.column_stack([self.ys, self.xs]).reshape(-1, 2))
            if len(np.unique(coords, axis=0)) < 3:
                raise AnnotationError(
                    self.path,
                    f'<Region Id="{reg["id"]}"> has fewer than 3 distinct vertices',
                    reg["line"],
                )
            self.regions.append(
                Region(
                    index=len(self.regions),
                    region_id=reg["id"],
                    label=reg["label"],
                    tissue=reg["tissue"] or "",
                    coords=coords,
                    depth=np.trunc(np.asarray(self.zs)).astype(np.int64),
                    line=reg["line"],
                )
            )
            self.region = None

    def data(self, text: str) -> None:
        pass

    def close(self) -> None:
        return None


def _size_attr(path: Path, attrs: dict[str, str], name: str) -> int | None:
    if name not in attrs:
        return None
    value = _ascii_float(attrs[name])
    if value is None or not 0 <= value < _INT64:
        raise AnnotationError(
            path, f"{name} attribute {_show(attrs[name].encode())} is not a pixel count"
        )
    return int(value)


def _parse_xml(path: Path, data: bytes) -> Annotation:

    target = _XmlTarget(path)
    parse_events(path, data, target, expat_direct=False)
    attrs = target.attrs
    return Annotation(
        target.regions,
        mpp=target.mpp,
        width=_size_attr(path, attrs, "width"),
        height=_size_attr(path, attrs, "height"),
        bname=attrs.get("bname", path.stem),
        tissue=region_tissues(target.regions),
    )


# --------------------------------------------------------------------------------- writing


def _check_writable(ann: Annotation, path: Path) -> None:
    if ann.mpp is None:
        raise AnnotationError(path, "cannot write: pixel size (mpp) is unknown")
    if ann.width is None or ann.height is None:
        raise AnnotationError(path, "cannot write: slide width/height are unknown")
    for i, r in enumerate(ann.regions):
        if not r.label:
            raise AnnotationError(
                path, f"cannot write: region {i} (id {r.region_id}) has no label"
            )
        if len(r.coords) >= 3 and collinear(r.coords):
            raise AnnotationError(
                path, f"cannot write: region {i} (id {r.region_id}) has no area (a line or point)"
            )
        for name in ("label", "tissue"):
            value = getattr(r, name)
            if any(c in value for c in ",\n\r"):
                raise AnnotationError(
                    path, f"cannot write: region {i} {name} {value!r} contains a comma or newline"
                )


def _int_coords(region: Region) -> np.ndarray:
    return np.rint(region.coords).astype(np.int64)


def format_csv(ann: Annotation) -> str:
    """The ``csv_v1.0.0`` text of an annotation, exactly as NEDC lays it out."""
    tissue = ann.tissue or region_tissues(ann.regions)
    lines = [
        VERSION_LINE,
        f"# MicronsPerPixel = {_fmt_float(ann.mpp)}",
        f"# bname = {ann.bname}",
        f"# width = {ann.width} pixels, height = {ann.height} pixels",
        f"# tissue = {tissue}",
        "#",
        ",".join(COLUMNS),
    ]
    for i, r in enumerate(ann.regions):
        prefix = f"{i},{r.region_id},{r.tissue},{r.label},"
        suffix = f",{float(r.confidence)!r}"
        rc = _int_coords(r).tolist()
        lines.extend(
            f"{prefix}{k},{y},{x},{z}{suffix}"
            for k, ((y, x), z) in enumerate(zip(rc, r.depth.tolist(), strict=True))
        )
    return "\n".join(lines) + "\n"


def format_xml(ann: Annotation) -> str:
    """ImageScope XML of an annotation, with Length/Area in pixels and microns."""
    mpp = float(ann.mpp)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<Annotations MicronsPerPixel="{_fmt_float(mpp)}">',
        '  <Annotation Id="1">',
        "    <Attributes>",
        f'      <Attribute Name="width" Value="{ann.width}"/>',
        f'      <Attribute Name="height" Value="{ann.height}"/>',
        f'      <Attribute Name="bname" Value={quoteattr(ann.bname)}/>',
        "    </Attributes>",
        "    <Regions>",
    ]
    # Colours are ImageScope layer colours: with any, each run of regions of one class and
    # colour is a layer (Name = class, LineColor = 0xBBGGRR), in region order.
    colors = [ann.color_of(r) for r in ann.regions]
    layer_of, layer_id = None, 1
    if any(colors):
        out[2] = _layer_open(1, ann.regions[0].label, colors[0])
        layer_of = (ann.regions[0].label, colors[0])
    for r, color in zip(ann.regions, colors, strict=True):
        if layer_of is not None and (r.label, color) != layer_of:
            layer_of, layer_id = (r.label, color), layer_id + 1
            out += ["    </Regions>", "  </Annotation>", _layer_open(layer_id, r.label, color)]
            out.append("    <Regions>")
        length, area = r.length, r.area
        out.append(
            f'      <Region Id="{r.region_id}" Text={quoteattr(r.label)} Length="{length:.1f}" '
            f'Area="{area:.1f}" LengthMicrons="{length * mpp:.1f}" AreaMicrons="{area * mpp * mpp:.1f}">'
        )
        out.append("        <Attributes>")
        out.append(f'          <Attribute Name="Tissue Value" Value={quoteattr(r.tissue)}/>')
        out.append("        </Attributes>")
        out.append("        <Vertices>")
        rc = _int_coords(r).tolist()
        out.extend(
            f'          <Vertex X="{x}" Y="{y}" Z="{z}"/>'
            for (y, x), z in zip(rc, r.depth.tolist(), strict=True)
        )
        out.append("        </Vertices>")
        out.append("      </Region>")
    out += ["    </Regions>", "  </Annotation>", "</Annotations>"]
    return "\n".join(out) + "\n"


def _layer_open(layer_id: int, name: str, color: str | None) -> str:
    line = f'  <Annotation Id="{layer_id}" Name={quoteattr(name)}'
    if color:
        h = color.lstrip("#")
        line += f' LineColor="{int(h[0:2], 16) | int(h[2:4], 16) << 8 | int(h[4:6], 16) << 16}"'
    return line + ">"


def write_annotation(ann: Annotation, path: str | PathLike, fmt: str | None = None) -> Path:
    """Write ``.csv`` or ``.xml`` (from the suffix, or ``fmt``) atomically: temp file, then rename."""
    path = Path(path)
    fmt = fmt or {".csv": "csv", ".xml": "xml"}.get(path.suffix.lower())
    if fmt not in ("csv", "xml"):
        raise AnnotationError(path, "cannot write: the file name must end in .csv or .xml")
    _check_writable(ann, path)
    text = format_csv(ann) if fmt == "csv" else format_xml(ann)
    atomic_write(path, text.encode("utf-8"), make_parents=False)
    return path
