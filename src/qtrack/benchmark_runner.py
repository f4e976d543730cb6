"""Running a benchmark: one dataset, a parent run, one child run per model x seed."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from qtrack import config, tracking
from qtrack.benchmark import (
    BENCHMARK_KEYS,
    STAGE_TAG,
    BenchmarkResults,
    Job,
    benchmark_settings,
    elapsed_eta,
    higher_is_better,
    ranking,
    ranking_chart,
    ranking_markdown,
    results_payload,
    run_stamp,
)
from qtrack.console import Steps, err, out
from qtrack.core import experiment_id_for, fit_and_evaluate
from qtrack.dataset import dataset_config
from qtrack.errors import QtrackError
from qtrack.stage import stage


def run_benchmark(overrides: list[str], quiet: bool = False) -> tuple[BenchmarkResults, Path]:
    with stage("benchmark", overrides) as ctx:
        models, seeds, metric, per_model = benchmark_settings(ctx.cfg)
        jobs = [Job(model=m, seed=s) for m in models for s in seeds]
        child_cfgs = _compose_children(jobs, config.train_overrides(overrides, BENCHMARK_KEYS), per_model)
        steps = Steps(quiet=quiet)
        data = _prepare_once(child_cfgs, steps)
        results = BenchmarkResults(metric=metric, jobs=jobs, experiment=ctx.cfg.mlflow.experiment_name)
        client, parent = _open_parent(ctx.cfg, data, metric, models, seeds)
        results.parent_run_id = parent
        status = "FAILED"
        try:
            _run_jobs(jobs, child_cfgs, data, parent, metric)
            _log_parent(client, parent, results, ctx.run_dir, data)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            client.set_terminated(parent, status)
    _print_ranking(results, ctx.run_dir)
    return results, ctx.run_dir


def _compose_children(jobs: list[Job], base: list[str], per_model: dict[str, list[str]]) -> dict[int, Any]:
    """Each job's train config; a job whose overrides do not compose fails now, the others go on."""
    cfgs = {}
    for index, job in enumerate(jobs):
        try:
            cfgs[index] = config.compose("train", [*base, f"model={job.model}", f"seed={job.seed}",
                                                   *per_model.get(job.model, [])]).cfg
        except QtrackError as exc:
            job.status, job.error = "FAILED", str(exc)
    if not cfgs:
        raise QtrackError(f"no model could be configured: {jobs[0].error}")
    return cfgs


def _prepare_once(cfgs: dict[int, Any], steps: Steps):
    from qtrack.train import prepare

    first = cfgs[min(cfgs)]
    data = prepare(first, steps)
    reference = dataset_config(first, data.segments)
    for cfg in cfgs.values():
        if dataset_config(cfg, data.segments) != reference:
            raise QtrackError("model_overrides must not change the dataset: every model shares one")
    return data


def _open_parent(cfg: Any, data: Any, metric: str, models: list[str], seeds: list[int]) -> tuple[Any, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.mlflow.tracking_uri)
    experiment_id = experiment_id_for(client, cfg.mlflow.experiment_name)
    tags = tracking.run_tags(data.source.fingerprint, {
        STAGE_TAG: "benchmark",
        "qtrack.benchmark.metric": metric,
        "qtrack.feature_cache": data.cache_status,
    })
    parent = client.create_run(experiment_id, run_name=f"benchmark-{run_stamp()}", tags=tags).info.run_id
    params = tracking.flatten({k: v for k, v in config.to_container(cfg).items() if k != "model"})
    params.update({"models": json.dumps(models), "seeds": json.dumps(seeds)})
    tracking.log_params(client, parent, params)
    return client, parent


def _run_jobs(jobs: list[Job], cfgs: dict[int, Any], data: Any, parent: str, metric: str) -> None:
    from rich.markup import escape

    started, total = time.perf_counter(), len(jobs)
    for index, job in enumerate(jobs):
        if index in cfgs:
            _run_job(index, job, cfgs[index], data, parent)
        done = index + 1
        outcome = (f"[red]failed[/]: {escape(job.error or '')}" if job.status == "FAILED"
                   else f"{metric} {job.metrics.get(metric, float('nan')):.4f} ({job.seconds:.1f}s)")
        eta = elapsed_eta(started, done, total)
        err.print(f"\\[{done}/{total}] {job.model} seed {job.seed}: {outcome}  [dim]ETA {eta}[/]")


def _run_job(index: int, job: Job, cfg: Any, data: Any, parent: str) -> None:
    start = time.perf_counter()
    job.run_name = f"{job.model}-job{index}"
    try:
        result = fit_and_evaluate(cfg, data, run_name=job.run_name, steps=Steps(quiet=True),
                                  parent_run_id=parent, extra_tags={"qtrack.benchmark.job": str(index)},
                                  on_start=lambda run_id: setattr(job, "run_id", run_id))
    except Exception as exc:  # noqa: BLE001 - one model failing must not lose the others
        job.status, job.error = "FAILED", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    else:
        job.status, job.run_id, job.metrics = "FINISHED", result.run_id, _numeric(result.metrics)
    job.seconds = time.perf_counter() - start


def _numeric(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not k.startswith("time.")}


def _log_parent(client: Any, parent: str, results: BenchmarkResults, run_dir: Path, data: Any) -> None:
    finished = [job for job in results.jobs if job.status == "FINISHED"]
    if not finished:
        first = next(job for job in results.jobs if job.error)
        raise QtrackError(f"every model failed; first error: {first.error}")
    table = ranking(results)
    best_model = table.index[0]
    metric = results.metric
    markdown = ranking_markdown(table, metric)
    (run_dir / "ranking.json").write_text(results_payload(results, table))
    (run_dir / "ranking.md").write_text(markdown)
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "ranking.png"
        ranking_chart(table, metric, chart)
        client.log_artifact(parent, str(chart))
    client.log_artifact(parent, str(run_dir / "ranking.json"))
    client.log_artifact(parent, str(run_dir / "ranking.md"))
    best = {f"best_{name.replace(' ', '_')}": table.loc[best_model, f"{name} mean"]
            for name in (metric, "IC", "Rank IC") if f"{name} mean" in table.columns}
    tracking.log_metrics(client, parent, {**best, "failed_runs": float(len(results.jobs) - len(finished)),
                                          "feature_builds": float(data.cache.stats.builds)})
    client.set_tag(parent, "qtrack.best_model", best_model)
    client.set_tag(parent, "qtrack.benchmark.direction", "higher" if higher_is_better(metric) else "lower")


def _print_ranking(results: BenchmarkResults, run_dir: Path) -> None:
    out.print(ranking_markdown(ranking(results), results.metric), soft_wrap=True, markup=False)
    err.print(f"[dim]parent run {results.parent_run_id}; results in {run_dir}[/]")


def report(experiment: str, metric: str | None, tracking_uri: str) -> BenchmarkResults:
    """The latest benchmark of `experiment`, rebuilt from its child runs in MLflow (nothing trains)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise QtrackError(f"experiment '{experiment}' not found at {tracking_uri}")
    parents = client.search_runs([found.experiment_id], f"tags.`{STAGE_TAG}` = 'benchmark'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise QtrackError(f"experiment '{experiment}' holds no benchmark run")
    parent = parents[0]
    children = client.search_runs([found.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  order_by=["attributes.start_time ASC"])
    jobs = [
        Job(model=run.data.params.get("model.name", "?"), seed=int(run.data.params.get("seed", 0)),
            status="FINISHED" if run.info.status == "FINISHED" else "FAILED", run_id=run.info.run_id,
            run_name=run.info.run_name, metrics=_numeric(run.data.metrics),
            error=None if run.info.status == "FINISHED" else f"run {run.info.status.lower()}")
        for run in children
    ]
    return BenchmarkResults(metric=metric or parent.data.tags.get("qtrack.benchmark.metric", "Rank IC"),
                            jobs=jobs, experiment=experiment, parent_run_id=parent.info.run_id)
