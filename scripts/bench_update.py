#!/usr/bin/env python
"""`qtrack data update` against a full re-import, and `qtrack rolling` against its windows as separate trains.

    python scripts/bench_update.py --symbols 504 --days 3300 --new-days 5 [--rolling-step 126]
    python scripts/bench_update.py --sp500 ../shared/data/sp500_sample --new-days 10

The defaults are the issue's set: 504 stocks over 2008-2021 (about 3,300 trading days).

1. Writes per-symbol vendor CSVs (a random walk with adjusted closes) for `--days` days, and the same files
   cut `--new-days` days earlier; imports the cut files; then times, in one run:
   a fresh import of the full files, `data update` from them (one week of new days), and the same update again
   (nothing changes, nothing is written).
2. Times the feature step of `qtrack train` on the updated dataset, where the cached raw features of the
   version before are extended by the new days, against a full build of the same step (no cache), and
   against the same step before the update (warm cache: the built dataset is loaded). The step includes
   Qlib's processors, which run per run on top of the raw features; the raw features' own seconds (from
   the run log) are printed beside it.
3. With --rolling-step, times `qtrack rolling` (features built once) against the same windows run as separate
   `qtrack train` processes (each builds its own features), on the synthetic market of the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

QTRACK = str(Path(sys.executable).parent / "qtrack")


def write_vendor_csvs(folder: Path, symbols: int, days: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    # Ending in the past: the importer drops rows dated after today, which would drop the new days too.
    calendar = pd.bdate_range(end="2021-12-31", periods=days)
    folder.mkdir(parents=True)
    for index in range(symbols):
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.015, days)))
        spread = np.abs(rng.normal(0, 0.004, days))
        frame = pd.DataFrame({
            "timestamp": calendar.strftime("%Y-%m-%d"), "open": close * (1 + rng.normal(0, 0.003, days)),
            "high": close * (1 + spread + 0.003), "low": close * (1 - spread - 0.003), "close": close,
            "adjusted_close": close * 0.97, "volume": rng.integers(100_000, 5_000_000, days),
        })
        frame.to_csv(folder / f"S{index:04d}.csv", index=False, float_format="%.4f")


def sp500_vendor_csvs(sample: Path, full: Path, short: Path, new_days: int) -> tuple[int, int]:
    """The S&P sample as two vendor folders: `full` up to the day most of its files end on, and `short`, the same
    cut `new_days` trading days earlier. Files that are not price tables are copied to both. (One file runs years
    past the others: as a source it would add years, not two weeks.) Returns the symbols and the days in `full`."""
    frames = {}
    for path in sorted(sample.glob("*.csv")):
        try:
            frame = pd.read_csv(path)
            frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        except (KeyError, ValueError, pd.errors.ParserError):
            continue
        frames[path.name] = frame
    last = pd.Series([frame["timestamp"].max() for frame in frames.values()]).mode().iloc[0]
    calendar = pd.DatetimeIndex(sorted({day for frame in frames.values() for day in frame["timestamp"]}))
    calendar = calendar[calendar <= last]
    short_last = calendar[-1 - new_days]
    for folder in (full, short):
        folder.mkdir(parents=True)
    for path in sample.glob("*.csv"):
        if path.name not in frames:
            shutil.copy(path, full / path.name)
            shutil.copy(path, short / path.name)
            continue
        frame = frames[path.name]
        for folder, end in ((full, last), (short, short_last)):
            kept = frame[frame["timestamp"] <= end].assign(timestamp=lambda f: f["timestamp"].dt.strftime("%Y-%m-%d"))
            kept.to_csv(folder / path.name, index=False)
    return len(frames), len(calendar)


def cut(source: Path, destination: Path, keep_days: int) -> None:
    destination.mkdir(parents=True)
    for path in source.glob("*.csv"):
        pd.read_csv(path).iloc[:keep_days].to_csv(destination / path.name, index=False, float_format="%.4f")


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([QTRACK, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"qtrack {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def feature_seconds(cwd: Path, env: dict[str, str], overrides: list[str]) -> tuple[float, float | None]:
    """The `features` step of one train run (from its summary.json) and the raw features' part of it (from
    its log: computed whole or extended; None when they came from the cache)."""
    run_dir = cwd / "bench_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    timed(["train", "-q", f"hydra.run.dir={run_dir}", "mlflow.qlib_report=false", "mlflow.log_model=false",
           "model=linear", *overrides], cwd, env)
    step = float(json.loads((run_dir / "summary.json").read_text())["seconds"]["features"])
    raw = re.findall(r"(?:fast features|raw features extended): .* in ([0-9.]+)s", (run_dir / "run.log").read_text())
    return step, float(raw[-1]) if raw else None


def median(timings: list[tuple[float, float | None]]) -> tuple[float, float]:
    """The median step and the median raw-feature part, each over the repeats."""
    return float(np.median([step for step, _ in timings])), float(np.median([raw or 0.0 for _, raw in timings]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=504)
    parser.add_argument("--days", type=int, default=3300)
    parser.add_argument("--new-days", type=int, default=5)
    parser.add_argument("--rolling-step", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="feature steps timed after the update (median)")
    parser.add_argument("--sp500", type=Path, help="the S&P sample folder instead of a synthetic market: the update "
                        "adds its last --new-days trading days (10: two weeks)")
    args = parser.parse_args()
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "QTRACK_DATA_ROOT": str(work / "data")}
        env.pop("MLFLOW_TRACKING_URI", None)
        if args.sp500:
            args.symbols, args.days = sp500_vendor_csvs(args.sp500.expanduser().absolute(), work / "full",
                                                         work / "cut", args.new_days)
        else:
            write_vendor_csvs(work / "full", args.symbols, args.days)
            cut(work / "full", work / "cut", args.days - args.new_days)
        timed(["data", "import", str(work / "cut"), "--name", "prices"], work, env)
        train = ["dataset.name=prices"]
        feature_seconds(work, env, train)  # fill the cache for the cut data
        warm, _ = feature_seconds(work, env, train)
        fresh, _ = timed(["data", "import", str(work / "full"), "--name", "fresh"], work, env)
        update, _ = timed(["data", "update", str(work / "full"), "--name", "prices"], work, env)
        again, said = timed(["data", "update", str(work / "full"), "--name", "prices"], work, env)
        cache = work / "data" / ".cache" / "prices"
        shutil.copytree(cache, work / "cache-before")
        extended = []
        for _ in range(args.repeat):  # each from the cache as the update left it
            shutil.rmtree(cache)
            shutil.copytree(work / "cache-before", cache)
            extended.append(feature_seconds(work, env, train))
        if any(raw is None for _, raw in extended):  # a cached dataset served: nothing was extended or computed
            raise SystemExit("the train after the update computed no features: the update added no day it uses")
        rebuilt = [feature_seconds(work, env, [*train, "dataset.cache=false"]) for _ in range(args.repeat)]
        (after, after_raw), (full, full_raw) = median(extended), median(rebuilt)
        source = f"the S&P sample ({args.sp500})" if args.sp500 else "synthetic vendor files"
        print(f"{source}: {args.symbols} symbols x {args.days} days, {args.new_days} new days")
        print(f"fresh import of the full files   {fresh:7.2f}s")
        print(f"data update (+{args.new_days} days)           {update:7.2f}s ({update / fresh:4.2f}x the import)")
        outcome = "no change" if "nothing changed" in said else "it changed something"
        print(f"the same update again            {again:7.2f}s ({outcome})")
        print(f"features before the update, warm {warm:7.2f}s")
        print(f"feature steps below: the median of {args.repeat}")
        print(f"features after the update        {after:7.2f}s ({after / full:4.2f}x a full build; raw features "
              f"extended in {after_raw:.2f}s, {after_raw / full_raw:4.2f}x)")
        print(f"features, a full build           {full:7.2f}s (raw features computed in {full_raw:.2f}s)")
        if args.rolling_step:
            bench_rolling(work, env, args)


def bench_rolling(work: Path, env: dict[str, str], args: argparse.Namespace) -> None:
    market = [f"dataset.synthetic.symbols={args.symbols}", f"dataset.synthetic.days={args.days}",
              "mlflow.qlib_report=false", "model.num_boost_round=100"]
    settings = [f"rolling.step={args.rolling_step}", "rolling.valid_days=126", "rolling.compare_static=false"]
    roll_env = {**env, "QTRACK_DATA_ROOT": str(work / "rolling-data")}
    rolling, _ = timed(["rolling", "-q", *market, *settings, "dataset.cache=false"], work, roll_env)
    from qtrack.data.segments import walk_forward

    calendar = pd.DatetimeIndex(pd.read_csv(work / "rolling-data" / "synthetic" / "calendars" / "day.txt",
                                            header=None)[0])
    windows = walk_forward(calendar, first_test=None, step=args.rolling_step, train_window=None, valid_days=126,
                           horizon=2)
    separate = 0.0
    for window in windows:
        spans = [f"dataset.segments.{k}=[{a},{b}]" for k, (a, b) in window.segments.as_dict().items()]
        seconds, _ = timed(["train", "-q", *market, *spans, "dataset.cache=false"], work, roll_env)
        separate += seconds
    print(f"rolling, {len(windows)} windows              {rolling:7.2f}s")
    print(f"the same windows as separate trains {separate:7.2f}s ({rolling / separate:4.2f}x)")


if __name__ == "__main__":
    main()
