"""The one core every stage calls: fit and evaluate one model configuration inside one MLflow run,
on a dataset that was built once beforehand (data.prepare)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qtrack import config
from qtrack.console import Steps
from qtrack.data.prepare import PreparedData
from qtrack.evaluation import records
from qtrack.models import specs
from qtrack.runtime import log_uncommitted_code
from qtrack.tracking import inputs, names
from qtrack.tracking import params as tracking
from qtrack.tracking.runs import run_context, run_tags

SUMMARY_METRICS = (
    *names.SIGNAL_METRICS,
    f"{names.EXCESS_WITH_COST}.annualized_return",
    f"{names.EXCESS_WITH_COST}.information_ratio",
    f"{names.EXCESS_WITH_COST}.max_drawdown",
    *names.REGRESSION_METRICS,
)


def metric_label(name: str) -> str:
    """How a summary table names a metric: Qlib's `1day.excess_return_with_cost.x` as `excess, with cost: x`."""
    return name.replace(f"{names.EXCESS_WITH_COST}.", "excess, with cost: ")


def metric_rows(metrics: dict[str, float]) -> list[tuple[str, str]]:
    """The summary table's rows for the SUMMARY_METRICS among `metrics`, in that order."""
    return [(metric_label(name), f"{metrics[name]:.4f}") for name in SUMMARY_METRICS if name in metrics]


@dataclass
class RunResult:
    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    tracking_uri: str
    metrics: dict[str, float]
    seconds: dict[str, float]
    constant_predictions: bool = False  # the model found nothing to learn: Rank IC is undefined
    predictions: Any = field(default=None, repr=False)  # the test segment's scores (pred.pkl), kept in memory


class Pruning(Protocol):
    """What an optimiser hands the core to stop a poor trial while the model is still boosting."""

    stopped: tuple[type[BaseException], ...]  # exceptions that mean "stopped on purpose"

    def fit_kwargs(self, spec: specs.ModelSpec) -> dict: ...

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
    from qtrack.tracking.recorder import recorder_for

    spec = specs.model_spec(config.to_container(cfg.model), int(cfg.seed))
    _seed_everything(int(cfg.seed))
    tags = run_tags(data.source.fingerprint, {names.FEATURE_CACHE: data.cache_status,
                                              names.DATA_END: data.data_end, **(extra_tags or {})})
    uri = cfg.mlflow.tracking_uri
    with run_context(uri, cfg.mlflow.experiment_name, run_name, tags, parent_run_id=parent_run_id,
                     stopped=pruning.stopped if pruning else ()) as active:
        if on_start is not None:
            on_start(active.run_id)
        recorder = recorder_for(active, uri)
        extra = _fit_and_log(cfg, data, spec, recorder, steps, pruning)
    constant = bool(extra.pop("constant_predictions", False))
    if constant:
        steps.note(f"{run_name}: the model predicts a constant: it found nothing to learn, and Rank IC is undefined")
    logged = active.client.ledger.metrics(active.run_id)
    result = RunResult(
        run_id=active.run_id,
        run_name=run_name,
        experiment_id=active.experiment_id,
        experiment_name=cfg.mlflow.experiment_name,
        tracking_uri=uri,
        metrics={**logged, **extra},
        seconds=dict(steps.seconds),
        constant_predictions=constant,
        predictions=recorder.saved("pred.pkl"),
    )
    _write_summary(result, active.client, output_dir)
    return result


def _fit_and_log(
    cfg: Any, data: PreparedData, spec: specs.ModelSpec, recorder: Any, steps: Steps, pruning: Pruning | None
) -> dict:
    client, run_id = recorder.client, recorder.id
    params = tracking.flatten(config.to_container(cfg))
    params.update({f"segments.{name}": ",".join(span) for name, span in data.segments.as_dict().items()})
    truncated = tracking.log_params(client, run_id, params)
    if truncated:
        client.set_tag(run_id, names.TRUNCATED_PARAMS, ",".join(truncated))
    client.log_text(run_id, config.to_yaml(cfg), "config.yaml")
    inputs.log_segment_inputs(client, run_id, cfg, data)
    log_uncommitted_code(client, run_id)

    with steps.step("fit", f"fitting {spec.name}"):
        model = _fit(spec, data, pruning, [tracking.EpochLogger(client, run_id), _epoch_progress(steps)])
        tracking.log_curves(client, run_id, specs.training_curves(spec, model))
        _log_deep_fit(client, run_id, spec, model)
    with steps.step("validation", "validation metrics"):
        tracking.log_metrics(client, run_id, records.segment_metrics(data, model, "valid"))
    with steps.step("records", "predicting, IC analysis and backtest"):
        records.run_records(cfg, data, model, recorder)
    with steps.step("logging", "logging metrics, plots and model"):
        extra = records.log_extras(cfg, data, spec, model, recorder)
    tracking.log_metrics(client, run_id, {f"time.{k}_seconds": v for k, v in steps.seconds.items()})
    return extra


def fit_and_score(cfg: Any, data: PreparedData, steps: Steps, pruning: Pruning | None = None) -> dict[str, float]:
    """Fit, then the validation and test metrics (`valid.*`, `test.*`), tracking nothing."""
    spec = specs.model_spec(config.to_container(cfg.model), int(cfg.seed))
    _seed_everything(int(cfg.seed))
    with steps.step("fit", f"fitting {spec.name}"):
        model = _fit(spec, data, pruning)
    with steps.step("validation", "validation and test metrics"):
        return {**records.segment_metrics(data, model, "valid"), **records.segment_metrics(data, model, "test")}


def _fit(
    spec: specs.ModelSpec, data: PreparedData, pruning: Pruning | None, epoch_callbacks: list | None = None
) -> Any:
    if spec.flavor == "pytorch":
        _check_network_inputs(spec, data)
    model = specs.build_model(spec)
    kwargs = {**spec.fit_kwargs, **(pruning.fit_kwargs(spec) if pruning else {})}
    if data.binned and getattr(model, "takes_binned_cache", False):
        kwargs["binned_cache"] = data.binned
    if spec.flavor == "pytorch":  # each epoch is logged before the pruner may stop the fit
        kwargs["epoch_callbacks"] = [*(epoch_callbacks or []), *kwargs.get("epoch_callbacks", [])]
    model.fit(data.dataset, **kwargs)
    if pruning:
        pruning.after_fit()
    return model


def _check_network_inputs(spec: specs.ModelSpec, data: PreparedData) -> None:
    from qtrack.data.qlib_dataset import frames, is_time_series
    from qtrack.errors import QtrackError
    from qtrack.models.deep import ic_loss_problem, input_problem

    columns = data.dataset.handler.get_cols("feature")
    time_series_data = is_time_series(data.dataset)
    problem = input_problem(spec.name, spec.class_name, spec.init_kwargs, len(columns), time_series_data)
    if problem is None and spec.class_name == "DNNModelPytorch" and "valid" in data.dataset.segments:
        per_day = frames(data.dataset, "valid", col_set="label").groupby(level="datetime").size()
        problem = ic_loss_problem(spec.name, int(per_day.max()) if len(per_day) else 0)
    if problem:
        raise QtrackError(problem)


def _epoch_progress(steps: Steps) -> Callable[[int, dict[str, float]], None]:
    def show(epoch: int, metrics: dict[str, float]) -> None:
        steps.progress(f"epoch {epoch}, " + ", ".join(f"{name} {value:.5f}" for name, value in metrics.items()))

    return show


def _log_deep_fit(client: Any, run_id: str, spec: specs.ModelSpec, model: Any) -> None:
    """A PyTorch model's best epoch (whose weights predict), its weights, the device and the GPU's name."""
    if spec.flavor != "pytorch":
        return
    from qtrack.models import torch_runtime

    for name, value in torch_runtime.device_tags(model).items():
        client.set_tag(run_id, name, value)
    if model.best_epoch is not None:
        tracking.log_metrics(client, run_id, {"best_epoch": model.best_epoch})
    records.log_bytes(client, run_id, torch_runtime.weights_bytes(model.network), "best_epoch.pt")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


def summary(result: RunResult) -> dict:
    return {
        "run_id": result.run_id,
        "run_name": result.run_name,
        "experiment_id": result.experiment_id,
        "experiment_name": result.experiment_name,
        "metrics": {k: result.metrics[k] for k in SUMMARY_METRICS if k in result.metrics},
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        **({"note": "the model predicts a constant; Rank IC is undefined"} if result.constant_predictions else {}),
    }


def _write_summary(result: RunResult, client: Any, output_dir: Path | None) -> None:
    text = json.dumps(summary(result), indent=2, sort_keys=True)
    client.log_text(result.run_id, text, "summary.json")
    if output_dir is not None:
        (output_dir / "summary.json").write_text(text)
