"""`qtrack data import` on the real S&P 500 sample (flaws included), the long format, and atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import SAMPLE, needs_sample, run_cli
from qtrack.data import qlib_format


def price_files() -> list[Path]:
    return sorted(p for p in SAMPLE.glob("*.csv") if p.name != "constituents.csv")


@needs_sample
def test_flawed_files_are_reported_and_the_rest_imported(sp500_root):
    report = json.loads((sp500_root / "sp500" / "import_report.json").read_text())
    assert report["skipped"]["BF.B"].startswith("not a price table")
    assert "CONSTITUENTS" in report["skipped"]
    assert "zero-volume" in " ".join(report["warnings"]["VAR"])
    imported = {p.stem.upper() for p in price_files()} - {"BF.B"}
    listed = set(qlib_format.read_instruments(sp500_root / "sp500", "all")["symbol"])
    assert listed == imported
    assert report["imported"] == len(imported) == 49
    assert set(qlib_format.read_instruments(sp500_root / "sp500", "sp50")["symbol"]) == imported


@needs_sample
@pytest.mark.parametrize("symbol", ["AAPL", "MNST", "APTV", "VAR"])
def test_prices_read_back_through_qlib_equal_the_adjusted_csv(sp500_root, symbol):
    import qlib
    from qlib.data import D

    qlib.init(provider_uri=str(sp500_root / "sp500"), region="us", kernels=1)
    raw = pd.read_csv(SAMPLE / f"{symbol}.csv", parse_dates=["timestamp"]).set_index("timestamp").sort_index()
    raw = raw[raw["volume"] > 0]
    got = D.features([symbol], ["$open", "$close", "$volume", "$factor"], freq="day").loc[symbol].dropna()
    np.testing.assert_array_equal(got.index, raw.index)
    factor = raw["adjusted_close"] / raw["close"]
    np.testing.assert_allclose(got["$close"], raw["adjusted_close"].astype(np.float32), rtol=2e-7)
    np.testing.assert_allclose(got["$open"], (raw["open"] * factor).astype(np.float32), rtol=2e-7)
    np.testing.assert_allclose(got["$volume"], (raw["volume"] / factor).astype(np.float32), rtol=2e-7)
    np.testing.assert_allclose(got["$factor"], factor.astype(np.float32), rtol=2e-7)


@needs_sample
def test_halted_stock_ends_on_its_last_traded_day(sp500_root):
    spans = qlib_format.read_instruments(sp500_root / "sp500", "all").set_index("symbol")
    raw = pd.read_csv(SAMPLE / "VAR.csv")
    assert (raw["volume"].iloc[-2:] == 0).all(), "the sample's VAR file ends in zero-volume days"
    assert spans.loc["VAR", "end"] == raw.loc[raw["volume"] > 0, "timestamp"].max()


def test_long_format_with_aliases_and_map(workspace):
    rows = []
    for symbol, base in (("AAA", 10.0), ("BBB", 20.0)):
        for i, day in enumerate(pd.bdate_range("2020-01-01", periods=30)):
            price = base + i
            rows.append({"Date": day.date(), "Ticker": symbol, "OPEN": price, "High": price + 1, "low": price - 1,
                         "Close": price + 0.5, "Adj Close": (price + 0.5) / 2, "Shares Traded": 1000 + i})
    source = workspace / "long.csv"
    pd.DataFrame(rows).to_csv(source, index=False)
    result = run_cli(["data", "import", str(source), "--name", "long", "--map", "Shares Traded=volume"], cwd=workspace)
    assert result.code == 0, result.stderr
    frames = {s: pd.DataFrame(r for r in rows if r["Ticker"] == s) for s in ("AAA", "BBB")}
    close = np.fromfile(workspace / "data" / "long" / "features" / "bbb" / "close.day.bin", dtype="<f4")
    volume = np.fromfile(workspace / "data" / "long" / "features" / "bbb" / "volume.day.bin", dtype="<f4")
    np.testing.assert_allclose(close[1:], frames["BBB"]["Adj Close"].astype(np.float32))
    np.testing.assert_allclose(volume[1:], (frames["BBB"]["Shares Traded"] * 2).astype(np.float32))
    assert (workspace / "data" / "long" / "features" / "aaa" / "vwap.day.bin").is_file()


def test_without_the_map_the_volume_column_is_missing(workspace):
    source = workspace / "long.csv"
    source.write_text("date,symbol,open,high,low,close,shares\n2020-01-02,AAA,1,2,0.5,1.5,10\n")
    result = run_cli(["data", "import", str(source), "--name", "x"], cwd=workspace)
    assert result.code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "nothing usable" in result.stderr and "missing columns volume" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["data", "import", "/no/such/folder", "--name", "x"], "does not exist"),
        (["data", "import", ".", "--name", "x", "--map", "novalue"], "--map takes KEY=VALUE"),
        (["data", "import", ".", "--name", ".hidden"], "invalid dataset name"),
        (["data", "info", "nothing_here"], "not found"),
    ],
)
def test_import_errors_are_one_line(workspace, args, fragment):
    result = run_cli(args, cwd=workspace)
    assert result.code == 2, result.stderr
    assert result.stderr.startswith("qtrack: error: ") and result.stderr.strip().count("\n") == 0
    assert fragment in result.stderr


def test_folder_with_only_bad_files_exits_2(workspace):
    folder = workspace / "bad"
    folder.mkdir()
    (folder / "ERR.csv").write_text('{\n    "Error Message": "Invalid API call"\n}\n')
    (folder / "NEG.csv").write_text("date,open,high,low,close,volume\n2020-01-02,1,2,0.5,-1,10\n")
    (folder / "INV.csv").write_text("date,open,high,low,close,volume\n2020-01-02,1,0.5,2,1,10\n")
    (folder / "ORD.csv").write_text(
        "date,open,high,low,close,volume\n2020-01-03,1,2,0.5,1,10\n2020-01-02,1,2,0.5,1,10\n2020-01-06,1,2,0.5,1,10\n"
    )
    result = run_cli(["data", "import", str(folder), "--name", "bad"], cwd=workspace)
    assert result.code == 2
    assert "nothing usable" in result.stderr
    (folder / "OK.csv").write_text(
        "date,open,high,low,close,volume\n2020-01-02,1,2,0.5,1,10\n2020-01-02,1,2,0.5,1.2,10\n2020-01-03,1,2,0.5,1,10\n"
    )
    result = run_cli(["data", "import", str(folder), "--name", "bad"], cwd=workspace)
    assert result.code == 0, result.stderr
    report = json.loads((workspace / "data" / "bad" / "import_report.json").read_text())
    assert report["imported"] == 1
    assert "non-positive price" in report["skipped"]["NEG"]
    assert "high below low" in report["skipped"]["INV"]
    assert report["skipped"]["ORD"] == "dates out of order"
    assert report["skipped"]["ERR"].startswith("not a price table")
    assert "duplicate dates collapsed" in report["warnings"]["OK"][0]


@pytest.mark.slow
def test_interrupted_import_leaves_the_previous_version(workspace):
    big = pd.DataFrame({
        "date": np.tile(pd.bdate_range("2000-01-03", periods=2500).strftime("%Y-%m-%d"), 600),
        "symbol": np.repeat([f"S{i:03d}" for i in range(600)], 2500),
    })
    for column in ("open", "high", "low", "close"):
        big[column] = 10.0
    big["high"] = 11.0
    big["volume"] = 100.0
    source = workspace / "big.csv"
    big.to_csv(source, index=False)
    small = workspace / "small.csv"
    big[big["symbol"] < "S003"].iloc[:300].to_csv(small, index=False)
    assert run_cli(["data", "import", str(small), "--name", "px"], cwd=workspace).code == 0
    target = workspace / "data" / "px"
    before = (os.readlink(target), qlib_format.compute_fingerprint(target))

    qtrack = Path(sys.executable).parent / "qtrack"
    env = {**os.environ, "QTRACK_DATA_ROOT": str(workspace / "data")}
    process = subprocess.Popen([str(qtrack), "data", "import", str(source), "--name", "px"], cwd=workspace, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = workspace / "data" / qlib_format.STORE_DIR
    deadline = time.time() + 120
    while time.time() < deadline and len(list(store.glob("px.*/features/*"))) < 50:
        time.sleep(0.05)
    assert process.poll() is None, "the import finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (os.readlink(target), qlib_format.compute_fingerprint(target)) == before
    assert list(qlib_format.read_instruments(target, "all")["symbol"]) == ["S000"]


def test_synth_list_and_info(workspace):
    result = run_cli(["data", "synth", "--name", "mine", "--symbols", "12", "--days", "80", "--signal", "0"],
                     cwd=workspace)
    assert result.code == 0, result.stderr
    assert "theoretical IC 0.0000" in result.stdout
    listed = run_cli(["data", "list"], cwd=workspace)
    assert "mine" in listed.stdout and "synthetic" in listed.stdout
    info = run_cli(["data", "info", "mine"], cwd=workspace)
    assert info.code == 0
    assert "80 days" in info.stdout and "missing close" in info.stdout
