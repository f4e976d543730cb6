"""The metrics a client keeps of what it logged equal what the tracking store returns for the run."""

from __future__ import annotations

import math
from pathlib import Path

from mlflow.entities import Metric

from qtrack.tracking.runs import client_for
from qtrack.tracking.store import check_tracking_uri


def test_the_ledger_holds_the_stores_latest_values(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    check_tracking_uri(uri)
    client = client_for(uri)
    run_id = client.create_run(client.create_experiment("ledger")).info.run_id
    client.log_batch(run_id, metrics=[
        Metric("curve", 3.0, 1000, 0), Metric("curve", 1.0, 900, 2), Metric("curve", 2.0, 800, 1),  # highest step
        Metric("same_step", 5.0, 1000, 0), Metric("same_step", 4.0, 2000, 0),  # then the latest timestamp
        Metric("tie", 7.0, 1000, 0), Metric("tie", 9.0, 1000, 0), Metric("tie", 8.0, 1000, 0),  # then the largest
        Metric("nan_then_negative", math.nan, 1000, 0), Metric("nan_then_negative", -1.0, 1000, 0),
    ], synchronous=True)
    client.log_metric(run_id, "single", 0.25)
    client.log_metric(run_id, "single", 0.5, step=3)
    client.log_metric(run_id, "IC", 0.031, 1234, 0)

    stored = client.get_run(run_id).data.metrics
    kept = client.ledger.metrics(run_id)
    assert kept.keys() == stored.keys()
    assert all(kept[key] == stored[key] or math.isnan(kept[key]) and math.isnan(stored[key]) for key in stored)
    assert math.isnan(kept["nan_then_negative"])  # stored as 0 with a NaN flag, so it beats -1
    assert kept["curve"] == 1.0 and kept["same_step"] == 4.0 and kept["tie"] == 9.0 and kept["single"] == 0.5
    assert client.ledger.metrics("another run") == {}
