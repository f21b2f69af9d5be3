"""NEDC annotation model and CSV (``csv_v1.0.0``) / ImageScope XML reading and writing.

The format is described in ``../shared/docs/nedc-format.md``. Coordinates are level-0 pixels in
(row, column) order. Reading is vectorised with numpy (a slide can carry a million vertices);
XML goes through defusedxml; every problem becomes one :class:`AnnotationError` line.
"""

from __future__ import annotations

import os
import re
from os import PathLike
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from napari_crystal._atomic import atomic_write
from napari_crystal.errors import AnnotationError
from napari_crystal.io.annotation import (
    Annotation,
    Region,
    _warn_unknown,
    region_tissues,
)

VERSION = "csv_v1.0.0"
VERSION_LINE = f"# version = {VERSION}"
COLUMNS = (
    "index", "region_id", "tissue", "label", "coord_index", "row", "column", "depth", "confidence",
)  # fmt: skip
SNIFF_BYTES = 4096
_PAD = 64
_NONSPACE = re.compile(rb"\S")


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
        if candidate.is_file() and sniff_annotation(candidate) == kind:
            return candidate
    return None


# --------------------------------------------------------------------------------- reading


def read_annotation(path: str | PathLike) -> Annotation:
    """Read an NEDC ``.csv`` or ``.xml`` annotation (other suffixes: sniffed from the content)."""
    path = Path(path)
    with open(path, "rb") as fh:
        # One read into a buffer with spare bytes at the end, so the CSV parser can load
        # 8-byte words anywhere without copying the file.
        raw = bytearray(os.fstat(fh.fileno()).st_size + _PAD)
        size = fh.readinto(raw)
    kind = {".csv": "csv", ".xml": "xml"}.get(path.suffix.lower()) or _sniff_bytes(
        bytes(raw[: min(size, SNIFF_BYTES)])
    )
    if kind is None:
        raise AnnotationError(
            path, "not an NEDC annotation file (neither csv_v1.0.0 nor ImageScope XML)", 1
        )
    if kind == "csv":
        ann = _parse_csv(path, raw, size)
    else:
        ann = _parse_xml(path, bytes(memoryview(raw)[:size]))
    ann.source = str(path)
    _warn_unknown(path, ann.regions)
    return ann


def _show(raw: bytes, limit: int = 40) -> str:
    text = raw.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _parse_header(
    path: Path, data: bytearray, size: int
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
        try:
            out["mpp"] = float(mpp)
        except ValueError:
            raise AnnotationError(
                path, f"MicronsPerPixel is not a number: {mpp!r}", line
            ) from None
    if "width" in header:
        size, line = header["width"]
        m = re.fullmatch(r"(\d+)\s*pixels\s*,\s*height\s*=\s*(\d+)\s*pixels", size)
        if m is None:
            raise AnnotationError(
                path, "size line must read '# width = W pixels, height = H pixels'", line
            )
        out["width"], out["height"] = int(m[1]), int(m[2])
    return out


_U64 = np.uint64
_ASCII_ZEROS = 0x3030303030303030
# Per field width w (1..8): keep the top w bytes of a word, fill the bottom ones with '0's.
_KEEP = np.array([(1 << (8 * w)) - 1 for w in range(9)], dtype=_U64)
_HIGH = np.array([((1 << 64) - 1) ^ ((1 << (8 * (8 - w))) - 1) for w in range(9)], dtype=_U64)
_FILL = np.array([_ASCII_ZEROS & ((1 << (8 * (8 - w))) - 1) for w in range(9)], dtype=_U64)


def _swar_digits(words: np.ndarray) -> np.ndarray:
    """Eight ASCII digits per little-endian uint64 word to their value (SWAR)."""
    v = words - _U64(_ASCII_ZEROS)
    v = ((v * _U64(10)) + (v >> _U64(8))) & _U64(0x00FF00FF00FF00FF)
    v = ((v * _U64(100)) + (v >> _U64(16))) & _U64(0x0000FFFF0000FFFF)
    v = ((v * _U64(10000)) + (v >> _U64(32))) & _U64(0xFFFFFFFF)
    return v.astype(np.int64)


class _Block:
    """The data rows of a CSV as one byte array, with field boundaries per row.

    Fields are read as unaligned 8-byte words and decoded with SWAR arithmetic, so parsing a
    million rows is a few numpy passes and no Python loop per row.
    """

    def __init__(self, path: Path, raw: bytearray, offset: int, size: int, first_line: int):
        self.path = path
        if raw.find(b"\r", offset, size) >= 0:
            block = bytes(raw[offset:size]).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            raw, offset, size = bytearray(block) + bytearray(_PAD), 0, len(block)
        end = size
        while end > offset and raw[end - 1] in b"\n\t ":
            end -= 1
        raw[end] = 10  # a final newline, written into the spare bytes if need be
        self.size = end + 1 - offset if end > offset else 0
        self.buf = buf = np.frombuffer(raw, dtype=np.uint8, offset=offset)
        self.words = np.ndarray(
            shape=(self.size,), dtype="<u8", buffer=raw, offset=offset, strides=(1,)
        )
        body = buf[: self.size]
        ncols = len(COLUMNS)
        # In a well-formed block the only bytes <= ',' are commas and newlines, nine per row.
        sep = np.flatnonzero(body <= 44)
        grid = None
        if len(sep) % ncols == 0:
            kind = body[sep].reshape(-1, ncols)
            if (kind[:, -1] == 10).all() and (kind[:, :-1] == 44).all():
                grid = sep.reshape(-1, ncols)
                self.lines = first_line + np.arange(len(grid))
        if grid is None:
            grid = self._irregular(body, first_line)
        else:
            self.row_starts = np.empty(len(grid), dtype=np.int64)
            self.row_starts[:1] = 0
            self.row_starts[1:] = grid[:-1, -1] + 1
        self.seps = grid

    def _irregular(self, body: np.ndarray, first_line: int) -> np.ndarray:
        """Blank lines, stray characters or a wrong field count: find rows the careful way."""
        sep = np.flatnonzero((body == 44) | (body == 10))
        is_nl = body[sep] == 10
        nl_at = np.flatnonzero(is_nl)
        nl = sep[nl_at]
        starts = np.empty_like(nl)
        starts[:1] = 0
        starts[1:] = nl[:-1] + 1
        counts = np.diff(nl_at, prepend=-1) - 1
        nonblank = nl > starts
        expected = len(COLUMNS) - 1
        bad = np.flatnonzero(nonblank & (counts != expected))
        if bad.size:
            k = bad[0]
            hint = " (file cut off mid-row?)" if k == len(nl) - 1 and counts[k] < expected else ""
            raise AnnotationError(
                self.path,
                f"data row has {counts[k] + 1} fields, expected {len(COLUMNS)}{hint}",
                first_line + int(k),
            )
        rows = np.flatnonzero(nonblank)
        self.lines = first_line + rows
        self.row_starts = starts[rows]
        keep = np.ones(len(sep), dtype=bool)
        keep[nl_at[~nonblank]] = False  # drop the newlines of blank lines
        return sep[keep].reshape(len(rows), len(COLUMNS))

    def bounds(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end byte offsets of a column in every row."""
        start = self.row_starts if col == 0 else self.seps[:, col - 1] + 1
        return start, self.seps[:, col]

    def text(self, col: int, row: int) -> str:
        start = self.row_starts[row] if col == 0 else self.seps[row, col - 1] + 1
        raw = self.buf[start : self.seps[row, col]].tobytes()
        return raw.decode("utf-8", errors="replace")

    def changes(self, first: int, last: int) -> np.ndarray:
        """Rows whose bytes in columns ``first..last`` differ from the row above."""
        s, e = self.bounds(first)[0], self.bounds(last)[1]
        width = e - s
        diff = width[1:] != width[:-1]
        narrow = int(width.min())
        for k in range(0, int(width.max()), 8):
            word = self.words[s + k]
            if narrow < k + 8:  # a word that runs past the end of some fields: mask those
                word &= _KEEP[np.clip(width - k, 0, 8)]
            diff |= word[1:] != word[:-1]
        return np.flatnonzero(diff) + 1

    def ints(self, col: int, name: str) -> np.ndarray:
        """Parse a column of non-negative integers of up to 8 digits; anything else falls back
        to a slower path that handles signs and decimals or names the bad line."""
        s, e = self.bounds(col)
        n = len(s)
        if not n:
            return np.zeros(0, dtype=np.int64)
        width = e - s
        if e.min() < 8 or width.min() < 1 or width.max() > 8:
            return self._slow_ints(col, name)
        # The 8 bytes ending at the field: keep the field, pad on the left with '0's.
        words = (self.words[e - 8] & _HIGH[width]) | _FILL[width]
        high = words & _U64(0xF0F0F0F0F0F0F0F0)
        carry = (words + _U64(0x0606060606060606)) & _U64(0xF0F0F0F0F0F0F0F0)
        if not ((high == _U64(_ASCII_ZEROS)) & (carry == _U64(_ASCII_ZEROS))).all():
            return self._slow_ints(col, name)
        return _swar_digits(words)

    def zeros(self, col: int) -> bool:
        """Whether every value of a column is the single character '0' (depth, nearly always)."""
        s, e = self.bounds(col)
        return bool(((e - s) == 1).all() and (self.buf[s] == 48).all())

    def _slow_ints(self, col: int, name: str) -> np.ndarray:
        """Signed or decimal values (decimal coordinates are truncated, as NEDC's tool does);
        anything that is not a number is an error naming its line."""
        out = np.empty(len(self.lines), dtype=np.int64)
        integral = name in ("index", "region_id", "coord_index")
        for k in range(len(out)):
            text = self.text(col, k).strip()
            line = int(self.lines[k])
            try:
                out[k] = int(text)
                continue
            except ValueError:
                pass
            if not text:
                raise AnnotationError(self.path, f"{name} is empty", line)
            try:
                value = float(text)
            except ValueError:
                raise AnnotationError(
                    self.path, f"{name} {text!r} is not a number", line
                ) from None
            if integral or not np.isfinite(value):
                raise AnnotationError(self.path, f"{name} {text!r} is not an integer", line)
            out[k] = int(value)
        return out


_LOW7 = _U64(0x7F7F7F7F7F7F7F7F)
_DIGIT_BIAS = _U64(0x7676767676767676)
_HIGH_BITS = _U64(0x8080808080808080)
_MOVEMASK = _U64(0x0102040810204080)
_NIBBLES = 0x0F0F0F0F0F0F0F0F


def _digit_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per mask of the non-digit bytes of a word (bit k: byte k): how many digits end the word;
    the shift that brings the byte before them down (64, i.e. none, unless 1..7 digits); and
    the mask that keeps their low nibbles."""
    count = np.array([8 if m == 0 else 8 - m.bit_length() for m in range(256)], dtype=np.int64)
    shift = np.where((count >= 1) & (count <= 7), 8 * (7 - count), 64).astype(_U64)
    nibbles = np.array([int(_HIGH[c]) & _NIBBLES for c in count], dtype=_U64)
    return count, shift, nibbles


_TRAILING, _SHIFT_BEFORE, _DIGIT_NIBBLES = _digit_tables()
_ROWS_PER_CHUNK = 1 << 14  # rows are checked and parsed in cache-sized chunks
_SCAN_BYTES = 1 << 20


def _nondigit_masks(word: np.ndarray) -> np.ndarray:
    """For each little-endian uint64 word, the 8-bit mask of its bytes that are not ASCII digits."""
    x = word ^ _U64(_ASCII_ZEROS)  # digits become bytes 0..9
    m = x & _LOW7
    m += _DIGIT_BIAS  # the high bit of a byte is set from 10 up; no carries between bytes
    m |= x
    m &= _HIGH_BITS
    m >>= _U64(7)
    m *= _MOVEMASK  # gathers the eight high bits into the top byte
    m >>= _U64(56)
    return m.view(np.int64)


def _digits_before(words: np.ndarray, end: np.ndarray, ok: np.ndarray):
    """The 1..7 digits that end just before byte offsets ``end``, preceded by a comma:
    ``ok &=`` whether they are there; returns their count and their value."""
    word = words[end - 8]
    mask = _nondigit_masks(word)
    count = _TRAILING.take(mask)
    before = word >> _SHIFT_BEFORE.take(mask)
    before &= _U64(0xFF)
    ok &= before == _U64(44)
    # Eight digits to their value, two, four, then eight at a time (SWAR).
    v = word & _DIGIT_NIBBLES.take(mask)
    v *= _U64(10 * 256 + 1)
    v >>= _U64(8)
    v &= _U64(0x00FF00FF00FF00FF)
    v *= _U64(100 * 65536 + 1)
    v >>= _U64(16)
    v &= _U64(0x0000FFFF0000FFFF)
    v *= _U64((10000 << 32) + 1)
    v >>= _U64(32)
    return count, v.view(np.int64)


def _newlines(buf: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Offsets of the newlines in ``buf[start:stop]`` and the number of commas there, a chunk
    at a time so that the byte masks stay in the cache."""
    mask = np.empty(min(_SCAN_BYTES, stop - start), dtype=bool)
    parts, commas = [], 0
    for lo in range(start, stop, _SCAN_BYTES):
        chunk = buf[lo : min(lo + _SCAN_BYTES, stop)]
        m = mask[: len(chunk)]
        np.equal(chunk, 44, out=m)
        commas += int(np.count_nonzero(m))
        np.equal(chunk, 10, out=m)
        found = np.flatnonzero(m)
        found += lo
        parts.append(found)
    return np.concatenate(parts), commas


class _FastBlock:
    """The data rows of a regular CSV, found from the newlines alone.

    Most files have the canonical column order, a region's first four fields and its
    depth/confidence repeated on every row, and plain digits elsewhere. Then the only
    per-byte pass finds newlines and counts commas; each row is checked and its row and
    column parsed from a few 8-byte words at known offsets. Any other input gets ``None`` from
    :meth:`parse`, and :class:`_Block` reads it (and names what is wrong) the careful way.
    Offers ``_parse_csv`` the same methods as :class:`_Block`.
    """

    @classmethod
    def parse(cls, path: Path, raw: bytearray, offset: int, size: int, first_line: int):
        if offset < 48:  # word loads reach up to 42 bytes before the first row
            return None
        end = size
        while end > offset and raw[end - 1] in b"\n\t ":
            end -= 1
        if end <= offset:
            return None
        raw[end] = 10  # the final newline, as _Block writes it
        stop = end + 1
        buf = np.frombuffer(raw, dtype=np.uint8)
        words = np.ndarray(shape=(stop + 32,), dtype="<u8", buffer=raw, strides=(1,))
        nl, commas = _newlines(buf, offset, stop)
        n = len(nl)
        if commas != (len(COLUMNS) - 1) * n:
            return None
        rs = np.empty_like(nl)
        rs[0] = offset
        rs[1:] = nl[:-1] + 1
        # Region candidates: rows whose first 8 bytes differ from the row above. Checked below:
        # every row must repeat its region's first four fields exactly, and neighbouring
        # regions must differ in them, so these are exactly the rows _Block.changes finds.
        head = words[rs]
        change = np.flatnonzero(head[1:] != head[:-1]) + 1
        if 3 * (len(change) + 1) > n:  # fewer than 3 rows a region: not worth it here
            return None
        rstart = np.concatenate([[0], change])
        counts = np.diff(np.append(rstart, n))
        texts, widths, tails, depths, prefix_at, prefix_word, tail_mask, tail_word = (
            [] for _ in range(8)
        )
        previous = None
        for k in rstart.tolist():
            parts = bytes(raw[int(rs[k]) : int(nl[k])]).split(b",")
            if len(parts) != len(COLUMNS):
                return None
            prefix = b",".join(parts[:4]) + b","
            tail = b"," + parts[7] + b"," + parts[8]
            if prefix == previous or not (8 <= len(prefix) <= 32 and len(tail) <= 8):
                return None
            if not (parts[7].isdigit() and len(parts[7]) <= 8):
                return None
            previous = prefix
            texts.append(parts)
            widths.append(len(prefix))
            tails.append(len(tail))
            depths.append(int(parts[7]))
            # The first 8 bytes are the same in the whole region (head); the rest of the
            # prefix is covered by words at 8, 16 and, last, ending where the prefix ends.
            at = [min(i, len(prefix) - 8) for i in (8, 16, 24)]
            prefix_at.append(at)
            prefix_word.append([int.from_bytes(prefix[i : i + 8], "little") for i in at])
            tail_mask.append(int(_HIGH[len(tail)]))
            tail_word.append(int.from_bytes(tail.rjust(8, b"\0"), "little"))
        n_words = (max(widths) - 1) // 8
        per_row = {
            name: np.repeat(np.asarray(values, dtype=dtype), counts, axis=0)
            for name, values, dtype in (
                ("at", np.asarray(prefix_at)[:, :n_words], np.int64),
                ("word", np.asarray(prefix_word, dtype=_U64)[:, :n_words], _U64),
                ("width", widths, np.int64),
                ("tail", tails, np.int64),
                ("tail_mask", tail_mask, _U64),
                ("tail_word", tail_word, _U64),
            )
        }
        rows = np.empty(n, dtype=np.int64)
        cols = np.empty(n, dtype=np.int64)
        for lo in range(0, n, _ROWS_PER_CHUNK):
            hi = min(lo + _ROWS_PER_CHUNK, n)
            start, stop_ = rs[lo:hi], nl[lo:hi]
            ok = np.ones(hi - lo, dtype=bool)
            at, expect = per_row["at"][lo:hi], per_row["word"][lo:hi]
            for i in range(n_words):
                ok &= words[start + at[:, i]] == expect[:, i]
            tail = words[stop_ - 8]
            tail &= per_row["tail_mask"][lo:hi]
            ok &= tail == per_row["tail_word"][lo:hi]
            col_end = stop_ - per_row["tail"][lo:hi]
            width, cols[lo:hi] = _digits_before(words, col_end, ok)
            row_end = col_end - width
            row_end -= 1
            width, rows[lo:hi] = _digits_before(words, row_end, ok)
            # coord_index lies between the prefix and the comma before row. With the file's
            # comma count checked above, the commas found here are all there are.
            row_end -= width
            row_end -= start
            ok &= row_end > per_row["width"][lo:hi]
            if not ok.all():
                return None
        block = cls()
        block.path = path
        block.lines = first_line + np.arange(n)
        block.change = change
        block.texts = dict(zip(rstart.tolist(), texts, strict=True))
        block.values = {5: rows, 6: cols, 7: np.repeat(np.asarray(depths, np.int64), counts)}
        block.all_zero_depth = not any(depths)
        return block

    def changes(self, first: int, last: int) -> np.ndarray:
        assert (first, last) == (0, 3)
        return self.change

    def text(self, col: int, row: int) -> str:
        return self.texts[row][col].decode("utf-8", errors="replace")

    def ints(self, col: int, name: str) -> np.ndarray:
        return self.values[col]

    def zeros(self, col: int) -> bool:
        assert col == 7
        return self.all_zero_depth


def _parse_csv(path: Path, raw: bytearray, size: int) -> Annotation:
    header, columns, offset, first_line = _parse_header(path, raw, size)
    fields = _header_fields(path, header)
    if raw.find(b"\r", offset, size) >= 0:
        # Line ends as "\n" only, in a copy with spare bytes on both sides for word loads.
        block = bytes(raw[offset:size]).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        raw, offset, size = (
            bytearray(_PAD) + bytearray(block) + bytearray(_PAD),
            _PAD,
            _PAD + len(block),
        )
    block = None
    if columns == list(COLUMNS):
        block = _FastBlock.parse(path, raw, offset, size, first_line)
    if block is None:
        block = _Block(path, raw, offset, size, first_line)
    col = {name: columns.index(name) for name in COLUMNS}
    n = len(block.lines)
    if n == 0:
        return Annotation([], **fields)
    # Rows of one region repeat index, region_id, tissue and label: a region starts wherever
    # those bytes differ from the row above. Only the region-start rows are parsed in Python.
    region_cols = [col[c] for c in ("index", "region_id", "tissue", "label")]
    if sorted(region_cols) == list(range(min(region_cols), min(region_cols) + 4)):
        change = block.changes(min(region_cols), max(region_cols))
    else:  # columns in an unusual order: compare each field
        change = np.unique(np.concatenate([block.changes(c, c) for c in region_cols]))
    rstart = np.concatenate([[0], change])
    rend = np.concatenate([change, [n]])
    heads = []
    for k in rstart.tolist():
        values = []
        for name in ("index", "region_id"):
            text = block.text(col[name], k)
            try:
                values.append(int(text))
            except ValueError:
                raise AnnotationError(
                    path, f"{name} {text!r} is not an integer", int(block.lines[k])
                ) from None
        heads.append((*values, block.text(col["label"], k), block.text(col["tissue"], k)))
    previous: dict[int, int] = {}
    for r, (index, *_rest) in enumerate(heads):
        line = int(block.lines[rstart[r]])
        if r and heads[r - 1][0] == index:
            (_, rid0, label0, _), (_, rid, label, _) = heads[r - 1], heads[r]
            what = "region_id" if rid != rid0 else "label" if label != label0 else "tissue"
            raise AnnotationError(path, f"{what} changes within region index {index}", line)
        if index in previous:
            raise AnnotationError(
                path,
                f"rows of region index {index} are not contiguous "
                f"(it also appears at line {previous[index]})",
                line,
            )
        previous[index] = line
    rows_, cols_ = block.ints(col["row"], "row"), block.ints(col["column"], "column")
    coords = np.column_stack([rows_, cols_]).astype(np.float64)
    depth = (
        np.zeros(n, np.int64) if block.zeros(col["depth"]) else block.ints(col["depth"], "depth")
    )
    # coord_index is not parsed: the vertex order is the row order, as in NEDC's reader.
    region_of_row = np.repeat(np.arange(len(rstart)), rend - rstart)
    _check_distinct(
        path,
        (rows_ << 32) ^ (cols_ & 0xFFFFFFFF),
        rstart,
        rend,
        region_of_row,
        block.lines,
        [h[0] for h in heads],
    )
    # Confidence is a region's value (1.0 in every file seen): taken from its first row.
    confidences = {}
    for k in rstart.tolist():
        text = block.text(col["confidence"], k)
        try:
            confidences[k] = float(text)
        except ValueError:
            raise AnnotationError(
                path, f"confidence {text!r} is not a number", int(block.lines[k])
            ) from None
    regions = [
        Region(
            index=index,
            region_id=rid,
            label=label,
            tissue=tissue,
            coords=coords[s:e],
            depth=depth[s:e],
            confidence=confidences[s],
        )
        for (index, rid, label, tissue), s, e in zip(
            heads, rstart.tolist(), rend.tolist(), strict=True
        )
    ]
    return Annotation(regions, **fields)


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
            int(lines[rstart[r]]),
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
        try:
            value = float(text)
        except ValueError:
            raise self.error(f"<{element}> {key}={text!r} is not a number") from None
        if not np.isfinite(value):
            raise self.error(f"<{element}> {key}={text!r} is not a finite number")
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
            try:
                region_id = int(float(rid)) if rid is not None else len(self.regions) + 1
            except ValueError:
                raise self.error(f"<Region> Id={rid!r} is not a number") from None
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
    try:
        return int(float(attrs[name]))
    except ValueError:
        raise AnnotationError(path, f"{name} attribute {attrs[name]!r} is not a number") from None


def _parse_xml(path: Path, data: bytes) -> Annotation:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import DefusedXMLParser, ParseError

    if not data.strip():
        raise AnnotationError(path, "empty file", 1)
    target = _XmlTarget(path)
    parser = DefusedXMLParser(
        target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    target.parser = parser
    try:
        parser.feed(data)
        parser.close()
    except DefusedXmlException as exc:
        raise AnnotationError(
            path, f"XML refused: {exc} (DTDs and entities are not allowed)", target.line()
        ) from None
    except ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        msg = str(exc).split(": line")[0]
        raise AnnotationError(path, f"XML is not well formed: {msg}", line) from None
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
    for r in ann.regions:
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
