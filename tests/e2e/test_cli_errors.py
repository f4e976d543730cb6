"""Bad input: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import pytest

from helpers import TINY, run_cli


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qtrack: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["model=nope"], ["unknown model 'nope'", "catboost, double_ensemble, gru, gru_ts, lightgbm, linear, lstm"]),
        (["dataset.nope=1"], ["dataset.nope"]),
        (["model.learning_rate=fast"], ["model.learning_rate", "expected float"]),
        (["backtest.topk=lots"], ["backtest.topk"]),
        (["dataset.name=no_such_data"], ["dataset 'no_such_data' not found", "qtrack data import"]),
        (["mlflow.tracking_uri=ftp://example/x"], ["unsupported scheme 'ftp'"]),
        (["mlflow.tracking_uri=file:///tmp/mlruns"], ["file store"]),
    ],
)
def test_bad_config_fails_in_one_line(workspace, overrides, fragments):
    assert_one_line_error(run_cli(["train", *overrides], cwd=workspace), *fragments)


def test_unusable_sqlite_location_fails_in_one_line(workspace):
    (workspace / "blocker").write_text("a file where a folder should be")
    uri = f"mlflow.tracking_uri=sqlite:///{workspace / 'blocker' / 'mlflow.db'}"
    assert_one_line_error(run_cli(["train", uri], cwd=workspace), "can't be used")


@pytest.mark.parametrize(
    ("segments", "fragment"),
    [
        (["[2010-01-01,2010-06-30]", "[2018-07-02,2018-08-31]", "[2018-09-03,2018-10-31]"],
         "outside the data's calendar"),
        (["[2018-01-02,2018-07-31]", "[2018-07-02,2018-08-31]", "[2018-09-03,2018-10-31]"],
         "train must end before valid starts"),
        (["[2018-01-02,2018-06-29]", "[2018-09-03,2018-10-31]", "[2018-07-02,2018-08-31]"],
         "valid must end before test starts"),
    ],
)
def test_bad_segments_fail_in_one_line(workspace, shared_data_root, segments, fragment):
    names = ("train", "valid", "test")
    overrides = [f"dataset.segments.{name}={span}" for name, span in zip(names, segments, strict=True)]
    result = run_cli(["train", *TINY, *overrides], cwd=workspace, env={"QTRACK_DATA_ROOT": str(shared_data_root)})
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("2018-06-01", "dataset.features_from 2018-06-01 is after the train segment's start"),
     ("soon", "dataset.features_from: not a date: soon")],
)
def test_features_cannot_start_after_the_train_segment(workspace, shared_data_root, value, fragment):
    result = run_cli(["train", *TINY, f"dataset.features_from={value}"], cwd=workspace,
                     env={"QTRACK_DATA_ROOT": str(shared_data_root)})
    assert_one_line_error(result, fragment)


def test_cfg_prints_the_resolved_config(workspace):
    result = run_cli(["train", "--cfg", "model=xgboost", "seed=4"], cwd=workspace)
    assert result.code == 0, result.stderr
    assert "name: xgboost" in result.stdout
    assert "seed: 4" in result.stdout
    assert f"sqlite:///{workspace}/mlruns/mlflow.db" in result.stdout
    assert not (workspace / "mlruns").exists(), "--cfg trains nothing and creates nothing"


def test_help_lists_the_config_groups(workspace):
    result = run_cli(["train", "--help"], cwd=workspace)
    assert result.code == 0
    text = " ".join(result.stdout.split())  # the help wraps its lines
    assert ("model: alstm, catboost, double_ensemble, gru, gru_ts, lightgbm, linear, lstm, lstm_ts, mlp, tcn, "
            "transformer, xgboost") in text
    assert "features: alpha158, alpha158_nn, alpha158_ts20, alpha360" in text


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["rolling.train_window=forever"], "rolling.train_window must be expanding or a number of trading days"),
        (["rolling.step=0"], "rolling.step must be at least 5"),
        (["rolling.first_test_day=1999-01-04"], "rolling.first_test_day 1999-01-04 lies outside"),
        (["rolling.first_test_day=abc"], "rolling.first_test_day: not a date: abc"),
        (["rolling.train_window=5"], "choose a larger rolling.train_window"),
    ],
)
def test_bad_rolling_settings_fail_in_one_line(workspace, shared_data_root, overrides, fragment):
    result = run_cli(["rolling", *TINY, *overrides], cwd=workspace, env={"QTRACK_DATA_ROOT": str(shared_data_root)})
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize(("age", "fragment"), [
    ("", "invalid age ''"),  # a cron line's unset $RETENTION: never the 1d default
    ("   ", "invalid age ' ': use days"),  # the one-line error folds white space
    ("99999999999d", "invalid age '99999999999d': at most 36500d"),
])
def test_gc_refuses_an_empty_or_impossible_age(workspace, age, fragment):
    assert_one_line_error(run_cli(["gc", "--older-than", age, "--yes"], cwd=workspace), fragment)
