"""Scheduled retrains on the S&P 500 sample: cut at the end of 2015, then of 2016; register, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import cut_sample, needs_sample, run_cli, tracking_uri

# Real trainings on the S&P sample; `make test-fast` leaves them out.
pytestmark = [pytest.mark.slow, needs_sample]

RETRAIN = ["retrain", "dataset.name=sp500", "retrain.train_days=500", "retrain.valid_days=120",
           "retrain.holdout_days=120", "model.num_boost_round=50", "mlflow.qlib_report=false"]
# The CI script's test checks the job's plumbing (import or update, retrain, tomorrow's list), not the rule
SHORT_WINDOWS = ["retrain.train_days=150", "retrain.valid_days=40", "retrain.holdout_days=40",
                 "model.num_boost_round=30", "mlflow.qlib_report=false", "mlflow.plots=false"]


def import_cut(root: Path, last_day: str) -> None:
    source = cut_sample(root / f"cut-{last_day}", last_day)
    result = run_cli(["data", "import", str(source), "--name", "sp500"], cwd=root, env=env_for(root))
    assert result.code == 0, result.stderr[-2000:]


def update_cut(root: Path, last_day: str) -> str:
    folder = root / f"cut-{last_day}"
    source = folder if folder.is_dir() else cut_sample(folder, last_day)
    result = run_cli(["data", "update", str(source), "--name", "sp500"], cwd=root, env=env_for(root))
    assert result.code == 0, result.stderr[-2000:]
    return result.stdout


def env_for(root: Path) -> dict[str, str]:
    return {"QTRACK_DATA_ROOT": str(root / "data")}


def retrain(root: Path, name: str, summary: str, *extra: str):
    result = run_cli([*RETRAIN, f"retrain.model_name={name}", f"retrain.summary={root / summary}", *extra],
                     cwd=root, env=env_for(root))
    assert result.code == 0, result.stderr[-3000:]
    return json.loads((root / summary).read_text()), result


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("retrain")
    import_cut(root, "2015-12-31")
    first, _ = retrain(root, "sp", "first.json")
    retrain(root, "sp-kept", "kept-first.json")
    update_cut(root, "2016-12-31")  # the daily job: new prices in, retrain, then tomorrow's list
    second, _ = retrain(root, "sp", "second.json")
    kept, _ = retrain(root, "sp-kept", "kept-second.json", "retrain.min_improvement=1")  # nothing beats by 1
    assert kept["decision"] == "kept"
    return root, first, second


def predict(root: Path, model: str, output: str, *window: str) -> pd.Series:
    result = run_cli(["predict", "--model", model, "--output", str(root / output), *window], cwd=root,
                     env=env_for(root))
    assert result.code == 0, result.stderr[-3000:]
    frame = pd.read_csv(root / output, parse_dates=["datetime"])
    return frame.set_index(["datetime", "instrument"])["score"]


def raw_label(root: Path, start: str, end: str) -> pd.Series:
    """Alpha158's label, close(t+2) / close(t+1) - 1, straight from the imported price files."""
    import qlib
    from qlib.data import D

    qlib.init(provider_uri=str(root / "data" / "sp500"), region="us")
    frame = D.features(D.instruments("all"), ["Ref($close, -2) / Ref($close, -1) - 1"], start, end)
    return frame.iloc[:, 0].swaplevel().sort_index()


def mean_rank_ic(scores: pd.Series, label: pd.Series) -> float:
    joined = pd.concat({"score": scores, "label": label}, axis=1, join="inner")
    daily = joined.groupby(level="datetime").apply(lambda day: day["score"].corr(day["label"], method="spearman"))
    return float(daily.mean())


def test_the_first_retrain_promotes_because_there_is_no_champion(flow):
    root, first, _ = flow
    assert first["decision"] == "promoted" and first["reason"] == "there was no champion"
    assert first["data_end"] == "2015-12-31" and first["champion_version"] is None
    assert first["holdout"][1] <= "2015-12-31"


def test_the_second_retrain_scores_both_models_on_one_holdout_and_follows_the_rule(flow):
    root, _, second = flow
    assert second["champion_version"] == "1" and second["challenger_version"] == "2"
    start, end = second["holdout"]
    assert "2016-01-01" <= start < end <= "2016-12-31"
    # independent recomputation: each registered model scores the holdout through `qtrack predict`,
    # and the label comes straight from the prices
    label = raw_label(root, start, end)
    for version, key in (("1", "champion_score"), ("2", "challenger_score")):
        scores = predict(root, f"sp/{version}", f"holdout-v{version}.csv", "--start", start, "--end", end)
        assert mean_rank_ic(scores, label) == pytest.approx(second[key], abs=1e-9)
    expected = "promoted" if second["challenger_score"] - second["champion_score"] >= 0.0 else "kept"
    assert second["decision"] == expected
    client = MlflowClient(tracking_uri(root))
    champion = client.get_model_version_by_alias("sp", "champion")
    assert str(champion.version) == ("2" if expected == "promoted" else "1")
    challenger = client.get_model_version("sp", "2")
    assert challenger.tags["qtrack.retrain.decision"] == expected
    assert client.get_run(second["challenger_run_id"]).data.tags["qtrack.retrain.decision"] == expected


def test_a_retrain_without_new_data_does_nothing(flow):
    root, _, _ = flow
    client = MlflowClient(tracking_uri(root))
    runs_before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    assert "nothing changed" in update_cut(root, "2016-12-31")  # the same files again: the data stays as it was
    third, result = retrain(root, "sp", "third.json")
    assert third["decision"] == "skipped" and "no new data" in third["reason"]
    assert len(client.search_model_versions("name = 'sp'")) == 2
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == runs_before


def test_a_kept_challenger_is_remembered_so_the_next_run_without_new_data_does_nothing(flow):
    """The third of three scheduled runs, after the second challenger was kept, not promoted: a retrain is
    due only when the data goes beyond the last evaluated challenger's data end, not the champion's."""
    root, _, _ = flow
    client = MlflowClient(tracking_uri(root))
    assert str(client.get_model_version_by_alias("sp-kept", "champion").version) == "1"
    third, _ = retrain(root, "sp-kept", "kept-third.json")
    assert third["decision"] == "skipped"
    assert "no new data since version 2 (kept)" in third["reason"]
    assert len(client.search_model_versions("name = 'sp-kept'")) == 2


def test_predict_scores_every_instrument_and_matches_the_training_run(flow):
    root, _, second = flow
    client = MlflowClient(tracking_uri(root))
    champion = client.get_model_version_by_alias("sp", "champion")
    trained = pd.read_pickle(client.download_artifacts(champion.run_id, "pred.pkl", str(root / "pred"))).iloc[:, 0]
    days = sorted(trained.index.get_level_values("datetime").unique())[-5:]
    start, end = days[0].strftime("%Y-%m-%d"), days[-1].strftime("%Y-%m-%d")
    scores = predict(root, "sp@champion", "window.csv", "--start", start, "--end", end)
    joined = pd.concat({"predicted": scores, "trained": trained}, axis=1, join="inner")
    assert len(joined) == len(scores) == len(trained.loc[days[0]:days[-1]])
    assert np.abs(joined["predicted"] - joined["trained"]).max() < 1e-9

    latest = predict(root, "sp@champion", "latest.csv")
    instruments = pd.read_csv(root / "data" / "sp500" / "instruments" / "all.txt", sep="\t", header=None)
    listed_on_last_day = set(instruments[instruments[2] >= "2016-12-30"][0])
    assert set(latest.index.get_level_values("datetime")) == {pd.Timestamp("2016-12-30")}
    assert set(latest.index.get_level_values("instrument")) == listed_on_last_day
    parquet = run_cli(["predict", "--model", "sp@champion", "--output", str(root / "latest.parquet")], cwd=root,
                      env=env_for(root))
    assert parquet.code == 0 and len(pd.read_parquet(root / "latest.parquet")) == len(latest)


def test_predict_latest_is_tomorrows_ranked_list(flow):
    root, _, _ = flow
    result = run_cli(["predict", "--model", "sp@champion", "--latest", "--topk", "10", "--output",
                      str(root / "latest.csv")], cwd=root, env=env_for(root))
    assert result.code == 0, result.stderr[-3000:]
    latest = pd.read_csv(root / "latest.csv", parse_dates=["datetime"])
    assert list(latest.columns) == ["datetime", "instrument", "score", "rank", "top_k"]
    assert latest["datetime"].nunique() == 1 and str(latest["datetime"].iloc[0].date()) == "2016-12-30"
    assert latest["score"].is_monotonic_decreasing and list(latest["rank"]) == list(range(1, len(latest) + 1))
    assert latest["top_k"].sum() == 10 and latest["top_k"].iloc[:10].all()
    # the instruments trading that day, straight from the prices; the scores are the plain predict's
    import qlib
    from qlib.data import D

    qlib.init(provider_uri=str(root / "data" / "sp500"), region="us")
    close = D.features(D.instruments("all"), ["$close"], "2016-12-30", "2016-12-30")["$close"].dropna()
    assert set(latest["instrument"]) == set(close.index.get_level_values("instrument"))
    plain = predict(root, "sp@champion", "plain.csv").droplevel("datetime")
    np.testing.assert_allclose(latest.set_index("instrument")["score"], plain.loc[latest["instrument"]], rtol=1e-12)
    refused = run_cli(["predict", "--model", "sp@champion", "--latest", "--start", "2016-01-04", "--output",
                       str(root / "x.csv")], cwd=root, env=env_for(root))
    assert refused.code == 2 and "--latest" in refused.stderr and "Traceback" not in refused.stderr


def test_models_list_shows_versions_and_aliases(flow):
    root, _, _ = flow
    result = run_cli(["models", "list"], cwd=root, env=env_for(root))
    assert result.code == 0, result.stderr
    assert "champion" in result.stdout and "sp" in result.stdout


def test_a_second_retrain_while_the_first_holds_the_lock_exits_4(flow):
    from filelock import FileLock

    from qtrack.stages.retrain import lock_path

    root, _, _ = flow
    with FileLock(str(lock_path(tracking_uri(root), "sp"))):
        result = run_cli([*RETRAIN, "retrain.model_name=sp"], cwd=root, env=env_for(root))
    assert result.code == 4
    assert "another retrain of model 'sp' is running" in result.stderr


def test_a_failure_before_promotion_leaves_the_alias_unchanged(flow, monkeypatch):
    from qtrack.stages.retrain import run_retrain
    from qtrack.tracking import registry

    root, first, _ = flow
    registered = run_cli(["register", first["challenger_run_id"], "--name", "sp-guarded", "--alias", "champion"],
                         cwd=root, env=env_for(root))
    assert registered.code == 0, registered.stderr
    monkeypatch.chdir(root)
    monkeypatch.setenv("QTRACK_DATA_ROOT", str(root / "data"))

    def fail(*args, **kwargs):
        raise RuntimeError("injected failure before promotion")

    monkeypatch.setattr(registry, "register", fail)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_retrain([*RETRAIN[1:], "retrain.model_name=sp-guarded", "retrain.min_improvement=-100"], quiet=True)
    client = MlflowClient(tracking_uri(root))
    assert str(client.get_model_version_by_alias("sp-guarded", "champion").version) == "1"
    assert len(client.search_model_versions("name = 'sp-guarded'")) == 1


def test_the_ci_script_imports_and_retrains(tmp_path):
    import subprocess
    import sys

    from helpers import cli_env

    script = Path(__file__).resolve().parents[2] / "scripts" / "ci_retrain.sh"
    env = cli_env({"QTRACK_DATA_ROOT": str(tmp_path / "data"), "QTRACK_SUMMARY": str(tmp_path / "summary.json"),
                   "QTRACK": str(Path(sys.executable).parent / "qtrack"), "QTRACK_DATASET": "sp500",
                   "QTRACK_TOMORROW": str(tmp_path / "tomorrow.csv")})
    # Two days of a daily cron, a week apart, on a data root kept between them (the workflow's cache).
    features = []
    for day, decision in (("2015-12-31", "promoted"), ("2016-01-08", None)):
        prices = cut_sample(tmp_path / f"prices-{day}", day)
        done = subprocess.run(["bash", str(script), str(prices), *SHORT_WINDOWS, "retrain.model_name=from-ci"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["model"] == "from-ci" and summary["data_end"] == day
        assert decision is None or summary["decision"] == decision
        tomorrow = pd.read_csv(tmp_path / "tomorrow.csv")
        assert set(tomorrow["datetime"]) == {day} and tomorrow["rank"].min() == 1
        challenger = MlflowClient(tracking_uri(tmp_path)).get_run(summary["challenger_run_id"])
        features.append(challenger.data.tags["qtrack.feature_cache"])
    assert "updated 'sp500'" in done.stdout  # the second day updated the dataset instead of re-importing it
    assert features == ["miss", "extended"], "the second day extends the kept features instead of rebuilding"
