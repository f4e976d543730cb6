from __future__ import annotations

import pandas as pd
import pytest

from qtrack.data import segments
from qtrack.errors import QtrackError

CALENDAR = pd.bdate_range("2020-01-01", periods=300)
SPLIT = {"train": 0.6, "valid": 0.2, "test": 0.2}
NONE = {"train": None, "valid": None, "test": None}


def gap(calendar, end, start) -> int:
    """Trading days strictly between two dates."""
    return int(calendar.searchsorted(start) - calendar.searchsorted(end) - 1)


@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_auto_split_keeps_labels_inside_their_segment(horizon):
    segs, notices = segments.resolve(CALENDAR, NONE, SPLIT, horizon)
    assert notices == []
    assert gap(CALENDAR, segs.train[1], segs.valid[0]) == horizon
    assert gap(CALENDAR, segs.valid[1], segs.test[0]) == horizon
    assert CALENDAR.get_loc(segs.test[1]) == len(CALENDAR) - 1 - horizon
    assert segs.train[0] == CALENDAR[0]
    sizes = [((s <= CALENDAR) & (e >= CALENDAR)).sum() for s, e in (segs.train, segs.valid, segs.test)]
    assert sizes[0] > sizes[1] > 0 and sizes[2] > 0


def test_back_to_back_segments_are_trimmed_and_reported():
    given = {
        "train": ["2020-01-01", "2020-06-30"],
        "valid": ["2020-07-01", "2020-09-30"],
        "test": ["2020-10-01", str(CALENDAR[-1].date())],
    }
    segs, notices = segments.resolve(CALENDAR, given, SPLIT, 2)
    assert gap(CALENDAR, segs.train[1], segs.valid[0]) >= 2
    assert gap(CALENDAR, segs.valid[1], segs.test[0]) >= 2
    assert segs.test[1] == CALENDAR[-3]
    assert len(notices) == 3


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"train": ["2019-01-01", "2019-06-28"], "valid": ["2020-04-01", "2020-05-01"],
          "test": ["2020-06-01", "2020-07-01"]}, "outside the data's calendar"),
        ({"train": ["2020-01-01", "2020-03-01"], "valid": ["2020-04-01", "2020-05-01"],
          "test": ["2020-06-01", "2021-07-01"]}, "outside the data's calendar"),
        ({"train": ["2020-01-01", "2020-05-01"], "valid": ["2020-04-01", "2020-06-01"],
          "test": ["2020-07-01", "2020-08-01"]}, "train must end before valid starts"),
        ({"train": ["2020-05-01", "2020-06-01"], "valid": ["2020-01-01", "2020-02-01"],
          "test": ["2020-07-01", "2020-08-01"]}, "train must end before valid starts"),
        ({"train": ["2020-03-01", "2020-01-01"], "valid": ["2020-04-01", "2020-05-01"],
          "test": ["2020-07-01", "2020-08-01"]}, "is after end"),
        ({"train": ["2020-01-01", "2020-03-01"], "valid": None, "test": None}, "give all of"),
        ({"train": ["2020-01-01", "soon"], "valid": ["2020-04-01", "2020-05-01"],
          "test": ["2020-07-01", "2020-08-01"]}, "not a date"),
    ],
)
def test_bad_segments_are_rejected(given, message):
    with pytest.raises(QtrackError, match=message):
        segments.resolve(CALENDAR, given, SPLIT, 2)


def test_too_short_calendar_is_rejected():
    with pytest.raises(QtrackError, match="too short"):
        segments.resolve(CALENDAR[:15], NONE, SPLIT, 2)


def test_walk_forward_tiles_the_labelled_days_after_the_first_test_day() -> None:
    from qtrack.data.segments import walk_forward

    days = pd.bdate_range("2020-01-01", periods=200)
    windows = walk_forward(days, first_test=str(days[100].date()), step=30, train_window=None, valid_days=20,
                           horizon=2)
    tested = [day for w in windows for day in days[(days >= w.segments.test[0]) & (days <= w.segments.test[1])]]
    assert tested == list(days[100:198])  # each labelled day from the first test day, once
    for window in windows:
        train, valid, test = window.segments.train, window.segments.valid, window.segments.test
        assert train[0] == days[0]
        assert days.get_loc(valid[0]) - days.get_loc(train[1]) == 3  # two days of labels, then the next segment
        assert days.get_loc(test[0]) - days.get_loc(valid[1]) == 3
    fixed = walk_forward(days, first_test=None, step=30, train_window=50, valid_days=20, horizon=2)
    assert fixed[0].segments.test[0] == days[98]  # half-way through the labelled days
    assert all(days.get_loc(w.segments.train[1]) - days.get_loc(w.segments.train[0]) == 49 for w in fixed)


@pytest.mark.parametrize(("first_test", "message"), [("2019-06-03", "outside the labelled calendar"),
                                                     ("2020-01-20", "leaves 0 training days")])
def test_walk_forward_refuses_a_first_test_day_it_cant_honour(first_test: str, message: str) -> None:
    from qtrack.data.segments import walk_forward

    days = pd.bdate_range("2020-01-01", periods=200)
    with pytest.raises(QtrackError, match=message):
        walk_forward(days, first_test=first_test, step=30, train_window=None, valid_days=20, horizon=2)


def test_a_segment_starting_on_a_holiday_before_the_data_starts_at_its_first_trading_day() -> None:
    """Qlib's benchmark configs start on 2008-01-01; qrun starts at the next trading day, and so does qtrack,
    saying so. A span wholly before the data is still refused (above)."""
    given = {"train": ["2019-12-30", "2020-06-30"], "valid": ["2020-07-06", "2020-09-30"],
             "test": ["2020-10-06", "2020-12-31"]}
    segs, notices = segments.resolve(CALENDAR, given, SPLIT, 2)
    assert segs.train == (CALENDAR[0], pd.Timestamp("2020-06-30"))
    assert notices == ["dataset.segments.train starts 2019-12-30, before the data's first trading day: it starts "
                       "2020-01-01, as in qrun"]


@pytest.mark.parametrize(("train", "valid", "holdout", "horizon"), [(150, 40, 40, 2), (100, 20, 30, 1), (60, 5, 5, 5)])
def test_retrain_windows_have_their_lengths_and_label_gaps_and_end_at_the_last_labelled_day(train, valid, holdout,
                                                                                         horizon) -> None:
    segs = segments.rolling(CALENDAR, train, valid, holdout, horizon)
    sizes = [CALENDAR.get_loc(end) - CALENDAR.get_loc(start) + 1 for start, end in (segs.train, segs.valid, segs.test)]
    assert sizes == [train, valid, holdout]
    assert gap(CALENDAR, segs.train[1], segs.valid[0]) == horizon
    assert gap(CALENDAR, segs.valid[1], segs.test[0]) == horizon
    assert CALENDAR.get_loc(segs.test[1]) == len(CALENDAR) - 1 - horizon


def test_retrain_windows_longer_than_the_data_are_refused() -> None:
    with pytest.raises(QtrackError, match="the data has 300 trading days"):
        segments.rolling(CALENDAR, 250, 40, 40, 2)


@pytest.mark.parametrize(("first_test", "train_window", "message"), [
    ("abc", None, "rolling.first_test_day: not a date: abc"),
    ("2020-06-01", 5, "rolling.train_window=5 leaves 5 training days per window (at least 20): choose a larger "
                      "rolling.train_window"),
])
def test_walk_forward_names_the_setting_at_fault(first_test: str, train_window, message: str) -> None:
    with pytest.raises(QtrackError) as raised:
        segments.walk_forward(CALENDAR, first_test=first_test, step=30, train_window=train_window, valid_days=20,
                              horizon=2)
    assert str(raised.value).startswith(message)
