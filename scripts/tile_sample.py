#!/usr/bin/env python
"""The S&P sample grown to a bigger universe of real-derived stocks, for the benchmarks at the issue's scale.

    python scripts/tile_sample.py ../shared/data/sp500_sample /tmp/sp_tiled --copies 10
    python scripts/bench_vs_qrun.py --sp500 /tmp/sp_tiled --records 3

Each of the sample's price files is written `--copies` times (`AAPL`, `AAPL_1`, ...). A copy keeps the file's own
calendar, its missing days, its zero-volume days and its vendor flaws, and walks its prices away from the original
with a small random factor per day (one factor for open, high, low, close and the adjusted close, so a bar stays a
bar), and scales its volume by a random factor per day. So the copies are as ragged as the real files, but they are
not the same stock ten times, which would hand LightGBM duplicate rows. Copy 0 is the file unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

PRICE_COLUMNS = ("open", "high", "low", "close", "adjusted_close")
DAILY_NOISE = 0.004  # about a tenth of a stock's daily volatility


def perturbed(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    copy = frame.copy()
    drift = np.exp(np.cumsum(rng.normal(0.0, DAILY_NOISE, len(copy))))
    for column in PRICE_COLUMNS:
        if column in copy:
            copy[column] = (pd.to_numeric(copy[column], errors="coerce") * drift).round(4)
    if "volume" in copy:
        volume = pd.to_numeric(copy["volume"], errors="coerce")
        copy["volume"] = (volume * rng.lognormal(0.0, 0.2, len(copy))).round().astype("Int64")
    return copy


def tile(source: Path, target: Path, copies: int, seed: int) -> int:
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = 0
    for path in sorted(source.glob("*.csv")):
        frame = pd.read_csv(path, dtype=str)
        if "close" not in frame.columns:  # constituents.csv, and a vendor's error page saved as .csv
            continue
        for index in range(copies):
            name = path.stem if index == 0 else f"{path.stem}_{index}"
            out = frame if index == 0 else perturbed(frame, rng)
            out.to_csv(target / f"{name}.csv", index=False)
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the S&P sample's folder")
    parser.add_argument("target", type=Path, help="a new folder for the tiled files")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.source.is_dir():
        raise SystemExit(f"no such folder: {args.source}")
    written = tile(args.source, args.target, args.copies, args.seed)
    print(f"{written} price files written to {args.target}")


if __name__ == "__main__":
    main()
