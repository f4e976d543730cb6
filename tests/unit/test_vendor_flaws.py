"""What real vendor files get wrong, each in a small file the test writes: the import keeps or refuses the
symbol as the rules say, and the import report (and so `qtrack data info`) names the flaw."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qtrack.data import qlib_format
from qtrack.data.store import dataset_info, import_dataset

DAYS = pd.bdate_range("2015-01-01", periods=40)
HEADER = "date,open,high,low,close,volume\n"


def prices(days=DAYS, close=lambda i: 10.0 + i * 0.01, date_format="{:%Y-%m-%d}") -> list[str]:
    lines = []
    for i, day in enumerate(days):
        c = close(i)
        lines.append(f"{date_format.format(day)},{c:.4f},{c * 1.01:.4f},{c * 0.99:.4f},{c:.4f},1000\n")
    return lines


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QTRACK_DATA_ROOT", str(tmp_path / "data"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "GOOD.csv").write_text(HEADER + "".join(prices()))
    return tmp_path / "src"


def imported(folder: Path) -> tuple[dict, dict]:
    report = import_dataset(folder, "vendor", {}, {})
    return report, dataset_info("vendor")


def test_rows_dated_in_the_future_are_dropped_and_named(folder: Path) -> None:
    future = pd.bdate_range("2031-01-06", periods=5)
    (folder / "LATE.csv").write_text(HEADER + "".join(prices()) + "".join(prices(future)))
    report, info = imported(folder)
    assert info["calendar"][1] == str(DAYS[-1].date()), "the calendar never reaches 2031"
    (note,) = report["warnings"]["LATE"]
    assert note.startswith("5 rows dated after today") and "first 2031-01-06" in note
    assert info["warnings"]["LATE"] == [note]


@pytest.mark.parametrize(("factor", "looks"), [(0.01, "as a 100:1 split would"), (0.45, "")])
def test_a_one_day_collapse_without_an_adjusted_close_is_named(folder: Path, factor: float, looks: str) -> None:
    (folder / "SPLIT.csv").write_text(HEADER + "".join(prices(close=lambda i: 500.0 * (factor if i >= 20 else 1))))
    report, info = imported(folder)
    (note,) = report["warnings"]["SPLIT"]
    assert f"on {DAYS[20].date()}" in note and "the file has no adjusted close" in note
    assert f"{factor - 1:+.1%}" in note and looks in note
    assert "SPLIT" in info["warnings"]


def test_a_close_outside_the_days_range_is_refused_like_high_below_low(folder: Path) -> None:
    lines = prices()
    lines[7] = f"{DAYS[7]:%Y-%m-%d},4.0,4.1,3.9,12.3,1000\n"  # high 4.1 below close 12.3
    (folder / "BAR.csv").write_text(HEADER + "".join(lines))
    report, info = imported(folder)
    assert report["skipped"]["BAR"].startswith(f"close outside [low, high] on 1 days (first {DAYS[7].date()}")
    assert "BAR" in info["skipped"] and "GOOD" not in info["skipped"]


def test_a_file_that_switches_date_format_keeps_every_row(folder: Path) -> None:
    iso = prices(DAYS[:25])
    us = prices(DAYS[25:], date_format="{:%m/%d/%Y}")
    (folder / "MIXED.csv").write_text(HEADER + "".join(iso) + "".join(us))
    report, info = imported(folder)
    assert "MIXED" not in report["skipped"] and "MIXED" not in report["warnings"]
    assert report["dialects"]["MIXED.csv"].endswith("dates mixed: YYYY-MM-DD and month-first")
    stored = qlib_format.read_instruments(folder.parent / "data" / "vendor", "all").set_index("symbol")
    assert (stored.at["MIXED", "start"], stored.at["MIXED", "end"]) == (str(DAYS[0].date()), str(DAYS[-1].date()))
    assert info["dialects"]["MIXED.csv"] == report["dialects"]["MIXED.csv"]


def test_a_repeated_date_anywhere_keeps_the_last_row(folder: Path) -> None:
    lines = prices()
    lines.append(f"{DAYS[5]:%Y-%m-%d},10.06,10.2,10.0,10.06,1000\n")  # day 5 again, at the end of the file
    (folder / "DUP.csv").write_text(HEADER + "".join(lines))
    report, _ = imported(folder)
    assert report["warnings"]["DUP"] == ["1 duplicate dates collapsed (last row kept)"]
    raw = np.fromfile(folder.parent / "data" / "vendor" / "features" / "dup" / "close.day.bin", dtype="<f4")[1:]
    assert len(raw) == len(DAYS) and raw[5] == np.float32(10.06)


def test_gzipped_files_are_read_in_a_folder_and_alone(folder: Path) -> None:
    with gzip.open(folder / "ZIPPED.csv.gz", "wt") as handle:
        handle.write(HEADER + "".join(prices()))
    report, _ = imported(folder)
    assert set(qlib_format.read_instruments(folder.parent / "data" / "vendor", "all")["symbol"]) == {"GOOD", "ZIPPED"}
    assert report["skipped"] == {}
    long = "symbol," + HEADER + "".join(f"ONE,{line}" for line in prices())
    with gzip.open(folder.parent / "long.csv.gz", "wt") as handle:
        handle.write(long)
    alone = import_dataset(folder.parent / "long.csv.gz", "alone", {}, {})
    assert alone["imported"] == 1 and alone["calendar"] == [str(DAYS[0].date()), str(DAYS[-1].date())]
