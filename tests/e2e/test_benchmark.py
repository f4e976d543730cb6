"""`qtrack benchmark` through the real CLI on a tiny market, and the ModelBenchmark API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, cli_env, run_cli, tracking_uri
from qtrack.benchmark import ModelBenchmark

pytestmark = pytest.mark.slow  # real trainings on tiny data; `make test-fast` leaves them out

FAST = [*TINY, 'model_overrides.lightgbm=["model.num_boost_round=30"]']


def children_of(client: MlflowClient, parent) -> list:
    return client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def benchmark_parent(client: MlflowClient):
    experiment = client.get_experiment_by_name("synthetic_alpha158")
    return client.search_runs([experiment.experiment_id], "tags.`qtrack.stage` = 'benchmark'",
                              order_by=["attributes.start_time DESC"])[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    result = run_cli(["benchmark", "models=[lightgbm,linear]", "seeds=2", *FAST], cwd=folder,
                     env={"QTRACK_DATA_ROOT": str(folder / "data")})
    assert result.code == 0, result.stderr[-3000:]
    assert "| lightgbm |" in result.stdout and "| linear |" in result.stdout
    assert "[4/4]" in result.stderr and "ETA" in result.stderr
    return folder


def test_children_parent_and_ranking_agree(finished):
    client = MlflowClient(tracking_uri(finished))
    parent = benchmark_parent(client)
    children = children_of(client, parent)
    assert len(children) == 4
    assert {r.info.status for r in children} == {"FINISHED"}
    assert sorted(r.info.run_name for r in children) == ["lightgbm-job0", "lightgbm-job1", "linear-job2", "linear-job3"]
    assert {(r.data.params["model.name"], r.data.params["seed"]) for r in children} == {
        ("lightgbm", "0"), ("lightgbm", "1"), ("linear", "0"), ("linear", "1")}
    assert {r.data.tags["qtrack.data_fingerprint"] for r in children} == {parent.data.tags["qtrack.data_fingerprint"]}

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"ranking.json", "ranking.md", "ranking.png"} <= artifacts
    assert parent.data.metrics["feature_builds"] == 1.0, "one dataset for every model and seed"
    assert parent.data.tags["qtrack.benchmark.metric"] == "Rank IC"

    by_model: dict[str, list[float]] = {}
    for run in children:
        by_model.setdefault(run.data.params["model.name"], []).append(run.data.metrics["Rank IC"])
    means = {m: float(np.mean(v)) for m, v in by_model.items()}
    stds = {m: float(np.std(v, ddof=1)) for m, v in by_model.items()}
    winner = max(means, key=means.get)
    assert parent.data.tags["qtrack.best_model"] == winner
    assert parent.data.metrics["best_Rank_IC"] == pytest.approx(means[winner], abs=1e-12)

    saved = json.loads(Path(client.download_artifacts(parent.info.run_id, "ranking.json", str(finished))).read_text())
    rows = {row["model"]: row for row in saved["ranking"]}
    assert [row["model"] for row in saved["ranking"]] == sorted(means, key=means.get, reverse=True)
    for model in means:
        assert rows[model]["avg_Rank IC"] == pytest.approx(means[model], abs=1e-12)
        assert rows[model]["std_Rank IC"] == pytest.approx(stds[model], abs=1e-12)
    assert "Rank IC" in (finished / "outputs").rglob("ranking.md").__next__().read_text()


def test_report_rebuilds_the_same_ranking_from_mlflow(finished):
    result = run_cli(["benchmark", "report", "--experiment", "synthetic_alpha158", "--output", "report.json"],
                     cwd=finished)
    assert result.code == 0, result.stderr
    rebuilt = json.loads((finished / "report.json").read_text())["ranking"]
    original = json.loads(next((finished / "outputs").rglob("ranking.json")).read_text())["ranking"]
    assert [row["model"] for row in rebuilt] == [row["model"] for row in original]
    for new, old in zip(rebuilt, original, strict=True):
        for key in ("avg_IC", "avg_Rank IC", "std_Rank IC", "avg_1day.excess_return_with_cost.annualized_return"):
            assert new[key] == pytest.approx(old[key], abs=1e-12)


def test_save_and_load_round_trip(finished, tmp_path):
    path = next((finished / "outputs").rglob("ranking.json"))
    saved = json.loads(path.read_text())["ranking"]
    loaded = ModelBenchmark.load_results(path, output_dir=tmp_path)
    table = loaded.get_ranking()
    assert table["model"].tolist() == [row["model"] for row in saved]
    for row, (_, shown) in zip(saved, table.iterrows(), strict=True):
        assert shown["avg_Rank IC"] == pytest.approx(row["avg_Rank IC"], abs=1e-12)
    written = loaded.save_results("again.json")
    assert written == tmp_path / "again.json"
    pd.testing.assert_frame_equal(ModelBenchmark.load_results(written).get_ranking(), table)
    assert loaded.get_ranking(metric="IC")["avg_IC"].is_monotonic_decreasing
    published = list((finished / "results" / "benchmarks").glob("synthetic_alpha158_benchmark-*.json"))
    assert len(published) == 1 and json.loads(published[0].read_text())["ranking"] == saved


def test_a_failing_model_is_reported_and_the_others_complete(workspace):
    result = run_cli(["benchmark", "models=[lightgbm,linear]", "seeds=1", *FAST,
                      'model_overrides.linear=["model.estimator=bogus"]'], cwd=workspace)
    assert result.code == 1, result.stderr[-2000:]
    assert "linear seed 0: failed" in result.stderr
    assert "| linear | failed |" in result.stdout
    assert "estimator must be one of" in result.stdout
    client = MlflowClient(tracking_uri(workspace))
    children = children_of(client, benchmark_parent(client))
    status = {r.data.params.get("model.name"): r.info.status for r in children}
    assert status == {"lightgbm": "FINISHED", "linear": "FAILED"}


def test_unknown_model_is_a_one_line_error(workspace):
    result = run_cli(["benchmark", "models=[lightgbm,nope]"], cwd=workspace)
    assert result.code == 2
    assert result.stderr.startswith("qtrack: error: models: unknown ['nope']")


PLAYBOOK = '''
import mlflow
from qtrack.benchmark import ModelBenchmark

mlflow.set_experiment("walmart_sales_forecasting")
with mlflow.start_run(run_name="lightgbm_vs_catboost"):
    benchmark = ModelBenchmark(output_dir="results/benchmarks/mlflow")
    benchmark.run(OVERRIDES)
    path = benchmark.save_results("walmart_lightgbm_vs_catboost.json")
    mlflow.log_artifact(path)
    mlflow.log_metric("best_mape", benchmark.get_ranking().iloc[0]["avg_mape"])
'''


def test_the_playbooks_snippet_runs_as_written_and_nests_under_the_open_run(tmp_path, shared_data_root):
    overrides = ["models=[lightgbm,catboost]", "seeds=1", "metric=mape", *TINY,
                 'model_overrides.lightgbm=["model.num_boost_round=30"]',
                 'model_overrides.catboost=["model.num_boost_round=30"]']
    script = tmp_path / "snippet.py"
    script.write_text(PLAYBOOK.replace("OVERRIDES", repr(overrides)))
    env = {**cli_env(), "QTRACK_DATA_ROOT": str(shared_data_root)}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    saved = json.loads((tmp_path / "results/benchmarks/mlflow/walmart_lightgbm_vs_catboost.json").read_text())
    assert [row["model"] for row in saved["ranking"]] == sorted(
        (row["model"] for row in saved["ranking"]), key=lambda m: next(r["avg_mape"] for r in saved["ranking"]
                                                                       if r["model"] == m))
    published = list((tmp_path / "results/benchmarks/mlflow").glob("walmart_sales_forecasting_benchmark-*"))
    assert sorted(p.suffix for p in published) == [".json", ".png"], "the stage's own results file and chart"

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # MLflow's default store, as the snippet used
    experiment = client.get_experiment_by_name("walmart_sales_forecasting")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    outer = runs["lightgbm_vs_catboost"]
    parent = next(run for name, run in runs.items() if name.startswith("benchmark-"))
    assert parent.data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert {run.data.tags.get("mlflow.parentRunId") for name, run in runs.items()
            if name.endswith(("-job0", "-job1"))} == {parent.info.run_id}
    assert outer.data.metrics["best_mape"] == pytest.approx(saved["ranking"][0]["avg_mape"], abs=1e-12)
    assert [a.path for a in client.list_artifacts(outer.info.run_id)] == ["walmart_lightgbm_vs_catboost.json"]
    assert outer.info.status == "FINISHED" and parent.info.status == "FINISHED"


def test_run_overrides_extend_the_constructors(workspace):
    from qtrack.benchmark import ModelBenchmark
    from qtrack.errors import QtrackError

    with pytest.raises(QtrackError, match="seeds: give a positive count"):
        ModelBenchmark(overrides=["seeds=-1"]).run(["models=[linear]"])  # the constructor's seeds are used
    with pytest.raises(QtrackError, match="seeds: give a positive count"):
        ModelBenchmark(overrides=["seeds=1"]).run(["seeds=-1"])  # and run()'s come after them
    with pytest.raises(QtrackError, match="no results: call run"):
        ModelBenchmark().get_ranking()


def test_results_never_leave_output_dir_and_follow_the_umask(finished, tmp_path):
    import os
    import stat

    from qtrack.errors import QtrackError

    loaded = ModelBenchmark.load_results(next((finished / "outputs").rglob("ranking.json")),
                                         output_dir=tmp_path / "results")
    for name in ("../escape.json", str(tmp_path / "elsewhere.json"), "sub/../../escape.json"):
        with pytest.raises(QtrackError, match="leads outside output_dir"):
            loaded.save_results(name)
    assert not (tmp_path / "escape.json").exists() and not (tmp_path / "elsewhere.json").exists()
    previous = os.umask(0o002)  # a team's shared results folder
    try:
        written = loaded.save_results("shared.json")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == 0o664
