"""`qtrack predict`: score days with a registered model and the feature pipeline it was trained with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qtrack.console import err
from qtrack.data import qlib_format
from qtrack.data.dataset import DataSource
from qtrack.errors import QtrackError
from qtrack.runtime import init_qlib
from qtrack.tracking import names, registry


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


DEFAULT_TOPK = 50


def run_predict(reference: str, data: str | None, start: str | None, end: str | None, output: Path,
                tracking_uri: str | None = None, latest: bool = False, topk: int | None = None) -> Prediction:
    """Scores for [start, end]; with `latest`, tomorrow's list: the data's last day, instruments trading that
    day only, ranked, with a top-k flag (k from the model's own `backtest.topk` unless `topk` is given)."""
    if latest and (start or end):
        raise QtrackError("--latest scores the data's last day: leave out --start and --end")
    if topk is not None and topk < 1:
        raise QtrackError(f"--topk must be at least 1, got {topk}")
    client, uri = registry.connect(tracking_uri)
    version = registry.resolve(client, reference)
    pipeline = registry.load_pipeline(client, version)
    source = _data_source(data, pipeline)
    root = source.path
    calendar = qlib_format.read_calendar(root)
    for line in data_drift(client.get_run(version.run_id).data.tags, source.fingerprint, calendar[-1]):
        err.print(line, soft_wrap=True, markup=False)
    first, last = _window(calendar, start, end)
    init_qlib(root, pipeline.region, uri, "qtrack-predict")
    scores = registry.score(pipeline, first, last)
    if scores.empty:
        raise QtrackError(f"no instrument of the model's market trades between {first} and {last}")
    if latest:
        k = topk or int(client.get_run(version.run_id).data.params.get("backtest.topk", DEFAULT_TOPK))
        rows = registry.write_table(ranked_list(scores, last, k), output)
    else:
        rows = registry.write_scores(scores, output)
    return Prediction(
        model=version.name, version=str(version.version), rows=rows,
        instruments=scores.index.get_level_values("instrument").nunique(),
        days=scores.index.get_level_values("datetime").nunique(), start=first, end=last, output=output.resolve(),
    )


def _data_source(data: str | None, pipeline: registry.Pipeline) -> DataSource:
    """--data (a dataset name), else the model's own data (its Qlib directory read in place, or its name under
    the data root), found as every stage finds its data."""
    from omegaconf import OmegaConf

    from qtrack.data.dataset import ensure_data

    own = {"name": data or pipeline.dataset_name, "provider_uri": None if data else pipeline.provider_uri}
    return ensure_data(OmegaConf.create(own))


def data_drift(model_tags: dict[str, str], fingerprint: str, last_day: pd.Timestamp) -> list[str]:
    """What differs between the data the model trained on (its run's tags) and the data it scores now."""
    trained_end, trained_on = model_tags.get(names.DATA_END), model_tags.get(names.DATA_FINGERPRINT)
    if trained_end and last_day < pd.Timestamp(trained_end):
        return [f"warning: the data ends {last_day.date()}, before the model's data end {trained_end}: it was "
                "replaced or regenerated since the model trained, so these scores may not mean what they did"]
    if trained_on and trained_on != fingerprint:
        return [f"note: the data is not the data the model trained on (fingerprint {fingerprint[:12]}, the model's "
                f"{trained_on[:12]}; the model's data ended {trained_end or 'on an unknown day'})"]
    return []


def ranked_list(scores: pd.Series, day: str, topk: int) -> pd.DataFrame:
    """One row per instrument trading on `day` (a close price that day) with a score, best first: datetime,
    instrument, score, rank (1 = best; ties by instrument name) and top_k (rank <= topk)."""
    from qlib.data import D

    on_day = scores.xs(pd.Timestamp(day), level="datetime").dropna()
    close = D.features(list(on_day.index), ["$close"], day, day)["$close"].dropna()
    trading = on_day[on_day.index.isin(close.index.get_level_values("instrument"))]
    frame = trading.rename("score").rename_axis("instrument").reset_index()
    frame = frame.sort_values(["score", "instrument"], ascending=[False, True], kind="stable", ignore_index=True)
    frame.insert(0, "datetime", pd.Timestamp(day))
    frame["rank"] = range(1, len(frame) + 1)
    frame["top_k"] = frame["rank"] <= topk
    return frame


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
