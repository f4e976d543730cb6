"""`qtrack backtest --pred FILE`: Qlib's signal analysis and backtest of any prediction file, as a tracked run.

The file (CSV, Parquet or pickle) holds `datetime`, `instrument` and `score`. It is checked before anything is
tracked: unknown instruments, duplicate rows, days that are not trading days of the data, or no day with a
next trading day to trade on are refused in one line. The label is the features group's own (Alpha158's by
default), computed by Qlib from the prices; the backtest is the `backtest` group's, on the file's days.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qtrack.config.schema import Settings
from qtrack.console import Observer, err, out, summary_table
from qtrack.data import qlib_format
from qtrack.errors import QtrackError
from qtrack.tracking import names

if TYPE_CHECKING:
    from qtrack.stages.context import StageContext

DEFAULT_LABEL = "Ref($close, -2)/Ref($close, -1) - 1"
COLUMNS = ("datetime", "instrument", "score")
SAFE_MAGNITUDE = (1e-100, 1e100)  # squares and products stay normal float64 numbers


@dataclass(frozen=True)
class TestSpan:
    """The one segment a prediction file's backtest has (what backtest_config and the benchmark read)."""

    start: str
    end: str

    def as_dict(self) -> dict[str, tuple[str, str]]:
        return {"test": (self.start, self.end)}


@dataclass(frozen=True)
class TestData:
    """What Qlib's records read of the data for a prediction file: its test span and the benchmark's returns."""

    segments: TestSpan
    benchmark: Any


@dataclass
class BacktestResult:
    run_id: str
    run_name: str
    experiment_name: str
    tracking_uri: str
    metrics: dict[str, float]
    start: str
    end: str


def read_predictions(path: Path, notes: list[str]) -> pd.Series:
    """The file's usable scores indexed by (datetime, instrument); QtrackError with one line when unreadable
    or unusable. What was changed on the way is appended to `notes`."""
    if not path.is_file():
        raise QtrackError(f"--pred {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".pkl", ".pickle"):
            frame = pd.read_pickle(path)
        else:
            raise QtrackError(f"--pred {path}: use a .csv, .parquet or .pkl file")
    except QtrackError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
        raise QtrackError(f"--pred {path}: unreadable ({type(exc).__name__}: {exc})") from None
    if isinstance(frame, pd.Series):
        frame = frame.rename("score").reset_index()
    elif isinstance(frame, pd.DataFrame) and isinstance(frame.index, pd.MultiIndex):
        frame = frame.reset_index()
    if not isinstance(frame, pd.DataFrame) or not set(COLUMNS) <= set(frame.columns):
        raise QtrackError(f"--pred {path}: needs the columns {', '.join(COLUMNS)}")
    try:
        frame["datetime"] = pd.to_datetime(frame["datetime"])
        frame["score"] = pd.to_numeric(frame["score"])
    except (ValueError, TypeError) as exc:
        raise QtrackError(f"--pred {path}: {exc}") from None
    frame["instrument"] = frame["instrument"].astype(str)
    times = frame["datetime"] - frame["datetime"].dt.normalize()
    if times.any():  # a daily file stamped at the close (16:00) still names trading days
        notes.append(f"times of day dropped from the datetime column (first: {times[times.astype(bool)].iloc[0]}): "
                     "each row counts for its date")
        frame["datetime"] = frame["datetime"].dt.normalize()
    duplicated = frame.duplicated(["datetime", "instrument"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise QtrackError(f"--pred {path}: {int(duplicated.sum())} duplicate rows (first: "
                          f"{row['datetime'].date()} {row['instrument']})")
    scores = frame.set_index(["datetime", "instrument"])["score"].sort_index()
    return usable_scores(scores, path, notes)


def usable_scores(scores: pd.Series, path: Path, notes: list[str]) -> pd.Series:
    """The finite scores; QtrackError when none are left or they never vary (nothing to rank). Scores so large
    or small that products of them overflow or underflow float64 (the IC's correlation turns 0.0) are divided
    by their largest magnitude: ranks, IC and the backtest are unchanged by a positive scale."""
    finite = np.isfinite(scores.to_numpy())
    if not finite.any():
        raise QtrackError(f"--pred {path}: no finite score (NaN or ±inf in all {len(scores)} rows)")
    if not finite.all():
        notes.append(f"{int((~finite).sum())} of {len(scores)} rows have a NaN or ±inf score and were dropped")
        scores = scores[finite]
    if scores.nunique() < 2:
        raise QtrackError(f"--pred {path}: every score is {scores.iloc[0]:g}, so there is nothing to rank")
    largest = float(scores.abs().max())
    if not SAFE_MAGNITUDE[0] <= largest <= SAFE_MAGNITUDE[1]:
        notes.append(f"scores divided by their largest magnitude {largest:g} (products of them leave float64)")
        scores = scores / largest
    return scores


def check_predictions(scores: pd.Series, calendar: pd.DatetimeIndex, known: set[str], path: Path) -> tuple[str, str]:
    """The backtest's first and last day; QtrackError for instruments or days the data does not have."""
    unknown = sorted(set(scores.index.get_level_values("instrument")) - known)
    if unknown:
        listed = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise QtrackError(f"--pred {path}: {len(unknown)} instruments are not in the market: {listed}")
    days = scores.index.get_level_values("datetime").unique()
    outside = days.difference(calendar)
    if len(outside):
        raise QtrackError(f"--pred {path}: {len(outside)} days are not trading days of the data (first: "
                          f"{outside[0].date()}; the data runs {calendar[0].date()}..{calendar[-1].date()})")
    # Qlib trades on the day after a signal and steps to the next calendar day: keep two days in hand.
    last_tradable = calendar[-3] if len(calendar) >= 3 else calendar[0]
    usable = days[days <= last_tradable]
    if len(usable) < 2:
        raise QtrackError(f"--pred {path}: needs two or more days before {last_tradable.date()} (the backtest "
                          "trades the day after each signal)")
    return usable[0].strftime("%Y-%m-%d"), usable[-1].strftime("%Y-%m-%d")


def run_backtest_stage(pred_path: Path, overrides: list[str], quiet: bool = False) -> BacktestResult:
    """`qtrack backtest`: the train config (data, features, backtest, tracking) with `overrides`, the tracked
    backtest of the file, and its summary."""
    from qtrack.stages.runner import Stage, run_stage

    stage = Stage(config="train", work=lambda cfg, ctx, observer: run_backtest(pred_path, cfg, observer),
                  summary=_print_summary)
    return run_stage(stage, overrides, quiet)


def _print_summary(result: BacktestResult, ctx: StageContext) -> None:
    from qtrack.stages.core import metric_rows

    rows = metric_rows(result.metrics)
    rows += [("days", f"{result.start}..{result.end}"), ("run", f"{result.run_name} ({result.run_id})"),
             ("experiment", result.experiment_name)]
    out.print(summary_table("qtrack backtest", rows))


def run_backtest(pred_path: Path, cfg: Settings, observer: Observer) -> BacktestResult:
    from qtrack.data.dataset import ensure_data, market_calendar
    from qtrack.data.prepare import benchmark_returns
    from qtrack.runtime import init_qlib

    notes: list[str] = []
    scores = read_predictions(pred_path, notes)
    for note in notes:
        err.print(f"[yellow]note[/] --pred {pred_path.name}: {note}", soft_wrap=True)
    with observer.step("data", f"checking {pred_path.name} against dataset '{cfg.dataset.name}'"):
        source = ensure_data(cfg.dataset)
        calendar = market_calendar(source, cfg.dataset.market)
        symbols = qlib_format.read_instruments(source.path, cfg.dataset.market)["symbol"].tolist()
        start, end = check_predictions(scores, calendar, set(symbols), pred_path)
        scores = scores.loc[pd.Timestamp(start):pd.Timestamp(end)]
        init_qlib(source.path, cfg.dataset.region, cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name)
        segs = TestSpan(start, end)
        codes = cfg.dataset.benchmark if cfg.dataset.benchmark is not None else symbols
        data = TestData(segments=segs, benchmark=benchmark_returns(codes, segs))
        label = _label(cfg, scores, start, end)
    return _tracked_run(cfg, pred_path, scores, label, data, source.fingerprint, observer)


def _label(cfg: Settings, scores: pd.Series, start: str, end: str) -> pd.DataFrame:
    from qlib.data import D

    expression = cfg.features.label or DEFAULT_LABEL
    instruments = sorted(set(scores.index.get_level_values("instrument")))
    frame = D.features(instruments, [expression], start, end).swaplevel().sort_index()
    frame.columns = pd.MultiIndex.from_tuples([("label", "LABEL0")])
    return frame.reindex(scores.index)


def _tracked_run(cfg: Settings, pred_path: Path, scores: pd.Series, label: pd.DataFrame, data: TestData,
                 fingerprint: str, observer: Observer) -> BacktestResult:
    from qtrack import config
    from qtrack.stages.runner import open_run, record_predictions
    from qtrack.tracking import params as tracking

    digest = hashlib.sha256(pred_path.read_bytes()).hexdigest()[:16]
    run_name = cfg.run_name or f"backtest-{pred_path.stem}"
    tags = {names.STAGE: "backtest", "qtrack.pred_file": pred_path.name, "qtrack.pred_digest": digest}
    with open_run(cfg, run_name, fingerprint, tags) as run:
        container = config.to_container(cfg)
        tracking.log_params(run.client, run.run_id, tracking.flatten(
            {"backtest": container["backtest"], "dataset": {"name": cfg.dataset.name, "market": cfg.dataset.market},
             "segments": {"test": ",".join(data.segments.as_dict()["test"])}}))
        metrics = record_predictions(cfg, data, run, scores, label, observer, "IC analysis and backtest")
    start, end = data.segments.as_dict()["test"]
    return BacktestResult(run.run_id, run_name, cfg.mlflow.experiment_name, run.tracking_uri, dict(metrics), start, end)
