#!/usr/bin/env python
"""qtrack's fast backtest against Qlib's `backtest()`: wall time on the same predictions, and equality.

    python scripts/bench_backtest.py --data ~/.qtrack/data/big --start 2028-01-03 --end 2031-03-31

Predictions are random scores for every listed symbol on every day of the span, rounded to one decimal so
that ties are common, as tree models' scores are. Both engines run qtrack's default backtest config
(TopkDropout, topk 50, n_drop 5, close price, costs 0.0005/0.0015, min cost 5, the equal-weighted universe
as benchmark), each including its own price loading (Qlib's Exchange; qtrack's quote arrays). The run
fails if the daily report, the positions or the indicators differ.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a Qlib data directory")
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    args = parser.parse_args()

    from qlib.backtest import backtest as qlib_backtest
    from qlib.backtest.report import PortfolioMetrics
    from qlib.data import D

    from qtrack.evaluation import fast_backtest
    from qtrack.runtime import init_qlib

    data = args.data.expanduser().absolute()
    init_qlib(data, "us", f"sqlite:///{data.parent}/bench-backtest.db", "bench")  # qlib_compat.start: buying order
    days = D.calendar(start_time=args.start, end_time=args.end)
    symbols = D.list_instruments(D.instruments("all"), start_time=args.start, end_time=args.end, as_list=True)
    index = pd.MultiIndex.from_product([days, sorted(symbols)], names=["datetime", "instrument"])
    pred = pd.DataFrame({"score": np.round(np.random.default_rng(0).normal(size=len(index)), 1)}, index=index)
    bench = PortfolioMetrics._cal_benchmark({"benchmark": sorted(symbols), "start_time": days[0],
                                             "end_time": days[-1]}, "day")
    config = {
        "executor": {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                     "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}},
        "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                     "kwargs": {"signal": pred, "topk": 50, "n_drop": 5}},
        "start_time": days[1], "end_time": days[-2], "account": 1e8, "benchmark": bench,
        "exchange_kwargs": {"freq": "day", "limit_threshold": None, "deal_price": "close",
                            "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5.0},
    }
    print(f"machine: {platform.node()}, {os.cpu_count()} cores; {len(symbols)} symbols x {len(days) - 2} days")
    began = time.perf_counter()
    fast = fast_backtest.backtest(**config)
    fast_seconds = time.perf_counter() - began
    began = time.perf_counter()
    qlib = qlib_backtest(**config)
    qlib_seconds = time.perf_counter() - began
    (fast_report, fast_positions), (qlib_report, qlib_positions) = fast[0]["1day"], qlib[0]["1day"]
    pd.testing.assert_frame_equal(fast_report, qlib_report, check_exact=False, rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(fast[1]["1day"][0], qlib[1]["1day"][0], check_exact=False, rtol=1e-9, atol=1e-9)
    same = all(fast_positions[d].position == p.position for d, p in qlib_positions.items())
    print(f"qlib {qlib_seconds:7.2f}s   fast {fast_seconds:6.2f}s   {qlib_seconds / fast_seconds:5.1f}x faster; "
          f"report and indicators equal, positions {'identical' if same else 'DIFFERENT'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
