"""A Qlib user's own data directory and qrun workflows, as they are.

The Qlib directory here is written by the test itself (numpy to Qlib's .bin layout), not by qtrack's importer:
24 stocks in a `csi300` market, an `SH000300` index and 330 trading days. qrun itself runs on one workflow,
and `qtrack train --from-qrun` on the same file must give the same IC and backtest.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from helpers import TINY, WITH_MODEL, run_cli, tracking_uri
from helpers.qlib_directory import INDEX, SEGMENTS, STOCKS, qrun_workflow, write_qlib_directory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
QLIB_LIGHTGBM_WORKFLOW = FIXTURES / "workflow_config_lightgbm_Alpha158.yaml"
SIGNAL_METRICS = ("IC", "ICIR", "Rank IC", "Rank ICIR")


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def latest_run(uri: str, experiment: str):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"])[0]


def workflow(data: Path, uri: str, model: dict) -> dict:
    """Qlib's LightGBM benchmark workflow, pointed at the test's directory, segments and store."""
    return qrun_workflow(QLIB_LIGHTGBM_WORKFLOW, data, uri, model)


LIGHTGBM = {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
            "kwargs": {"loss": "mse", "learning_rate": 0.1, "num_leaves": 15, "max_depth": 4, "num_threads": 2,
                       "num_boost_round": 60, "early_stopping_rounds": 10}}
XGBOOST = {"class": "XGBModel", "module_path": "qlib.contrib.model.xgboost",
           "kwargs": {"eta": 0.1, "max_depth": 4, "nthread": 2, "eval_metric": "rmse"}}


@pytest.fixture(scope="module")
def qlib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qlib_directory(tmp_path_factory.mktemp("qlib") / "qlib_tiny")


@pytest.fixture(scope="module")
def qrun_and_qtrack(qlib_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """qrun and `qtrack train --from-qrun` on one workflow file, both logging to the store it names."""
    work = tmp_path_factory.mktemp("from-qrun")
    uri = tracking_uri(work)
    path = work / "workflow_config_lightgbm_Alpha158.yaml"
    path.write_text(yaml.safe_dump(workflow(qlib_dir, uri, LIGHTGBM), sort_keys=False))
    env = {"QTRACK_DATA_ROOT": str(work / "data")}
    qrun = run_cli([str(path)], cwd=work, env=env, program="qrun")
    assert qrun.code == 0, qrun.stderr[-3000:]
    qtrack = run_cli(["train", "--from-qrun", str(path), "mlflow.experiment_name=qtrack", "-q"], cwd=work, env=env)
    assert qtrack.code == 0, qtrack.stderr
    return work, path, uri, qtrack


def test_from_qrun_gives_qruns_ic_and_backtest_on_the_same_workflow(qrun_and_qtrack) -> None:
    _, _, uri, _ = qrun_and_qtrack
    theirs, ours = latest_run(uri, "workflow"), latest_run(uri, "qtrack")
    backtest = sorted(k for k in theirs.data.metrics if k.startswith("1day."))
    assert "1day.excess_return_with_cost.annualized_return" in backtest
    for key in (*SIGNAL_METRICS, *backtest):
        assert ours.data.metrics[key] == pytest.approx(theirs.data.metrics[key], rel=1e-9, abs=1e-12), key
    assert ours.data.params["dataset.benchmark"] == INDEX
    assert ours.data.params["model.seed_key"] == "null"  # the workflow plants no seed, so neither does qtrack


def test_the_printed_command_is_the_same_run(qrun_and_qtrack) -> None:
    work, path, _, qtrack = qrun_and_qtrack
    line = next(line for line in qtrack.stderr.splitlines() if line.startswith("equivalent: "))
    printed = shlex.split(line.removeprefix("equivalent: "))
    assert printed[:2] == ["qtrack", "train"] and printed[-1] == "mlflow.experiment_name=qtrack"
    env = {"QTRACK_DATA_ROOT": str(work / "data")}
    from_file = run_cli(["train", "--from-qrun", str(path), "--cfg"], cwd=work, env=env)
    from_printed = run_cli([*printed[1:], "--cfg"], cwd=work, env=env)
    assert from_file.code == from_printed.code == 0, from_printed.stderr
    assert yaml.safe_load(from_printed.stdout) == {**yaml.safe_load(from_file.stdout),
                                                   "mlflow": yaml.safe_load(from_printed.stdout)["mlflow"]}
    assert yaml.safe_load(from_printed.stdout)["mlflow"]["experiment_name"] == "qtrack"


def test_benchmark_from_qrun_ranks_each_workflows_model(qrun_and_qtrack, qlib_dir: Path) -> None:
    work, path, uri, _ = qrun_and_qtrack
    xgb = work / "workflow_config_xgboost_Alpha158.yaml"
    xgb.write_text(yaml.safe_dump(workflow(qlib_dir, uri, XGBOOST), sort_keys=False))
    result = run_cli(["benchmark", "--from-qrun", str(path), str(xgb), "mlflow.experiment_name=bench", "-q"],
                     cwd=work, env={"QTRACK_DATA_ROOT": str(work / "data")})
    assert result.code == 0, result.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("bench").experiment_id
    children = {run.data.params["model.name"]: run
                for run in client.search_runs([experiment], "tags.`qtrack.benchmark.job` != ''")}
    assert set(children) == {"lightgbm", "xgboost"}
    assert children["xgboost"].data.params["model.eta"] == "0.1"
    # the benchmark's lightgbm child is the workflow's model: the same IC as the single train
    single = latest_run(uri, "qtrack")
    assert children["lightgbm"].data.metrics["IC"] == pytest.approx(single.data.metrics["IC"], rel=1e-9)


def test_keys_qtrack_cant_honour_are_named_in_one_line(qlib_dir: Path, workspace: Path) -> None:
    flow = workflow(qlib_dir, tracking_uri(workspace), LIGHTGBM)
    flow["task"]["record"][1]["kwargs"]["ana_long_short"] = True
    flow["task"]["record"][2]["kwargs"]["config"]["strategy"]["kwargs"]["hold_thresh"] = 3
    flow["task"]["dataset"]["kwargs"]["handler"]["kwargs"]["inst_processors"] = [{"class": "Resample"}]
    path = workspace / "workflow.yaml"
    path.write_text(yaml.safe_dump(flow))
    result = run_cli(["train", "--from-qrun", str(path)], cwd=workspace)
    assert result.code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for key in ("task.record[1].kwargs", "strategy.kwargs.hold_thresh", "handler.kwargs.inst_processors"):
        assert key in result.stderr
    assert not (workspace / "mlruns").exists()  # refused before any run


def test_train_reads_a_qlib_directory_in_place_with_the_csi300_preset(qlib_dir: Path, workspace: Path) -> None:
    before = tree_state(qlib_dir)
    args = ["train", "dataset=csi300", f"dataset.provider_uri={qlib_dir}", "model=linear", *TINY[3:], WITH_MODEL, "-q",
            *(f"dataset.segments.{name}=[{a},{b}]" for name, (a, b) in SEGMENTS.items())]
    cold = run_cli(args, cwd=workspace)
    assert cold.code == 0, cold.stderr
    warm = run_cli(args, cwd=workspace)
    assert warm.code == 0, warm.stderr
    assert tree_state(qlib_dir) == before  # read in place, never written
    assert (workspace / "data" / ".cache" / "csi300").is_dir()  # the cache lives under qtrack's data root
    runs = MlflowClient(tracking_uri(workspace)).search_runs(
        [MlflowClient(tracking_uri(workspace)).get_experiment_by_name("csi300_alpha158").experiment_id],
        order_by=["attributes.start_time ASC"])
    assert [run.data.tags["qtrack.feature_cache"] for run in runs] == ["miss", "hit"]
    params = runs[0].data.params
    assert (params["dataset.provider_uri"], params["dataset.benchmark"]) == (str(qlib_dir), INDEX)
    assert (params["dataset.region"], params["backtest.limit_threshold"]) == ("cn", "0.095")
    assert runs[0].data.metrics["1day.excess_return_with_cost.annualized_return"] == pytest.approx(
        runs[1].data.metrics["1day.excess_return_with_cost.annualized_return"])

    registered = run_cli(["register", runs[0].info.run_id, "--name", "cn", "--alias", "champion"], cwd=workspace)
    assert registered.code == 0, registered.stderr
    tomorrow = run_cli(["predict", "--model", "cn@champion", "--latest", "--output", "tomorrow.csv"], cwd=workspace)
    assert tomorrow.code == 0, tomorrow.stderr  # from the model's own Qlib directory, not the data root
    ranked = pd.read_csv(workspace / "tomorrow.csv")
    assert set(ranked["instrument"]) == set(STOCKS) and ranked["datetime"].nunique() == 1
    assert tree_state(qlib_dir) == before


def test_a_changed_qlib_directory_changes_the_fingerprint_the_cache_is_keyed_by(qlib_dir: Path) -> None:
    """The feature-cache key hashes the data fingerprint (tests/e2e/test_feature_cache.py shows a new fingerprint
    misses); for a directory read in place, a file's new size or time is a new fingerprint."""
    from qtrack.data.external import stat_fingerprint

    changed = qlib_dir / "features" / STOCKS[0].lower() / "close.day.bin"
    stat = changed.stat()
    before = stat_fingerprint(qlib_dir)
    assert stat_fingerprint(qlib_dir) == before
    try:
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert stat_fingerprint(qlib_dir) != before
    finally:
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert stat_fingerprint(qlib_dir) == before


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", "no directory at"),
        ("no_calendar", "calendars/day.txt is missing"),
        ("no_market", "market 'csi300' not in dataset"),
    ],
)
def test_a_broken_qlib_directory_is_one_line_and_exit_2(breakage: str, message: str, qlib_dir: Path,
                                                        workspace: Path) -> None:
    broken = workspace / "broken"
    if breakage != "missing":
        write_qlib_directory(broken)
        (broken / ("calendars/day.txt" if breakage == "no_calendar" else "instruments/csi300.txt")).unlink()
    result = run_cli(["train", "dataset=csi300", f"dataset.provider_uri={broken}"], cwd=workspace)
    assert result.code == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


def test_the_csi300_preset_is_qlibs_benchmark_setting(workspace: Path) -> None:
    """`dataset=csi300` composes to what Qlib's own LightGBM Alpha158 workflow says (data, market, benchmark,
    segments, topk/n_drop, costs and the 0.095 limit)."""
    preset = run_cli(["train", "dataset=csi300", "--cfg"], cwd=workspace)
    qlibs = run_cli(["train", "--from-qrun", str(QLIB_LIGHTGBM_WORKFLOW), "--cfg"], cwd=workspace)
    assert preset.code == qlibs.code == 0, qlibs.stderr
    ours, theirs = yaml.safe_load(preset.stdout), yaml.safe_load(qlibs.stdout)
    for section, ignored in (("dataset", {"name", "limit_threshold", "synthetic"}), ("backtest", set())):
        assert {k: v for k, v in ours[section].items() if k not in ignored} == {
            k: v for k, v in theirs[section].items() if k not in ignored}, section
    assert json.dumps(ours["features"]["learn_processors"]) == json.dumps(theirs["features"]["learn_processors"])


def test_a_qrun_workflow_with_a_relative_directory_and_a_holiday_start_trains_and_predicts_anywhere(
        qlib_dir: Path, workspace: Path) -> None:
    """qrun reads `provider_uri: qlib_tiny` from where it runs and starts a 2015-01-01 segment on the first
    trading day (2015-01-05); qtrack does both, says so, and stores the directory absolute, so `predict` from
    another folder finds it."""
    import shutil

    shutil.copytree(qlib_dir, workspace / "qlib_tiny")
    flow = workflow(Path("qlib_tiny"), tracking_uri(workspace), LIGHTGBM)
    flow["task"]["dataset"]["kwargs"]["segments"]["train"][0] = "2015-01-01"
    flow["task"]["dataset"]["kwargs"]["handler"]["kwargs"].update(start_time="2015-01-01", fit_start_time="2015-01-01")
    path = workspace / "workflow.yaml"
    path.write_text(yaml.safe_dump(flow))
    trained = run_cli(["train", "--from-qrun", str(path), "mlflow.experiment_name=relative", "-q"], cwd=workspace)
    assert trained.code == 0, trained.stderr[-2000:]
    assert ("dataset.segments.train starts 2015-01-01, before the data's first trading day: it starts 2015-01-05"
            in " ".join(trained.stderr.split()))
    run = latest_run(tracking_uri(workspace), "relative")
    assert run.data.params["dataset.provider_uri"] == str(workspace / "qlib_tiny")
    assert run.data.params["segments.train"].startswith("2015-01-05")
    registered = run_cli(["register", run.info.run_id, "--name", "relative", "--alias", "champion",
                          "--tracking-uri", tracking_uri(workspace)], cwd=workspace)
    assert registered.code == 0, registered.stderr
    elsewhere = workspace / "elsewhere"
    elsewhere.mkdir()
    scored = run_cli(["predict", "--model", "relative@champion", "--latest", "--output", "tomorrow.csv",
                      "--tracking-uri", tracking_uri(workspace)], cwd=elsewhere)
    assert scored.code == 0, scored.stderr
    assert set(pd.read_csv(elsewhere / "tomorrow.csv")["instrument"]) == set(STOCKS)
