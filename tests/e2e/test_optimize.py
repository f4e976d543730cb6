"""`qtrack optimize` / `run_optimization` through the real CLI on a tiny market, with real storages."""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, WITH_MODEL, cli_command, cli_env, needs_postgres, run_cli, shared_root, tracking_uri

FAST = [*TINY, "model.num_boost_round=40"]
LIGHT = [*FAST, "mlflow.log_model=false", "mlflow.plots=false"]
# Two random start-up trials, then TPE; pruning may start after 3 boosting rounds.
EAGER = ["optimize.startup_trials=2", "optimize.warmup_steps=3"]
EXPERIMENT = "synthetic_alpha158"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def journal(folder: Path):
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / "mlruns" / "optuna.journal")))


def load(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=journal(folder))


def parents(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], "tags.`qtrack.stage` = 'optimize'",
                              order_by=["attributes.start_time ASC"])


def children(client: MlflowClient, parent) -> list:
    return client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


DATA_ROOT: dict[str, Path] = {}


@pytest.fixture(autouse=True, scope="module")
def _shared_data(tmp_path_factory: pytest.TempPathFactory) -> None:
    DATA_ROOT["path"] = shared_root(tmp_path_factory)


def env_for(folder: Path) -> dict[str, str]:
    """The sweeps share the session's tiny market and its feature cache; their stores stay in `folder`."""
    return {"QTRACK_DATA_ROOT": str(DATA_ROOT["path"])}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("optimize")
    result = run_cli(["--trials", "5", *FAST, *EAGER, WITH_MODEL, "hydra.run.dir=outputs/optuna/lightgbm"], cwd=folder,
                     env=env_for(folder), program="run_optimization")
    assert result.code == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("qtrack train ")
    return folder


@pytest.mark.slow
def test_every_trial_is_a_child_run_of_one_parent(sweep):
    study = load(sweep, f"{EXPERIMENT}-lightgbm")
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    client = MlflowClient(tracking_uri(sweep))
    (parent,) = parents(client)
    kids = {run.info.run_id: run for run in children(client, parent)}
    assert len(kids) == 5
    for trial in trials:
        run = kids[trial.user_attrs["mlflow_run_id"]]
        assert trial.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["optuna.state"] == trial.state.name
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[trial.state.name]
        for name, value in trial.params.items():
            assert json.loads(run.data.params[f"model.{name}"]) == pytest.approx(value, rel=1e-12)
        if trial.state.name == "COMPLETE":
            # the objective is the validation ICIR the child run logged; the test figures are only reported
            assert run.data.metrics["valid.ICIR"] == pytest.approx(trial.value, abs=1e-12)
            for name in ("IC", "Rank IC", "rmse", "1day.excess_return_with_cost.annualized_return"):
                assert math.isfinite(run.data.metrics[name])
            assert trial.user_attrs["test Rank IC"] == pytest.approx(run.data.metrics["Rank IC"], abs=1e-12)
            assert run.data.tags["qtrack.model_uri"].startswith("models:/")


@pytest.mark.slow
def test_parent_holds_the_best_trial_counts_and_artifacts(sweep):
    study = load(sweep, f"{EXPERIMENT}-lightgbm")
    client = MlflowClient(tracking_uri(sweep))
    (parent,) = parents(client)
    metrics, params = parent.data.metrics, parent.data.params
    assert metrics["best_valid.ICIR"] == pytest.approx(study.best_value, abs=1e-12)
    assert metrics["feature_builds"] <= 1.0, "one dataset for every trial"
    states = [t.state.name for t in study.get_trials()]
    for state in set(states):
        assert metrics[f"trials_{state.lower()}"] == states.count(state)
    assert {f"best.{k}" for k in study.best_params} <= set(params)
    assert parent.data.tags["qtrack.optimize.best_trial"] == str(study.best_trial.number)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "best_command.txt", "optimize.json", "config.yaml", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    run_dir = sweep / "outputs" / "optuna" / "lightgbm"
    assert (run_dir / "best_command.txt").is_file() and (run_dir / "trials.csv").is_file()
    assert len((run_dir / "trials.csv").read_text().strip().splitlines()) == 1 + 5
    recorded = shlex.split(parent.data.tags["qtrack.command"])
    assert recorded[:3] == ["run_optimization", "--trials", "5"], "a command that reruns as it was typed"


@pytest.mark.slow
def test_the_best_command_reproduces_the_best_trial(sweep):
    study = load(sweep, f"{EXPERIMENT}-lightgbm")
    command = shlex.split((sweep / "outputs" / "optuna" / "lightgbm" / "best_command.txt").read_text())
    assert command[:2] == ["qtrack", "train"]
    result = run_cli([*command[1:], "run_name=best-again"], cwd=sweep, env=env_for(sweep), fresh=True)
    assert result.code == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(sweep))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (again,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'best-again'")
    original = client.get_run(study.best_trial.user_attrs["mlflow_run_id"])
    assert again.data.metrics["valid.ICIR"] == pytest.approx(study.best_value, abs=1e-12)
    for name in ("IC", "Rank IC", "1day.excess_return_with_cost.annualized_return"):
        assert again.data.metrics[name] == pytest.approx(original.data.metrics[name], abs=1e-12)


@pytest.mark.slow
def test_one_worker_with_the_same_seed_replays_the_sweep_without_mlflow(sweep):
    client = MlflowClient(tracking_uri(sweep))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs_before = len(client.search_runs([experiment.experiment_id]))
    result = run_cli(["optimize", "--trials", "5", "--no-mlflow", "--study-name", "replay", *FAST, *EAGER],
                     cwd=sweep, env=env_for(sweep), fresh=True)  # a new interpreter: another hash seed
    assert result.code == 0, result.stderr[-3000:]
    assert len(client.search_runs([experiment.experiment_id])) == runs_before, "--no-mlflow logs nothing"
    original, replay = load(sweep, f"{EXPERIMENT}-lightgbm").get_trials(), load(sweep, "replay").get_trials()
    assert [t.params for t in replay] == [t.params for t in original]
    assert [t.state for t in replay] == [t.state for t in original]
    assert [t.value for t in replay] == pytest.approx([t.value for t in original], abs=1e-12)


@pytest.mark.slow
def test_threads_nest_their_trials_under_the_parent(sweep):
    result = run_cli(["optimize", "--trials", "4", "--n-jobs", "2", "--study-name", "threads", *LIGHT, *EAGER],
                     cwd=sweep, env=env_for(sweep))
    assert result.code == 0, result.stderr[-3000:]
    study = load(sweep, "threads")
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    client = MlflowClient(tracking_uri(sweep))
    parent = next(p for p in parents(client) if p.data.tags["optuna.study_name"] == "threads")
    kids = children(client, parent)
    assert sorted(run.info.run_id for run in kids) == sorted(t.user_attrs["mlflow_run_id"] for t in trials)
    # the random start-up trials do not depend on which thread ran them
    first = load(sweep, f"{EXPERIMENT}-lightgbm").get_trials()
    assert [t.params for t in sorted(trials, key=lambda t: t.number)[:2]] == [t.params for t in first[:2]]


@pytest.mark.slow
def test_resume_adds_trials_to_the_same_study(sweep):
    name = f"{EXPERIMENT}-lightgbm"
    result = run_cli(["optimize", "--trials", "2", *FAST, *EAGER], cwd=sweep, env=env_for(sweep))
    assert result.code == 0, result.stderr[-3000:]
    assert "5 trials so far" in result.stderr
    trials = load(sweep, name).get_trials()
    assert [t.number for t in trials] == list(range(7))
    client = MlflowClient(tracking_uri(sweep))
    latest = [p for p in parents(client) if p.data.tags["optuna.study_name"] == name][-1]
    numbers = sorted(int(run.data.tags["optuna.trial_number"]) for run in children(client, latest))
    assert numbers == [5, 6]


def _workers_share_a_budget(folder: Path, storage: str, name: str, count) -> None:
    args = ["optimize", "--no-mlflow", "--trials", "10", "--max-trials", "6", "--study-name", name,
            "--storage", storage, *FAST, "model.num_boost_round=20"]
    workers = [subprocess.Popen(cli_command(args), cwd=folder, env=cli_env(env_for(folder)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
    numbers = count()
    assert sorted(numbers) == list(range(6)), "the budget holds across workers and no number repeats"


@pytest.mark.slow
def test_two_processes_share_one_journal_study(tmp_path):
    storage = tmp_path / "shared.journal"

    def numbers():
        from optuna.storages.journal import JournalFileBackend

        study = optuna.load_study(study_name="shared", storage=optuna.storages.JournalStorage(
            JournalFileBackend(str(storage))))
        assert all(t.state.name != "RUNNING" for t in study.get_trials())
        return [t.number for t in study.get_trials()]

    _workers_share_a_budget(tmp_path, str(storage), "shared", numbers)


@pytest.mark.slow
@needs_postgres(POSTGRES)
def test_two_processes_share_one_postgres_study(tmp_path):
    name = f"qtrack-test-{uuid.uuid4().hex[:12]}"
    try:
        _workers_share_a_budget(tmp_path, POSTGRES, name,
                                lambda: [t.number for t in optuna.load_study(study_name=name, storage=POSTGRES)
                                         .get_trials()])
    finally:
        optuna.delete_study(study_name=name, storage=POSTGRES)


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("failing")


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_sweep_goes_on(failing):
    # max_bin=1 passes qtrack's checks and fails inside LightGBM, as a bad trial does.
    result = run_cli(["optimize", "--trials", "4", "--study-name", "some-fail", "optimize.pruner=none", *LIGHT,
                      "+model.max_bin=255", "++search_space.max_bin={type: categorical, choices: [1, 255]}"],
                     cwd=failing, env=env_for(failing))
    assert result.code == 0, result.stderr[-3000:]
    trials = load(failing, "some-fail").get_trials()
    states = [t.state.name for t in trials]
    assert len(trials) == 4 and "FAIL" in states and "COMPLETE" in states
    client = MlflowClient(tracking_uri(failing))
    for trial in trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        if trial.state.name == "FAIL":
            assert trial.params["max_bin"] == 1
            assert "max_bin" in trial.user_attrs["error"]
            assert run.info.status == "FAILED"
            assert "max_bin" in run.data.tags["qtrack.error"]
        else:
            assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_when_every_trial_fails_the_command_fails_in_one_line(failing):
    result = run_cli(["optimize", "--trials", "2", "--study-name", "all-fail", *LIGHT, "+model.max_bin=255",
                      "++search_space.max_bin={type: categorical, choices: [1]}"], cwd=failing, env=env_for(failing))
    assert result.code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("qtrack: error: every trial failed") and "max_bin" in last
    assert "Traceback" not in result.stderr


@contextlib.contextmanager
def sigint_as_a_shell_leaves_it():
    """A command typed in a terminal starts with SIGINT neither ignored nor blocked; a child inherits both from
    pytest's process, so they are set so for the Popen. Yields what pytest's process had."""
    before = signal.getsignal(signal.SIGINT)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield f"SIGINT handler {before}, blocked {signal.SIGINT in blocked}"
    finally:
        if before is not None:  # None: set outside Python, left as the Popen found it
            signal.signal(signal.SIGINT, before)
        if signal.SIGINT in blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def signal_masks(pid: int) -> str:
    """The process's blocked, ignored and caught signal masks (/proc/PID/status) and whether it still ran."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return f"process {pid} had exited before the signal"
    return " ".join(line for line in lines if line.startswith(("State", "SigBlk", "SigIgn", "SigCgt")))


@pytest.mark.slow
def test_ctrl_c_kills_the_parent_and_leaves_a_resumable_study(failing):
    args = ["optimize", "--trials", "50", "--study-name", "interrupted", *FAST]
    with sigint_as_a_shell_leaves_it() as ours:
        process = subprocess.Popen(cli_command(args), cwd=failing, env=cli_env(env_for(failing)),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("trial   0"):
            break
    time.sleep(1.0)  # into the next trial
    masks = signal_masks(process.pid)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    output = "".join(seen) + rest
    # Seen once in a loaded CI run: the sweep ran all 50 trials as if SIGINT never came; the masks say why
    assert process.returncode == 130, f"{masks}; in pytest's process: {ours}\n{output[-3000:]}"
    assert "resume" in rest and "Traceback" not in rest, output[-3000:]
    study = load(failing, "interrupted")
    trials = study.get_trials()
    assert all(t.state.name != "RUNNING" for t in trials), [(t.number, t.state.name) for t in trials]
    assert 1 <= sum(t.state.name == "COMPLETE" for t in trials) < 50
    client = MlflowClient(tracking_uri(failing))
    parent = next(p for p in parents(client) if p.data.tags["optuna.study_name"] == "interrupted")
    assert parent.info.status == "KILLED"
    assert "RUNNING" not in {run.info.status for run in children(client, parent)}

    result = run_cli(["optimize", "--trials", "1", "--study-name", "interrupted", *LIGHT], cwd=failing,
                     env=env_for(failing))
    assert result.code == 0, result.stderr[-3000:]
    assert len(load(failing, "interrupted").get_trials()) == len(trials) + 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search_space.learning_rate.low=0.5", "low (0.5) must be below high (0.3)"),
        ("optimize.metric=Sharpe", "invalid optimize.metric 'Sharpe'"),
        ("+search_space.leaves={type: int, low: 2, high: 9}", "has no hyperparameter 'leaves'"),
        ("search_space.num_leaves.type=float", "model.num_leaves is an integer"),
        ("optimize.sampler=grid", "optimize.sampler must be tpe or random"),
        ("++search_space.num_leaves={type: categorical, choices: [0, 31]}",
         "search_space.num_leaves can sample 0, but model.num_leaves must be at least 2"),
        ("search_space.subsample.high=1.5", "can sample 1.5, but model.subsample must be at most 1"),
        ("+search_space.max_depth.step=-2", "search_space.max_depth.step: expected a positive int step, got -2"),
        ("optimize.storage=sqlite:///", "an in-memory study is lost when the process ends"),
    ],
)
def test_bad_settings_fail_in_one_line(workspace, override, message):
    result = run_cli(["optimize", "--trials", "1", *FAST, override], cwd=workspace)
    assert result.code == 2, result.stderr[-2000:]
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("storage", "name"), [("postgresql://postgres@127.0.0.1:{port}/optuna", "PostgreSQL"),
                                              ("redis://127.0.0.1:{port}/0", "Redis")])
def test_an_unreachable_study_storage_exits_3_before_any_work(workspace, storage, name):
    from helpers import free_port

    url = storage.format(port=free_port())
    started = time.monotonic()
    result = run_cli(["optimize", "--trials", "1", "--storage", url, *FAST], cwd=workspace)
    assert result.code == 3, result.stderr[-2000:]
    assert time.monotonic() - started < 30, f"an unreachable {name} answers in seconds"
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"qtrack: error: study storage {url} cannot be reached")
    assert not (workspace / "data").exists(), "checked before the data and the features"


def test_resuming_with_another_kind_of_parameter_is_refused_before_any_work(sweep):
    name = f"{EXPERIMENT}-lightgbm"
    before = len(load(sweep, name).get_trials())
    result = run_cli(["optimize", "--trials", "3", *FAST, "++search_space.num_leaves={type: categorical, choices: "
                      "[31, 63]}"], cwd=sweep, env=env_for(sweep))
    assert result.code == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert "search_space.num_leaves is now categorical [31, 63], but study" in line and "--study-name" in line
    assert len(load(sweep, name).get_trials()) == before, "no trial failed, no budget spent"


def test_a_direction_against_the_metrics_sense_is_said(workspace):
    result = run_cli(["optimize", "--trials", "0", *LIGHT, "optimize.metric=rmse", "optimize.direction=maximize"],
                     cwd=workspace, env=env_for(workspace))
    assert result.code == 0, result.stderr[-2000:]
    assert "optimize.direction=maximize looks for the worst rmse (lower is better)" in result.stderr


@pytest.mark.slow
def test_a_study_refuses_another_model(workspace):
    created = run_cli(["optimize", "--trials", "0", "--study-name", "mine", *LIGHT], cwd=workspace)
    assert created.code == 0, created.stderr[-2000:]
    result = run_cli(["optimize", "--trials", "1", "--study-name", "mine", "model=xgboost", *LIGHT], cwd=workspace)
    assert result.code == 2
    assert "was created for model lightgbm, not xgboost" in result.stderr
