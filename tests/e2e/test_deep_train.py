"""A deep model (Qlib's GRU) through the real CLI on the tiny market: its epochs in MLflow while it trains, its best
epoch and weights, the MLflow model, register, predict --latest, backtest --pred, and SIGTERM during an epoch."""

from __future__ import annotations

import pickle
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import FAST_DEEP, TINY, WITH_MODEL, cli_command, cli_env, run_cli, tracking_uri
from qtrack.tracking.store import ensure_sqlite_store

torch = pytest.importorskip("torch", reason="the deep models need PyTorch: pip install 'qtrack[torch]'")
pytestmark = pytest.mark.slow

GRU = [*TINY, "model=gru", *FAST_DEEP["gru"]]
EPOCH_METRICS = ("loss.train", "loss.valid", "metric.train", "metric.valid")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path):
    folder = tmp_path_factory.mktemp("deep")
    env = {"QTRACK_DATA_ROOT": str(shared_data_root)}  # the tiny market and its Alpha360 features, built once
    result = run_cli(["train", *GRU, WITH_MODEL], cwd=folder, env=env)
    assert result.code == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(folder))
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic_alpha360").experiment_id])
    return folder, env, client, run


def artifact(client: MlflowClient, run_id: str, name: str, folder: Path):
    return client.download_artifacts(run_id, name, str(folder))


def test_each_epoch_the_best_epoch_and_the_device_are_logged(trained, tmp_path) -> None:
    _, _, client, run = trained
    history = {name: client.get_metric_history(run.info.run_id, name) for name in EPOCH_METRICS}
    for name, points in history.items():
        assert sorted(point.step for point in points) == [0, 1], name
    scores = {point.step: point.value for point in history["metric.valid"]}
    assert run.data.metrics["best_epoch"] == max(scores, key=lambda epoch: (scores[epoch], -epoch))
    assert run.data.tags["qtrack.device"] == "cpu" and run.data.tags["qtrack.torch_threads"] == "1"
    assert run.data.tags["qtrack.torch"].startswith("2.13.0")
    assert "qtrack.gpu_name" not in run.data.tags  # no GPU here
    assert run.data.params["model.device"] == "auto" and run.data.params["features.name"] == "alpha360"
    weights = torch.load(artifact(client, run.info.run_id, "best_epoch.pt", tmp_path))
    with open(artifact(client, run.info.run_id, "params.pkl", tmp_path), "rb") as handle:
        model = pickle.load(handle)  # Qlib's model, which predicts: it holds the best epoch's weights
    assert set(weights) == set(model.network.state_dict())
    assert all(torch.equal(weights[name], value) for name, value in model.network.state_dict().items())


def test_the_mlflow_model_is_the_pytorch_flavour_with_a_signature_and_predicts_like_the_run(trained) -> None:
    import mlflow.pyfunc

    folder, _, client, run = trained
    mlflow.set_tracking_uri(tracking_uri(folder))
    model = mlflow.pyfunc.load_model(run.data.tags["qtrack.model_uri"])
    assert "pytorch" in model.metadata.flavors
    inputs = model.metadata.get_input_schema().input_names()
    assert len(inputs) == 360 and {"CLOSE59", "VOLUME0"} <= set(inputs)
    with open(client.download_artifacts(run.info.run_id, "params.pkl", str(folder)), "rb") as handle:
        qlib_model = pickle.load(handle)
    rows = pd.DataFrame(np.random.default_rng(0).normal(size=(7, 360)).astype("float32"), columns=inputs)
    from_mlflow = np.asarray(model.predict(rows)).reshape(-1)
    qlib_model.network.eval()
    with torch.no_grad():
        direct = qlib_model.network(torch.from_numpy(rows.to_numpy())).numpy().reshape(-1)
    np.testing.assert_allclose(from_mlflow, direct, rtol=1e-6)


def test_register_predict_and_backtest_a_deep_model(trained, tmp_path) -> None:
    folder, env, client, run = trained
    registered = run_cli(["register", run.info.run_id, "--name", "deep", "--alias", "champion"], cwd=folder, env=env)
    assert registered.code == 0, registered.stderr
    pred = pd.read_pickle(artifact(client, run.info.run_id, "pred.pkl", tmp_path))["score"]
    first, last = pred.index.get_level_values("datetime").min(), pred.index.get_level_values("datetime").max()
    scored = run_cli(["predict", "--model", "deep@champion", "--start", f"{first:%Y-%m-%d}", "--end",
                      f"{last:%Y-%m-%d}", "--output", str(tmp_path / "test.csv")], cwd=folder, env=env)
    assert scored.code == 0, scored.stderr
    again = pd.read_csv(tmp_path / "test.csv", parse_dates=["datetime"]).set_index(["datetime", "instrument"])
    joined = pred.to_frame("run").join(again["score"], how="inner")
    assert len(joined) == len(pred)
    np.testing.assert_allclose(joined["score"], joined["run"], rtol=1e-6)  # the registered model is the run's

    latest = run_cli(["predict", "--model", "deep@champion", "--latest", "--topk", "5", "--output",
                      str(tmp_path / "latest.csv")], cwd=folder, env=env)
    assert latest.code == 0, latest.stderr
    ranked = pd.read_csv(tmp_path / "latest.csv")
    assert len(ranked) == 30 and ranked["datetime"].nunique() == 1  # every instrument, on the last day
    assert ranked["score"].is_monotonic_decreasing and ranked["top_k"].sum() == 5
    assert ranked["rank"].tolist() == list(range(1, 31))

    backtest = run_cli(["backtest", "--pred", str(tmp_path / "test.csv"), *GRU, "-q"], cwd=folder, env=env)
    assert backtest.code == 0, backtest.stderr
    runs = client.search_runs([run.info.experiment_id], "tags.`qtrack.stage` = 'backtest'")
    assert runs[0].data.metrics["IC"] == pytest.approx(run.data.metrics["IC"], abs=1e-6)


def test_the_curve_grows_while_a_long_fit_runs_and_sigterm_ends_it_killed(tmp_path, shared_data_root,
                                                                          monkeypatch) -> None:
    env = cli_env({"QTRACK_DATA_ROOT": str(shared_data_root)})
    args = ["train", *GRU, "model.n_epochs=500", "model.early_stop=500"]
    process = subprocess.Popen(cli_command(args), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    monkeypatch.chdir(tmp_path)  # the store as the train would make it, under qtrack's lock: never beside it
    ensure_sqlite_store(tracking_uri(tmp_path))
    client, seen_running = MlflowClient(tracking_uri(tmp_path)), []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and len(seen_running) < 2:
        time.sleep(0.5)
        experiment = client.get_experiment_by_name("synthetic_alpha360")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and runs[0].info.status == "RUNNING":
            steps = [point.step for point in client.get_metric_history(runs[0].info.run_id, "loss.valid")]
            if steps and steps not in seen_running:
                seen_running.append(steps)
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert len(seen_running) == 2 and len(seen_running[1]) > len(seen_running[0])  # one curve, growing
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and time.monotonic() - sent < 30, stderr[-2000:]
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic_alpha360").experiment_id])
    assert run.info.status == "KILLED" and "Traceback" not in stderr
