"""One symbol's rows made ready for Qlib: validated, zero-volume days handled, prices adjusted.

Adjustment follows Qlib: with an adjusted close, factor = adjusted_close / close; open, high, low,
close (and vwap) are multiplied by it, volume is divided by it, and the factor is stored as `factor`.
Without one, factor is 1.

Policies, reported in the import report:
- duplicate dates keep the last row, with a warning, wherever the repeated row stands;
- rows dated after today are dropped, with a warning (a vendor's placeholder years would stretch the calendar);
- a one-day move of the (adjusted) close beyond 50%, or one that matches a split ratio, is kept but named;
- rows whose date or prices cannot be parsed, or whose prices are infinite, are dropped, with a warning;
- a zero-volume day has no trade, so it is stored as missing (Qlib reads it as suspended); a stock that
  stops trading therefore ends on its last day with volume;
- without a vwap column, the typical price (high + low + close) / 3 is stored as vwap.
A symbol is skipped, with its reason, when no valid row is left, a price is not positive, high is below
low, the close lies outside [low, high], a volume is negative, or its dates are out of order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class SkipSymbol(Exception):
    """This symbol cannot be imported; the message is the reason."""


MAX_DAILY_MOVE = 0.5
SPLIT_RATIOS = (2, 3, 4, 5, 8, 10, 20, 50, 100)


def clean_symbol(table: pd.DataFrame, today: pd.Timestamp | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One symbol's validated, adjusted daily frame (date index) and the warnings it raised."""
    notes: list[str] = []
    numeric = table.drop(columns="date").astype(np.float64)
    numeric.index = pd.DatetimeIndex(table["date"])
    required = numeric[["open", "high", "low", "close", "volume"]]
    valid = numeric.index.notna() & np.isfinite(required).all(axis=1)
    if (~valid).any():
        notes.append(f"{int((~valid).sum())} rows with an unreadable date or a missing or infinite price dropped")
    frame = _drop_future(numeric[valid], notes, today)
    if frame.empty:
        raise SkipSymbol("no valid rows")
    if frame.index.has_duplicates:
        notes.append(f"{int(frame.index.duplicated().sum())} duplicate dates collapsed (last row kept)")
        first_seen = frame.index[~frame.index.duplicated(keep="first")]
        frame = frame[~frame.index.duplicated(keep="last")].reindex(first_seen)  # the last row, where the date was
    if not frame.index.is_monotonic_increasing:
        if frame.index.is_monotonic_decreasing:
            frame = frame.iloc[::-1]
        else:
            raise SkipSymbol("dates out of order")
    _check_prices(frame)
    frame = _drop_zero_volume(frame, notes)
    adjusted = _adjust(frame)
    notes.extend(_jumps(adjusted["close"], adjusted_source="adjclose" in frame.columns))
    return adjusted, notes


def _drop_future(frame: pd.DataFrame, notes: list[str], today: pd.Timestamp | None) -> pd.DataFrame:
    today = (today or pd.Timestamp.now(tz="UTC").tz_localize(None)).normalize()
    future = frame.index > today
    if future.any():
        notes.append(f"{int(future.sum())} rows dated after today ({today.date()}) dropped (first "
                     f"{frame.index[future].min().date()})")
    return frame[~future]


def _jumps(close: pd.Series, adjusted_source: bool) -> list[str]:
    """One-day moves a price series should not make: beyond ±50%, or the exact ratio of a split (2:1 ... 100:1,
    or a reverse split). Kept as they are, and named."""
    ratio = (close.shift(1) / close).iloc[1:]
    notes = []
    for day, value in ratio.items():
        move = 1 / value - 1
        split = next((n for n in SPLIT_RATIOS if abs(value / n - 1) < 0.02 or abs(value * n - 1) < 0.02), None)
        if abs(move) <= MAX_DAILY_MOVE and split is None:
            continue
        shape = f"{split}:1 split" if value > 1 else f"1:{split} reverse split"
        looks = f", as a {shape} would" if split else ""
        why = "in the adjusted close" if adjusted_source else "and the file has no adjusted close"
        notes.append(f"the close moves {move:+.1%} on {day.date()}{looks} ({why}): check the vendor's data")
    return notes


def _check_prices(frame: pd.DataFrame) -> None:
    prices = [c for c in ("open", "high", "low", "close", "adjclose", "vwap") if c in frame.columns]
    bad = (frame[prices] <= 0).any(axis=1)
    if bad.any():
        raise SkipSymbol(f"non-positive price on {int(bad.sum())} days (first {bad.idxmax().date()})")
    inverted = frame["high"] < frame["low"]
    if inverted.any():
        raise SkipSymbol(f"high below low on {int(inverted.sum())} days (first {inverted.idxmax().date()})")
    tolerance = 1e-6 * frame["close"]
    outside = (frame["close"] > frame["high"] + tolerance) | (frame["close"] < frame["low"] - tolerance)
    if outside.any():
        first = frame.loc[outside.idxmax()]
        raise SkipSymbol(f"close outside [low, high] on {int(outside.sum())} days (first {first.name.date()}: close "
                         f"{first['close']:g}, low {first['low']:g}, high {first['high']:g})")
    if (frame["volume"] < 0).any():
        raise SkipSymbol("negative volume")


def _drop_zero_volume(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    zero = frame["volume"] == 0
    if not zero.any():
        return frame
    trailing = int(zero[::-1].cummin().sum())
    if trailing:
        notes.append(f"trading stops after {frame.index[~zero][-1].date()}: {trailing} zero-volume days dropped")
    if zero.sum() > trailing:
        notes.append(f"{int(zero.sum()) - trailing} zero-volume days stored as missing")
    kept = frame[~zero]
    if kept.empty:
        raise SkipSymbol("no day with volume")
    return kept


def _adjust(frame: pd.DataFrame) -> pd.DataFrame:
    if "adjclose" in frame.columns and frame["adjclose"].notna().all():
        factor = frame["adjclose"] / frame["close"]
    else:
        factor = pd.Series(1.0, index=frame.index)
    vwap = frame["vwap"] if "vwap" in frame.columns else (frame["high"] + frame["low"] + frame["close"]) / 3.0
    out = pd.DataFrame(
        {
            "open": frame["open"] * factor,
            "high": frame["high"] * factor,
            "low": frame["low"] * factor,
            "close": frame["close"] * factor,
            "volume": frame["volume"] / factor,
            "vwap": vwap * factor,
            "factor": factor,
        },
        index=frame.index.rename("date"),
    )
    return out.astype(np.float64)
