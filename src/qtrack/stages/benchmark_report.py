"""A benchmark's results rebuilt from its child runs in MLflow (nothing trains)."""

from __future__ import annotations

from qtrack.errors import QtrackError
from qtrack.evaluation.ranking import TEST_SEGMENT, BenchmarkResults, Job, numeric_metrics
from qtrack.tracking import names
from qtrack.tracking.runs import client_for


def report(experiment: str, metric: str | None, tracking_uri: str) -> BenchmarkResults:
    """The latest benchmark of `experiment`, from its parent and child runs."""
    client = client_for(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise QtrackError(f"experiment '{experiment}' not found at {tracking_uri}")
    parents = client.search_runs([found.experiment_id], f"tags.`{names.STAGE}` = '{names.BENCHMARK}'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise QtrackError(f"experiment '{experiment}' holds no benchmark run")
    parent = parents[0]
    children = client.search_runs([found.experiment_id], f"tags.`{names.PARENT_RUN}` = '{parent.info.run_id}'",
                                  order_by=["attributes.start_time ASC"])
    jobs = [
        Job(model=run.data.params.get("model.name", "?"), seed=int(run.data.params.get("seed", 0)),
            status="FINISHED" if run.info.status == "FINISHED" else "FAILED", run_id=run.info.run_id,
            run_name=run.info.run_name, metrics=numeric_metrics(run.data.metrics),
            error=None if run.info.status == "FINISHED" else f"run {run.info.status.lower()}")
        for run in children
    ]
    return BenchmarkResults(metric=metric or parent.data.tags.get("qtrack.benchmark.metric", "Rank IC"),
                            jobs=jobs, experiment=experiment, parent_run_id=parent.info.run_id,
                            scope=parent.data.tags.get(names.BENCHMARK_SCOPE, TEST_SEGMENT))
