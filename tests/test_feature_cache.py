"""The feature cache through the real CLI: hit, miss, invalidation, corruption, concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import TINY, needs_sample, run_cli, tracking_uri

FAST = [*TINY, "model.num_boost_round=30"]
SAME = ("IC", "Rank IC", "rmse", "1day.excess_return_with_cost.annualized_return")


def train(folder: Path, *overrides: str):
    result = run_cli(["train", *FAST, *overrides], cwd=folder)
    assert result.code == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(folder))
    run = client.search_runs([e.experiment_id for e in client.search_experiments()],
                             order_by=["attributes.start_time DESC"])[0]
    return result, run


def entries(folder: Path, name: str = "synthetic") -> list[Path]:
    return sorted((folder / "data" / ".cache" / name).glob("*.pkl"))


def test_hit_miss_invalidation_and_corruption(workspace):
    _, cold = train(workspace)
    assert cold.data.tags["qtrack.feature_cache"] == "miss"
    assert len(entries(workspace)) == 1

    _, warm = train(workspace)
    assert warm.data.tags["qtrack.feature_cache"] == "hit"
    assert {k: warm.data.metrics[k] for k in SAME} == {k: cold.data.metrics[k] for k in SAME}

    _, other_data = train(workspace, "dataset.synthetic.seed=1")
    assert other_data.data.tags["qtrack.feature_cache"] == "miss"
    assert other_data.data.tags["qtrack.data_fingerprint"] != cold.data.tags["qtrack.data_fingerprint"]

    _, other_segments = train(workspace, "dataset.split.train=0.5")
    assert other_segments.data.tags["qtrack.feature_cache"] == "miss"
    assert len(entries(workspace)) == 3

    oldest = min(entries(workspace), key=lambda path: path.stat().st_mtime)
    oldest.write_bytes(b"not a pickle")  # the entry of the first run's inputs
    result, rebuilt = train(workspace, "dataset.synthetic.seed=0")
    assert rebuilt.data.tags["qtrack.feature_cache"] == "miss"
    assert "unreadable" in result.stderr
    assert {k: rebuilt.data.metrics[k] for k in SAME} == {k: cold.data.metrics[k] for k in SAME}

    _, off = train(workspace, "dataset.cache=false")
    assert off.data.tags["qtrack.feature_cache"] == "off"
    assert "time.features_seconds" in off.data.metrics


def test_two_processes_building_the_same_entry(workspace):
    qtrack = Path(sys.executable).parent / "qtrack"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["QTRACK_DATA_ROOT"] = str(workspace / "data")
    processes = [
        subprocess.Popen([str(qtrack), "train", "-q", *FAST, f"run_name=worker-{i}"], cwd=workspace, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    client = MlflowClient(tracking_uri(workspace))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags["qtrack.feature_cache"] for r in runs) == ["hit", "miss"]
    assert runs[0].data.metrics["IC"] == runs[1].data.metrics["IC"]
    assert len(entries(workspace)) == 1


@needs_sample
def test_train_on_the_imported_sample(tmp_path, sp500_root):
    result = run_cli(["train", "dataset.name=sp500", "model.num_boost_round=50"], cwd=tmp_path,
                     env={"QTRACK_DATA_ROOT": str(sp500_root)})
    assert result.code == 0, result.stderr[-3000:]
    assert "automatic segments cover 2009-01-02..2016-12-30" in " ".join(result.stderr.split())
    client = MlflowClient(tracking_uri(tmp_path))
    run = client.search_runs([client.get_experiment_by_name("sp500_alpha158").experiment_id])[0]
    train_start, _ = run.data.params["segments.train"].split(",")
    _, test_end = run.data.params["segments.test"].split(",")
    assert train_start == "2009-01-02"
    assert "2016-12-01" < test_end < "2016-12-30"
    assert {"IC", "Rank IC", "1day.excess_return_with_cost.annualized_return"} <= set(run.data.metrics)
