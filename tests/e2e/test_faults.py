"""Faults as cron jobs, CI and shared servers cause them, through the real CLI on tiny data: SIGTERM and
SIGKILL of train and optimize, runs left RUNNING, broken tracking stores, bad input, secrets.
Each test records its figures (seconds to exit, runs left RUNNING, leaks found); the summary prints them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, cli_command, cli_env, run_cli, tracking_uri

# A fit that never ends by itself: the signal always lands while the model is boosting.
ENDLESS = ["model.num_boost_round=1000000", "model.early_stopping_rounds=1000000", "model.learning_rate=0.0001"]
QUICK = ["model.num_boost_round=20", "mlflow.log_model=false", "mlflow.plots=false"]


@pytest.fixture
def start():
    """Start the real CLI in the background; whatever a test leaves running is killed when it ends."""
    started: list[subprocess.Popen] = []

    def launch(args: list[str], folder: Path, data: Path | None = None, program: str = "qtrack") -> subprocess.Popen:
        env = cli_env({"QTRACK_DATA_ROOT": str(data or folder / "data")})
        process = subprocess.Popen(cli_command(args, program), cwd=folder, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process

    yield launch
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def statuses(folder: Path) -> list[str]:
    """The runs' statuses, read from the SQLite file directly while a qtrack process may still be
    creating the store (an MlflowClient here would run the migrations a second time, at once)."""
    import sqlite3

    path = folder / "mlruns" / "mlflow.db"
    if not path.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
            return [row[0] for row in connection.execute("SELECT status FROM runs")]
    except sqlite3.Error:
        return []


def runs_in(folder: Path, status: str | None = None) -> list:
    """The runs, through MLflow: only once no qtrack process is creating the store."""
    if not (folder / "mlruns" / "mlflow.db").is_file():
        return []
    client = MlflowClient(tracking_uri(folder))
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, f"attributes.status = '{status}'" if status else "") if experiments else []
    return list(found)


def wait_until(condition, timeout: float = 180.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop(process: subprocess.Popen, sig: int) -> tuple[float, str]:
    """Send `sig`; the seconds until the process exited and what it printed on stderr."""
    sent = time.monotonic()
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    return time.monotonic() - sent, stderr


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


@pytest.mark.slow
def test_sigterm_ends_a_train_run_killed_within_seconds(folder, figure, start, shared_data_root):
    process = start(["train", *TINY, *ENDLESS], folder, shared_data_root)
    wait_until(lambda: "RUNNING" in statuses(folder), what="the train run to start")
    time.sleep(1.0)  # boosting
    seconds, stderr = stop(process, signal.SIGTERM)
    figure("train: seconds from SIGTERM to exit", seconds, "15")
    assert process.returncode == 143, stderr[-2000:]
    assert "terminated" in stderr and "Traceback" not in stderr
    runs = runs_in(folder)
    figure("train: runs left RUNNING after SIGTERM", sum(r.info.status == "RUNNING" for r in runs), "0")
    (run,) = runs
    assert run.info.status == "KILLED" and run.data.tags["qtrack.ended_by"] == "terminated"
    assert run.data.tags["qtrack.pid"] == str(process.pid) and run.data.tags["qtrack.host"]
    assert seconds < 15


@pytest.mark.slow
def test_sigterm_ends_a_sweep_its_trial_and_its_runs(folder, figure, start, shared_data_root):
    process = start(["optimize", "--trials", "5", *TINY, *ENDLESS], folder, shared_data_root)
    wait_until(lambda: statuses(folder).count("RUNNING") == 2, what="the parent and the first trial's run")
    time.sleep(1.0)
    seconds, stderr = stop(process, signal.SIGTERM)
    figure("optimize: seconds from SIGTERM to exit", seconds, "15")
    assert process.returncode == 143, stderr[-2000:]
    runs = runs_in(folder)
    figure("optimize: runs left RUNNING after SIGTERM", sum(r.info.status == "RUNNING" for r in runs), "0")
    assert {r.info.status for r in runs} == {"KILLED"} and len(runs) == 2
    parent = next(r for r in runs if r.data.tags.get("qtrack.stage") == "optimize")
    child = next(r for r in runs if r.info.run_id != parent.info.run_id)
    assert child.info.end_time <= parent.info.end_time, "the child ends before its parent"
    trials = study_of(folder).get_trials()
    figure("optimize: trials left RUNNING after SIGTERM", sum(t.state.name == "RUNNING" for t in trials), "0")
    assert [t.state.name for t in trials] == ["FAIL"] and trials[0].user_attrs["interrupted"] is True
    assert seconds < 15


def study_of(folder: Path) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "mlruns" / "optuna.journal")))
    return optuna.load_study(study_name="synthetic_alpha158-lightgbm", storage=storage)


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_is_failed_and_not_counted_on_resume(folder, figure, start, shared_data_root):
    process = start(["optimize", "--trials", "5", *TINY, *ENDLESS], folder, shared_data_root)
    wait_until(lambda: statuses(folder).count("RUNNING") == 2, what="the first trial's run")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert [t.state.name for t in study_of(folder).get_trials()] == ["RUNNING"]

    resumed = run_cli(["optimize", "--trials", "3", "--max-trials", "2", *TINY, *QUICK], cwd=folder,
                      env={"QTRACK_DATA_ROOT": str(shared_data_root)})
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert "left RUNNING by a process that is gone" in resumed.stderr
    states = [t.state.name for t in study_of(folder).get_trials()]
    figure("optimize after SIGKILL + resume: COMPLETE/FAIL/RUNNING trials",
           f"{states.count('COMPLETE')}/{states.count('FAIL')}/{states.count('RUNNING')}", "2/1/0")
    assert (states.count("COMPLETE"), states.count("FAIL"), states.count("RUNNING")) == (2, 1, 0)
    runs = runs_in(folder)
    figure("optimize after SIGKILL + resume: runs left RUNNING", sum(r.info.status == "RUNNING" for r in runs), "0")
    dead = [r for r in runs if r.data.tags.get("qtrack.pid") == str(process.pid)]
    assert len(dead) == 2 and {r.info.status for r in dead} == {"KILLED"}, "the dead sweep's parent and trial"
    assert "RUNNING" not in {r.info.status for r in runs}


@pytest.mark.slow
def test_gc_stale_ends_the_run_of_a_train_killed_with_sigkill(folder, figure, start, shared_data_root):
    process = start(["train", *TINY, *ENDLESS], folder, shared_data_root)
    wait_until(lambda: "RUNNING" in statuses(folder), what="the train run to start")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    (left,) = runs_in(folder, "RUNNING")
    listed = run_cli(["gc", "--stale", "--dry-run"], cwd=folder)
    assert listed.code == 0 and left.info.run_id in listed.stdout and f"pid {process.pid} is gone" in listed.stdout
    assert runs_in(folder, "RUNNING"), "a dry run changes nothing"
    assert run_cli(["gc", "--stale", "-y"], cwd=folder).code == 0
    remaining = len(runs_in(folder, "RUNNING"))
    figure("runs left RUNNING after SIGKILL and gc --stale", remaining, "0")
    assert remaining == 0
    ended = MlflowClient(tracking_uri(folder)).get_run(left.info.run_id)
    assert ended.info.status == "KILLED" and ended.data.tags["qtrack.ended_by"].startswith("qtrack gc --stale")


def test_gc_stale_leaves_live_and_finished_runs_alone(workspace):
    assert run_cli(["gc", "--stale", "--dry-run"], cwd=workspace).code == 0  # creates the store
    client = MlflowClient(tracking_uri(workspace))
    experiment = client.create_experiment("stale")
    alive = client.create_run(experiment, tags={"qtrack.pid": str(os.getpid()), "qtrack.host": os.uname().nodename})
    other_host = client.create_run(experiment, tags={"qtrack.pid": "1", "qtrack.host": "elsewhere"})
    done = client.create_run(experiment, tags={"qtrack.pid": "999999", "qtrack.host": os.uname().nodename})
    client.set_terminated(done.info.run_id, "FINISHED")
    result = run_cli(["gc", "--stale", "-y", "--experiment", "stale"], cwd=workspace)
    assert result.code == 0, result.stderr
    for run, status in ((alive, "RUNNING"), (other_host, "RUNNING"), (done, "FINISHED")):
        assert client.get_run(run.info.run_id).info.status == status
    silent = run_cli(["gc", "--stale", "-y", "--older-than", "0s", "--experiment", "stale"], cwd=workspace)
    assert silent.code == 0 and client.get_run(other_host.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["nope"], "No such command 'nope'"), (["optimize", "--trials", "abc"], "Invalid value for '--trials'"),
     (["train", "--nope"], "No such option"), (["gc", "--older-than"], "requires an argument")],
)
def test_usage_errors_exit_2_with_clicks_message(workspace, args, fragment):
    result = run_cli(args, cwd=workspace)
    assert result.code == 2, result.stderr
    assert fragment in result.stderr and "run.log" not in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_postgresql_store_exits_3_fast(workspace, figure):
    started = time.monotonic()
    result = run_cli(["train", *TINY], cwd=workspace, env={"MLFLOW_TRACKING_URI": "postgresql://postgres@127.0.0.1:9/x"})
    seconds = time.monotonic() - started
    figure("unreachable PostgreSQL store: seconds to exit 3", seconds, "20")
    assert result.code == 3 and "cannot be reached" in result.stderr, result.stderr
    assert seconds < 20 and not (workspace / "data").exists(), "no data work before the store answers"


def test_a_corrupt_sqlite_store_exits_3_fast(workspace, figure):
    (workspace / "mlruns").mkdir()
    (workspace / "mlruns" / "mlflow.db").write_bytes(b"this is not a database" * 100)
    started = time.monotonic()
    result = run_cli(["train", *TINY], cwd=workspace)
    figure("corrupt SQLite store: seconds to exit 3", time.monotonic() - started, "15")
    assert result.code == 3 and "not a usable SQLite database" in result.stderr, result.stderr
    assert not (workspace / "data").exists()


def test_a_read_only_working_folder_exits_2_and_names_it(workspace):
    readonly = workspace / "ro"
    readonly.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only folder here: {mounted.stderr.decode().strip()}")
    try:
        result = run_cli(["train", *TINY], cwd=readonly, env={"QTRACK_DATA_ROOT": str(workspace / "data")})
        assert result.code == 2 and f"{readonly}" in result.stderr and "not writable" in result.stderr, result.stderr
        data = run_cli(["train", *TINY], cwd=workspace, env={"QTRACK_DATA_ROOT": str(readonly / "data")})
        assert data.code == 2 and "the data root" in data.stderr and "not writable" in data.stderr, data.stderr
        assert not (workspace / "mlruns").exists(), "no store (and no artifact location) before the check"
    finally:
        subprocess.run(["umount", str(readonly)], check=False)


def test_a_dataset_name_is_never_a_path(tmp_path):
    root = tmp_path / "parent" / "folder" / "data"
    result = run_cli(["train", "dataset.name=synthetic/../../../escaped", *TINY], cwd=tmp_path,
                     env={"QTRACK_DATA_ROOT": str(root)})
    assert result.code == 2 and "dataset.name must be a name, not a path" in result.stderr
    assert not (tmp_path / "parent" / "escaped").exists() and not (tmp_path / "parent" / ".store").exists()


def test_benchmark_settings_are_checked_before_any_training(workspace, figure):
    started = time.monotonic()
    bad_metric = run_cli(["benchmark", "metric=sharpe", *TINY], cwd=workspace)
    figure("benchmark metric=sharpe: seconds to exit 2", time.monotonic() - started)
    assert bad_metric.code == 2 and "invalid metric 'sharpe'" in bad_metric.stderr
    patch = 'model_overrides.linear=["dataset.name=synthetic_nosignal"]'
    other_data = run_cli(["benchmark", "models=[linear]", *TINY, patch], cwd=workspace)
    assert other_data.code == 2 and "'dataset.name' can't be changed per model" in other_data.stderr
    assert not (workspace / "data").exists() and not (workspace / "mlruns").exists()


@pytest.mark.parametrize(("settings", "message"), [
    (["rolling=true", "metric=mape"], "metric=mape is not on the walk-forward record that rolling=true ranks by"),
    (["rolling=true", "metric=directional_accuracy"], "metric=directional_accuracy is not on the walk-forward"),
    (["seeds=[1,1]"], "seeds lists 1 more than once"),
    (["models=[linear,linear]"], "models lists linear more than once"),
    (["seeds=1.5"], "seeds: give a count such as seeds=3 or a list of whole numbers"),
    (["seeds=[a]"], "seeds: give a count such as seeds=3 or a list of whole numbers"),
    (["models=linear"], "models must be a list such as models=[linear]"),
    (["models=[linear]", 'model_overrides.lightgbm=["model.num_leaves=7"]'],
     "model_overrides.lightgbm is given, but lightgbm is not in models=['linear']"),
])
def test_benchmark_settings_that_would_fail_late_or_lie_are_refused_first(workspace, settings, message):
    result = run_cli(["benchmark", *TINY, *settings], cwd=workspace)
    assert result.code == 2 and message in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (workspace / "data").exists() and not (workspace / "mlruns").exists()


def test_every_model_has_a_benchmark_override_slot():
    from omegaconf import OmegaConf

    from qtrack import paths

    slots = OmegaConf.load(paths.config_dir() / "benchmark.yaml").model_overrides
    models = sorted(path.stem for path in (paths.config_dir() / "model").glob("*.yaml"))
    assert sorted(slots) == models, "model_overrides.<model>=[...] must work for every model in struct mode"


@pytest.mark.slow
def test_secrets_given_as_overrides_appear_nowhere(workspace, figure, shared_data_root):
    secrets = {"+vendor.api_key": "K1-sekrit-aa", "+vendor.apikey": "K2-sekrit-bb", "+db.passphrase": "K3-sekrit-cc"}
    env_secret = "K4-envsekrit-dd"
    args = ["--trials", "2", *TINY, *QUICK, *(f"{k}={v}" for k, v in secrets.items()), f"run_name=x{env_secret}"]
    env = {"DB_PASS": env_secret, "QTRACK_DATA_ROOT": str(shared_data_root)}
    result = run_cli(args, cwd=workspace, env=env, program="run_optimization")
    assert result.code == 0, result.stderr[-3000:]
    assert "+vendor.api_key=***" in result.stdout and "supply them again" in result.stderr
    values = [*secrets.values(), env_secret]
    leaks = [(str(path.relative_to(workspace)), value) for path in workspace.rglob("*") if path.is_file()
             for value in values if value.encode() in path.read_bytes()]
    leaks += [("stdout/stderr", value) for value in values if value in result.stdout + result.stderr]
    figure("secrets found in files and output after a sweep", len(leaks), "0")
    assert leaks == []


@pytest.mark.slow
def test_an_import_during_a_train_leaves_the_train_its_version(folder, figure, start):
    env = {"QTRACK_DATA_ROOT": str(folder / "data")}
    assert run_cli(["data", "synth", "--name", "prices", "--symbols", "20", "--days", "300", "--seed", "1"],
                   cwd=folder, env=env).code == 0
    first = (folder / "data" / "prices").resolve()
    slow_fit = ["model.num_boost_round=4000", "model.early_stopping_rounds=4000", "model.learning_rate=0.0005"]
    process = start(["train", "dataset.name=prices", "backtest.topk=5", "backtest.n_drop=1", *slow_fit], folder)
    wait_until(lambda: "RUNNING" in statuses(folder), what="the train run to start")
    assert run_cli(["data", "synth", "--name", "prices", "--symbols", "20", "--days", "300", "--seed", "2"],
                   cwd=folder, env=env).code == 0
    assert (folder / "data" / "prices").resolve() != first and first.is_dir(), "the old version is kept while read"
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    (run,) = runs_in(folder)
    assert run.data.tags["qtrack.data_fingerprint"] == json.loads((first / "meta.json").read_text())["fingerprint"]
    assert run_cli(["data", "synth", "--name", "other", "--symbols", "5", "--days", "60"], cwd=folder,
                   env=env).code == 0
    left = sorted(p.name for p in (folder / "data" / ".store").iterdir() if p.is_dir())
    figure("dataset versions left after the train ended and the next import", len(left), "2 (one per name)")
    assert not first.exists() and len(left) == 2


def test_a_killed_imports_staging_folder_is_cleaned_at_the_next_import(workspace):
    store = workspace / "data" / ".store"
    store.mkdir(parents=True)
    (store / "prices.deadbeef0000").mkdir()
    (store / "prices.deadbeef0000" / "half.bin").write_bytes(b"x")
    (store / "prices.deadbeef0000.writing").write_text("999999")  # a writer that is gone
    assert run_cli(["data", "synth", "--name", "prices", "--symbols", "5", "--days", "60"], cwd=workspace).code == 0
    assert not (store / "prices.deadbeef0000").exists() and not (store / "prices.deadbeef0000.writing").exists()


@pytest.mark.parametrize("alias", ["latest", "v1", "V12"])
def test_reserved_registry_aliases_are_refused_before_a_version_exists(workspace, alias):
    result = run_cli(["register", "0123456789abcdef", "--name", "m", "--alias", alias], cwd=workspace)
    assert result.code == 2 and "reserved by the MLflow registry" in result.stderr, result.stderr
