"""One model configuration evaluated, tracking nothing: the fit, the validation metrics, and Qlib's records on the
test segment written to an in-memory recorder. `stages.record` writes an Evaluation to a run, and
`stages.runner` opens the run around both; an untracked sweep uses the Evaluation alone.

The observer sees the steps and each epoch as it ends (the runner's observer also logs the epoch to the open
run, so a network's curves grow in MLflow during the fit); the times are the Evaluation's own.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from qtrack import config
from qtrack.config.schema import Settings
from qtrack.console import Observer, timed
from qtrack.data.prepare import PreparedData
from qtrack.evaluation import records
from qtrack.evaluation.memory_recorder import MemoryRecorder
from qtrack.models import specs


class Pruning(Protocol):
    """What an optimiser hands the evaluation to stop a poor trial while the model is still boosting."""

    stopped: tuple[type[BaseException], ...]  # exceptions that mean "stopped on purpose"

    def fit_kwargs(self, spec: specs.ModelSpec) -> dict: ...

    def after_fit(self) -> None: ...


@dataclass
class Evaluation:
    """What one evaluation found. `recorder` holds Qlib's records (their objects and metrics); `metrics` are
    qtrack's own (`valid.*`, the test segment's regression metrics, or `test.*` without Qlib's records)."""

    cfg: Settings  # the config it ran with
    recorder: MemoryRecorder
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    spec: specs.ModelSpec | None = None  # None: given predictions (a file, a walk-forward's stitched record)
    model: Any = None
    curves: dict[str, list[float]] = field(default_factory=dict)  # per boosting round: `l2.valid` ...
    pipeline: bytes = b""  # the dataset without data, with fitted processors (data.dataset.pipeline_bytes)
    example: Any = None  # model inputs for the logged model's signature (when the model is logged)
    report: Any = None  # Qlib's report page's worker (evaluation.report_worker), started as the records began

    @property
    def predictions(self) -> Any:
        """The test segment's scores (pred.pkl), or None without Qlib's records."""
        return self.recorder.objects().get("pred.pkl")

    @functools.cached_property
    def constant_predictions(self) -> bool:
        """The model predicts one value everywhere: it found nothing to learn, and Rank IC is undefined."""
        pred = self.predictions
        return pred is not None and self.model is not None and pred.iloc[:, 0].nunique() <= 1

    def all_metrics(self) -> dict[str, float]:
        return {**self.recorder.metrics, **self.metrics}

    def test_metric(self, name: str) -> float | None:
        """A test-segment metric by Qlib's name (`IC`, `rmse`), from Qlib's records or from `test.<name>`."""
        found = self.all_metrics()
        return found.get(name, found.get(f"test.{name}"))


def evaluate(cfg: Settings, data: PreparedData, observer: Observer, *, pruning: Pruning | None = None,
             records_on_test: bool = True) -> Evaluation:
    """Fit `cfg.model` on `data`, then the validation metrics and (records_on_test) Qlib's records on the test
    segment; without them, the test segment's metrics as `test.*` (an untracked sweep)."""
    spec = specs.model_spec(config.to_container(cfg.model), int(cfg.seed))
    _seed_everything(int(cfg.seed))
    found = Evaluation(cfg=cfg, recorder=MemoryRecorder(), spec=spec, pipeline=data.pipeline)
    with timed(observer, found.seconds, "fit", f"fitting {spec.name}"):
        found.model = _fit(spec, data, pruning, observer)
        found.curves = specs.training_curves(spec, found.model)
    if not records_on_test:
        with timed(observer, found.seconds, "validation", "validation and test metrics"):
            for segment in ("valid", "test"):
                found.metrics.update(records.segment_metrics(data, found.model, segment))
        return found
    with timed(observer, found.seconds, "validation", "validation metrics"):
        found.metrics.update(records.segment_metrics(data, found.model, "valid"))
    found.report = _report_worker(cfg, start=data.cache_status == "hit")
    try:
        with timed(observer, found.seconds, "records", "predicting, IC analysis and backtest"):
            records.run_records(cfg, data, found.model, found.recorder)
            found.metrics.update(records.test_extras(data, found.model, found.recorder))
            if cfg.mlflow.log_model and spec.flavor:
                found.example = records.model_example(data)
    except BaseException:
        if found.report is not None:
            found.report.close()
        raise
    return found


def _report_worker(cfg: Settings, start: bool) -> Any:
    """The worker that draws Qlib's report page, when the run logs one (stages.record starts it if it has not
    started, and hands it the records). `start`: now, so that it imports while the records run. Only where the
    run's frames are mapped from the feature cache: those are clean pages the kernel can drop, and the run is
    below its peak (490 symbols: 1.0 GB against 1.1 GB). Frames built in this run are anonymous memory at its
    peak, so there the worker starts once they are released: early, it raised a cold run's peak from 1.55 to
    1.83 GB."""
    if not cfg.mlflow.qlib_report:
        return None
    from qtrack.evaluation.report_worker import ReportWorker

    worker = ReportWorker()
    if start:
        worker.start()
    return worker


def evaluate_predictions(cfg: Settings, data: Any, scores: Any, label: Any, observer: Observer,
                         description: str) -> Evaluation:
    """Qlib's IC analysis and backtest of given scores (by datetime and instrument) over data.segments' test span."""
    found = Evaluation(cfg=cfg, recorder=MemoryRecorder())
    with timed(observer, found.seconds, "records", description):
        records.analyse_predictions(cfg, data, found.recorder, scores, label)
    return found


def _fit(spec: specs.ModelSpec, data: PreparedData, pruning: Pruning | None, observer: Observer) -> Any:
    if spec.flavor == "pytorch":
        _check_network_inputs(spec, data)
    model = specs.build_model(spec)
    kwargs = {**spec.fit_kwargs, **(pruning.fit_kwargs(spec) if pruning else {})}
    if data.binned and getattr(model, "takes_binned_cache", False):
        kwargs["binned_cache"] = data.binned
    if spec.flavor == "pytorch":  # the observer sees each epoch before the pruner may stop the fit
        kwargs["epoch_callbacks"] = [observer.epoch, *kwargs.get("epoch_callbacks", [])]
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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
