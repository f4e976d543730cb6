"""The one core every stage calls: fit and evaluate one model configuration inside one MLflow run,
on a dataset that was built once beforehand."""

from __future__ import annotations

import json
import logging
import random
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from qtrack import config, metrics, models, plots, redact, tracking
from qtrack.console import Steps
from qtrack.dataset import DataSource
from qtrack.runtime import log_uncommitted_code
from qtrack.segments import Segments

log = logging.getLogger("qtrack")
# Qlib's data provider and caches are not thread-safe; the backtest reads prices through them.
_QLIB_DATA_LOCK = threading.Lock()

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
    benchmark: Any  # the benchmark's daily returns over the test segment (train.benchmark_returns)
    cache_status: str = "off"  # feature cache: hit, miss or off
    cache: Any = None  # the FeatureCache, whose counters prove the dataset was built once
    binned: Any = None  # the BinnedCache of LightGBM's constructed sets (None when the cache is off)
    pipeline: bytes = b""  # the dataset without data, with fitted processors (dataset.pipeline_bytes)
    data_end: str = ""  # the data's last day: a retrain is due once the data goes beyond it


@dataclass
class RunResult:
    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    tracking_uri: str
    metrics: dict[str, float]
    seconds: dict[str, float]


class Pruning(Protocol):
    """What an optimiser hands the core to stop a poor trial while the model is still boosting."""

    stopped: tuple[type[BaseException], ...]  # exceptions that mean "stopped on purpose"

    def fit_kwargs(self, spec: models.ModelSpec) -> dict: ...

    def after_fit(self) -> None: ...


def fit_and_evaluate(
    cfg: Any,
    data: PreparedData,
    *,
    run_name: str,
    steps: Steps,
    output_dir: Path | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
    pruning: Pruning | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunResult:
    """One MLflow run: fit, validation metrics, Qlib's records on the test segment, model and extras.

    The run is opened with MlflowClient rather than Qlib's global recorder `R`, so that several runs
    can proceed at once in threads (optimize --n-jobs)."""
    spec = models.model_spec(config.to_container(cfg.model), int(cfg.seed))
    _seed_everything(int(cfg.seed))
    tags = tracking.run_tags(data.source.fingerprint, {"qtrack.feature_cache": data.cache_status,
                                                       "qtrack.data_end": data.data_end, **(extra_tags or {})})
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    client, recorder = _open_run(cfg, run_name, tags)
    run_id, status = recorder.id, "FAILED"
    try:
        if on_start is not None:
            on_start(run_id)
        extra = _fit_and_log(cfg, data, spec, recorder, steps, pruning)
        status = "FINISHED"
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, *(pruning.stopped if pruning else ()))) else "FAILED"
        if status == "FAILED":
            client.set_tag(run_id, "qtrack.error", one_line_error(exc))
        raise
    finally:
        client.set_terminated(run_id, status)
    if extra.pop("constant_predictions", False):
        steps.note("the model predicts a constant: it found nothing to learn, and Rank IC is undefined")
    logged = client.get_run(run_id).data.metrics
    result = RunResult(
        run_id=run_id,
        run_name=run_name,
        experiment_id=recorder.experiment_id,
        experiment_name=cfg.mlflow.experiment_name,
        tracking_uri=cfg.mlflow.tracking_uri,
        metrics={**logged, **extra},
        seconds=dict(steps.seconds),
    )
    _write_summary(result, client, output_dir)
    return result


def one_line_error(exc: BaseException) -> str:
    return redact.text(f"{type(exc).__name__}: {' '.join(str(exc).split())}")[:1000]


def _open_run(cfg: Any, run_name: str, tags: dict[str, str]) -> tuple[Any, Any]:
    from mlflow.tracking import MlflowClient

    from qtrack.recorder import CachingRecorder

    uri = cfg.mlflow.tracking_uri
    client = MlflowClient(uri)
    experiment_id = experiment_id_for(client, cfg.mlflow.experiment_name)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    return client, CachingRecorder(experiment_id, uri, mlflow_run=run)


def experiment_id_for(client: Any, name: str) -> str:
    """The experiment's id, created if needed (safe when another process creates it first)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _fit_and_log(
    cfg: Any, data: PreparedData, spec: models.ModelSpec, recorder: Any, steps: Steps, pruning: Pruning | None
) -> dict:
    client, run_id = recorder.client, recorder.id
    params = tracking.flatten(config.to_container(cfg))
    params.update({f"segments.{name}": ",".join(span) for name, span in data.segments.as_dict().items()})
    truncated = tracking.log_params(client, run_id, params)
    if truncated:
        client.set_tag(run_id, "qtrack.truncated_params", ",".join(truncated))
    client.log_text(run_id, config.to_yaml(cfg), "config.yaml")
    log_uncommitted_code(client, run_id)

    with steps.step("fit", f"fitting {spec.name}"):
        model = _fit(spec, data, pruning)
        tracking.log_curves(client, run_id, models.training_curves(spec, model))
    with steps.step("validation", "validation metrics"):
        tracking.log_metrics(client, run_id, _segment_metrics(data, model, "valid"))
    with steps.step("records", "predicting, IC analysis and backtest"), _QLIB_DATA_LOCK:
        _run_records(cfg, data, model, recorder)
    with steps.step("logging", "logging metrics, plots and model"):
        extra = _log_extras(cfg, data, spec, model, recorder)
    tracking.log_metrics(client, run_id, {f"time.{k}_seconds": v for k, v in steps.seconds.items()})
    return extra


def fit_and_score(cfg: Any, data: PreparedData, steps: Steps, pruning: Pruning | None = None) -> dict[str, float]:
    """Fit, then the validation and test metrics (`valid.*`, `test.*`), tracking nothing."""
    spec = models.model_spec(config.to_container(cfg.model), int(cfg.seed))
    _seed_everything(int(cfg.seed))
    with steps.step("fit", f"fitting {spec.name}"):
        model = _fit(spec, data, pruning)
    with steps.step("validation", "validation and test metrics"):
        return {**_segment_metrics(data, model, "valid"), **_segment_metrics(data, model, "test")}


def _fit(spec: models.ModelSpec, data: PreparedData, pruning: Pruning | None) -> Any:
    model = models.build_model(spec)
    binned = {"binned_cache": data.binned} if data.binned and getattr(model, "takes_binned_cache", False) else {}
    model.fit(data.dataset, **spec.fit_kwargs, **(pruning.fit_kwargs(spec) if pruning else {}), **binned)
    if pruning:
        pruning.after_fit()
    return model


def _segment_metrics(data: PreparedData, model: Any, segment: str) -> dict[str, float]:
    """Signal and regression metrics of one segment, named `<segment>.<metric>`."""
    from qlib.data.dataset.handler import DataHandlerLP

    pred = model.predict(data.dataset, segment=segment)
    raw = data.dataset.prepare(segment, col_set="label", data_key=DataHandlerLP.DK_R).iloc[:, 0]
    learned = data.dataset.prepare(segment, col_set="label", data_key=DataHandlerLP.DK_L).iloc[:, 0]
    found = {**metrics.signal_metrics(pred, raw), **metrics.regression_metrics(pred, learned)}
    return {f"{segment}.{name}": value for name, value in found.items()}


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
    if data.pipeline:
        _log_bytes(client, run_id, data.pipeline, "dataset.pkl")
    extra: dict = metrics.regression_metrics(pred.iloc[:, 0], target.iloc[:, 0])
    tracking.log_metrics(client, run_id, extra)
    if pred.iloc[:, 0].nunique() <= 1:
        client.set_tag(run_id, "qtrack.constant_predictions", "true")
        extra["constant_predictions"] = True
    if cfg.mlflow.plots:
        _log_plots(recorder)
    if cfg.mlflow.log_model and spec.flavor:
        first, last = data.segments.test  # a few days, not the whole segment, to take 5 rows from
        days = slice(first, min(last, first + pd.Timedelta(days=10)))
        example = data.dataset.prepare(days, col_set="feature", data_key=DataHandlerLP.DK_I).head(5)
        logged = models.log_flavor_model(spec, model, example, recorder, cfg.mlflow.tracking_uri)
        client.set_tag(run_id, "qtrack.model_uri", logged.model_uri)
    return extra


def _log_bytes(client: Any, run_id: str, content: bytes, name: str) -> None:
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
