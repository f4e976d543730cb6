"""Qlib's records on the test segment (signal, IC analysis, backtest) and what qtrack keeps beside them (the
target, the model, the regression metrics), written to a recorder: in an evaluation, an in-memory one
(evaluation.memory_recorder)."""

from __future__ import annotations

import threading
from typing import Any

from qtrack.config.schema import Settings
from qtrack.evaluation import metrics

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


def run_records(cfg: Settings, data: Any, model: Any, recorder: Any) -> None:
    from qlib.workflow.record_temp import SignalRecord

    with QLIB_DATA_LOCK:
        SignalRecord(model=model, dataset=data.dataset, recorder=recorder).generate()
    _analyse(cfg, data, recorder)


def analyse_predictions(cfg: Settings, data: Any, recorder: Any, scores: Any, label: Any) -> None:
    """Qlib's SigAnaRecord and the backtest of given predictions (a `score` Series by datetime and
    instrument) over data.segments' test span, on an open recorder: `backtest --pred` and rolling's stitch."""
    recorder.save_objects(**{"pred.pkl": scores.to_frame("score"), "label.pkl": label})
    _analyse(cfg, data, recorder)


def _analyse(cfg: Settings, data: Any, recorder: Any) -> None:
    """SigAnaRecord and the backtest (each qtrack's fast one, or Qlib's) of the recorder's pred.pkl and label.pkl."""
    from qlib.workflow.record_temp import PortAnaRecord, SigAnaRecord

    from qtrack.evaluation import portfolio_record

    fast = cfg.backtest.engine == "fast"
    signal = portfolio_record.FastSigAnaRecord if fast else SigAnaRecord
    portfolio = portfolio_record.FastPortAnaRecord if fast else PortAnaRecord
    with QLIB_DATA_LOCK:
        signal(recorder=recorder, ana_long_short=False, ann_scaler=252).generate()
        portfolio(recorder=recorder, config=backtest_config(cfg, data), risk_analysis_freq="day").generate()


def backtest_config(cfg: Settings, data: Any) -> dict:
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


def test_extras(data: Any, model: Any, recorder: Any) -> dict[str, float]:
    """The target (the learned label) and the model saved beside Qlib's records; the regression metrics of the
    test segment's predictions against the target."""
    from qlib.data.dataset.handler import DataHandlerLP

    from qtrack.data.qlib_dataset import frames

    pred = recorder.load_object("pred.pkl")
    target = frames(data.dataset, "test", col_set="label", data_key=DataHandlerLP.DK_L)
    recorder.save_objects(**{"target.pkl": target, "params.pkl": model})
    return metrics.regression_metrics(pred.iloc[:, 0], target.iloc[:, 0])


def model_example(data: Any) -> Any:
    """A few model inputs (5 rows) from the test segment's first days: the logged model's input example."""
    import pandas as pd

    from qtrack.data.qlib_dataset import feature_rows

    first, last = data.segments.test  # a few days, not the whole segment, to take 5 rows from
    return feature_rows(data.dataset, slice(first, min(last, first + pd.Timedelta(days=10))), 5)
