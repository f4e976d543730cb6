"""Qlib's records on the test segment (signal, IC analysis, backtest) and what qtrack logs beside them:
regression metrics, the target, the fitted pipeline, plots and the MLflow model."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from qtrack.evaluation import metrics, plots, qlib_reports
from qtrack.models import specs
from qtrack.tracking import names
from qtrack.tracking import params as tracking

# Qlib's data provider and caches are not thread-safe; the backtest reads prices through them.
QLIB_DATA_LOCK = threading.Lock()


def segment_metrics(data: Any, model: Any, segment: str) -> dict[str, float]:
    """Signal and regression metrics of one segment, named `<segment>.<metric>`."""
    from qlib.data.dataset.handler import DataHandlerLP

    from qtrack.data.qlib_dataset import frames

    pred = model.predict(data.dataset, segment=segment)
    raw = frames(data.dataset, segment, col_set="label", data_key=DataHandlerLP.DK_R).iloc[:, 0]
    learned = frames(data.dataset, segment, col_set="label", data_key=DataHandlerLP.DK_L).iloc[:, 0]
    found = {**metrics.signal_metrics(pred, raw), **metrics.regression_metrics(pred, learned)}
    return {f"{segment}.{name}": value for name, value in found.items()}


def run_records(cfg: Any, data: Any, model: Any, recorder: Any) -> None:
    from qlib.workflow.record_temp import SignalRecord

    with QLIB_DATA_LOCK:
        SignalRecord(model=model, dataset=data.dataset, recorder=recorder).generate()
    _analyse(cfg, data, recorder)


def analyse_predictions(cfg: Any, data: Any, recorder: Any, scores: Any, label: Any) -> None:
    """Qlib's SigAnaRecord and the backtest of given predictions (a `score` Series by datetime and
    instrument) over data.segments' test span, on an open recorder: `backtest --pred` and rolling's stitch."""
    recorder.save_objects(**{"pred.pkl": scores.to_frame("score"), "label.pkl": label})
    _analyse(cfg, data, recorder)


def _analyse(cfg: Any, data: Any, recorder: Any) -> None:
    """SigAnaRecord and the backtest (each qtrack's fast one, or Qlib's) of the recorder's pred.pkl and label.pkl."""
    from qlib.workflow.record_temp import PortAnaRecord, SigAnaRecord

    from qtrack.evaluation import portfolio_record

    fast = cfg.backtest.engine == "fast"
    signal = portfolio_record.FastSigAnaRecord if fast else SigAnaRecord
    portfolio = portfolio_record.FastPortAnaRecord if fast else PortAnaRecord
    with QLIB_DATA_LOCK:
        signal(recorder=recorder, ana_long_short=False, ann_scaler=252).generate()
        portfolio(recorder=recorder, config=backtest_config(cfg, data), risk_analysis_freq="day").generate()


def backtest_config(cfg: Any, data: Any) -> dict:
    """Qlib's backtest config from the `backtest` group, on the test segment."""
    bt = cfg.backtest
    start, end = data.segments.as_dict()["test"]
    return {
        "executor": {
            "class": "SimulatorExecutor",
            "module_path": "qlib.backtest.executor",
            "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True},
        },
        "strategy": {
            "class": bt.strategy,
            "module_path": "qlib.contrib.strategy",
            "kwargs": {"signal": "<PRED>", "topk": int(bt.topk), "n_drop": int(bt.n_drop)},
        },
        "backtest": {
            "start_time": start,
            "end_time": end,
            "account": float(bt.account),
            "benchmark": data.benchmark,
            "exchange_kwargs": {
                "freq": "day",
                "limit_threshold": bt.limit_threshold,
                "deal_price": bt.deal_price,
                "open_cost": float(bt.open_cost),
                "close_cost": float(bt.close_cost),
                "min_cost": float(bt.min_cost),
            },
        },
    }


def log_extras(cfg: Any, data: Any, spec: specs.ModelSpec, model: Any, recorder: Any) -> dict:
    """Regression metrics on the test segment, the target, the model and pipeline, plots, the MLflow model.
    Returns the extra metrics, with `constant_predictions` set when the model found nothing to learn."""
    from qlib.data.dataset.handler import DataHandlerLP

    from qtrack.data.qlib_dataset import feature_rows, frames

    client, run_id = recorder.client, recorder.id
    pred = recorder.load_object("pred.pkl")
    target = frames(data.dataset, "test", col_set="label", data_key=DataHandlerLP.DK_L)
    recorder.save_objects(**{"target.pkl": target, "params.pkl": model})
    if data.pipeline:
        log_bytes(client, run_id, data.pipeline, "dataset.pkl")
    extra: dict = metrics.regression_metrics(pred.iloc[:, 0], target.iloc[:, 0])
    tracking.log_metrics(client, run_id, extra)
    if pred.iloc[:, 0].nunique() <= 1:
        client.set_tag(run_id, names.CONSTANT_PREDICTIONS, "true")
        extra["constant_predictions"] = True
    if cfg.mlflow.plots:
        _log_plots(recorder)
    if cfg.mlflow.qlib_report:
        qlib_reports.log_report(recorder, f"Qlib report: {spec.name}, run {run_id}")
    if cfg.mlflow.log_model and spec.flavor:
        first, last = data.segments.test  # a few days, not the whole segment, to take 5 rows from
        days = slice(first, min(last, first + pd.Timedelta(days=10)))
        example = feature_rows(data.dataset, days, 5)
        logged = specs.log_flavor_model(spec, model, example, recorder, cfg.mlflow.tracking_uri)
        client.set_tag(run_id, names.MODEL_URI, logged.model_uri)
    return extra


def log_bytes(client: Any, run_id: str, content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        client.log_artifact(run_id, str(path))


def _log_plots(recorder: Any) -> None:
    report = recorder.load_object("portfolio_analysis/report_normal_1day.pkl")
    ic = recorder.load_object("sig_analysis/ic.pkl")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.cumulative_return_plot(report, folder / "cumulative_return.png")
        plots.daily_ic_plot(ic, folder / "daily_ic.png")
        recorder.client.log_artifacts(recorder.id, str(folder), "plots")
