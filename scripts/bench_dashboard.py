#!/usr/bin/env python
"""The dashboard over an experiment of many runs: how long a page takes, first and cached.

    python scripts/bench_dashboard.py --runs 1000

It writes N runs shaped like qtrack's train runs (about 80 params, 40 metrics, 10 tags each) into a fresh
SQLite store, then times, through Streamlit's AppTest (the app's real code, no browser):
- the Runs view's first render (reads every run from MLflow);
- a rerun, as a click makes (served from the read cache);
- the Compare view over two runs (reads two runs' artifacts: none here, so it measures the reads only).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def fill(uri: str, runs: int) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment("bench")
    now = int(time.time() * 1000)
    for index in range(runs):
        run = client.create_run(experiment, run_name=f"run-{index}", tags={"qtrack.stage": "train"})
        params = [Param(f"group{g}.key{k}", str(index * k)) for g in range(8) for k in range(10)]
        params.append(Param("model.name", ("lightgbm", "catboost", "xgboost", "linear")[index % 4]))
        metrics = [Metric(name, (index % 97) / 1000 + j, now, 0) for j, name in enumerate(
            ["IC", "ICIR", "Rank IC", "Rank ICIR", "mape", "rmse", "mae",
             *(f"1day.excess_return_with_cost.m{k}" for k in range(33))])]
        tags = [RunTag(f"qtrack.tag{k}", "x" * 20) for k in range(10)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags, synchronous=True)
        client.set_terminated(run.info.run_id, "FINISHED")


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    app = Path(__file__).resolve().parents[1] / "src" / "qtrack" / "dashboard" / "app.py"
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        fill_seconds = timed(lambda: fill(uri, args.runs))
        from qtrack.dashboard import sources

        read = timed(lambda: sources.runs(uri, "bench", args.runs))
        os.environ.update(QTRACK_DASHBOARD_TRACKING_URI=uri, QTRACK_DASHBOARD_RESULTS=tmp,
                          MLFLOW_EXPERIMENT_NAME="bench")
        test = AppTest.from_file(str(app), default_timeout=600)
        first = timed(test.run)
        assert not test.exception, test.exception
        rows = len(test.dataframe[0].value)
        rerun = timed(test.run)
        other = AppTest.from_file(str(app), default_timeout=600)  # a second visitor: the cache is shared
        second_visitor = timed(other.run)
        test.sidebar.radio(key="view").set_value("Compare")
        compare = timed(test.run)
        assert not test.exception, test.exception
    print(f"machine: {platform.node()}, {os.cpu_count()} cores; {args.runs} runs written in {fill_seconds:.1f} s")
    print(f"reading the runs from MLflow alone (sources.runs, warm imports): {read:.2f} s")
    print(f"Runs view, first render: {first:.2f} s ({rows} rows)")
    print(f"Runs view, rerun (cached): {rerun:.2f} s")
    print(f"Runs view, a second session (cached): {second_visitor:.2f} s")
    print(f"Compare view (two runs): {compare:.2f} s")


if __name__ == "__main__":
    main()
