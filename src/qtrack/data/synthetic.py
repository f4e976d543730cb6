"""A deterministic synthetic market with a planted, known signal, written in Qlib's layout.

Model, per symbol i and business day t:
    s[t, i]      ~ N(0, 1)                            the hidden signal, drawn on day t
    KMID[t, i]   = (close - open) / open = k * (s[t, i] + noise * eta[t, i])    observable on day t
    r[t+2, i]    = m[t+2] + vol_i * (signal * s[t, i] + sqrt(1 - signal^2) * e[t+2, i])
where r is the log return from close(t+1) to close(t+2) -- the move Qlib's default label
Ref($close, -2) / Ref($close, -1) - 1 measures for day t. The market term m is common to all symbols,
so it drops out of cross-sectional correlations, and the theoretical IC of the best predictor is

    IC* = corr(KMID, s) * corr(s, r) = signal / sqrt(1 + noise^2)     (0.0894 for the defaults)

`signal = 0` gives the signal-free market, where no model may show skill.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from qtrack.config.synthetic import SyntheticSpec
from qtrack.data import qlib_format

KIND = "synthetic"
KMID_SCALE = 0.005


def generate(spec: SyntheticSpec) -> dict[str, pd.DataFrame]:
    """Per-symbol OHLCV frames (date index) for the spec; the same spec gives the same frames."""
    if not 0.0 <= abs(spec.signal) < 1.0:
        raise ValueError("signal must lie in (-1, 1)")
    rng = np.random.default_rng(spec.seed)
    dates = _calendar(spec, rng)
    n_days, n_symbols = len(dates), spec.symbols

    hidden = rng.standard_normal((n_days, n_symbols))
    shock = rng.standard_normal((n_days, n_symbols))
    idiosyncratic = shock.copy()
    idiosyncratic[2:] = spec.signal * hidden[:-2] + math.sqrt(1.0 - spec.signal**2) * shock[2:]
    vol = rng.uniform(0.01, 0.03, n_symbols)
    market = 0.0002 + 0.01 * rng.standard_normal(n_days)
    log_return = market[:, None] + vol * idiosyncratic
    start_price = np.exp(rng.normal(np.log(50.0), 0.6, n_symbols))
    close = start_price * np.exp(np.cumsum(log_return, axis=0))

    kmid = KMID_SCALE * (hidden + spec.noise * rng.standard_normal((n_days, n_symbols)))
    open_ = close / (1.0 + kmid)
    wick = np.abs(rng.normal(0.0, 0.3, (2, n_days, n_symbols))) * vol
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    vwap = (open_ + high + low + 2.0 * close) / 5.0
    volume = np.round(np.exp(rng.normal(13.0, 0.5, (n_days, n_symbols))))

    listing = np.zeros(n_symbols, dtype=int)
    late = rng.random(n_symbols) < spec.late_listing_share
    listing[late] = rng.integers(1, max(2, n_days // 2), late.sum())
    missing = rng.random((n_days, n_symbols)) < spec.missing_rate

    fields = {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "vwap": vwap}
    frames = {}
    for i in range(n_symbols):
        keep = ~missing[listing[i] :, i]
        keep[0] = keep[-1] = True  # a listing starts and ends on a trading day
        rows = np.arange(listing[i], n_days)[keep]
        frame = pd.DataFrame({name: values[rows, i] for name, values in fields.items()}, index=dates[rows])
        frame["factor"] = 1.0
        frames[f"SYN{i:03d}"] = frame
    return frames


def _calendar(spec: SyntheticSpec, rng: np.random.Generator) -> pd.DatetimeIndex:
    extra = int(spec.days * spec.holiday_rate * 2) + 5
    candidates = pd.bdate_range(spec.start, periods=spec.days + extra)
    holidays = rng.random(len(candidates)) < spec.holiday_rate
    return candidates[~holidays][: spec.days]


def ensure(target: Path, spec: SyntheticSpec) -> bool:
    """Write the market at `target` unless it is already there with the same spec. True if written."""
    with qlib_format.writer_lock(target):
        if is_current(target, spec) or not is_managed(target):
            return False
        meta = {"kind": KIND, "origin": "config", "params": spec.to_dict(), "theoretical_ic": spec.theoretical_ic}
        qlib_format.write_dataset(target, generate(spec), meta)
        return True


def is_managed(target: Path) -> bool:
    """Only markets generated from the config are regenerated; `data synth` and imports are left alone."""
    meta = qlib_format.read_meta(target)
    if not qlib_format.is_dataset(target):
        return True
    return meta.get("kind") == KIND and meta.get("origin", "config") == "config"


def is_current(target: Path, spec: SyntheticSpec) -> bool:
    meta = qlib_format.read_meta(target)
    return qlib_format.is_dataset(target) and meta.get("kind") == KIND and meta.get("params") == spec.to_dict()
