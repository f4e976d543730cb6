"""The benchmark stage: every model x seed on one dataset, ranked by mean +- std, tracked in MLflow.

One parent run holds the ranking (JSON, Markdown, PNG), `best_<metric>` and the winner's name; every
model x seed is a child run with everything a train run logs. A model that fails is reported as failed
and the others go on. Each job's config is derived from the one composed config; `model_overrides` may
change only `model.*`, so every job logs the data it really trains on.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from qtrack import config, paths
from qtrack.config.schema import RollingSchema, Settings
from qtrack.console import Observer, Steps, err, out
from qtrack.data.prepare import prepare
from qtrack.errors import QtrackError
from qtrack.evaluation.ranking import (
    RANKABLE,
    TABLE,
    TEST_SEGMENT,
    WALK_FORWARD,
    BenchmarkResults,
    Job,
    numeric_metrics,
    ranking,
    ranking_chart,
    ranking_markdown,
    results_payload,
)
from qtrack.stages.context import StageContext
from qtrack.stages.runner import JobOutcome, Stage, open_run, run_jobs, run_model, run_stage
from qtrack.stages.walk_forward import base_config, plan_windows, rolling_record
from qtrack.tracking import names
from qtrack.tracking import params as tracking
from qtrack.tracking.names import higher_is_better

# The walk-forward record (stages.walk_forward) carries Qlib's signal and backtest metrics, not the regression ones.
ROLLING_RANKABLE = tuple(TABLE)
BENCHMARK_KEYS = ("models", "seeds", "metric", "model_overrides", "output_dir", "rolling")
SWITCHES = {"rolling": "rolling.enabled"}  # `rolling=true`, as users type it; the CLI and the Python API expand it


@dataclass(frozen=True)
class EnclosingRun:
    """An MLflow run the caller has open (the playbook's `with mlflow.start_run():`): the benchmark's
    parent run nests under it when both are in the same store."""

    tracking_uri: str
    experiment_name: str
    run_id: str


def run_benchmark(overrides: list[str], quiet: bool = False,
                  enclosing: EnclosingRun | None = None) -> tuple[BenchmarkResults, Path]:
    stage = Stage(config="benchmark", check=benchmark_settings, summary=_print_ranking,
                  work=lambda cfg, ctx, observer: _benchmark(cfg, ctx, observer, enclosing))
    return run_stage(stage, overrides, quiet)


def _benchmark(cfg: Settings, ctx: StageContext, observer: Observer,
               enclosing: EnclosingRun | None) -> tuple[BenchmarkResults, Path]:
    models, seeds, metric, per_model = ctx.checked  # benchmark_settings(cfg), checked before any work
    jobs = [Job(model=m, seed=s) for m in models for s in seeds]
    child_cfgs = _derive_children(cfg, jobs, per_model)
    walk = _Walk.plan(cfg)
    if walk is not None:
        child_cfgs = {index: walk.base(child) for index, child in child_cfgs.items()}
    data = prepare(child_cfgs[min(child_cfgs)], observer)
    results = BenchmarkResults(metric=metric, jobs=jobs, experiment=cfg.mlflow.experiment_name,
                               scope=TEST_SEGMENT if walk is None else WALK_FORWARD)
    tags = {names.STAGE: names.BENCHMARK, "qtrack.benchmark.metric": metric, names.BENCHMARK_SCOPE: results.scope,
            names.FEATURE_CACHE: data.cache_status}
    run_name = f"benchmark-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    with open_run(cfg, run_name, data.source.fingerprint, tags, parent_run_id=_nest_under(enclosing, cfg)) as parent:
        results.parent_run_id = parent.run_id
        _log_settings(parent, cfg, models, seeds)
        _run_jobs(jobs, child_cfgs, data, parent.run_id, metric, walk)
        table = _log_parent(parent.client, parent.run_id, results, ctx.run_dir, data)
    _publish(results, table, Path(cfg.output_dir), run_name)
    return results, ctx.run_dir


@dataclass(frozen=True)
class _Walk:
    """`rolling.enabled`: every job is ranked on its walk-forward record (stages.walk_forward), not one split."""

    windows: list
    settings: RollingSchema

    @classmethod
    def plan(cls, cfg: Settings) -> _Walk | None:
        if not cfg.rolling.enabled:
            return None
        return cls(plan_windows(cfg), cfg.rolling)

    def base(self, cfg: Settings) -> Settings:
        return base_config(cfg, self.windows)

    def record(self, cfg: Settings, data: Any, observer: Observer, *, run_name: str, tags: dict[str, str],
               parent_run_id: str, on_start: Any) -> Any:
        run, _ = rolling_record(cfg, self.windows, data, observer, settings=self.settings, run_name=run_name,
                                parent_run_id=parent_run_id, extra_tags=tags, on_start=on_start)
        return run


def _nest_under(enclosing: EnclosingRun | None, cfg: Settings) -> str | None:
    if enclosing is None:
        return None
    if enclosing.tracking_uri != cfg.mlflow.tracking_uri:
        err.print(f"[yellow]note:[/] the open MLflow run {enclosing.run_id} is in another store; the benchmark "
                  "is not nested under it")
        return None
    return enclosing.run_id


def _publish(results: BenchmarkResults, table: Any, output_dir: Path, run_name: str) -> None:
    """The results JSON and ranking chart under `output_dir` (results/benchmarks/), which the dashboard
    reads when MLflow can't be reached; each file appears whole."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{results.experiment}_{run_name}")
    with paths.atomic_file(output_dir / f"{stem}.json") as json_path:
        json_path.write_text(results_payload(results, table))
    with paths.atomic_file(output_dir / f"{stem}.png") as chart_path:
        ranking_chart(table, results.metric, chart_path)


def benchmark_settings(cfg: Settings) -> tuple[list[str], list[int], str, dict[str, list[str]]]:
    """The models, seeds, ranking metric and per-model overrides, checked before any work."""
    models = _models(cfg.models)
    seeds = _seeds(cfg.seeds)
    if cfg.metric not in RANKABLE:
        raise QtrackError(f"invalid metric '{cfg.metric}': choose one of {', '.join(RANKABLE)}")
    if cfg.rolling.enabled and cfg.metric not in ROLLING_RANKABLE:
        raise QtrackError(f"metric={cfg.metric} is not on the walk-forward record that rolling=true ranks by: "
                          f"choose one of {', '.join(ROLLING_RANKABLE)}")
    valid = config.config_groups()["model"]
    overrides = {m: [str(o) for o in v] for m, v in config.to_container(cfg.model_overrides).items()}
    unused = sorted(set(overrides) - set(valid))
    if unused:
        raise QtrackError(f"model_overrides: unknown model {unused[0]}; choose from {', '.join(valid)}")
    idle = sorted(model for model, items in overrides.items() if items and model not in models)
    if idle:
        raise QtrackError(f"model_overrides.{idle[0]} is given, but {idle[0]} is not in models={models}: add it "
                          "or drop the overrides")
    for model, items in overrides.items():
        for key in config.parse_overrides(items):
            if not key.startswith("model."):
                raise QtrackError(f"model_overrides.{model}: '{key}' can't be changed per model: only model.* may "
                                  "(every model shares one dataset)")
    return models, seeds, str(cfg.metric), overrides


def _models(value: Any) -> list[str]:
    valid = config.config_groups()["model"]
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise QtrackError(f"models must be a list such as models=[{value}], got {value!r}")
    models = [str(model) for model in value]
    unknown = [m for m in models if m not in valid]
    if not models or unknown:
        raise QtrackError(f"models: unknown {unknown or 'none given'}; choose from {', '.join(valid)}")
    _no_repeats("models", models)
    return models


def _seeds(value: Any) -> list[int]:
    """A count (seeds 0..n-1) or a list of distinct whole seeds of 0 or more."""
    given = [value] if isinstance(value, (int, float, str, bool)) or value is None else list(value)
    if any(isinstance(seed, bool) or not isinstance(seed, int) for seed in given):
        raise QtrackError(f"seeds: give a count such as seeds=3 or a list of whole numbers such as seeds=[0,7], "
                          f"got {value!r}")
    seeds = list(range(value)) if isinstance(value, int) else given
    if not seeds or any(seed < 0 for seed in seeds):
        raise QtrackError("seeds: give a positive count or a list of seeds of 0 or more")
    _no_repeats("seeds", seeds)
    return seeds


def _no_repeats(what: str, items: list) -> None:
    """A repeated model or seed would run twice and report a spread of 0 as if it were measured."""
    repeated = sorted({str(item) for item in items if items.count(item) > 1})
    if repeated:
        raise QtrackError(f"{what} lists {', '.join(repeated)} more than once: each run would be counted twice "
                          "and its spread would read 0")


def _derive_children(cfg: Settings, jobs: list[Job], per_model: dict[str, list[str]]) -> dict[int, Settings]:
    """Each job's train config, derived from the benchmark's; a job whose model overrides are invalid
    fails now, the others go on."""
    cfgs = {}
    for index, job in enumerate(jobs):
        try:
            cfgs[index] = config.variant(cfg, model=job.model, values={"seed": job.seed}, drop=BENCHMARK_KEYS,
                                         overrides=per_model.get(job.model, []), allowed=("model.", "seed"))
        except QtrackError as exc:
            job.status, job.error = "FAILED", str(exc)
    if not cfgs:
        raise QtrackError(f"no model could be configured: {jobs[0].error}")
    return cfgs


def _log_settings(parent: Any, cfg: Settings, models: list[str], seeds: list[int]) -> None:
    params = tracking.flatten({k: v for k, v in config.to_container(cfg).items() if k != "model"})
    params.update({"models": json.dumps(models), "seeds": json.dumps(seeds)})
    tracking.log_params(parent.client, parent.run_id, params)


def _run_jobs(jobs: list[Job], cfgs: dict[int, Any], data: Any, parent: str, metric: str, walk: _Walk | None) -> None:
    def run_one(index: int, job: Job) -> Any:
        if index not in cfgs:
            return None  # its config was refused; the job already says why
        job.run_name = f"{job.model}-job{index}"
        evaluate = run_model if walk is None else walk.record
        return evaluate(cfgs[index], data, Steps(quiet=True), run_name=job.run_name, parent_run_id=parent,
                        tags={"qtrack.benchmark.job": str(index)},
                        on_start=lambda run_id: setattr(job, "run_id", run_id))

    def settle(index: int, job: Job, outcome: JobOutcome) -> str:
        if index in cfgs:
            _settle(job, outcome)
        return _job_line(job, metric)

    run_jobs(jobs, run_one, settle)


def _settle(job: Job, outcome: JobOutcome) -> None:
    job.seconds = outcome.seconds
    if outcome.error:
        job.status, job.error = "FAILED", outcome.error
        return
    result = outcome.result
    job.status, job.run_id, job.metrics = "FINISHED", result.run_id, numeric_metrics(result.metrics)
    job.constant = result.constant_predictions


def _job_line(job: Job, metric: str) -> str:
    from rich.markup import escape

    if job.status == "FAILED":
        return f"{job.model} seed {job.seed}: [red]failed[/]: {escape(job.error or '')}"
    return f"{job.model} seed {job.seed}: {metric} {job.metrics.get(metric, float('nan')):.4f} ({job.seconds:.1f}s)"


def _log_parent(client: Any, parent: str, results: BenchmarkResults, run_dir: Path, data: Any) -> Any:
    """Log the ranking on the parent run; return it (the ranking table)."""
    finished = [job for job in results.jobs if job.status == "FINISHED"]
    if not finished:
        first = next(job for job in results.jobs if job.error)
        raise QtrackError(f"every model failed; first error: {first.error}")
    table = ranking(results)
    best_model = table.index[0]
    metric = results.metric
    (run_dir / "ranking.json").write_text(results_payload(results, table))
    (run_dir / "ranking.md").write_text(ranking_markdown(table, metric, results.scope))
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "ranking.png"
        ranking_chart(table, metric, chart)
        client.log_artifact(parent, str(chart))
    client.log_artifact(parent, str(run_dir / "ranking.json"))
    client.log_artifact(parent, str(run_dir / "ranking.md"))
    best = {f"best_{name.replace(' ', '_')}": table.loc[best_model, f"avg_{name}"]
            for name in (metric, "IC", "Rank IC") if f"avg_{name}" in table.columns}
    tracking.log_metrics(client, parent, {**best, "failed_runs": float(len(results.jobs) - len(finished)),
                                          "feature_builds": float(data.cache.stats.builds)})
    client.set_tag(parent, "qtrack.best_model", best_model)
    client.set_tag(parent, "qtrack.benchmark.direction", "higher" if higher_is_better(metric) else "lower")
    return table


def _print_ranking(outcome: tuple[BenchmarkResults, Path], ctx: StageContext) -> None:
    results, _ = outcome
    out.print(ranking_markdown(ranking(results), results.metric, results.scope), soft_wrap=True, markup=False)
    err.print(f"[dim]parent run {results.parent_run_id}; results in {ctx.run_dir}[/]")
