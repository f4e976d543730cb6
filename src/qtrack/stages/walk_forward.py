"""Walk-forward evaluation: windows planned on the market's calendar, one child run a window, and the stitched
out-of-sample record on the parent. `qtrack rolling` runs it alone; a benchmark with `rolling.enabled` runs it
for every job, so it sits beside the single split (stages.core) as a protocol the stages share.

Features are built once (data.prepare) over the whole span. Each window then re-fits the learnable processors
on its own train span (Qlib's handler keeps the raw frame, so only the processors run again) and is one child
run of the core: fit on its train span, early stopping on its valid span, Qlib's records on its test slice.
The parent holds the stitched predictions (each day from exactly one window) with Qlib's SigAnaRecord and
backtest over the whole period, the per-window IC, and the same model fitted once on the first window
(the static split) over the same period, so the user sees what refitting bought.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from qtrack import config
from qtrack.config.schema import RollingSchema, Settings
from qtrack.console import Observer
from qtrack.data.prepare import PreparedData, benchmark_codes, benchmark_returns
from qtrack.data.segments import Segments, Window, walk_forward
from qtrack.errors import QtrackError
from qtrack.evaluation import metrics as signal
from qtrack.runtime import raise_if_interrupted
from qtrack.stages.core import SUMMARY_METRICS, RunResult
from qtrack.stages.runner import data_tags, log_metrics, open_run, record_predictions, run_model
from qtrack.tracking import names
from qtrack.tracking import params as tracking
from qtrack.tracking.runs import ActiveRun

ROLLING = "rolling"
WINDOW_TAG = "qtrack.rolling.window"
STATIC = "static"
SIGNAL = ("IC", "ICIR", "Rank IC", "Rank ICIR")


@dataclasses.dataclass
class RollingResult:
    parent_run_id: str
    windows: list[dict]
    metrics: dict[str, float]
    static_metrics: dict[str, float]


def plan_windows(cfg: Settings) -> list[Window]:
    from qtrack.data.dataset import ensure_data, market_calendar

    settings = cfg.rolling
    calendar = market_calendar(ensure_data(cfg.dataset), cfg.dataset.market)
    train_window = None if settings.train_window == "expanding" else int(settings.train_window)
    return walk_forward(calendar, first_test=settings.first_test_day, step=int(settings.step),
                        train_window=train_window, valid_days=int(settings.valid_days),
                        horizon=int(cfg.features.label_horizon))


def base_config(cfg: Settings, windows: list[Window]) -> Settings:
    """The train config (without `rolling`) whose dataset spans every window: the first window's train and
    valid spans (what the static split fits on) and a test segment from the first test day to the last."""
    first = windows[0].segments
    test = (first.test[0], windows[-1].segments.test[1])
    spans = {"train": first.train, "valid": first.valid, "test": test}
    values = {f"dataset.segments.{name}": [day.strftime("%Y-%m-%d") for day in span] for name, span in spans.items()}
    return config.variant(cfg, values=values, allowed=("dataset.segments",), drop=(ROLLING,))


def rolling_record(base: Settings, windows: list[Window], data: PreparedData, observer: Observer, *,
                   settings: RollingSchema, run_name: str, parent_run_id: str | None = None,
                   extra_tags: dict[str, str] | None = None, on_start: Any = None) -> tuple[RunResult, RollingResult]:
    """One parent run (nested under `parent_run_id` when given) with a child per window (and the static split
    when settings.compare_static); its metrics are the stitched record's."""
    child_tags = {names.STAGE: ROLLING}
    tags = {**child_tags, **data_tags(data), **(extra_tags or {})}
    with open_run(base, run_name, data.source.fingerprint, tags, parent_run_id=parent_run_id,
                  on_start=on_start) as parent:
        params = tracking.flatten({**config.to_container(base), ROLLING: config.to_container(settings)})
        params.pop("dataset.segments.train"), params.pop("dataset.segments.valid")  # each window has its own
        tracking.log_params(parent.client, parent.run_id, params)
        static = None
        if settings.compare_static:
            static = run_model(base, _window_data(base, data, data.segments), observer, run_name=f"{run_name}-static",
                               tags={**child_tags, WINDOW_TAG: STATIC}, parent_run_id=parent.run_id)
        children = []
        for window in windows:
            raise_if_interrupted()
            children.append(run_model(_window_config(base, window.segments), _window_data(base, data, window.segments),
                                      observer, run_name=f"{run_name}-w{window.index}", parent_run_id=parent.run_id,
                                      tags={**child_tags, WINDOW_TAG: str(window.index)}))
        stitched = pd.concat([_predictions(child) for child in children]).sort_index()
        if stitched.index.duplicated().any():
            raise QtrackError("rolling: two windows predicted the same day")  # the windows' layout forbids it
        label = _raw_label(data, stitched.index)
        record_predictions(base, data, parent, stitched, label, observer,
                           "IC analysis and backtest of the stitched predictions")
        table = _window_table(windows, children, stitched, label, static and _predictions(static))
        _log_parent(parent, table, static)
        logged = parent.client.ledger.metrics(parent.run_id)
    own = {k: v for k, v in logged.items() if not k.startswith((STATIC, "window"))}
    run = RunResult(run_id=parent.run_id, run_name=run_name, experiment_id=parent.experiment_id,
                    experiment_name=parent.experiment_name, tracking_uri=parent.tracking_uri, metrics=own, seconds={})
    return run, RollingResult(parent.run_id, table, own, static.metrics if static else {})


def _window_config(base: Settings, segs: Segments) -> Settings:
    values = {f"dataset.segments.{name}": list(span) for name, span in segs.as_dict().items()}
    return config.variant(base, values=values, allowed=("dataset.segments",))


def _window_data(base: Settings, data: PreparedData, segs: Segments) -> PreparedData:
    """The shared handler with its learnable processors re-fitted on this window's train span only, seen
    through a dataset of the same kind with the window's segments."""
    from qtrack.data.dataset import pipeline_bytes
    from qtrack.data.qlib_dataset import with_segments

    handler = data.dataset.handler
    for processor in handler.get_all_processors():
        if hasattr(processor, "fit_start_time"):
            processor.fit_start_time, processor.fit_end_time = segs.as_dict()["train"]
    handler.fit_process_data()
    dataset = with_segments(data.dataset, handler, {name: list(span) for name, span in segs.as_dict().items()})
    codes = benchmark_codes(base, data.source)
    # binned=None: LightGBM's cached binned sets belong to the static split's segments, not this window's
    return dataclasses.replace(data, segments=segs, dataset=dataset, benchmark=benchmark_returns(codes, segs),
                               pipeline=pipeline_bytes(dataset), binned=None)


def _predictions(run: RunResult) -> pd.Series:
    return run.predictions.iloc[:, 0].rename("score")


def _raw_label(data: PreparedData, index: pd.MultiIndex) -> pd.DataFrame:
    from qlib.data.dataset.handler import DataHandlerLP

    days = index.get_level_values("datetime")
    label = data.dataset.handler.fetch(slice(days.min(), days.max()), col_set="label", data_key=DataHandlerLP.DK_R)
    return label.reindex(index)


def _window_table(windows: list[Window], children: list[RunResult], stitched: pd.Series, label: pd.DataFrame,
                  static: pd.Series | None) -> list[dict]:
    """Per window: its spans, child run and IC, and the static model's IC on the same test slice."""
    rows = []
    truth = label.iloc[:, 0]
    for window, child in zip(windows, children, strict=True):
        spans = window.segments.as_dict()
        start, end = (pd.Timestamp(day) for day in spans["test"])
        days = stitched.index.get_level_values("datetime")
        inside = (days >= start) & (days <= end)
        row = {"window": window.index, "run_id": child.run_id, **{f"{k}_start": v[0] for k, v in spans.items()},
               **{f"{k}_end": v[1] for k, v in spans.items()},
               **signal.signal_metrics(stitched[inside], truth[inside])}
        if static is not None:
            static_days = static.index.get_level_values("datetime")
            part = static[(static_days >= start) & (static_days <= end)]
            row.update({f"static {k}": v for k, v in signal.signal_metrics(part, truth.reindex(part.index)).items()})
        rows.append(row)
    return rows


def _log_parent(parent: ActiveRun, table: list[dict], static: RunResult | None) -> None:
    from qtrack.evaluation.plots import window_ic_plot

    for row in table:
        log_metrics(parent, {f"window.{k}": row[k] for k in SIGNAL}, step=row["window"])
    if static is not None:
        log_metrics(parent, {f"{STATIC}.{k}": static.metrics[k] for k in SUMMARY_METRICS if k in static.metrics})
    log_metrics(parent, {"windows": float(len(table))})
    client, run_id = parent.client, parent.run_id
    client.log_text(run_id, json.dumps(table, indent=2, default=str), "rolling/windows.json")
    with tempfile.TemporaryDirectory() as tmp:
        client.log_artifact(run_id, str(window_ic_plot(pd.DataFrame(table), Path(tmp) / "window_ic.png")), "rolling")
