"""`qtrack predict`: score days with a registered model and the feature pipeline it was trained with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qtrack import paths
from qtrack.data import qlib_format, versions
from qtrack.errors import QtrackError
from qtrack.runtime import init_qlib
from qtrack.tracking import registry


@dataclass
class Prediction:
    model: str
    version: str
    rows: int
    instruments: int
    days: int
    start: str
    end: str
    output: Path


def run_predict(reference: str, data: str | None, start: str | None, end: str | None, output: Path,
                tracking_uri: str | None = None) -> Prediction:
    client, uri = registry.connect(tracking_uri)
    version = registry.resolve(client, reference)
    pipeline = registry.load_pipeline(client, version)
    name = data or pipeline.dataset_name
    root = paths.dataset_dir(name)
    if not (root / "calendars" / "day.txt").is_file():
        raise QtrackError(f"dataset '{name}' not found under {paths.data_root()} (see qtrack data list)")
    root = versions.lease(root)
    calendar = qlib_format.read_calendar(root)
    first, last = _window(calendar, start, end)
    init_qlib(root, pipeline.region, uri, "qtrack-predict")
    scores = registry.score(pipeline, first, last)
    if scores.empty:
        raise QtrackError(f"no instrument of the model's market trades between {first} and {last}")
    rows = registry.write_scores(scores, output)
    return Prediction(
        model=version.name, version=str(version.version), rows=rows,
        instruments=scores.index.get_level_values("instrument").nunique(),
        days=scores.index.get_level_values("datetime").nunique(), start=first, end=last, output=output.resolve(),
    )


def _window(calendar: pd.DatetimeIndex, start: str | None, end: str | None) -> tuple[str, str]:
    """The requested days, by default the latest day of the data; both ends must be in the calendar's range."""
    try:
        last = pd.Timestamp(end) if end else calendar[-1]
        first = pd.Timestamp(start) if start else last
    except ValueError as exc:
        raise QtrackError(f"invalid date: {exc}") from None
    if first > last:
        raise QtrackError(f"--start {first.date()} is after --end {last.date()}")
    if first < calendar[0] or last > calendar[-1]:
        span = f"[{calendar[0].date()}, {calendar[-1].date()}]"
        raise QtrackError(f"[{first.date()}, {last.date()}] lies outside the data's calendar {span}")
    return first.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")
