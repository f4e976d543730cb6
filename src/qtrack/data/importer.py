"""Turn vendor CSV files into per-symbol frames ready for Qlib, reporting every symbol skipped.

Sources: a folder of per-symbol CSV files (the symbol is the file name; `.csv` in any case) or one long
CSV with a symbol column. Column names match case-insensitively through ALIASES; `--map SRC=FIELD` adds
more. Each file's separator, decimal mark and date order are detected from the whole file
(csv_dialect.py); how each symbol's rows are cleaned and adjusted is in cleaning.py.

A symbol is data, not a path: `BRK/B` is stored as `BRK%2FB` (percent-encoded, reversible), and the
report maps every stored name that differs back to the vendor's symbol. One bad file never stops the
import of the good ones: it is skipped with its reason.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote

import pandas as pd

from qtrack.data.cleaning import SkipSymbol, clean_symbol
from qtrack.data.csv_dialect import Dialect, DialectError, parse_dates, sniff, to_numbers

REQUIRED = ("date", "open", "high", "low", "close", "volume")
NUMERIC = ("open", "high", "low", "close", "adjclose", "volume", "vwap")
ALIASES = {
    "date": ("date", "timestamp", "datetime", "time", "day", "trade_date", "datum"),
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
_NOT_A_SYMBOL = {"", "NAN", "NONE", "NULL", "N/A", "NA"}
MAX_SYMBOL_LENGTH = 100

__all__ = ["ImportResult", "SkipSymbol", "read_market_file", "read_source", "stored_symbol", "vendor_symbol"]


@dataclass
class ImportResult:
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    vwap_source: str = "source column"
    dialects: dict[str, str] = field(default_factory=dict)  # file -> what was detected, when not plain CSV
    renamed: dict[str, str] = field(default_factory=dict)  # stored symbol -> the vendor's symbol

    def warn(self, symbol: str, note: str) -> None:
        self.warnings.setdefault(symbol, []).append(note)

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
            "dialects": dict(sorted(self.dialects.items())),
            "symbols": dict(sorted(self.renamed.items())),
        }


def stored_symbol(symbol: str) -> str | None:
    """The name a vendor's symbol is stored under: upper case, percent-encoded where a character is not
    safe in a file name (reversible with vendor_symbol). None when it is no symbol at all."""
    cleaned = str(symbol).strip().upper()
    if cleaned in _NOT_A_SYMBOL:
        return None
    safe = quote(cleaned, safe="-_.")
    if safe.startswith("."):
        safe = "%2E" + safe[1:]  # never a hidden file, `.` or `..`
    return safe if len(safe) <= MAX_SYMBOL_LENGTH else None


def vendor_symbol(stored: str) -> str:
    return unquote(stored)


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
        for note in notes:
            result.warn(symbol, note)
        result.frames[symbol] = frame
    if any("vwap" not in table.columns for _, table in tables):
        result.vwap_source = VWAP_FALLBACK
    return result


def _per_symbol_tables(source: Path, user_map: dict[str, str], result: ImportResult) -> list[tuple[str, pd.DataFrame]]:
    if source.is_dir():
        return _folder_tables(source, user_map, result)
    table = _read_table(source, user_map, result)
    if "symbol" not in table.columns:
        raise SkipSymbol(f"{source.name} has no symbol column (give --map COLUMN=symbol)")
    stored = table["symbol"].map(lambda value: None if pd.isna(value) else stored_symbol(value))
    if stored.isna().any():
        result.warn("(no symbol)", f"{int(stored.isna().sum())} rows without a usable symbol dropped")
    table = table.assign(symbol=stored).dropna(subset=["symbol"])
    originals = {s: vendor_symbol(s) for s in table["symbol"].unique()}
    result.renamed.update({s: o for s, o in originals.items() if s != o})
    return [(symbol, group.drop(columns="symbol")) for symbol, group in table.groupby("symbol", sort=True)]


def _folder_tables(source: Path, user_map: dict[str, str], result: ImportResult) -> list[tuple[str, pd.DataFrame]]:
    files: dict[str, list[Path]] = {}
    for path in sorted(source.iterdir()):
        stem = csv_stem(path)
        if stem is None:
            continue
        symbol = stored_symbol(stem)
        if symbol is None or not path.is_file():
            result.skipped[path.name] = "a folder, not a file" if path.is_dir() else "the file name is no symbol"
            continue
        files.setdefault(symbol, []).append(path)
    tables = []
    for symbol, found in files.items():
        if len(found) > 1:
            names = " and ".join(p.name for p in found)
            result.skipped[symbol] = f"two files for one symbol ({names}): keep one"
            continue
        original = csv_stem(found[0]).upper()
        if vendor_symbol(symbol) != original:
            result.renamed[symbol] = original
        try:
            tables.append((symbol, _read_table(found[0], user_map, result)))
        except SkipSymbol as reason:
            result.skipped[symbol] = str(reason)
    return tables


def _read_table(path: Path, user_map: dict[str, str], result: ImportResult) -> pd.DataFrame:
    """The file's mapped columns: dates parsed (whole column), numbers as floats. SkipSymbol when unusable."""
    try:
        with _open_text(path) as handle:
            separator, decimal = sniff(handle.read(20_000))
        raw = pd.read_csv(path, dtype=str, sep=separator, skipinitialspace=True)  # .gz: pandas decompresses
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise SkipSymbol(f"not a readable CSV ({' '.join(str(exc).split())[:80]})") from None
    mapped = column_map(list(raw.columns), user_map)
    table = raw[list(mapped)].rename(columns=mapped)
    missing = [name for name in REQUIRED if name not in table.columns]
    first = separator.join(map(str, raw.columns))[:60]
    if len(missing) == len(REQUIRED):
        raise SkipSymbol(f"not a price table (first line: '{first}')")
    if missing:
        raise SkipSymbol(f"missing columns {', '.join(missing)} (header: '{first}')")
    try:
        table["date"], order = parse_dates(table["date"])
    except DialectError as exc:
        raise SkipSymbol(str(exc)) from None
    for column in (c for c in NUMERIC if c in table.columns):
        table[column] = to_numbers(table[column], decimal)
    dialect = Dialect(separator=separator, decimal=decimal, date_order=order)
    if not dialect.is_default:
        result.dialects[path.name] = dialect.describe()
    return table


def csv_stem(path: Path) -> str | None:
    """The symbol part of a price file's name (`AAPL.csv`, `AAPL.csv.gz`, any case), or None for other files."""
    name = path.name
    for suffix in (".csv", ".csv.gz"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def read_market_file(path: Path) -> list[str]:
    """Symbols of a market (as stored): one per line, or a CSV with a symbol column (such as constituents.csv)."""
    text = path.read_text()
    first = text.splitlines()[0] if text.strip() else ""
    if "," in first:
        table = pd.read_csv(path, dtype=str)
        mapped = {c: f for c, f in column_map(list(table.columns), {}).items() if f == "symbol"}
        if not mapped:
            raise SkipSymbol(f"{path.name} has no symbol column")
        symbols = table[next(iter(mapped))].dropna()
    else:
        symbols = pd.Series(text.splitlines())
    return sorted({s for s in (stored_symbol(value) for value in symbols) if s})
