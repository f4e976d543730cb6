"""`qtrack dashboard`: the Streamlit app through AppTest over a real store (a train run, a benchmark, a
sweep, a registered model), its fallback to the JSON results, and one real headless browser."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import QLIB_REPORT, TINY, WITH_MODEL, cli_command, cli_env, free_port, plotly_values, run_cli, tracking_uri

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parents[2] / "src" / "qtrack" / "dashboard" / "app.py"
EXPERIMENT = "synthetic_alpha158"
FAST = [*TINY, "model.num_boost_round=30"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    folder = tmp_path_factory.mktemp("dashboard")
    env = {"QTRACK_DATA_ROOT": str(shared_data_root)}
    # Qlib's report page (about 4 s a process) only on the train run, whose Run view shows it
    for args, program in ((["train", *FAST, QLIB_REPORT, WITH_MODEL], "qtrack"),
                          (["benchmark", "models=[lightgbm,linear]", "seeds=1", *FAST], "qtrack"),
                          (["--trials", "3", *FAST], "run_optimization")):
        result = run_cli(args, cwd=folder, env=env, program=program)
        assert result.code == 0, result.stderr[-2000:]
    train = train_run(folder)
    result = run_cli(["register", train.info.run_id, "--name", "dash-model", "--alias", "champion"], cwd=folder)
    assert result.code == 0, result.stderr
    return folder


def client_of(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri(folder))


def train_run(folder: Path):
    client = client_of(folder)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], "tags.`qtrack.stage` = 'train'")[0]


def app(monkeypatch: pytest.MonkeyPatch, uri: str, results: Path, experiment: str | None = None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("QTRACK_DASHBOARD_TRACKING_URI", uri)
    monkeypatch.setenv("QTRACK_DASHBOARD_RESULTS", str(results))
    if experiment:
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    else:
        monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    test = AppTest.from_file(str(APP), default_timeout=120)
    test.run()
    assert not test.exception, test.exception
    return test


def show(test, view: str):
    test.sidebar.radio(key="view").set_value(view).run()
    assert not test.exception, test.exception
    return test


def charts(test) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in test.get("plotly_chart")]


def texts(test, kind: str) -> list[str]:
    return [element.value for element in getattr(test, kind)]


def test_runs_view_lists_every_run_with_mlflows_metric_values(store, monkeypatch):
    test = app(monkeypatch, tracking_uri(store), store / "results" / "benchmarks", EXPERIMENT)
    table = test.dataframe[0].value
    client = client_of(store)
    logged = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert set(table["run_id"]) == {run.info.run_id for run in logged}
    train = train_run(store)
    row = table.set_index("run_id").loc[train.info.run_id]
    assert row["Rank IC"] == pytest.approx(train.data.metrics["Rank IC"], abs=1e-12)
    assert row["stage"] == "train" and row["model"] == "lightgbm"

    test.multiselect[1].set_value(["optimize-trial"]).run()
    assert set(test.dataframe[0].value["stage"]) == {"optimize-trial"}
    assert len(test.dataframe[0].value) == 3


def test_run_view_shows_params_metrics_plots_and_qlibs_report(store, monkeypatch):
    test = show(app(monkeypatch, tracking_uri(store), store / "none", EXPERIMENT), "Run")
    train = train_run(store)
    label = next(option for option in test.selectbox(key="run").options if train.info.run_id[:8] in option)
    test.selectbox(key="run").set_value(label).run()
    metrics, params = (frame.value for frame in test.dataframe[:2])
    assert metrics.loc["IC", "value"] == pytest.approx(train.data.metrics["IC"], abs=1e-12)
    assert params.loc["model.name", "value"] == "lightgbm"
    shown = charts(test)
    assert [chart["layout"]["title"]["text"].split(" (")[0] for chart in shown] == [
        "Training curves", "Cumulative return", "Daily IC"]
    curves = {trace["name"]: trace for trace in shown[0]["data"]}
    assert set(curves) == {"l2.train", "l2.valid"}  # LightGBM's per-iteration losses, as MLflow holds them
    history = client_of(store).get_metric_history(train.info.run_id, "l2.valid")
    assert plotly_values(curves["l2.valid"]["y"]) == pytest.approx(
        [point.value for point in sorted(history, key=lambda point: point.step)], abs=1e-12)
    ic = client_of(store).download_artifacts(train.info.run_id, "sig_analysis/ic.pkl", str(store / "dl"))
    assert plotly_values(shown[2]["data"][0]["y"]) == pytest.approx(pd.read_pickle(ic).tolist(), abs=1e-12)
    frames = test.get("iframe")
    assert frames and "analysis_position.report_graph" in frames[0].proto.srcdoc


def test_compare_overlays_the_cumulative_returns_of_the_runs_picked(store, monkeypatch):
    test = show(app(monkeypatch, tracking_uri(store), store / "none", EXPERIMENT), "Compare")
    options = test.multiselect[0].options
    trials = [option for option in options if option.startswith("trial-")]
    test.multiselect[0].set_value(trials).run()
    assert list(test.dataframe[0].value.columns) == trials
    overlay = charts(test)[0]
    assert [trace["name"] for trace in overlay["data"]] == trials


def test_benchmark_ranking_shows_mean_and_std_with_error_bars(store, monkeypatch):
    test = show(app(monkeypatch, tracking_uri(store), store / "none", EXPERIMENT), "Benchmark ranking")
    saved = json.loads(next((store / "results" / "benchmarks").glob("*.json")).read_text())["ranking"]
    bars = charts(test)[0]["data"][0]
    assert bars["x"] == [row["model"] for row in saved]
    assert plotly_values(bars["y"]) == pytest.approx([row["avg_Rank IC"] for row in saved], abs=1e-12)
    assert "error_y" in bars
    test.selectbox[1].set_value("IC").run()
    assert plotly_values(charts(test)[0]["data"][0]["y"]) == pytest.approx([row["avg_IC"] for row in saved], abs=1e-12)


def test_sweep_shows_history_importance_and_the_best_command(store, monkeypatch):
    test = show(app(monkeypatch, tracking_uri(store), store / "none", EXPERIMENT), "Sweep")
    history = charts(test)[0]
    assert len(plotly_values(history["data"][0]["x"])) == 3
    command = next(store.glob("outputs/*/*/best_command.txt")).read_text().strip()
    assert texts(test, "code") == [command]


def test_registry_shows_versions_aliases(store, monkeypatch):
    test = show(app(monkeypatch, tracking_uri(store), store / "none", EXPERIMENT), "Registry")
    versions = test.dataframe[0].value
    assert versions.loc[0, "version"] == "1" and versions.loc[0, "aliases"] == "champion"
    assert versions.loc[0, "run_id"] == train_run(store).info.run_id


def test_json_results_source_shows_the_benchmark_files(store, monkeypatch):
    test = app(monkeypatch, tracking_uri(store), store / "results" / "benchmarks", EXPERIMENT)
    test.sidebar.radio(key="source").set_value("JSON results").run()
    saved = json.loads(next((store / "results" / "benchmarks").glob("*.json")).read_text())
    assert test.dataframe[0].value["model"].tolist() == [row["model"] for row in saved["ranking"]]


def test_results_files_of_the_wrong_shape_or_cut_short_are_named_not_crashed_on(store, monkeypatch, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    good = next((store / "results" / "benchmarks").glob("*.json"))
    (folder / "good.json").write_text(good.read_text())
    (folder / "numbers.json").write_text(json.dumps({"ranking": [1, 2]}))
    (folder / "bare.json").write_text(json.dumps({"ranking": [{"model": "linear", "runs": 1}]}))
    (folder / "cut.json").write_text(good.read_text()[:200])
    (folder / "other.json").write_text(json.dumps({"not": "results"}))
    test = app(monkeypatch, tracking_uri(store), folder, EXPERIMENT)
    test.sidebar.radio(key="source").set_value("JSON results").run()
    assert not test.exception, test.exception
    warnings = sorted(texts(test, "warning"))
    assert len(warnings) == 3, warnings
    assert warnings[0] == "Left out bare.json: it has ranking rows without any avg_<metric> column."
    assert warnings[1].startswith("Left out cut.json: it is not readable JSON") and "cut short" in warnings[1]
    assert warnings[2] == "Left out numbers.json: it has a ranking that is not a list of rows."
    ranked = [row["model"] for row in json.loads(good.read_text())["ranking"]]
    assert test.dataframe[0].value["model"].tolist() == ranked

    test = app(monkeypatch, tracking_uri(store), folder / "good.json", EXPERIMENT)
    test.sidebar.radio(key="source").set_value("JSON results").run()
    assert texts(test, "warning") == [f"{folder / 'good.json'} is a file, not a folder: give --results the folder "
                                      "that holds the results files."]


@pytest.mark.parametrize("uri", ["http://127.0.0.1:{port}", "sqlite:///{missing}/mlflow.db"])
def test_an_unreachable_store_falls_back_to_the_json_results_with_a_notice(store, monkeypatch, tmp_path, uri):
    uri = uri.format(port=free_port(), missing=tmp_path / "nowhere")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    test = app(monkeypatch, uri, store / "results" / "benchmarks")
    assert len(test.warning) == 1 and "MLflow can't be reached" in test.warning[0].value
    assert "127.0.0.1" in test.warning[0].value or "no tracking store" in test.warning[0].value
    assert len(test.dataframe[0].value) == 2, "the benchmark's ranking from the JSON file"
    assert not (tmp_path / "nowhere").exists(), "the dashboard never creates a store"


def test_empty_store_unknown_experiment_and_no_results_say_what_to_run(store, monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    MlflowClient(tracking_uri(empty)).search_experiments()  # creates an empty store
    test = app(monkeypatch, tracking_uri(empty), tmp_path / "none")
    assert "run `qtrack train`" in texts(test, "info")[0]
    test.sidebar.radio(key="source").set_value("JSON results").run()
    assert "`qtrack benchmark` writes them there" in texts(test, "info")[0]

    test = app(monkeypatch, tracking_uri(store), tmp_path / "none", "no_such_experiment")
    assert "'no_such_experiment'" in texts(test, "warning")[0]
    assert test.sidebar.selectbox(key="experiment").value == EXPERIMENT


def test_the_dashboard_never_writes_to_the_store(store, monkeypatch):
    database = store / "mlruns" / "mlflow.db"
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    test = app(monkeypatch, tracking_uri(store), store / "none", EXPERIMENT)
    for view in ("Run", "Compare", "Benchmark ranking", "Sweep", "Registry"):
        show(test, view)
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no chromium + chromedriver here (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    options.binary_location = chromium
    return webdriver.Chrome(options=options, service=Service(driver))


def wait_for_port(port: int, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"qtrack dashboard did not listen on {port} (exit {server.poll()})")


@contextmanager
def in_browser(store: Path, env: dict[str, str] | None = None) -> Iterator[SimpleNamespace]:
    """`qtrack dashboard` over the store and a headless chromium on it; `output` holds what the server printed
    once the block ends."""
    port = free_port()
    server = subprocess.Popen(cli_command(["dashboard", "--port", str(port)]), cwd=store, env=cli_env(env),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, server)
        driver = browser()
    except BaseException:
        server.kill()
        raise
    session = SimpleNamespace(driver=driver, output="")
    try:
        driver.get(f"http://127.0.0.1:{port}")
        yield session
    finally:
        driver.quit()
        server.terminate()
        session.output = server.communicate(timeout=30)[0].decode(errors="replace")


def test_a_real_browser_shows_the_runs_and_a_metric_value_from_mlflow(store, tmp_path):
    from selenium.webdriver.common.by import By

    client = client_of(store)
    latest = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], "metrics.IC > -2",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    shown_ic = f"{latest.data.metrics['ICIR']:.4f}"
    with in_browser(store) as session:
        driver = session.driver
        deadline, text = time.monotonic() + 90, ""
        while time.monotonic() < deadline and not (latest.info.run_id[:8] in text and shown_ic in text):
            time.sleep(0.5)
            text = driver.find_element(By.TAG_NAME, "body").text
        screenshot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(screenshot))
    output = session.output
    assert EXPERIMENT in text and "runs (newest" in text, output[-2000:]
    assert f"{latest.info.run_name} ({latest.info.run_id[:8]}" in text
    assert shown_ic in text, f"ICIR {shown_ic} of {latest.info.run_id} not on the page"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    assert "Traceback" not in output


ATTACK = """<script>
try {
  parent.document.body.insertAdjacentHTML("afterbegin", "<h1>PWNED-BY-ARTIFACT " + parent.location.host + "</h1>");
  document.body.insertAdjacentHTML("afterbegin", "<p id=verdict>REACHED-THE-PARENT</p>");
} catch (error) {
  document.body.insertAdjacentHTML("afterbegin", "<p id=verdict>BLOCKED " + error.name + "</p>");
}
</script>"""


def hostile_run(store: Path) -> str:
    """A run whose Qlib report page (the train run's real one) carries a script that writes into its parent,
    as anyone with write access to a shared store could log."""
    client = client_of(store)
    page = Path(client.download_artifacts(train_run(store).info.run_id, "reports/qlib_report.html",
                                          str(store / "hostile-dl"))).read_text()
    path = store / "hostile" / "qlib_report.html"
    path.parent.mkdir(exist_ok=True)
    path.write_text(page.replace("</body>", ATTACK + "</body>"))
    experiment_id = client.create_experiment("hostile", artifact_location=(store / "mlruns" / "hostile").as_uri())
    run = client.create_run(experiment_id, run_name="hostile-report")
    client.log_artifact(run.info.run_id, str(path), "reports")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_an_artifacts_script_cannot_reach_the_dashboard_page(store, tmp_path):
    from selenium.webdriver.common.by import By

    copy = tmp_path / "store"  # the shared store stays as the other tests expect it
    shutil.copytree(store, copy)
    hostile_run(copy)
    with in_browser(copy, {"MLFLOW_EXPERIMENT_NAME": "hostile"}) as session:
        driver = session.driver
        deadline = time.monotonic() + 120
        verdict, plots, sandbox = "", 0, None
        while time.monotonic() < deadline and not (verdict and plots):
            time.sleep(0.5)
            driver.switch_to.default_content()
            run_view = [e for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebar'] label")
                        if e.text.strip() == "Run"]
            outer = driver.find_elements(By.CSS_SELECTOR, "iframe")
            if outer:
                driver.switch_to.frame(outer[0])
            inner = driver.find_elements(By.CSS_SELECTOR, "iframe[sandbox]") if outer else []
            if not inner:
                driver.switch_to.default_content()
                if run_view:
                    run_view[0].click()  # until the report shows: a click while the page reruns can be lost
                continue
            sandbox = inner[0].get_attribute("sandbox")
            driver.switch_to.frame(inner[0])
            verdict = driver.execute_script("var v = document.getElementById('verdict'); return v ? v.textContent : ''")
            plots = driver.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length")
        driver.switch_to.default_content()
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        screenshot = tmp_path / "hostile-report.png"
        driver.save_screenshot(str(screenshot))
        top = driver.find_element(By.TAG_NAME, "body").text
    output = session.output
    assert verdict == "BLOCKED SecurityError", (verdict, output[-2000:])
    assert "PWNED-BY-ARTIFACT" not in top and "hostile-report" in top
    assert sandbox == "allow-scripts", "scripts run, but never with the dashboard's origin"
    assert plots > 0, "Qlib's graphs still draw inside the sandbox"
    assert screenshot.stat().st_size > 20_000
