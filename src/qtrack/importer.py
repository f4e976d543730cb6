"""Turn vendor CSV files into per-symbol frames ready for Qlib, reporting every symbol skipped.

Sources: a folder of per-symbol CSV files (the symbol is the file name) or one long CSV with a symbol
column. Column names match case-insensitively through ALIASES; `--map SRC=FIELD` adds more.

Adjustment follows Qlib: with an adjusted close, factor = adjusted_close / close; open, high, low,
close (and vwap) are multiplied by it, volume is divided by it, and the factor is stored as `factor`.
Without one, factor is 1.

Policies, reported in the import report:
- duplicate dates keep the last row, with a warning;
- rows whose date or prices cannot be parsed are dropped, with a warning;
- a zero-volume day has no trade, so it is stored as missing (Qlib reads it as suspended); a stock that
  stops trading therefore ends on its last day with volume;
- without a vwap column, the typical price (high + low + close) / 3 is stored as vwap.
A symbol is skipped, with its reason, when its file is not a CSV, required columns are missing, no valid
row is left, a price is not positive, high is below low, or its dates are out of order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ("date", "open", "high", "low", "close", "volume")
ALIASES = {
    "date": ("date", "timestamp", "datetime", "time", "day", "trade_date"),
    "symbol": ("symbol", "ticker", "code", "instrument", "stock"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "adjclose": ("adj_close", "adjusted_close", "adjclose", "adj close", "adjusted close"),
    "volume": ("volume", "vol"),
    "vwap": ("vwap",),
}
VWAP_FALLBACK = "typical price (high + low + close) / 3"


class SkipSymbol(Exception):
    """This symbol cannot be imported; the message is the reason."""


@dataclass
class ImportResult:
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    vwap_source: str = "source column"

    def report(self, source: Path) -> dict:
        calendar = sorted(set().union(*(f.index for f in self.frames.values()))) if self.frames else []
        return {
            "source": str(source),
            "imported": len(self.frames),
            "skipped": dict(sorted(self.skipped.items())),
            "warnings": dict(sorted(self.warnings.items())),
            "calendar": [str(calendar[0].date()), str(calendar[-1].date())] if calendar else None,
            "vwap": self.vwap_source,
            "zero_volume": "stored as missing (suspended)",
        }


def normalise(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def column_map(columns: list[str], user_map: dict[str, str]) -> dict[str, str]:
    """Source column -> field name, user mappings first, then aliases."""
    lookup = {normalise(k): v for k, v in user_map.items()}
    for field_name, aliases in ALIASES.items():
        for alias in aliases:
            lookup.setdefault(normalise(alias), field_name)
    mapped: dict[str, str] = {}
    for column in columns:
        target = lookup.get(normalise(column))
        if target and target not in mapped.values():
            mapped[column] = target
    return mapped


def read_source(source: Path, user_map: dict[str, str]) -> ImportResult:
    result = ImportResult()
    tables = _per_symbol_tables(source, user_map, result)
    for symbol, table in tables:
        try:
            frame, notes = clean_symbol(table)
        except SkipSymbol as reason:
            result.skipped[symbol] = str(reason)
            continue
        if notes:
            result.warnings[symbol] = notes
        result.frames[symbol] = frame
    if any("vwap" not in table.columns for _, table in tables):
        result.vwap_source = VWAP_FALLBACK
    return result


def _per_symbol_tables(source: Path, user_map: dict[str, str], result: ImportResult) -> list[tuple[str, pd.DataFrame]]:
    if source.is_dir():
        tables = []
        for path in sorted(source.glob("*.csv")):
            symbol = path.stem.upper()
            try:
                tables.append((symbol, _read_table(path, user_map)))
            except SkipSymbol as reason:
                result.skipped[symbol] = str(reason)
        return tables
    table = _read_table(source, user_map)
    if "symbol" not in table.columns:
        raise SkipSymbol(f"{source.name} has no symbol column (give --map COLUMN=symbol)")
    table["symbol"] = table["symbol"].astype(str).str.strip().str.upper()
    return [(symbol, group.drop(columns="symbol")) for symbol, group in table.groupby("symbol", sort=True)]


def _read_table(path: Path, user_map: dict[str, str]) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SkipSymbol(f"not a readable CSV ({' '.join(str(exc).split())[:80]})") from None
    mapped = column_map(list(raw.columns), user_map)
    table = raw[list(mapped)].rename(columns=mapped)
    missing = [name for name in REQUIRED if name not in table.columns]
    first = ",".join(map(str, raw.columns))[:60]
    if len(missing) == len(REQUIRED):
        raise SkipSymbol(f"not a price table (first line: '{first}')")
    if missing:
        raise SkipSymbol(f"missing columns {', '.join(missing)} (header: '{first}')")
    return table


def clean_symbol(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One symbol's validated, adjusted daily frame (date index) and the warnings it raised."""
    notes: list[str] = []
    dates = pd.to_datetime(table["date"], errors="coerce", format="mixed")
    numeric = table.drop(columns="date").apply(pd.to_numeric, errors="coerce")
    numeric.index = dates
    valid = numeric.index.notna() & numeric[["open", "high", "low", "close", "volume"]].notna().all(axis=1)
    if (~valid).any():
        notes.append(f"{int((~valid).sum())} rows with an unreadable date or price dropped")
    frame = numeric[valid]
    if frame.empty:
        raise SkipSymbol("no valid rows")
    if not frame.index.is_monotonic_increasing:
        if frame.index.is_monotonic_decreasing:
            frame = frame.iloc[::-1]
        else:
            raise SkipSymbol("dates out of order")
    if frame.index.has_duplicates:
        notes.append(f"{int(frame.index.duplicated().sum())} duplicate dates collapsed (last row kept)")
        frame = frame[~frame.index.duplicated(keep="last")]
    _check_prices(frame)
    frame = _drop_zero_volume(frame, notes)
    return _adjust(frame), notes


def _check_prices(frame: pd.DataFrame) -> None:
    prices = [c for c in ("open", "high", "low", "close", "adjclose", "vwap") if c in frame.columns]
    bad = (frame[prices] <= 0).any(axis=1)
    if bad.any():
        raise SkipSymbol(f"non-positive price on {int(bad.sum())} days (first {bad.idxmax().date()})")
    inverted = frame["high"] < frame["low"]
    if inverted.any():
        raise SkipSymbol(f"high below low on {int(inverted.sum())} days (first {inverted.idxmax().date()})")
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


def read_market_file(path: Path) -> list[str]:
    """Symbols of a market: one per line, or a CSV with a symbol column (such as constituents.csv)."""
    text = path.read_text()
    first = text.splitlines()[0] if text.strip() else ""
    if "," in first:
        table = pd.read_csv(path, dtype=str)
        mapped = {c: f for c, f in column_map(list(table.columns), {}).items() if f == "symbol"}
        if not mapped:
            raise SkipSymbol(f"{path.name} has no symbol column")
        return sorted(table[next(iter(mapped))].dropna().str.strip().str.upper().unique())
    return sorted({line.strip().upper() for line in text.splitlines() if line.strip()})
