"""`qtrack benchmark` through the real CLI on a tiny market, and the ModelBenchmark API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, run_cli, tracking_uri
from qtrack.stages.benchmark import ModelBenchmark

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
        assert rows[model]["Rank IC mean"] == pytest.approx(means[model], abs=1e-12)
        assert rows[model]["Rank IC std"] == pytest.approx(stds[model], abs=1e-12)
    assert "Rank IC" in (finished / "outputs").rglob("ranking.md").__next__().read_text()


def test_report_rebuilds_the_same_ranking_from_mlflow(finished):
    result = run_cli(["benchmark", "report", "--experiment", "synthetic_alpha158", "--output", "report.json"],
                     cwd=finished)
    assert result.code == 0, result.stderr
    rebuilt = json.loads((finished / "report.json").read_text())["ranking"]
    original = json.loads(next((finished / "outputs").rglob("ranking.json")).read_text())["ranking"]
    assert [row["model"] for row in rebuilt] == [row["model"] for row in original]
    for new, old in zip(rebuilt, original, strict=True):
        for key in ("IC mean", "Rank IC mean", "Rank IC std", "1day.excess_return_with_cost.annualized_return mean"):
            assert new[key] == pytest.approx(old[key], abs=1e-12)


def test_save_and_load_round_trip(finished, tmp_path):
    path = next((finished / "outputs").rglob("ranking.json"))
    saved = json.loads(path.read_text())["ranking"]
    loaded = ModelBenchmark.load_results(path)
    table = loaded.get_ranking()
    assert list(table.index) == [row["model"] for row in saved]
    for row in saved:
        assert table.loc[row["model"], "Rank IC mean"] == pytest.approx(row["Rank IC mean"], abs=1e-12)
    again = ModelBenchmark.load_results(loaded.save_results(tmp_path / "again.json"))
    pd.testing.assert_frame_equal(again.get_ranking(), table)
    assert loaded.get_ranking(metric="IC")["IC mean"].is_monotonic_decreasing


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
