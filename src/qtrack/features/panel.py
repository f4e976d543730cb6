"""The stocks x days panel the fast engine computes on, read straight from Qlib's `.bin` files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BIN_HEADER = 1  # the first float32 of a .bin file is the calendar index of its first value


@dataclass
class Panel:
    """Fields as float32 arrays [stock, day] over calendar days `offset .. offset + days - 1`.

    `first[s]`/`last[s]` are the panel days of stock s's first and last stored value (Qlib's series for
    the stock exists only there); a stock with no data in the span has first > last."""

    instruments: list[str]
    offset: int
    days: int
    fields: dict[str, np.ndarray]
    first: np.ndarray
    last: np.ndarray


def read_bin(path: Path, begin: int, end: int) -> tuple[int, np.ndarray]:
    """The stored values of calendar days begin..end (inclusive) and the day of the first one."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size < BIN_HEADER:
        return begin, raw[:0]
    start = int(raw[0])
    lo, hi = max(begin, start), min(end, start + raw.size - BIN_HEADER - 1)
    if lo > hi:
        return lo, raw[:0]
    return lo, raw[BIN_HEADER + lo - start : BIN_HEADER + hi - start + 1]


def load(root: Path, instruments: list[str], fields: set[str], begin: int, end: int, freq: str = "day") -> Panel:
    days = end - begin + 1
    stocks = len(instruments)
    arrays = {name: np.full((stocks, days), np.nan, dtype=np.float32) for name in sorted(fields)}
    first = np.full(stocks, days, dtype=np.int64)
    last = np.full(stocks, -1, dtype=np.int64)
    for s, instrument in enumerate(instruments):
        folder = root / "features" / instrument.lower()
        for name, array in arrays.items():
            path = folder / f"{name}.{freq}.bin"
            if not path.is_file():
                continue
            lo, values = read_bin(path, begin, end)
            if values.size:
                array[s, lo - begin : lo - begin + values.size] = values
                first[s] = min(first[s], lo - begin)
                last[s] = max(last[s], lo - begin + values.size - 1)
    return Panel(instruments, begin, days, arrays, first, last)


def spans_mask(panel: Panel, spans: dict[str, list], calendar: pd.DatetimeIndex) -> np.ndarray:
    """[stock, day] True where the instrument is listed (the market file's spans), as D.features keeps."""
    mask = np.zeros((len(panel.instruments), panel.days), dtype=bool)
    dates = calendar[panel.offset : panel.offset + panel.days]
    for s, instrument in enumerate(panel.instruments):
        for begin, end in spans.get(instrument) or [(dates[0], dates[-1])]:
            mask[s] |= (dates >= pd.Timestamp(begin)) & (dates <= pd.Timestamp(end))
    return mask
