"""``napari-crystal info`` and ``convert``: output, round trip, one-line errors with status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from napari_crystal.cli import main

DATA = Path(__file__).parent / "data"


def test_info_prints_size_counts_and_areas(capsys):
    assert main(["info", str(DATA / "example.csv"), str(DATA / "example.xml")]) == 0
    out = capsys.readouterr().out
    assert "pixel size: 0.502200 um/px" in out
    assert "60120 x 35840 px" in out
    # dcis triangle: 8344 px^2 * 0.5022^2 um^2/px^2; bckg: 2,000,000 px^2
    assert "dcis           1          2104.4" in out
    assert "bckg           1        504409.7" in out
    assert out.count("regions:") == 2


def test_info_json(capsys):
    assert main(["info", "--json", str(DATA / "example.csv")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["regions"] == 2 and summary["labels"]["bckg"]["area_px2"] == 2_000_000


def test_convert_round_trip(tmp_path, capsys):
    assert main(["convert", str(DATA / "example.csv"), str(tmp_path / "a.xml")]) == 0
    assert main(["convert", str(tmp_path / "a.xml"), str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "b.csv").read_bytes() == (DATA / "example.csv").read_bytes()
    assert "2 regions" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "args", "expected"),
    [
        ("# version = csv_v1.0.0\n# no equals\n", ["info"], "bad.csv:2: header line without '='"),
        ("# version = csv_v9\n", ["convert"], "bad.csv:1: first line must be"),
        (None, ["info"], "missing.csv: No such file or directory"),
        ("", ["convert", "--to-txt"], "out.txt: output must end in .csv, .xml, .geojson or .json"),
    ],
)
def test_bad_input_is_one_line_with_status_2(tmp_path, capsys, content, args, expected):
    src = tmp_path / ("missing.csv" if content is None else "bad.csv")
    if content is not None:
        src.write_text(content)
    if args == ["convert", "--to-txt"]:
        argv = ["convert", str(DATA / "example.csv"), str(tmp_path / "out.txt")]
    elif args == ["convert"]:
        argv = ["convert", str(src), str(tmp_path / "out.xml")]
    else:
        argv = ["info", str(src)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-crystal: error: ") and expected in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out.xml").exists()


def test_console_script_exit_status(tmp_path):
    bad = tmp_path / "cut.csv"
    bad.write_text((DATA / "example.csv").read_text()[:-20])
    proc = subprocess.run(
        [sys.executable, "-m", "napari_crystal.cli", "info", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"napari-crystal: error: {bad}:15: data row has 4 fields, expected 9 (file cut off mid-row?)\n"
    )
    assert "Traceback" not in proc.stderr
