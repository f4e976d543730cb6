"""How a vendor wrote its CSV: the separator, the decimal mark and the order of day and month.

European exports use `;` between fields, `,` as the decimal mark and day-first dates (`31.12.2020`).
Everything is decided once per file from the whole file, never row by row: `01/02/2020` means the same
day on every row of a file. A date order that no value in the column decides is refused.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

import pandas as pd

SEPARATORS = ",;\t|"
# The exchange's local time zone: tz-aware timestamps become the trading day there.
EXCHANGE_TZ = "America/New_York"
_DECIMAL_COMMA = re.compile(r"^-?\d{1,3}(?:\.\d{3})*,\d+$|^-?\d+,\d+$")
_NUMERIC_DOT = re.compile(r"^-?\d+\.\d+$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}")
_PARTS = re.compile(r"^(\d{1,2})[./\-](\d{1,2})[./\-](\d{4})(?:[ T].*)?$")


class DialectError(ValueError):
    """The file's format cannot be decided; the message says why."""


@dataclass(frozen=True)
class Dialect:
    separator: str = ","
    decimal: str = "."
    date_order: str = "iso"  # iso, day-first or month-first

    def describe(self) -> str:
        sep = {"\t": "tab"}.get(self.separator, f"'{self.separator}'")
        return f"separator {sep}, decimal '{self.decimal}', dates {self.date_order}"

    @property
    def is_default(self) -> bool:
        return self == Dialect()


def sniff(sample: str) -> tuple[str, str]:
    """The separator and the decimal mark of a file, from its first lines."""
    lines = [line for line in sample.splitlines() if line.strip()][:50]
    if not lines:
        return ",", "."
    try:
        separator = csv.Sniffer().sniff("\n".join(lines), delimiters=SEPARATORS).delimiter
    except csv.Error:
        counts = {sep: lines[0].count(sep) for sep in SEPARATORS}
        separator = max(counts, key=counts.get) if max(counts.values()) else ","
    cells = [cell.strip().strip('"') for line in lines[1:] for cell in line.split(separator)]
    comma = sum(bool(_DECIMAL_COMMA.match(cell)) for cell in cells)
    dot = sum(bool(_NUMERIC_DOT.match(cell)) for cell in cells)
    decimal = "," if separator != "," and comma > dot else "."
    return separator, decimal


def to_numbers(column: pd.Series, decimal: str) -> pd.Series:
    """Text to floats; with a decimal comma, `.` is a thousands mark (`1.234,5` is 1234.5)."""
    text = column.astype("string").str.strip()
    if decimal == ",":
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    return pd.to_numeric(text, errors="coerce")


def parse_dates(column: pd.Series) -> tuple[pd.Series, str]:
    """Dates (naive, at midnight) and the order used. ISO dates and timestamps with a time zone (converted to
    the exchange's local day) parse as they are; `a.b.yyyy`, `a/b/yyyy` and `a-b-yyyy` take the order the
    whole column decides. DialectError when no value decides it, or when values contradict each other."""
    text = column.astype("string").str.strip()
    present = text.dropna()
    present = present[present != ""]
    if present.empty:
        raise DialectError("no date in the date column")
    iso = text.str.match(_ISO).fillna(False).astype(bool)
    if iso[present.index].all():
        return _iso_dates(text), "iso"
    others = present[~iso[present.index]]
    parts = others.str.extract(_PARTS)
    if parts.isna().any(axis=1).all():
        raise DialectError(f"no readable date in the date column (first value '{others.iloc[0]}')")
    first, second = (pd.to_numeric(parts[i]) for i in (0, 1))
    order = _decide_order(first, second, others)
    dates = _by_order(text, dayfirst=order == "day-first")
    if not iso.any():
        return dates, order
    # A file that switched format part way (a vendor's new export appended to an old one): each row is read in
    # its own format, the non-ISO ones in the order the non-ISO rows decide.
    dates[iso] = _iso_dates(text[iso])
    return dates, f"mixed: YYYY-MM-DD and {order}"


def _decide_order(first: pd.Series, second: pd.Series, present: pd.Series) -> str:
    day_first_possible = bool((second.dropna() <= 12).all())
    month_first_possible = bool((first.dropna() <= 12).all())
    if day_first_possible and not month_first_possible:
        return "day-first"
    if month_first_possible and not day_first_possible:
        return "month-first"
    if not day_first_possible and not month_first_possible:
        raise DialectError("the date column mixes day-first and month-first dates")
    raise DialectError(f"the date column does not say whether '{present.iloc[0]}' is day-first or month-first "
                       "(no day above 12): convert the dates to YYYY-MM-DD")


def _by_order(text: pd.Series, dayfirst: bool) -> pd.Series:
    parts = text.str.extract(_PARTS)
    day, month = (parts[0], parts[1]) if dayfirst else (parts[1], parts[0])
    iso = parts[2] + "-" + month.str.zfill(2) + "-" + day.str.zfill(2)
    return pd.to_datetime(iso, errors="coerce", format="%Y-%m-%d")


def _iso_dates(text: pd.Series) -> pd.Series:
    with_zone = text.str.contains(r"(?:[+\-]\d{2}:?\d{2}|Z)$", regex=True, na=False)
    if not with_zone.any():
        return pd.to_datetime(text, errors="coerce", format="mixed").dt.normalize()
    stamps = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    return stamps.dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None).dt.normalize()
