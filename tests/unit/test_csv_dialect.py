"""Separators, decimal marks and date orders are decided per file, from the whole file."""

from __future__ import annotations

import pandas as pd
import pytest

from qtrack.data.csv_dialect import DialectError, parse_dates, sniff, to_numbers


def test_a_european_export_is_sniffed():
    sample = "Datum;Open;Close;Volume\n31.12.2020;1.234,50;1.240,25;1.000\n04.01.2021;12,5;13,0;200\n"
    assert sniff(sample) == (";", ",")
    numbers = to_numbers(pd.Series(["1.234,50", "12,5", "1.000", ""]), ",")
    assert numbers.iloc[:3].tolist() == [1234.5, 12.5, 1000.0] and pd.isna(numbers.iloc[3])


def test_a_plain_csv_keeps_its_decimal_point():
    assert sniff("date,open,close\n2020-01-02,1.5,2.25\n2020-01-03,1.75,2.5\n") == (",", ".")
    assert sniff("date;open;close\n2020-01-02;1.5;2.25\n") == (";", ".")
    assert sniff("date\topen\n2020-01-02\t1.5\n")[0] == "\t"


@pytest.mark.parametrize(
    ("values", "order", "first"),
    [
        (["31.12.2020", "01.01.2021", "04.01.2021"], "day-first", "2020-12-31"),
        (["12/31/2020", "01/04/2021"], "month-first", "2020-12-31"),
        (["03.02.2021", "13.02.2021"], "day-first", "2021-02-03"),  # the 13 decides the 03 too
        (["02/03/2021", "02/13/2021"], "month-first", "2021-02-03"),
        (["2021-02-03", "2021-02-04"], "iso", "2021-02-03"),
    ],
)
def test_the_whole_column_decides_the_date_order(values, order, first):
    dates, found = parse_dates(pd.Series(values))
    assert found == order
    assert dates.iloc[0] == pd.Timestamp(first)


def test_a_column_that_cannot_decide_is_refused():
    with pytest.raises(DialectError, match="day-first or month-first"):
        parse_dates(pd.Series(["01.02.2021", "02.02.2021", "03.02.2021"]))
    with pytest.raises(DialectError, match="mixes day-first and month-first"):
        parse_dates(pd.Series(["13.01.2021", "01.13.2021"]))
    with pytest.raises(DialectError, match="no readable date"):
        parse_dates(pd.Series(["yesterday", "today"]))


def test_tz_aware_timestamps_become_the_exchange_day():
    dates, order = parse_dates(pd.Series(["2016-01-04T00:00:00-05:00", "2016-01-05T09:30:00Z",
                                          "2016-01-06T00:30:00+00:00"]))
    assert order == "iso"
    assert dates.tolist() == [pd.Timestamp("2016-01-04"), pd.Timestamp("2016-01-05"), pd.Timestamp("2016-01-05")]
