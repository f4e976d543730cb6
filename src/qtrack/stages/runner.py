"""The one runner. A stage is a declaration (`Stage`: the config it composes and checks, its work, its summary), and
`run_stage` runs it in its run folder. The runner is also the only caller of the run context: it opens every run
a stage's work makes (parents and children), runs a model's evaluation and records it, records given predictions,
and runs a list of jobs where one failing does not stop the others. Every run ends FINISHED, FAILED or KILLED
(tracking.run_context)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from qtrack.config.schema import Settings
from qtrack.console import Observer, Steps, err
from qtrack.data.prepare import PreparedData
from qtrack.runtime import keep_long_lived, raise_if_interrupted
from qtrack.stages.context import StageContext
from qtrack.stages.context import stage as stage_context
from qtrack.stages.core import RunResult, summary
from qtrack.stages.evaluate import Pruning, evaluate, evaluate_predictions
from qtrack.stages.record import record, record_inputs, write_summary
from qtrack.tracking import names
from qtrack.tracking import params as tracking
from qtrack.tracking.run_context import run_context
from qtrack.tracking.runs import ActiveRun, run_tags

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Stage(Generic[Result]):
    """A stage as a declaration: `config` is conf/<config>.yaml; `check` refuses bad settings before any work;
    `work` does the stage's runs (through this module) and returns its result; `summary` shows it."""

    config: str
    work: Callable[[Settings, StageContext, Observer], Result]
    summary: Callable[[Result, StageContext], None]
    check: Callable[[Settings], Any] | None = None


def run_stage(stage: Stage[Result], overrides: list[str], quiet: bool = False) -> Result:
    """Compose and check the settings, open the run folder and its log, do the work, then show the summary."""
    with stage_context(stage.config, overrides, stage.check) as ctx:
        result = stage.work(ctx.cfg, ctx, Steps(quiet=quiet))
    stage.summary(result, ctx)
    return result


@contextmanager
def open_run(cfg: Settings, run_name: str, fingerprint: str, tags: dict[str, str], *, parent_run_id: str | None = None,
             stopped: tuple[type[BaseException], ...] = (),
             on_start: Callable[[str], None] | None = None) -> Iterator[ActiveRun]:
    """A run in `cfg.mlflow`'s store and experiment with qtrack's tags, nested under `parent_run_id` when given;
    `on_start` learns its id as soon as it exists."""
    with run_context(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name, run_name, run_tags(fingerprint, tags),
                     parent_run_id=parent_run_id, stopped=stopped) as run:
        keep_long_lived()  # the tracking store's modules and objects, and what the stage prepared for this run
        if on_start is not None:
            on_start(run.run_id)
        yield run


def data_tags(data: PreparedData) -> dict[str, str]:
    return {names.FEATURE_CACHE: data.cache_status, names.DATA_END: data.data_end}


def run_model(cfg: Settings, data: PreparedData, observer: Observer, *, run_name: str, tags: dict[str, str],
              parent_run_id: str | None = None, pruning: Pruning | None = None,
              on_start: Callable[[str], None] | None = None, output_dir: Path | None = None,
              with_data_times: bool = False, last_use_of_data: bool = False) -> RunResult:
    """One model configuration in one run: its inputs, the evaluation (each epoch logged as it ends), the
    record. `with_data_times`: the run prepared the data, so it logs that time too. `last_use_of_data`: nothing
    reads `data` after this run, so its frames are dropped before the logging step."""
    with open_run(cfg, run_name, data.source.fingerprint, {**data_tags(data), **tags}, parent_run_id=parent_run_id,
                  stopped=pruning.stopped if pruning else (), on_start=on_start) as run:
        record_inputs(cfg, data, run)
        evaluation = evaluate(cfg, data, _LoggingEpochs(observer, run), pruning=pruning)
        if last_use_of_data:
            data.release_frames()
        seconds = record(evaluation, run, observer, data.seconds if with_data_times else None)
    if evaluation.constant_predictions:
        observer.note(f"{run_name}: the model predicts a constant: it found nothing to learn, and Rank IC is undefined")
    result = RunResult(run_id=run.run_id, run_name=run_name, experiment_id=run.experiment_id,
                       experiment_name=run.experiment_name, tracking_uri=run.tracking_uri,
                       metrics=run.client.ledger.metrics(run.run_id), seconds=seconds,
                       constant_predictions=evaluation.constant_predictions, predictions=evaluation.predictions)
    write_summary(summary(result), run, output_dir)
    return result


def record_predictions(cfg: Settings, data: Any, run: ActiveRun, scores: Any, label: Any, observer: Observer,
                       description: str) -> dict[str, float]:
    """Qlib's IC analysis and backtest of `scores` recorded in the open `run`; the run's metrics after it."""
    record(evaluate_predictions(cfg, data, scores, label, observer, description), run, observer)
    return run.client.ledger.metrics(run.run_id)


def log_metrics(run: ActiveRun, metrics: dict[str, float], step: int = 0) -> None:
    tracking.log_metrics(run.client, run.run_id, metrics, step=step)


@dataclass
class JobOutcome:
    result: Any = None
    error: str = ""  # one line; empty when the job finished
    seconds: float = 0.0


def run_jobs(jobs: Sequence[Job], run_one: Callable[[int, Job], Any],
             settle: Callable[[int, Job, JobOutcome], str]) -> list[JobOutcome]:
    """Each job in turn, stopping only for an interrupt; a job that fails does not stop the next. `settle` takes
    each job's outcome and returns the line that reports it (shown with the time left)."""
    outcomes, started = [], time.perf_counter()
    for index, job in enumerate(jobs):
        raise_if_interrupted()
        outcome, start = JobOutcome(), time.perf_counter()
        try:
            outcome.result = run_one(index, job)
        except Exception as exc:  # noqa: BLE001 - one job failing must not lose the others
            outcome.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        outcome.seconds = time.perf_counter() - start
        outcomes.append(outcome)
        err.print(f"\\[{index + 1}/{len(jobs)}] {settle(index, job, outcome)}  "
                  f"[dim]ETA {_eta(started, index + 1, len(jobs))}[/]")
    return outcomes


def _eta(started: float, done: int, total: int) -> str:
    left = (time.perf_counter() - started) / max(done, 1) * (total - done)
    return f"{int(left // 60)}m{int(left % 60):02d}s"


class _LoggingEpochs:
    """The stage's observer, with each epoch's metrics also logged to the open run, at once: a network's
    curves grow in MLflow while it trains, and a pruned trial keeps the epochs it ran."""

    def __init__(self, shown: Observer, run: ActiveRun) -> None:
        self.shown, self.run = shown, run

    def step(self, name: str, description: str) -> AbstractContextManager[None]:
        return self.shown.step(name, description)

    def progress(self, message: str) -> None:
        self.shown.progress(message)

    def epoch(self, number: int, metrics: dict[str, float]) -> None:
        log_metrics(self.run, metrics, step=number)
        self.shown.epoch(number, metrics)

    def note(self, message: str) -> None:
        self.shown.note(message)
