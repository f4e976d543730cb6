"""A distributed sweep's first minute: three workers started at once on a new, empty MLflow store and a new
study storage. None may lose the race to create a schema; together they run exactly the budget."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, cli_command, cli_env, needs_postgres

pytestmark = pytest.mark.slow

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
WORKERS, PER_WORKER, BUDGET = 3, 2, 4
SWEEP = [*TINY, "model=linear", "mlflow.log_model=false", "mlflow.plots=false"]


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)


@pytest.fixture
def new_postgres_databases() -> Iterator[tuple[str, str]]:
    """Two new, empty databases (the MLflow store and the study), dropped afterwards."""
    names = [f"qtrack_{what}_{uuid.uuid4().hex[:10]}" for what in ("mlflow", "optuna")]
    for name in names:
        _admin(f"CREATE DATABASE {name}")
    try:
        yield tuple(f"{POSTGRES_SERVER}/{name}" for name in names)
    finally:
        for name in names:
            _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_together(folder: Path, data_root: Path, tracking: str, storage: str) -> list[tuple[int, str]]:
    args = ["optimize", "--trials", str(PER_WORKER), "--max-trials", str(BUDGET), "--study-name", "shared",
            "--storage", storage, *SWEEP, f"mlflow.tracking_uri={tracking}"]
    env = cli_env({"QTRACK_DATA_ROOT": str(data_root)})
    workers = [subprocess.Popen(cli_command(args), cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(WORKERS)]
    errors = [worker.communicate(timeout=600)[1] for worker in workers]
    return [(worker.returncode, stderr) for worker, stderr in zip(workers, errors, strict=True)]


def assert_one_budget(tracking: str, storage: str, ended: list[tuple[int, str]]) -> None:
    for code, stderr in ended:
        assert code == 0, stderr[-3000:]
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    assert sorted(t.number for t in trials) == list(range(BUDGET)), "exactly the budget, no number twice"
    assert all(t.state.name == "COMPLETE" for t in trials)
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("synthetic_alpha158").experiment_id
    runs = client.search_runs([experiment])
    assert {run.info.status for run in runs} == {"FINISHED"}, "nothing left RUNNING"
    parents = {run.info.run_id: run for run in runs if run.data.tags.get("qtrack.stage") == "optimize"
               and "mlflow.parentRunId" not in run.data.tags}
    assert len(parents) == WORKERS
    kids = [run for run in runs if run.data.tags.get("mlflow.parentRunId") in parents]
    assert sorted(int(kid.data.tags["optuna.trial_number"]) for kid in kids) == list(range(BUDGET))
    for kid in kids:
        parent = parents[kid.data.tags["mlflow.parentRunId"]]
        assert kid.data.tags["qtrack.pid"] == parent.data.tags["qtrack.pid"], "a trial under its own worker"


@needs_postgres(f"{POSTGRES_SERVER}/postgres")
def test_three_workers_start_together_on_new_postgres_stores(tmp_path, shared_data_root, new_postgres_databases):
    tracking, storage = new_postgres_databases
    assert_one_budget(tracking, storage, start_together(tmp_path, shared_data_root, tracking, storage))


def test_three_workers_start_together_on_new_sqlite_stores(tmp_path, shared_data_root):
    tracking = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'new' / 'optuna.db'}"
    assert_one_budget(tracking, storage, start_together(tmp_path, shared_data_root, tracking, storage))
