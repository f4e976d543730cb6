"""The store a user names wins over MLFLOW_TRACKING_URI, for every command that takes one: with the
environment naming store A and the flag or override naming store B, each command reads or writes B only,
and `gc --yes` leaves A byte-identical."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, WITH_MODEL, cli_command, cli_env, free_port, run_cli, tracking_uri

pytestmark = pytest.mark.slow

LINEAR = [*TINY, "model=linear", "mlflow.plots=false", WITH_MODEL]


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file below `folder` (locks aside) with the hash of its bytes."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.endswith(".lock")}


def wait_for_http(url: str, seconds: float = 60) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path):
    """Store A (named by the environment, holding one run and its artifacts) and a working folder whose
    commands name store B."""
    home_a = tmp_path_factory.mktemp("store-a")
    work = tmp_path_factory.mktemp("store-b")
    env_a = {"QTRACK_DATA_ROOT": str(shared_data_root), "MLFLOW_TRACKING_URI": tracking_uri(home_a)}
    first = run_cli(["train", *LINEAR, "-q"], cwd=home_a, env=env_a)
    assert first.code == 0, first.stderr[-2000:]
    return home_a, work, env_a, tracking_uri(work / "b")


def test_every_command_uses_the_store_it_is_given(stores):
    home_a, work, env_a, uri_b = stores
    before = folder_digest(home_a)
    flag = ["--tracking-uri", uri_b]
    override = f"mlflow.tracking_uri={uri_b}"

    def run(args: list[str], program: str = "qtrack"):
        result = run_cli(args, cwd=work, env=env_a, program=program)
        assert result.code == 0, (args, result.stderr[-2000:])
        assert f"tracking store: {uri_b}" in result.stderr, (args, result.stderr[-2000:])
        assert tracking_uri(home_a) not in result.stdout + result.stderr, args
        return result

    run(["train", *LINEAR, "-q", override])
    client = MlflowClient(uri_b)
    (trained,) = client.search_runs([client.get_experiment_by_name("synthetic_alpha158").experiment_id])
    pred = Path(client.download_artifacts(trained.info.run_id, "pred.pkl", str(work)))
    run(["backtest", "--pred", str(pred), *LINEAR, "-q", override])
    run(["register", trained.info.run_id, "--name", "b-model", "--alias", "champion", *flag])
    assert "b-model" in run(["models", "list", *flag]).stdout
    run(["predict", "--model", "b-model@champion", "--latest", "--output", str(work / "tomorrow.csv"), *flag])
    run(["--trials", "1", *LINEAR, override], program="run_optimization")  # `qtrack optimize` under its own name
    run(["benchmark", *LINEAR, "models=[linear]", "seeds=1", override])
    run(["benchmark", "report", "--experiment", "synthetic_alpha158", *flag])
    run(["rolling", *LINEAR, "rolling.step=60", "rolling.valid_days=30", "-q", override])
    run(["retrain", *LINEAR, "retrain.train_days=150", "retrain.valid_days=40", "retrain.holdout_days=40",
         f"retrain.summary={work / 'retrain.json'}", override])
    assert json.loads((work / "retrain.json").read_text())["decision"] in ("promoted", "kept")
    listed = run(["gc", "--older-than", "0s", "--dry-run", *flag]).stdout
    assert f"in {uri_b}" in listed and "backtest-pred" in listed  # the train run stays: it is registered
    run(["gc", "--older-than", "0s", "--yes", *flag])
    assert folder_digest(home_a) == before, "a command wrote to the store the environment named"
    assert len(MlflowClient(tracking_uri(home_a)).search_runs(["1"])) == 1


def test_ui_and_dashboard_serve_the_store_they_are_given(stores):
    home_a, work, env_a, uri_b = stores
    client = MlflowClient(uri_b)
    if client.get_experiment_by_name("only-in-b") is None:
        client.create_experiment("only-in-b")
    port = free_port()
    ui = subprocess.Popen(cli_command(["ui", "--port", str(port), "--tracking-uri", uri_b]), cwd=work,
                          env=cli_env(env_a), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        answer = wait_for_http(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=100")
        assert "only-in-b" in {experiment["name"] for experiment in json.loads(answer)["experiments"]}
    finally:
        ui.terminate()
        ui.wait(timeout=30)
    port = free_port()
    board = subprocess.Popen(cli_command(["dashboard", "--port", str(port), "--tracking-uri", uri_b]), cwd=work,
                             env=cli_env(env_a), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_stcore/health")
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{board.pid}/environ").read_bytes().decode().split("\0") if "=" in item)
        assert environ["QTRACK_DASHBOARD_TRACKING_URI"] == uri_b
        assert environ["MLFLOW_TRACKING_URI"] == uri_b
    finally:
        board.terminate()
        board.wait(timeout=30)


def test_ui_on_a_port_in_use_fails_in_one_line(workspace):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(["ui", "--port", str(port)], cwd=workspace, timeout=60)
    assert result.code == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"qtrack: error: can't serve the UI on 127.0.0.1:{port}: Address already in use (choose another --port)"]
