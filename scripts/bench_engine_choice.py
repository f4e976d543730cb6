#!/usr/bin/env python
"""Why the feature engine is numba, not polars: speed and exactness of a 60-day rolling mean and std on a
500 x 3500 panel, against pandas (whose numbers Qlib's features are). Needs `pip install polars`.

    python scripts/bench_engine_choice.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd


def main() -> None:
    import polars as pl

    from qtrack.features import kernels

    rng = np.random.default_rng(0)
    stocks, days = 500, 3500
    x = (100 + np.cumsum(rng.normal(size=(stocks, days)), axis=1)).astype(np.float32).astype(np.float64)
    first = np.zeros(stocks, np.int64)
    kernels.roll_mean(x[:2, :10], first[:2], 5)  # compile / load before timing
    kernels.roll_var(x[:2, :10], first[:2], 5)
    long = pl.DataFrame({"s": np.repeat(np.arange(stocks), days), "v": x.ravel()})
    cases = {
        "mean": (lambda: kernels.roll_mean(x, first, 60), pl.col("v").rolling_mean(60, min_samples=1)),
        "std": (lambda: np.sqrt(kernels.roll_var(x, first, 60)), pl.col("v").rolling_std(60, min_samples=1)),
    }
    for name, (numba_run, expression) in cases.items():
        began = time.perf_counter()
        ours = numba_run()
        numba_seconds = time.perf_counter() - began
        began = time.perf_counter()
        theirs = long.select(expression.over("s")).to_numpy().reshape(stocks, days)
        polars_seconds = time.perf_counter() - began
        reference = np.vstack([getattr(pd.Series(row).rolling(60, min_periods=1), name)().to_numpy() for row in x[:50]])

        print(f"rolling {name}: numba {numba_seconds:.3f}s, polars {polars_seconds:.3f}s; cells differing from "
              f"pandas (first 50 stocks, {reference.size}): numba {_differing(ours, reference)}, "
              f"polars {_differing(theirs, reference)}")


def _differing(values: np.ndarray, reference: np.ndarray) -> int:
    same = (values[:50] == reference) | (np.isnan(values[:50]) & np.isnan(reference))
    return int((~same).sum())


if __name__ == "__main__":
    main()
