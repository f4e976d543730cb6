"""Every stage with a deep model, through the real CLI on the tiny market: a sweep whose pruner stops trials between
epochs, a scheduled retrain that registers and promotes, walk-forward windows and a benchmark beside a linear model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import FAST_DEEP, TINY, WITH_MODEL, run_cli, tracking_uri

pytest.importorskip("torch", reason="the deep models need PyTorch: pip install 'qtrack[torch]'")
pytestmark = pytest.mark.slow

GRU = [*TINY, "model=gru", *FAST_DEEP["gru"]]
EXPERIMENT = "synthetic_alpha360"


def runs_of(folder: Path) -> list:
    client = MlflowClient(tracking_uri(folder))
    return client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])


def test_a_sweep_reports_each_epoch_and_prunes_between_epochs(workspace: Path, shared_data_root: Path) -> None:
    import optuna

    result = run_cli(["--trials", "4", *GRU, "model.n_epochs=4", "optimize.startup_trials=1",
                      "optimize.warmup_steps=0", "search_space.hidden_size.low=4", "search_space.hidden_size.high=16",
                      "~search_space.num_layers", "~search_space.batch_size",
                      "optimize.metric=rmse"], cwd=workspace, env={"QTRACK_DATA_ROOT": str(shared_data_root)},
                     program="run_optimization")
    assert result.code == 0, result.stderr[-3000:]
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(workspace / "mlruns" / "optuna.journal")))
    (study,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    pruned = [trial for trial in trials if trial.state.name == "PRUNED"]
    assert pruned, [(trial.state.name, trial.intermediate_values) for trial in trials]
    for trial in trials:  # one report per epoch run: a pruned trial stopped at its last report
        epochs = sorted(trial.intermediate_values)
        assert epochs == list(range(len(epochs))) and (len(epochs) == 4 or trial.state.name == "PRUNED")
    by_id = {run.info.run_id: run for run in runs_of(workspace)}
    for trial in pruned:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "PRUNED"
        history = MlflowClient(tracking_uri(workspace)).get_metric_history(run.info.run_id, "loss.valid")
        assert sorted(point.step for point in history) == sorted(trial.intermediate_values)


def test_retrain_rolling_and_benchmark_take_a_deep_model(workspace: Path, shared_data_root: Path) -> None:
    env = {"QTRACK_DATA_ROOT": str(shared_data_root)}
    retrained = run_cli(["retrain", *GRU, WITH_MODEL, "retrain.train_days=100", "retrain.valid_days=40",
                         "retrain.holdout_days=40", "retrain.model_name=deep", "retrain.summary=retrain.json"],
                        cwd=workspace, env=env)
    assert retrained.code == 0, retrained.stderr[-3000:]
    summary = json.loads((workspace / "retrain.json").read_text())
    assert summary["decision"] == "promoted"
    champion = MlflowClient(tracking_uri(workspace)).get_model_version_by_alias("deep", "champion")
    assert champion.run_id == summary["challenger_run_id"]

    rolled = run_cli(["rolling", *GRU, "rolling.step=60", "rolling.valid_days=20", "rolling.train_window=80",
                      "rolling.compare_static=false", "-q"], cwd=workspace, env=env)
    assert rolled.code == 0, rolled.stderr[-3000:]
    windows = [run for run in runs_of(workspace) if run.data.tags.get("qtrack.rolling.window") not in (None, "static")]
    assert len(windows) >= 2 and all(run.data.params["model.name"] == "gru" for run in windows)
    assert all("best_epoch" in run.data.metrics for run in windows)

    benchmark = run_cli(["benchmark", "models=[linear,gru]", "seeds=1", *TINY, "features=alpha360",
                         f"model_overrides.gru={json.dumps(FAST_DEEP['gru'])}", "-q"], cwd=workspace, env=env)
    assert benchmark.code == 0, benchmark.stderr[-3000:]
    assert "| gru |" in benchmark.stdout and "| linear |" in benchmark.stdout


def test_a_network_that_cannot_read_the_features_is_one_line(workspace: Path, shared_data_root: Path) -> None:
    env = {"QTRACK_DATA_ROOT": str(shared_data_root)}
    result = run_cli(["train", *GRU, "features=alpha158"], cwd=workspace, env=env)
    assert result.code == 2
    assert ("model=gru reads rows of d_feat=6 features a day, but the features have 158 columns: use "
            "features=alpha360") in result.stderr and "Traceback" not in result.stderr
