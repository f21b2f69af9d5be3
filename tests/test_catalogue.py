"""The catalogue of bad input: every case is one row (builder, command, what must happen).

A row builds its input in a fresh folder (the working directory, so paths read as a user typed
them), runs the command line in-process and checks: the exit status (2 for refused input, 0
where the input is legitimate), one line on stderr starting ``napari-crystal: error:`` that
names the user's file and holds the expected fragment, no traceback, and nothing left behind
(no temporaries, no ``*.work`` folder, no half-made output). docs/reliability.md is the same
table for users. Other readers add rows to ``CASES`` (see ``Case``).

Cases that need the real process (log lines of third-party libraries, the warning format) run
the CLI as a subprocess at the end of this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from napari_crystal.cli import main
from test_nedc_bad_input import CSV_CASES, GOOD, GOOD_XML, XML_CASES

ROOT = Path(__file__).resolve().parents[1]
CSV_NAME = "00000001_s001_0hne_0000_a001_lvl001_t000"


@dataclass(frozen=True)
class Case:
    """One catalogue row.

    ``build(ctx)`` makes the input in the current folder and returns the command's arguments.
    ``fragment`` must be in the error line, which must also name ``names`` (a path as the user
    gave it). ``status`` 0 means the input is legitimate: the command must succeed.
    ``absent``: paths that must not exist afterwards (an output refused half-way).
    """

    build: Callable[[Ctx], list[str]]
    fragment: str = ""
    names: str = ""
    status: int = 2
    absent: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    root_skips: bool = False  # permissions mean nothing to root


@dataclass
class Ctx:
    """What builders share: the tiny corpus and a small dataset made from it (read-only)."""

    corpus: Path
    dataset: Path

    def one_slide_corpus(self, name: str = "c", csv: str | None = None) -> Path:
        """``name/train/`` with the first training slide and its CSV (``csv`` replaces it)."""
        train = Path(name) / "train"
        train.mkdir(parents=True)
        src = self.corpus / "train" / CSV_NAME
        shutil.copy(src.with_suffix(".svs"), train)
        (train / f"{CSV_NAME}.csv").write_text(
            csv if csv is not None else src.with_suffix(".csv").read_text()
        )
        return Path(name)

    def csv_text(self) -> str:
        return (self.corpus / "train" / f"{CSV_NAME}.csv").read_text()

    def copy_dataset(self, name: str = "d.zarr") -> Path:
        shutil.copytree(self.dataset, name)
        return Path(name)


def _first_vertex(text: str, row: str, col: str) -> str:
    lines = text.split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("0,"))
    parts = lines[i].split(",")
    parts[5], parts[6] = row, col
    lines[i] = ",".join(parts)
    return "\n".join(lines)


def _file(name: str, text: str | bytes) -> Path:
    path = Path(name)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _rerecord(ds: Path) -> None:
    """Update a dataset's file record after editing it (a consistent but wrong dataset)."""
    from napari_crystal.dataset import _file_record

    meta = json.loads((ds / "zarr.json").read_text())
    meta["attributes"]["files"] = _file_record(ds)
    (ds / "zarr.json").write_text(json.dumps(meta))


def _label_code_out_of_range(ctx: Ctx) -> list[str]:
    import zarr

    ds = ctx.copy_dataset()
    arr = zarr.open_array(str(ds / "table" / "label"), mode="r+")
    codes = np.asarray(arr[:])
    codes[0] = 999
    arr[:] = codes
    _rerecord(ds)
    return ["train", str(ds), "--out", "m.skops", "--trees", "2", "--quiet"]


def _truncated_resume_chunk(ctx: Ctx) -> list[str]:
    """An interrupted build left a truncated chunk: the rerun redoes it (status 0)."""
    corpus = ctx.one_slide_corpus()
    work = Path("d.zarr.work")
    work.mkdir()
    (work / "00000-0000.npz").write_bytes(b"PK\x03\x04 truncated by a full disk")
    return ["dataset", str(corpus), "--out", "d.zarr", "--size", "16", "--quiet"]


def _leftovers(ctx: Ctx) -> list[str]:
    """What kill -9 left beside an output (a dead pid in the names): swept by the next run."""
    _file(".out.xml.999999999-abcd1234.tmp", b"half a file")
    _file(".out.xml.3yk9w0nh.tmp", b"an older version's temporary")
    _file("in.xml", GOOD_XML)
    return ["convert", "in.xml", "out.xml"]


def _dataset_leftovers(ctx: Ctx) -> list[str]:
    corpus = ctx.one_slide_corpus()
    Path(".d.zarr.tmp-999999999-xyz").mkdir()
    (Path(".d.zarr.tmp-999999999-xyz") / "zarr.json").write_text("{}")
    return ["dataset", str(corpus), "--out", "d.zarr", "--size", "16", "--quiet"]


def _symlink_loop(ctx: Ctx) -> list[str]:
    os.symlink("loop.csv", "loop.csv")
    return ["info", "loop.csv"]


def _unreadable_annotation(ctx: Ctx) -> list[str]:
    corpus = ctx.one_slide_corpus()
    (corpus / "train" / f"{CSV_NAME}.csv").chmod(0)
    return ["dataset", str(corpus), "--out", "d.zarr", "--size", "16", "--quiet"]


def _slide_case(data: Callable[[bytes], bytes]) -> Callable[[Ctx], list[str]]:
    """The one-slide corpus with its slide's bytes replaced."""

    def build(ctx: Ctx) -> list[str]:
        corpus = ctx.one_slide_corpus()
        svs = corpus / "train" / f"{CSV_NAME}.svs"
        svs.write_bytes(data(svs.read_bytes()))
        return ["dataset", str(corpus), "--out", "d.zarr", "--size", "16", "--quiet"]

    return build


def _corrupt_coarsest(data: bytes) -> bytes:
    """Random bytes over the first tile of the slide's coarsest level (read at open)."""
    import io

    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.series[0].levels[-1].pages[0]
        off, n = int(page.dataoffsets[0]), int(page.databytecounts[0])
    out = bytearray(data)
    out[off : off + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(out)


def _unknown_compression(data: bytes) -> bytes:
    """A tiled RGB TIFF whose compression no codec knows."""
    import io

    import tifffile

    buf = io.BytesIO()
    rgb = np.zeros((512, 512, 3), np.uint8)
    tifffile.imwrite(buf, rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    buf.seek(0)
    with tifffile.TiffFile(buf, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(50999)
    return buf.getvalue()


def _info(name: str, text: str | bytes) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["info", str(_file(name, text))]


def _csv_with(row: str, col: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["info", str(_file("a.csv", _first_vertex(ctx.csv_text(), row, col)))]


def _option(*args: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: list(args)


def _damaged_dataset(edit: Callable[[Path], None]) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        ds = ctx.copy_dataset()
        edit(ds)
        return ["train", str(ds), "--out", "m.skops", "--trees", "2", "--quiet"]

    return build


CHUNK = "packed/c/0/0"
XML_1E30 = GOOD_XML.replace('X="30644"', 'X="1e30"', 1)
ZERO_AREA = GOOD.replace("12122,30700", "12025,30577", 1)  # the third vertex on the first edge
LONG_LABEL = GOOD.replace("dcis", "x" * 100_000)

CASES: dict[str, Case] = {
    # --- 1. datasets: what a dataset holds is checked when it is opened
    "dataset: packed chunk deleted": Case(
        _damaged_dataset(lambda ds: (ds / CHUNK).unlink()),
        f"{CHUNK} is missing",
        "d.zarr",
        absent=("m.skops",),
    ),
    "dataset: packed chunk truncated": Case(
        _damaged_dataset(lambda ds: (ds / CHUNK).write_bytes((ds / CHUNK).read_bytes()[:50])),
        "bytes",
        "d.zarr",
        absent=("m.skops",),
    ),
    "dataset: packed chunk random bytes": Case(
        _damaged_dataset(
            lambda ds: (ds / CHUNK).write_bytes(os.urandom((ds / CHUNK).stat().st_size))
        ),
        "differs from what was written",
        "d.zarr",
        absent=("m.skops",),
    ),
    "dataset: table/label missing": Case(
        _damaged_dataset(lambda ds: shutil.rmtree(ds / "table" / "label")),
        "table/label",
        "d.zarr",
        absent=("m.skops",),
    ),
    "dataset: label code out of range": Case(
        _label_code_out_of_range, "code 999 is out of range", "d.zarr", absent=("m.skops",)
    ),
    "dataset: metadata not JSON": Case(
        _damaged_dataset(lambda ds: (ds / "zarr.json").write_text("{not json")),
        "not a napari-crystal dataset",
        "d.zarr",
    ),
    "dataset: no dataset there": Case(
        _option("train", "nowhere.zarr", "--out", "m.skops"), "no such dataset", "nowhere.zarr"
    ),
    "dataset: truncated resume chunk in <out>.work is redone": Case(
        _truncated_resume_chunk, status=0
    ),
    # --- 2. numbers from XML
    "xml: X=1e30 refused on read": Case(
        lambda ctx: ["convert", str(_file("a.xml", XML_1E30)), "out.csv"],
        "X='1e30' is out of range",
        "a.xml:16",
        absent=("out.csv",),
    ),
    "xml: MicronsPerPixel 0": Case(
        _info("a.xml", GOOD_XML.replace('MicronsPerPixel="0.502200"', 'MicronsPerPixel="0"')),
        "MicronsPerPixel must be positive",
        "a.xml:2",
    ),
    "xml: X with full-width digits": Case(
        _info("a.xml", GOOD_XML.replace('X="30644"', 'X="３0644"')),
        "is not a number",
        "a.xml:16",
    ),
    "xml: X written 30_644": Case(
        _info("a.xml", GOOD_XML.replace('X="30644"', 'X="30_644"')), "is not a number", "a.xml"
    ),
    # --- 3. coordinates against the slide, and work sized before it is done
    "slide: vertex at (2e9, 2e9)": Case(
        lambda ctx: [
            "dataset",
            str(
                ctx.one_slide_corpus(csv=_first_vertex(ctx.csv_text(), "2000000000", "2000000000"))
            ),
            "--out",
            "d.zarr",
            "--quiet",
        ],  # fmt: skip
        "outside the slide",
        f"c/train/{CSV_NAME}.csv:8",
        absent=("d.zarr", "d.zarr.work"),
    ),
    "slide: vertex a little outside (within the tolerance) is kept": Case(
        lambda ctx: [
            "dataset",
            str(ctx.one_slide_corpus(csv=_first_vertex(ctx.csv_text(), "-50", "-50"))),
            "--out",
            "d.zarr",
            "--size",
            "16",
            "--quiet",
        ],  # fmt: skip
        status=0,
    ),
    "work: --size 100000": Case(
        _option("dataset", "c", "--out", "d.zarr", "--size", "100000"), "at most 8192"
    ),
    "work: a patch beyond NAPARI_CRYSTAL_MAX_PATCH_BYTES": Case(
        lambda ctx: ["dataset", str(ctx.one_slide_corpus()), "--out", "d.zarr", "--quiet"],
        "allowed (NAPARI_CRYSTAL_MAX_PATCH_BYTES)",
        f"c/train/{CSV_NAME}.csv",
        absent=("d.zarr", "d.zarr.work"),
        env={"NAPARI_CRYSTAL_MAX_PATCH_BYTES": "100000"},
    ),
    # --- 4. integers beyond int64
    "csv: row >= 2**63": Case(
        _csv_with("9223372036854775808", "1911"),
        "row '9223372036854775808' is out of range",
        "a.csv:8",
    ),
    "csv: column of 30 digits": Case(_csv_with("696", "9" * 30), "is out of range", "a.csv:8"),
    "csv: region index >= 2**63": Case(
        _info("a.csv", GOOD.replace("\n1,2,breast,bckg", "\n99999999999999999999,2,breast,bckg")),
        "is not an integer",
        "a.csv:12",
    ),
    # --- 6. every option checked by argparse before any work
    "option: --trees 0": Case(_option("train", "d.zarr", "--out", "m", "--trees", "0"), "--trees"),
    "option: --seed -1": Case(_option("train", "d.zarr", "--out", "m", "--seed", "-1"), "--seed"),
    "option: --max-depth 0": Case(
        _option("train", "d.zarr", "--out", "m", "--max-depth", "0"), "--max-depth"
    ),
    "option: --jobs 0": Case(_option("train", "d.zarr", "--out", "m", "--jobs", "0"), "--jobs"),
    "option: --size 0": Case(_option("dataset", "c", "--out", "d", "--size", "0"), "--size"),
    "option: --level nan": Case(
        _option("compare", "a", "b", "d", "--out", "r", "--level", "nan"), "--level"
    ),  # fmt: skip
    "option: --scheduler bogus": Case(
        _option("dataset", "c", "--out", "d", "--scheduler", "bogus"), "unknown scheduler 'bogus'"
    ),
    "option: --split ../other/train": Case(
        _option("dataset", "c", "--out", "d", "--split", "../other/train"), "one folder name"
    ),
    "option: experiment --trees 0 before any dataset": Case(
        lambda ctx: ["experiment", str(ctx.corpus), "--out", "r", "--trees", "0"],
        "--trees",
        absent=("r",),
    ),
    "option: synth onto an existing file": Case(
        lambda ctx: ["synth", str(_file("corpus", b"a file"))],
        "exists and is not a folder",
        "corpus",
    ),
    "option: train --out onto a folder": Case(
        lambda ctx: (Path("m").mkdir(), ["train", "d.zarr", "--out", "m"])[1], "is a folder", "m"
    ),
    # --- 7. file system
    "fs: symlink loop": Case(_symlink_loop, "Too many levels of symbolic links", "loop.csv"),
    "fs: annotation without read permission": Case(
        _unreadable_annotation, "Permission denied", f"c/train/{CSV_NAME}.csv", root_skips=True
    ),
    "fs: convert into a missing folder names the output, not a temporary": Case(
        lambda ctx: ["convert", str(_file("in.xml", GOOD_XML)), "nodir/out.xml"],
        "No such file or directory",
        "nodir/out.xml",
    ),
    # --- 9. leftovers of killed runs are swept by the next run on the same output
    "leftovers: .NAME.*.tmp beside a convert output": Case(_leftovers, status=0),
    "leftovers: .NAME.zarr.tmp-* beside a dataset": Case(_dataset_leftovers, status=0),
    # --- 11. accepted but wrong, now refused
    "csv: MicronsPerPixel 0": Case(
        _info("a.csv", GOOD.replace("0.502200", "0", 1)),
        "MicronsPerPixel must be positive",
        "a.csv:2",
    ),
    "csv: MicronsPerPixel negative": Case(
        _info("a.csv", GOOD.replace("0.502200", "-0.5", 1)), "must be positive", "a.csv:2"
    ),
    "csv: coordinate 1_000": Case(
        _csv_with("1_000", "1911"), "row '1_000' is not a number", "a.csv:8"
    ),  # fmt: skip
    "csv: full-width digits": Case(_csv_with("６96", "1911"), "is not a number", "a.csv:8"),
    "csv: full-width digits in the size line": Case(
        _info("a.csv", GOOD.replace("60120", "６0120", 1)), "width = W pixels", "a.csv:4"
    ),
    "csv: zero-area region": Case(_info("a.csv", ZERO_AREA), "has no area", "a.csv:8"),
    "csv: 100,000-character label is cut in the message": Case(
        _info("a.csv", LONG_LABEL.replace("12122,30700", "12O,30700", 1)),
        "not a number",
        "a.csv:10",
    ),
    # --- slides (tests/test_slide_bad_input.py through the command line)
    "slide: empty file": Case(_slide_case(lambda b: b""), "empty file", f"{CSV_NAME}.svs"),
    "slide: text with a slide's name": Case(
        _slide_case(lambda b: b"not a slide\n"), "not a TIFF/SVS slide", f"{CSV_NAME}.svs"
    ),
    "slide: truncated to half": Case(
        _slide_case(lambda b: b[: len(b) // 2]), "", f"{CSV_NAME}.svs", absent=("d.zarr",)
    ),
    "slide: header only": Case(_slide_case(lambda b: b[:6]), "not a readable", f"{CSV_NAME}.svs"),
    "slide: garbage in the coarsest level": Case(
        _slide_case(_corrupt_coarsest), "cannot decode image data", f"{CSV_NAME}.svs"
    ),
    "slide: unknown compression": Case(
        _slide_case(_unknown_compression),
        "cannot",
        f"{CSV_NAME}.svs",  # tifffile or OpenSlide
    ),
}

# --- the NEDC reader's own table (tests/test_nedc_bad_input.py) through `info`
for _name, (_text, _line, _message) in CSV_CASES.items():
    CASES[f"csv: {_name}"] = Case(_info("bad.csv", _text), _message, f"bad.csv:{_line}")
for _name, (_text, _line, _message) in XML_CASES.items():
    CASES[f"xml: {_name}"] = Case(_info("bad.xml", _text), _message, f"bad.xml:{_line}")


@pytest.fixture(scope="module")
def ctx(tiny_corpus, tmp_path_factory) -> Ctx:
    from napari_crystal.dataset import build_dataset

    out = tmp_path_factory.mktemp("catalogue") / "small.zarr"
    build_dataset(tiny_corpus, "dev", out, size=16)
    return Ctx(tiny_corpus, out)


LEFTOVER_MARKS = (".tmp", ".work", ".old-")


def _leftovers_in(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if any(m in p.name for m in LEFTOVER_MARKS) and not p.is_symlink()
    )


@pytest.mark.parametrize("name", list(CASES))
def test_catalogue(name, ctx, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    if case.root_skips and os.geteuid() == 0:
        pytest.skip("root reads any file: a permission case needs another user")
    monkeypatch.chdir(tmp_path)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    argv = case.build(ctx)
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    if case.status == 0:
        assert status == 0, err
        assert not any(line.startswith("napari-crystal: error") for line in lines), err
    else:
        assert status == case.status, err
        assert len(lines) == 1, err
        line = lines[0]
        assert line.startswith("napari-crystal: error: "), line
        assert case.fragment in line, line
        assert case.names in line, line
        assert len(line) <= 400, line
    assert _leftovers_in(tmp_path) == []
    for path in case.absent:
        assert not (tmp_path / path).exists(), path


# ----------------------------------------------------------------- through a real process


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "napari_crystal.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_truncated_svs_gives_one_line_without_library_log_lines(tiny_corpus, tmp_path):
    ctx = Ctx(tiny_corpus, tmp_path)
    os.chdir(tmp_path)
    try:
        _slide_case(lambda b: b[: len(b) // 3])(ctx)
    finally:
        os.chdir(ROOT)
    result = _cli("dataset", "c", "--out", "d.zarr", "--quiet", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-crystal: error: c/train/"), lines


def test_warnings_are_one_line_and_long_labels_cut(tmp_path):
    (tmp_path / "a.csv").write_text(GOOD.replace("dcis", "y" * 30_000))
    result = _cli("info", "a.csv", cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("napari-crystal: warning: a.csv: unknown label(s) 'yyy")
    assert "(30002 characters)" in lines[0] and len(lines[0]) < 400
