"""The one core every stage calls: fit and evaluate one model configuration inside one MLflow run,
on a dataset that was built once beforehand."""

from __future__ import annotations

import json
import logging
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qtrack import config, metrics, models, plots, tracking
from qtrack.console import Steps
from qtrack.dataset import DataSource
from qtrack.segments import Segments

log = logging.getLogger("qtrack")

SUMMARY_METRICS = (
    "IC",
    "ICIR",
    "Rank IC",
    "Rank ICIR",
    "1day.excess_return_with_cost.annualized_return",
    "1day.excess_return_with_cost.information_ratio",
    "1day.excess_return_with_cost.max_drawdown",
    "rmse",
    "mae",
    "mape",
    "directional_accuracy",
)


@dataclass
class PreparedData:
    """A dataset built once and shared by every run of a stage."""

    source: DataSource
    segments: Segments
    dataset: Any  # qlib.data.dataset.DatasetH
    benchmark: Any  # an instrument code or a list of codes (equal-weighted universe)
    cache_status: str = "off"  # feature cache: hit, miss or off
    cache: Any = None  # the FeatureCache, whose counters prove the dataset was built once


@dataclass
class RunResult:
    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    tracking_uri: str
    metrics: dict[str, float]
    seconds: dict[str, float]


def fit_and_evaluate(
    cfg: Any,
    data: PreparedData,
    *,
    run_name: str,
    steps: Steps,
    output_dir: Path | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> RunResult:
    from qlib.workflow import R

    spec = models.model_spec(config.to_container(cfg.model), int(cfg.seed))
    _seed_everything(int(cfg.seed))
    tags = tracking.run_tags(data.source.fingerprint, {"qtrack.feature_cache": data.cache_status, **(extra_tags or {})})
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    with R.start(experiment_name=cfg.mlflow.experiment_name, recorder_name=run_name):
        recorder = R.get_recorder()
        client, run_id = recorder.client, recorder.id
        client.log_batch(run_id, tags=[_tag(k, v) for k, v in tags.items()], synchronous=True)
        params = tracking.flatten(config.to_container(cfg))
        params.update({f"segments.{name}": ",".join(span) for name, span in data.segments.as_dict().items()})
        truncated = tracking.log_params(client, run_id, params)
        if truncated:
            client.set_tag(run_id, "qtrack.truncated_params", ",".join(truncated))
        client.log_text(run_id, config.to_yaml(cfg), "config.yaml")

        with steps.step("fit", f"fitting {spec.name}"):
            model = models.build_model(spec)
            model.fit(data.dataset, **spec.fit_kwargs)
            tracking.log_curves(client, run_id, models.training_curves(spec, model))
        with steps.step("records", "predicting, IC analysis and backtest"):
            _run_records(cfg, data, model, recorder)
        with steps.step("logging", "logging metrics, plots and model"):
            extra = _log_extras(cfg, data, spec, model, recorder)
        tracking.log_metrics(client, run_id, {f"time.{k}_seconds": v for k, v in steps.seconds.items()})
        if extra.pop("constant_predictions", False):
            steps.note("the model predicts a constant: it found nothing to learn, and Rank IC is undefined")
    experiment_id = recorder.experiment_id
    logged = client.get_run(run_id).data.metrics
    result = RunResult(
        run_id=run_id,
        run_name=run_name,
        experiment_id=experiment_id,
        experiment_name=cfg.mlflow.experiment_name,
        tracking_uri=cfg.mlflow.tracking_uri,
        metrics={**logged, **extra},
        seconds=dict(steps.seconds),
    )
    _write_summary(result, client, output_dir)
    return result


def _tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, str(value)[:5000])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


def _run_records(cfg: Any, data: PreparedData, model: Any, recorder: Any) -> None:
    from qlib.workflow.record_temp import PortAnaRecord, SigAnaRecord, SignalRecord

    SignalRecord(model=model, dataset=data.dataset, recorder=recorder).generate()
    SigAnaRecord(recorder=recorder, ana_long_short=False, ann_scaler=252).generate()
    PortAnaRecord(recorder=recorder, config=backtest_config(cfg, data), risk_analysis_freq="day").generate()


def backtest_config(cfg: Any, data: PreparedData) -> dict:
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


def _log_extras(cfg: Any, data: PreparedData, spec: models.ModelSpec, model: Any, recorder: Any) -> dict:
    from qlib.data.dataset.handler import DataHandlerLP

    client, run_id = recorder.client, recorder.id
    pred = recorder.load_object("pred.pkl")
    target = data.dataset.prepare("test", col_set="label", data_key=DataHandlerLP.DK_L)
    recorder.save_objects(**{"target.pkl": target, "params.pkl": model})
    extra: dict = metrics.regression_metrics(pred.iloc[:, 0], target.iloc[:, 0])
    tracking.log_metrics(client, run_id, extra)
    if pred.iloc[:, 0].nunique() <= 1:
        client.set_tag(run_id, "qtrack.constant_predictions", "true")
        extra["constant_predictions"] = True
    if cfg.mlflow.plots:
        _log_plots(recorder)
    if cfg.mlflow.log_model and spec.flavor:
        example = data.dataset.prepare("test", col_set="feature", data_key=DataHandlerLP.DK_I).head(5)
        logged = models.log_flavor_model(spec, model, example)
        client.set_tag(run_id, "qtrack.model_uri", logged.model_uri)
    return extra


def _log_plots(recorder: Any) -> None:
    report = recorder.load_object("portfolio_analysis/report_normal_1day.pkl")
    ic = recorder.load_object("sig_analysis/ic.pkl")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.cumulative_return_plot(report, folder / "cumulative_return.png")
        plots.daily_ic_plot(ic, folder / "daily_ic.png")
        recorder.client.log_artifacts(recorder.id, str(folder), "plots")


def summary(result: RunResult) -> dict:
    return {
        "run_id": result.run_id,
        "run_name": result.run_name,
        "experiment_id": result.experiment_id,
        "experiment_name": result.experiment_name,
        "metrics": {k: result.metrics[k] for k in SUMMARY_METRICS if k in result.metrics},
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
    }


def _write_summary(result: RunResult, client: Any, output_dir: Path | None) -> None:
    text = json.dumps(summary(result), indent=2, sort_keys=True)
    client.log_text(result.run_id, text, "summary.json")
    if output_dir is not None:
        (output_dir / "summary.json").write_text(text)
