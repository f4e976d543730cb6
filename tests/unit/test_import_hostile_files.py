"""Vendor files nobody has looked at: symbols are data, not paths; one bad file never stops the good ones."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from qtrack.data import qlib_format
from qtrack.data.importer import stored_symbol, vendor_symbol
from qtrack.data.store import import_dataset
from qtrack.errors import QtrackError

DAYS = pd.bdate_range("2020-01-01", periods=30)
HEADER = "timestamp,open,high,low,close,volume\n"


def rows(day_format: str = "{:%Y-%m-%d}", close: str = "10.5") -> str:
    return "".join(f"{day_format.format(day)},10,11,9,{close},100\n" for day in DAYS)


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QTRACK_DATA_ROOT", str(tmp_path / "root" / "data"))
    return tmp_path / "root" / "data"


def everything_under(root: Path) -> set[Path]:
    return {p.resolve() for p in root.parent.rglob("*")}


def test_symbols_that_look_like_paths_stay_inside_the_data_root(tmp_path, data_root):
    long = "date,symbol,open,high,low,close,volume\n" + "".join(
        f"{day:%Y-%m-%d},{symbol},10,11,9,10.5,100\n" for symbol in ("BRK/B", "../../../../escaped", "GOOD")
        for day in DAYS)
    (tmp_path / "long.csv").write_text(long)
    report = import_dataset(tmp_path / "long.csv", "long", {}, {})
    features = data_root / "long" / "features"
    assert sorted(p.name for p in features.iterdir()) == ["%2e.%2f..%2f..%2f..%2fescaped", "brk%2fb", "good"]
    assert all(p.resolve().is_relative_to(data_root.resolve()) for p in features.rglob("*"))
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.parent.glob("escaped"))
    assert report["symbols"] == {"%2E.%2F..%2F..%2F..%2FESCAPED": "../../../../ESCAPED", "BRK%2FB": "BRK/B"}
    assert set(qlib_format.read_instruments(data_root / "long", "all")["symbol"]) == set(report["symbols"]) | {"GOOD"}


@pytest.mark.parametrize("symbol", ["BRK/B", "a b", "..", ".", "x\\y", "ÄÖ", "BF.B"])
def test_stored_symbols_are_safe_file_names_and_reversible(symbol):
    stored = stored_symbol(symbol)
    assert stored and "/" not in stored and "\\" not in stored and not stored.startswith(".")
    assert vendor_symbol(stored) == symbol.upper()


@pytest.mark.parametrize("symbol", ["", "  ", "NaN", "nan", "None"])
def test_blank_and_nan_tickers_are_no_symbol(symbol):
    assert stored_symbol(symbol) is None


def test_bad_rows_and_tickers_are_dropped_and_reported(tmp_path, data_root):
    long = "date,symbol,open,high,low,close,volume\n" + "".join(
        f"{day:%Y-%m-%d},{symbol},10,11,9,10.5,100\n" for symbol in ("", "NaN", "GOOD") for day in DAYS)
    long += "2020-03-02,GOOD,10,inf,9,10.5,100\n2020-03-03,GOOD,10,11,9,10.5,inf\n"
    (tmp_path / "long.csv").write_text(long)
    report = import_dataset(tmp_path / "long.csv", "long", {}, {})
    assert report["imported"] == 1
    assert report["warnings"]["(no symbol)"] == ["60 rows without a usable symbol dropped"]
    assert "2 rows with an unreadable date or a missing or infinite price dropped" in report["warnings"]["GOOD"]
    volume = qlib_format.read_calendar(data_root / "long")
    assert volume[-1] == DAYS[-1], "the infinite rows' days are not in the calendar"


def test_one_bad_file_never_stops_the_good_ones(tmp_path, data_root):
    source = tmp_path / "vendor"
    source.mkdir()
    (source / "AAPL.csv").write_text(HEADER + rows())
    (source / "aapl.csv").write_text(HEADER + rows())
    (source / "MSFT.CSV").write_text(HEADER + rows())
    (source / "TZ.csv").write_text(HEADER + rows("{:%Y-%m-%d}T00:00:00-05:00"))
    (source / "NEG.csv").write_text(HEADER + rows().replace(",100\n", ",-100\n"))
    (source / "NODATE.csv").write_text(HEADER + rows("someday"))
    (source / "x.csv").mkdir()
    report = import_dataset(source, "vendor", {}, {})
    assert sorted(qlib_format.read_instruments(data_root / "vendor", "all")["symbol"]) == ["MSFT", "TZ"]
    assert report["skipped"]["AAPL"] == "two files for one symbol (AAPL.csv and aapl.csv): keep one"
    assert report["skipped"]["x.csv"] == "a folder, not a file"
    assert report["skipped"]["NEG"] == "negative volume"
    assert "no readable date" in report["skipped"]["NODATE"]
    calendar = qlib_format.read_calendar(data_root / "vendor")
    assert calendar[0] == DAYS[0] and len(calendar) == len(DAYS)
    saved = json.loads((data_root / "vendor" / "import_report.json").read_text())
    assert saved["skipped"] == report["skipped"]


def test_a_european_export_is_imported_and_the_dialect_reported(tmp_path, data_root):
    source = tmp_path / "eu"
    source.mkdir()
    lines = "".join(f"{day:%d.%m.%Y};10,5;11,25;9,75;10,5;1.234\n" for day in DAYS)
    (source / "SAP.csv").write_text("Datum;Open;High;Low;Close;Volume\n" + lines)
    report = import_dataset(source, "eu", {}, {})
    assert report["dialects"] == {"SAP.csv": "separator ';', decimal ',', dates day-first"}
    import numpy as np

    close = np.fromfile(data_root / "eu" / "features" / "sap" / "close.day.bin", dtype="<f4")
    volume = np.fromfile(data_root / "eu" / "features" / "sap" / "volume.day.bin", dtype="<f4")
    assert close[1] == np.float32(10.5) and volume[1] == np.float32(1234.0)


def test_the_reserved_market_all_and_path_like_markets_are_refused_before_any_work(tmp_path, data_root):
    (tmp_path / "long.csv").write_text("date,symbol,open,high,low,close,volume\n")
    for market, message in (("all", "'all': it is reserved"), ("../x", "use letters")):
        with pytest.raises(QtrackError, match=message):
            import_dataset(tmp_path / "long.csv", "m", {}, {market: tmp_path / "long.csv"})
    assert not data_root.exists()
