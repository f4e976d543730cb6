"""Both engines through the real CLI: `features.engine` and `backtest.engine` set to `fast` (the default) or
`qlib` give the same predictions and the same portfolio analysis, and the two feature engines keep
separate feature-cache entries. `qtrack backtest --pred FILE` on a train run's own predictions gives the
train run's IC and backtest; bad files are refused in one line with exit 2 before anything is tracked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


SAME = ("IC", "Rank IC", "1day.excess_return_with_cost.annualized_return", "1day.excess_return_without_cost.mean")


def _runs(folder: Path) -> list:
    client = MlflowClient(tracking_uri(folder))
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              order_by=["attributes.start_time DESC"])


def _artifact(client: MlflowClient, run, name: str, folder: Path):
    return pd.read_pickle(client.download_artifacts(run.info.run_id, name, str(folder)))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory):
    """One tiny market trained with the fast engines, then with Qlib's, in one folder."""
    folder = tmp_path_factory.mktemp("engines")
    env = {"QTRACK_DATA_ROOT": str(folder / "data")}
    runs = []
    for overrides in ([], ["features.engine=qlib", "backtest.engine=qlib"]):
        result = run_cli(["train", *TINY, "model.num_boost_round=30", *overrides], cwd=folder, env=env)
        assert result.code == 0, result.stderr[-3000:]
        runs.append(_runs(folder)[0])
    return folder, env, MlflowClient(tracking_uri(folder)), *runs


def test_fast_and_qlib_engines_give_the_same_run(two_runs) -> None:
    workspace, _, client, fast, qlib = two_runs
    assert fast.data.params["features.engine"] == "fast" and qlib.data.params["features.engine"] == "qlib"
    assert fast.data.tags["qtrack.feature_cache"] == qlib.data.tags["qtrack.feature_cache"] == "miss"
    entries = sorted(path.name for path in (workspace / "data" / ".cache" / "synthetic").glob("*.features"))
    assert len(entries) == 3 and len([name for name in entries if name.startswith("raw-")]) == 1  # fast only

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
    for name in ("sig_analysis/ic.pkl", "sig_analysis/ric.pkl"):  # qtrack's IC analysis, bit for bit Qlib's
        pd.testing.assert_series_equal(_artifact(client, fast, name, workspace / "fast"),
                                       _artifact(client, qlib, name, workspace / "qlib"), check_exact=True)
    for metric in ("IC", "ICIR", "Rank IC", "Rank ICIR"):
        assert fast.data.metrics[metric] == qlib.data.metrics[metric]


def test_a_train_runs_predictions_backtest_to_the_same_numbers(two_runs) -> None:
    workspace, env, client, fast, _ = two_runs
    pred = pd.read_pickle(client.download_artifacts(fast.info.run_id, "pred.pkl", str(workspace)))
    csv = workspace / "pred.csv"
    pred.reset_index().to_csv(csv, index=False)
    result = run_cli(["backtest", "--pred", str(csv), *TINY], cwd=workspace, env=env)
    assert result.code == 0, result.stderr[-3000:]
    run = _runs(workspace)[0]
    assert run.data.tags["qtrack.stage"] == "backtest" and run.info.status == "FINISHED"
    assert run.data.params["segments.test"] == fast.data.params["segments.test"]
    for metric in SAME:
        assert run.data.metrics[metric] == pytest.approx(fast.data.metrics[metric], rel=1e-9), metric


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: pd.concat([p, p.iloc[:1]]), "duplicate rows"),
    (lambda p: p.assign(instrument=p["instrument"].where(p.index > 0, "NOPE")), "not in the market: NOPE"),
    (lambda p: p.assign(datetime=p["datetime"].where(p.index > 0, pd.Timestamp("1990-01-06"))),
     "not trading days"),
    (lambda p: p.drop(columns="score"), "needs the columns datetime, instrument, score"),
])
def test_bad_prediction_files_are_refused_in_one_line(two_runs, tmp_path: Path, change, message: str) -> None:
    workspace, env, *_ = two_runs
    days = pd.bdate_range("2018-03-01", periods=20)
    rows = pd.MultiIndex.from_product([days, ["SYN000", "SYN001"]], names=["datetime", "instrument"])
    frame = change(pd.DataFrame({"score": range(len(rows))}, index=rows).reset_index())
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    before = len(_runs(workspace))
    result = run_cli(["backtest", "--pred", str(path), *TINY], cwd=workspace, env=env)
    assert result.code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(_runs(workspace)) == before


def _train_predictions(two_runs) -> pd.DataFrame:
    workspace, _, client, fast, _ = two_runs
    return pd.read_pickle(client.download_artifacts(fast.info.run_id, "pred.pkl", str(workspace))).reset_index()


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.assign(score=np.nan), "no finite score (NaN or ±inf in all"),
    (lambda p: p.assign(score=np.where(p.index % 2, np.inf, -np.inf)), "no finite score"),
    (lambda p: p.assign(score=0.25), "every score is 0.25, so there is nothing to rank"),
])
def test_scores_with_nothing_to_rank_are_refused(two_runs, tmp_path: Path, change, message: str) -> None:
    workspace, env, *_ = two_runs
    path = tmp_path / "scores.pkl"
    change(_train_predictions(two_runs)).to_pickle(path)
    before = len(_runs(workspace))
    result = run_cli(["backtest", "--pred", str(path), *TINY], cwd=workspace, env=env)
    assert result.code == 2 and message in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(_runs(workspace)) == before, "nothing tracked"


def test_non_finite_rows_are_counted_dropped_and_huge_scores_keep_their_ic(two_runs, tmp_path: Path) -> None:
    workspace, env, client, fast, _ = two_runs
    predictions = _train_predictions(two_runs)
    partly = predictions.copy()
    partly.loc[partly.index[:7], "score"] = np.inf
    huge = predictions.assign(score=predictions["score"] * 1e200)
    ics = {}
    for name, frame in (("partly", partly), ("huge", huge), ("scaled", predictions.assign(score=predictions["score"]
                                                                                           / 3.0))):
        path = tmp_path / f"{name}.pkl"
        frame.to_pickle(path)
        result = run_cli(["backtest", "--pred", str(path), *TINY, f"run_name=bt-{name}"], cwd=workspace, env=env)
        assert result.code == 0, result.stderr[-2000:]
        if name == "partly":
            assert f"7 of {len(partly)} rows have a NaN or ±inf score and were dropped" in result.stderr
        run = next(r for r in _runs(workspace) if r.info.run_name == f"bt-{name}")
        ics[name] = run.data.metrics["IC"]
    assert np.isfinite(ics["partly"]) and ics["partly"] != 0.0
    assert ics["huge"] == pytest.approx(fast.data.metrics["IC"], rel=1e-9) != 0.0, "no overflow to IC 0.0"
    assert ics["scaled"] == pytest.approx(fast.data.metrics["IC"], rel=1e-9)


def test_close_time_stamps_name_their_trading_days(two_runs, tmp_path: Path) -> None:
    workspace, env, client, fast, _ = two_runs
    stamped = _train_predictions(two_runs)
    stamped["datetime"] = stamped["datetime"] + pd.Timedelta(hours=16)
    path = tmp_path / "stamped.csv"
    stamped.to_csv(path, index=False)
    result = run_cli(["backtest", "--pred", str(path), *TINY, "run_name=bt-stamped"], cwd=workspace, env=env)
    assert result.code == 0, result.stderr[-2000:]
    assert "times of day dropped" in result.stderr
    run = next(r for r in _runs(workspace) if r.info.run_name == "bt-stamped")
    assert run.data.metrics["IC"] == pytest.approx(fast.data.metrics["IC"], rel=1e-9)
