"""Both engines through the real CLI: `features.engine` and `backtest.engine` set to `fast` (the default) or
`qlib` give the same predictions and the same portfolio analysis, and the two feature engines keep
separate feature-cache entries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, run_cli, tracking_uri

pytestmark = pytest.mark.slow

ARTIFACTS = (
    "pred.pkl",
    "portfolio_analysis/report_normal_1day.pkl",
    "portfolio_analysis/indicators_normal_1day.pkl",
    "portfolio_analysis/port_analysis_1day.pkl",
    "portfolio_analysis/indicator_analysis_1day.pkl",
)


def _train(folder: Path, *overrides: str):
    result = run_cli(["train", *TINY, "model.num_boost_round=30", *overrides], cwd=folder)
    assert result.code == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(folder))
    run = client.search_runs([e.experiment_id for e in client.search_experiments()],
                             order_by=["attributes.start_time DESC"])[0]
    return client, run


def _artifact(client: MlflowClient, run, name: str, folder: Path):
    return pd.read_pickle(client.download_artifacts(run.info.run_id, name, str(folder)))


def test_fast_and_qlib_engines_give_the_same_run(workspace: Path) -> None:
    client, fast = _train(workspace)
    _, qlib = _train(workspace, "features.engine=qlib", "backtest.engine=qlib")
    assert fast.data.params["features.engine"] == "fast" and qlib.data.params["features.engine"] == "qlib"
    assert fast.data.tags["qtrack.feature_cache"] == qlib.data.tags["qtrack.feature_cache"] == "miss"
    assert len(list((workspace / "data" / ".cache" / "synthetic").glob("*.features"))) == 2

    for name in ARTIFACTS:
        ours = _artifact(client, fast, name, workspace / "fast")
        theirs = _artifact(client, qlib, name, workspace / "qlib")
        pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=1e-9, atol=1e-12)
    positions = _artifact(client, fast, "portfolio_analysis/positions_normal_1day.pkl", workspace / "fast")
    expected = _artifact(client, qlib, "portfolio_analysis/positions_normal_1day.pkl", workspace / "qlib")
    assert {day: p.position for day, p in positions.items()} == {day: p.position for day, p in expected.items()}
    metric = "1day.excess_return_with_cost.annualized_return"
    assert fast.data.metrics[metric] == qlib.data.metrics[metric]
    assert fast.data.metrics["IC"] == qlib.data.metrics["IC"]
