"""Every stage with a deep model, through the real CLI on the tiny market: a sweep whose pruner stops trials between
epochs; a scheduled retrain of a time-series GRU (Qlib's TSDatasetH) that registers and promotes it, then tomorrow's
list from it; its walk-forward windows; and a benchmark of a GRU beside a linear model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import FAST_DEEP, TINY, WITH_MODEL, run_cli, tracking_uri

pytest.importorskip("torch", reason="the deep models need PyTorch: pip install 'qtrack[torch]'")
pytestmark = pytest.mark.slow

GRU = [*TINY, "model=gru", *FAST_DEEP["gru"]]
GRU_TS = [*TINY, "model=gru_ts", *FAST_DEEP["gru_ts"]]  # 20 days x 20 features a sample, through Qlib's TSDatasetH
EXPERIMENT = "synthetic_alpha360"


def runs_of(folder: Path, experiment: str = EXPERIMENT) -> list:
    client = MlflowClient(tracking_uri(folder))
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


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


def test_retrain_predict_rolling_and_benchmark_take_a_deep_model(workspace: Path, shared_data_root: Path) -> None:
    env = {"QTRACK_DATA_ROOT": str(shared_data_root)}
    retrained = run_cli(["retrain", *GRU_TS, WITH_MODEL, "retrain.train_days=100", "retrain.valid_days=40",
                         "retrain.holdout_days=40", "retrain.model_name=deep", "retrain.summary=retrain.json"],
                        cwd=workspace, env=env)
    assert retrained.code == 0, retrained.stderr[-3000:]
    summary = json.loads((workspace / "retrain.json").read_text())
    assert summary["decision"] == "promoted"
    champion = MlflowClient(tracking_uri(workspace)).get_model_version_by_alias("deep", "champion")
    assert champion.run_id == summary["challenger_run_id"]
    latest = run_cli(["predict", "--model", "deep@champion", "--latest", "--output", str(workspace / "latest.csv")],
                     cwd=workspace, env=env)
    assert latest.code == 0, latest.stderr[-3000:]
    scores = pd.read_csv(workspace / "latest.csv")
    assert len(scores) == 30 and scores["datetime"].nunique() == 1 and scores["score"].notna().all()

    rolled = run_cli(["rolling", *GRU_TS, "rolling.step=60", "rolling.valid_days=20", "rolling.train_window=80",
                      "rolling.compare_static=false", "-q"], cwd=workspace, env=env)
    assert rolled.code == 0, rolled.stderr[-3000:]
    windows = [run for run in runs_of(workspace, "synthetic_alpha158_ts20")
               if run.data.tags.get("qtrack.rolling.window") not in (None, "static")]
    assert len(windows) >= 2 and all(run.data.params["model.name"] == "gru_ts" for run in windows)
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


def test_an_mlp_on_a_universe_too_small_for_qlibs_validation_ic_is_one_line(workspace: Path,
                                                                           shared_data_root: Path) -> None:
    """Qlib's ICLoss skips days with fewer than 50 stocks and then calls ipdb; the tiny market has 30."""
    env = {"QTRACK_DATA_ROOT": str(shared_data_root)}
    result = run_cli(["train", *TINY, "model=mlp", *FAST_DEEP["mlp"]], cwd=workspace, env=env)
    assert result.code == 2, result.stderr[-2000:]
    assert ("model=mlp scores validation by Qlib's daily IC over at least 50 stocks, and the valid segment has at "
            "most 30 a day: use a larger universe") in result.stderr and "Traceback" not in result.stderr
