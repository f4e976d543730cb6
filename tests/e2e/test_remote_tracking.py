"""Remote tracking against a real `mlflow server --app-name basic-auth` on 127.0.0.1, secrets never
logged, clear and fast failures, many local writers, `qtrack gc` and `qtrack ui`."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from helpers import TINY, WITH_MODEL, WITH_PLOTS, cli_command, cli_env, free_port, needs_postgres, run_cli, tracking_uri

pytestmark = pytest.mark.slow  # real trainings on tiny data; `make test-fast` leaves them out

FAST = [*TINY, "model.num_boost_round=30", WITH_MODEL]  # what a server logs includes the model
ADMIN = ("admin", "admin-password-1234")
USER, PASSWORD = "alice", "alice-Pa55word-9876-xyz"
VENDOR_TOKEN = "vendor-token-5f2b9c1e"


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {seconds} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("server")
    (folder / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = EDIT\n"
        f"database_uri = sqlite:///{folder / 'auth.db'}\n"
        f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**cli_env(), "MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"),
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "qtrack-test-flask-key"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(url, process)
        created = requests.post(f"{url}/api/2.0/mlflow/users/create", auth=ADMIN, timeout=10,
                                json={"username": USER, "password": PASSWORD})
        assert created.status_code == 200, created.text
        yield url, folder
    finally:
        process.terminate()
        process.wait(timeout=30)


def credentials(url: str, password: str = PASSWORD) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": password}


def server_run(url: str, monkeypatch: pytest.MonkeyPatch, run_name: str) -> tuple[MlflowClient, object]:
    """A client with the user's credentials, and the run of that name in the default experiment."""
    for name, value in credentials(url).items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("synthetic_alpha158")
    (run,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{run_name}'")
    return client, run


def everything_logged(client: MlflowClient, run, folder: Path) -> str:
    """Params, tags, every artifact's bytes, and every file of the run folder, as one text."""
    parts = [repr(run.data.params), repr(run.data.tags)]
    local = Path(client.download_artifacts(run.info.run_id, "", str(folder)))
    parts += [path.read_bytes().decode("latin-1") for path in local.rglob("*") if path.is_file()]
    return "\n".join(parts)


def run_folder_text(workdir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (workdir / "outputs").rglob("*") if p.is_file())


def test_train_through_an_authenticated_server_logs_everything_and_no_secret(
    server, tmp_path, monkeypatch, shared_data_root
):
    url, server_folder = server
    result = run_cli(["train", *FAST, WITH_PLOTS, "run_name=remote", f"+vendor.token={VENDOR_TOKEN}"], cwd=tmp_path,
                     env={**credentials(url), "QTRACK_DATA_ROOT": str(shared_data_root)})
    assert result.code == 0, result.stderr[-3000:]
    client, run = server_run(url, monkeypatch, "remote")
    assert run.info.status == "FINISHED"
    assert run.data.params["vendor.token"] == "***"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"pred.pkl", "config.yaml", "summary.json", "plots"} <= artifacts
    # artifacts went through the server's proxy into its artifact destination
    stored = {p.name for p in (server_folder / "artifacts").rglob("*") if p.is_file()}
    assert {"pred.pkl", "summary.json"} <= stored
    logged = everything_logged(client, run, tmp_path / "downloaded")
    for secret in (PASSWORD, VENDOR_TOKEN):
        assert secret not in logged
        assert secret not in result.stdout + result.stderr
        assert secret not in run_folder_text(tmp_path)


def test_credentials_inside_the_uri_are_masked_everywhere(server, tmp_path, monkeypatch, shared_data_root):
    url, _ = server
    with_secret = url.replace("http://", f"http://{USER}:{PASSWORD}@")
    result = run_cli(["train", *FAST, "run_name=uri-creds"], cwd=tmp_path,
                     env={"MLFLOW_TRACKING_URI": with_secret, "QTRACK_DATA_ROOT": str(shared_data_root)})
    assert result.code == 0, result.stderr[-3000:]
    client, run = server_run(url, monkeypatch, "uri-creds")
    assert run.data.params["mlflow.tracking_uri"] == url.replace("http://", f"http://{USER}:***@")
    assert PASSWORD not in everything_logged(client, run, tmp_path / "downloaded")
    assert PASSWORD not in result.stdout + result.stderr + run_folder_text(tmp_path)


def test_optimize_and_benchmark_nest_their_runs_on_the_server(server, tmp_path, monkeypatch, shared_data_root):
    url, _ = server
    light = [*FAST, "mlflow.log_model=false", "mlflow.plots=false"]
    env = {**credentials(url), "QTRACK_DATA_ROOT": str(shared_data_root)}
    swept = run_cli(["optimize", "--trials", "2", "--study-name", "remote-sweep", *light], cwd=tmp_path, env=env)
    assert swept.code == 0, swept.stderr[-3000:]
    compared = run_cli(["benchmark", "models=[lightgbm]", "seeds=1", *light], cwd=tmp_path, env=env)
    assert compared.code == 0, compared.stderr[-3000:]
    for name, value in credentials(url).items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(url)
    experiment_id = client.get_experiment_by_name("synthetic_alpha158").experiment_id
    for stage, count in (("optimize", 2), ("benchmark", 1)):
        (parent,) = client.search_runs([experiment_id], f"tags.`qtrack.stage` = '{stage}'")
        kids = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert parent.info.status == "FINISHED" and len(kids) == count
        assert {kid.info.status for kid in kids} == {"FINISHED"}
    assert PASSWORD not in swept.stdout + swept.stderr + compared.stdout + compared.stderr


def test_a_wrong_password_exits_3_within_seconds(server, tmp_path):
    url, _ = server
    start = time.monotonic()
    result = run_cli(["train", *FAST], cwd=tmp_path, env=credentials(url, password="not-the-password"))
    assert time.monotonic() - start < 20
    assert result.code == 3
    assert result.stderr.strip().splitlines() == [
        f"qtrack: error: tracking server {url} refused the credentials (check MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN)"
    ]
    assert "not-the-password" not in result.stderr


def test_nothing_listening_exits_3_within_seconds(tmp_path):
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}"
    start = time.monotonic()
    result = run_cli(["train", *FAST], cwd=tmp_path, env={"MLFLOW_TRACKING_URI": url})
    assert time.monotonic() - start < 20
    assert result.code == 3
    (line,) = result.stderr.strip().splitlines()
    assert "cannot be reached" in line and f"{USER}:***@" in line and PASSWORD not in line


def test_four_parallel_writers_on_one_sqlite_store_all_land(tmp_path, shared_data_root):
    env = cli_env({"QTRACK_DATA_ROOT": str(shared_data_root)})
    writers = [subprocess.Popen(cli_command(["train", "-q", *FAST, f"seed={seed}", f"run_name=writer-{seed}"]),
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for seed in range(4)]
    outputs = [writer.communicate(timeout=600) for writer in writers]
    for writer, (_, stderr) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, stderr[-3000:]
    client = MlflowClient(tracking_uri(tmp_path))
    experiment = client.get_experiment_by_name("synthetic_alpha158")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == [f"writer-{seed}" for seed in range(4)]
    assert {run.info.status for run in runs} == {"FINISHED"}


def _run_with_artifact(client: MlflowClient, experiment_id: str, name: str, ended_ms: int) -> str:
    run = client.create_run(experiment_id, run_name=name, start_time=ended_ms - 1000)
    client.log_text(run.info.run_id, f"artifact of {name}", "note.txt")
    client.set_terminated(run.info.run_id, "FINISHED", end_time=ended_ms)
    return run.info.run_id


def test_gc_deletes_exactly_the_old_unregistered_runs_and_their_artifacts(workspace):
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(workspace)
    assert run_cli(["gc", "--older-than", "1d", "--dry-run"], cwd=workspace).code == 0  # creates the store
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("hygiene")
    now_ms = int(time.time() * 1000)
    old = _run_with_artifact(client, experiment_id, "old", now_ms - 40 * 86_400_000)
    registered = _run_with_artifact(client, experiment_id, "old-registered", now_ms - 40 * 86_400_000)
    new = _run_with_artifact(client, experiment_id, "new", now_ms - 86_400_000)
    client.create_registered_model("kept")
    client.create_model_version("kept", f"runs:/{registered}/note.txt", run_id=registered)
    old_artifacts = Path(client.get_run(old).info.artifact_uri.removeprefix("file://"))
    assert (old_artifacts / "note.txt").is_file()

    dry = run_cli(["gc", "--older-than", "30d", "--dry-run"], cwd=workspace)
    assert dry.code == 0, dry.stderr
    assert old in dry.stdout and registered not in dry.stdout and new not in dry.stdout
    assert client.get_run(old).info.lifecycle_stage == "active"

    done = run_cli(["gc", "--older-than", "30d", "--yes"], cwd=workspace)
    assert done.code == 0, done.stderr
    with pytest.raises(MlflowException):
        client.get_run(old)
    assert not old_artifacts.exists()
    for kept in (registered, new):
        run = client.get_run(kept)
        assert run.info.lifecycle_stage == "active"
        assert client.download_artifacts(kept, "note.txt", str(workspace / kept))


def test_gc_refuses_a_bad_age_and_a_server_uri(workspace):
    bad = run_cli(["gc", "--older-than", "thirty days"], cwd=workspace)
    assert bad.code == 2 and "invalid age" in bad.stderr
    remote = run_cli(["gc", "--older-than", "30d"], cwd=workspace, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert remote.code == 2 and "needs the tracking store itself" in remote.stderr


def test_ui_serves_the_local_store_on_localhost(workspace):
    port = free_port()
    process = subprocess.Popen(cli_command(["ui", "--port", str(port)]), cwd=workspace, env=cli_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        assert (workspace / "mlruns" / "mlflow.db").is_file()
    finally:
        process.terminate()
        process.wait(timeout=30)


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@needs_postgres(POSTGRES_ADMIN)
def test_a_postgresql_database_works_directly_as_the_tracking_uri(tmp_path, shared_data_root):
    import uuid

    import psycopg

    database = f"qtrack_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {database}")
    uri = f"postgresql://postgres@127.0.0.1:5432/{database}"
    try:
        result = run_cli(["train", *FAST, "run_name=on-postgres"], cwd=tmp_path,
                         env={"MLFLOW_TRACKING_URI": uri, "QTRACK_DATA_ROOT": str(shared_data_root)})
        assert result.code == 0, result.stderr[-3000:]
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("synthetic_alpha158").experiment_id])
        assert run.info.run_name == "on-postgres" and run.info.status == "FINISHED"
        assert "Rank IC" in run.data.metrics
        assert "pred.pkl" in {a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
