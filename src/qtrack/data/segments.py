"""Train/valid/test segments that let no label reach across a boundary.

A label for day t needs prices up to t + horizon (Qlib's default label needs close(t+2)). So:
- consecutive segments are separated by at least `horizon` trading days, otherwise the earlier
  segment's end is moved back (and the user told);
- the test segment ends `horizon` days before the calendar's end, so every test day has a label and
  Qlib's backtest has the next trading day it steps to.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from qtrack.errors import QtrackError

NAMES = ("train", "valid", "test")


@dataclass(frozen=True)
class Segments:
    train: tuple[pd.Timestamp, pd.Timestamp]
    valid: tuple[pd.Timestamp, pd.Timestamp]
    test: tuple[pd.Timestamp, pd.Timestamp]

    def as_dict(self) -> dict[str, tuple[str, str]]:
        return {name: tuple(d.strftime("%Y-%m-%d") for d in getattr(self, name)) for name in NAMES}


def resolve(
    calendar: pd.DatetimeIndex, configured: dict, split: dict, horizon: int
) -> tuple[Segments, list[str]]:
    """Segments from the config (or an automatic split) plus notices of any adjustment made."""
    given = {name: configured.get(name) for name in NAMES}
    if all(value is None for value in given.values()):
        return auto_split(calendar, split, horizon), []
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise QtrackError(f"dataset.segments: give all of train, valid and test, or none (missing {missing})")
    bounds = {name: _parse(name, value, calendar) for name, value in given.items()}
    early = [name for name in NAMES if bounds[name][0] < calendar[0]]
    for name in early:  # qrun's own configs start on holidays (2008-01-01): Qlib starts at the next trading day
        bounds[name] = (calendar[0], bounds[name][1])
    notices = [f"dataset.segments.{name} starts {given[name][0]}, before the data's first trading day: it starts "
               f"{calendar[0].date()}, as in qrun" for name in early]
    segments, adjusted = _enforce_gaps(bounds, calendar, horizon)
    return segments, notices + adjusted


def auto_split(calendar: pd.DatetimeIndex, split: dict, horizon: int) -> Segments:
    usable = len(calendar) - horizon - 2 * horizon
    weights = [float(split[name]) for name in NAMES]
    if any(w <= 0 for w in weights):
        raise QtrackError("dataset.split: every share must be positive")
    total = sum(weights)
    train_n, valid_n = (int(usable * w / total) for w in weights[:2])
    test_n = usable - train_n - valid_n
    if min(train_n, valid_n, test_n) < 5:
        raise QtrackError(f"the calendar has only {len(calendar)} days: too short to split into segments")
    starts = [0, train_n + horizon, train_n + valid_n + 2 * horizon]
    lengths = [train_n, valid_n, test_n]
    spans = [(calendar[s], calendar[s + n - 1]) for s, n in zip(starts, lengths, strict=True)]
    return Segments(*spans)


def rolling(calendar: pd.DatetimeIndex, train_days: int, valid_days: int, holdout_days: int,
            horizon: int) -> Segments:
    """Train, valid and holdout windows ending at the calendar's last labelled day, most recent last,
    separated by `horizon` days so that no label reaches into the next window."""
    holdout_end = len(calendar) - 1 - horizon
    holdout_start = holdout_end - holdout_days + 1
    valid_end = holdout_start - horizon - 1
    valid_start = valid_end - valid_days + 1
    train_end = valid_start - horizon - 1
    train_start = train_end - train_days + 1
    if min(train_days, valid_days, holdout_days) < 5 or train_start < 0:
        need = train_days + valid_days + holdout_days + 3 * horizon
        raise QtrackError(
            f"the data has {len(calendar)} trading days; retrain.train_days/valid_days/holdout_days "
            f"need {need} (each at least 5)"
        )
    spans = [(train_start, train_end), (valid_start, valid_end), (holdout_start, holdout_end)]
    return Segments(*((calendar[a], calendar[b]) for a, b in spans))


def _parse(name: str, value, calendar: pd.DatetimeIndex) -> tuple[pd.Timestamp, pd.Timestamp]:
    if len(value) != 2:
        raise QtrackError(f"dataset.segments.{name}: expected [start, end], got {list(value)}")
    try:
        start, end = (pd.Timestamp(str(v)) for v in value)
    except ValueError:
        raise QtrackError(f"dataset.segments.{name}: not a date in {list(value)}") from None
    if start > end:
        raise QtrackError(f"dataset.segments.{name}: start {start.date()} is after end {end.date()}")
    first, last = calendar[0], calendar[-1]
    if end < first or end > last:
        raise QtrackError(
            f"dataset.segments.{name} [{start.date()}, {end.date()}] lies outside the data's calendar "
            f"[{first.date()}, {last.date()}]"
        )
    return start, end


def _enforce_gaps(bounds: dict, calendar: pd.DatetimeIndex, horizon: int) -> tuple[Segments, list[str]]:
    notices: list[str] = []
    for earlier, later in zip(NAMES, NAMES[1:], strict=False):
        if bounds[earlier][1] >= bounds[later][0]:
            raise QtrackError(
                f"dataset.segments: {earlier} must end before {later} starts "
                f"({bounds[earlier][1].date()} >= {bounds[later][0].date()})"
            )
    for earlier, later in zip(NAMES, NAMES[1:], strict=False):
        latest_end = _shift(calendar, bounds[later][0], -(horizon + 1))
        if latest_end is None or latest_end < bounds[earlier][0]:
            raise QtrackError(
                f"dataset.segments: {later} starts too early: {earlier} needs at least one day that ends "
                f"{horizon} trading days before {later} starts, so that its labels stay inside it"
            )
        if bounds[earlier][1] > latest_end:
            bounds[earlier] = (bounds[earlier][0], latest_end)
            notices.append(
                f"{earlier} now ends {latest_end.date()} so that its {horizon}-day labels stop before "
                f"{later} starts"
            )
    last_test_day = calendar[-1 - horizon]
    if bounds["test"][1] > last_test_day:
        bounds["test"] = (bounds["test"][0], last_test_day)
        notices.append(
            f"test now ends {last_test_day.date()}: the last {horizon} days have no label and the "
            "backtest needs the next trading day"
        )
    for name in NAMES:
        start, end = bounds[name]
        if len(calendar[(calendar >= start) & (calendar <= end)]) == 0:
            raise QtrackError(f"dataset.segments.{name} holds no trading day after the adjustments")
    return Segments(*(bounds[name] for name in NAMES)), notices


def _shift(calendar: pd.DatetimeIndex, day: pd.Timestamp, offset: int) -> pd.Timestamp | None:
    """The trading day `offset` days from `day`, or None before the calendar's start."""
    position = int(calendar.searchsorted(day)) + offset
    return calendar[position] if position >= 0 else None


@dataclass(frozen=True)
class Window:
    """One walk-forward window: its train/valid/test spans (label-horizon gaps between them)."""

    index: int
    segments: Segments


def walk_forward(calendar: pd.DatetimeIndex, *, first_test: str | None, step: int, train_window: int | None,
                 valid_days: int, horizon: int) -> list[Window]:
    """Test slices of `step` trading days from `first_test` (default: half-way through the labelled days) to
    the last labelled day, each with a valid span of `valid_days` ending `horizon` days before it and a train
    span ending `horizon` days before that: from the calendar's start (`train_window` None, expanding) or
    the last `train_window` days. No label of a window's train or valid days reaches its test slice."""
    last_labelled = len(calendar) - 1 - horizon
    if first_test is None:
        start = last_labelled // 2
    else:
        try:
            day = pd.Timestamp(str(first_test))
        except ValueError:
            raise QtrackError(f"rolling.first_test_day: not a date: {first_test}") from None
        start = int(calendar.searchsorted(day))
        if not calendar[0] <= day <= calendar[last_labelled]:
            raise QtrackError(f"rolling.first_test_day {day.date()} lies outside the labelled calendar "
                              f"[{calendar[0].date()}, {calendar[last_labelled].date()}]")
    windows = []
    for index, test_start in enumerate(range(start, last_labelled + 1, step)):
        test_end = min(test_start + step - 1, last_labelled)
        valid_end = test_start - horizon - 1
        valid_start = valid_end - valid_days + 1
        train_end = valid_start - horizon - 1
        train_start = 0 if train_window is None else max(0, train_end - train_window + 1)
        if train_end - train_start + 1 < MIN_TRAIN_DAYS:
            raise QtrackError(_too_few_training_days(calendar[start], train_end - train_start + 1, train_window))
        spans = [(train_start, train_end), (valid_start, valid_end), (test_start, test_end)]
        windows.append(Window(index, Segments(*((calendar[a], calendar[b]) for a, b in spans))))
    return windows


MIN_TRAIN_DAYS = 20


def _too_few_training_days(first_test_day: pd.Timestamp, days: int, train_window: int | None) -> str:
    """Advice that names the setting at fault: a short window, or too little history before the first test."""
    if train_window is not None and train_window < MIN_TRAIN_DAYS:
        return (f"rolling.train_window={train_window} leaves {train_window} training days per window (at least "
                f"{MIN_TRAIN_DAYS}): choose a larger rolling.train_window, or expanding")
    return (f"rolling: the first test day {first_test_day.date()} leaves {max(0, days)} training days (at least "
            f"{MIN_TRAIN_DAYS}); choose a later rolling.first_test_day or fewer rolling.valid_days")
