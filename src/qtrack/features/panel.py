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


def narrowed(panel: Panel, members: np.ndarray, days: int) -> Panel:
    """Stocks `members` (ascending) over the panel's first `days` days: each stock's values, and so its results
    on its own days, are the wide panel's (no operator reads past a stock's last day: Ref gives NaN there)."""
    return Panel(
        [panel.instruments[s] for s in members], panel.offset, days,
        {name: np.ascontiguousarray(array[members, :days]) for name, array in panel.fields.items()},
        panel.first[members], np.minimum(panel.last[members], days - 1),
    )


def end_groups(panel: Panel, wanted: np.ndarray, min_saving: float = 0.1) -> list[tuple[np.ndarray, int]]:
    """The stocks with rows to compute (`wanted` [stock] True), as (members, days) groups: one group, or two
    when stocks whose data ends early (delisted, or stored to an earlier day than the rest) would otherwise be
    computed over the others' days, at least `min_saving` of the panel's cells."""
    members = np.flatnonzero(wanted)
    if members.size == 0:
        return []
    needed = panel.last[members] + 1  # through the stock's last stored day
    order = np.argsort(needed, kind="stable")
    widths = needed[order]
    cut = np.arange(1, members.size)  # the first `cut` stocks (by width) form the narrow group
    cells = cut * widths[cut - 1] + (members.size - cut) * widths[-1]
    whole = members.size * widths[-1]
    if cut.size == 0 or cells.min() > (1 - min_saving) * whole:
        return [(members, int(widths[-1]))]
    k = int(cut[np.argmin(cells)])
    return [(np.sort(members[order[:k]]), int(widths[k - 1])), (np.sort(members[order[k:]]), int(widths[-1]))]


def spans_mask(panel: Panel, spans: dict[str, list], calendar: pd.DatetimeIndex) -> np.ndarray:
    """[stock, day] True where the instrument is listed (the market file's spans), as D.features keeps."""
    mask = np.zeros((len(panel.instruments), panel.days), dtype=bool)
    dates = calendar[panel.offset : panel.offset + panel.days]
    for s, instrument in enumerate(panel.instruments):
        for begin, end in spans.get(instrument) or [(dates[0], dates[-1])]:
            mask[s] |= (dates >= pd.Timestamp(begin)) & (dates <= pd.Timestamp(end))
    return mask
