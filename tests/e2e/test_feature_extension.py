"""The raw-feature cache extends instead of rebuilding when the data grows, and the extended frame is a full
rebuild's to the bit.

A Qlib directory (written by the test, read in place through dataset.provider_uri) first holds 310 days,
then 320 (new days only), then 330 with one symbol restated (its early closes change), one new symbol, and
one symbol taken out of the market. The same train runs after each step: its features extend the cached
ones, each extension starting from the one before (a last one after the files were only touched: a new
version without a new day). A last train over the final directory, under another
dataset name (so another cache), builds them whole; the two raw entries must be equal.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, run_cli, tracking_uri
from helpers.qlib_directory import STOCKS, write_qlib_directory

pytestmark = pytest.mark.slow
FIRST_DAYS, MIDDLE_DAYS, ALL_DAYS = 310, 320, 330
RESTATED, REMOVED, NEW, NEW_FROM = STOCKS[3], STOCKS[5], "SH600099", 100
SEGMENTS = {"train": ["2015-01-05", "2015-08-31"], "valid": ["2015-09-03", "2015-11-30"],
            "test": ["2015-12-03", "2016-02-26"]}


def cut(full: Path, target: Path, days: int) -> None:
    """`full` as it was `days` days in: the calendar, every series and every listing cut there."""
    shutil.copytree(full, target)
    calendar = (full / "calendars" / "day.txt").read_text().split()[:days]
    (target / "calendars" / "day.txt").write_text("\n".join(calendar) + "\n")
    for path in (target / "features").rglob("*.bin"):
        np.fromfile(path, dtype="<f4")[: 1 + days].tofile(path)
    for market in (target / "instruments").glob("*.txt"):
        rows = [line.split("\t") for line in market.read_text().splitlines()]
        market.write_text("".join(f"{code}\t{begin}\t{calendar[-1]}\n" for code, begin, _ in rows))


def grow(full: Path, target: Path) -> None:
    """`target` becomes `full` with one symbol restated, one new and one taken out of the market."""
    shutil.rmtree(target)
    shutil.copytree(full, target)
    close = target / "features" / RESTATED.lower() / "close.day.bin"
    values = np.fromfile(close, dtype="<f4")
    values[1:40] *= np.float32(0.99)  # a dividend restates the vendor's early adjusted closes
    values.tofile(close)
    new = target / "features" / NEW.lower()
    shutil.copytree(target / "features" / STOCKS[1].lower(), new)
    for path in new.glob("*.bin"):
        series = np.fromfile(path, dtype="<f4")
        np.concatenate([[np.float32(NEW_FROM)], series[1 + NEW_FROM :] * np.float32(1.5)]).astype("<f4").tofile(path)
    calendar = (target / "calendars" / "day.txt").read_text().split()
    market = target / "instruments" / "csi300.txt"
    kept = [line for line in market.read_text().splitlines() if not line.startswith(REMOVED)]
    market.write_text("\n".join([*kept, f"{NEW}\t{calendar[NEW_FROM]}\t{calendar[-1]}"]) + "\n")


def train(workspace: Path, data: Path, name: str):
    args = ["train", "dataset=csi300", f"dataset.provider_uri={data}", f"dataset.name={name}", "model=linear",
            *TINY[3:], "mlflow.log_model=false", "-q",
            *(f"dataset.segments.{segment}=[{a},{b}]" for segment, (a, b) in SEGMENTS.items())]
    result = run_cli(args, cwd=workspace, env={"QTRACK_DATA_ROOT": str(workspace / "data")})
    assert result.code == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(workspace))
    experiment = client.get_experiment_by_name(f"{name}_alpha158").experiment_id
    return client.search_runs([experiment], order_by=["attributes.start_time DESC"])[0]


def newest_raw_entry(workspace: Path, name: str):
    from qtrack.data import mapped_pickle

    entries = sorted((workspace / "data" / ".cache" / name).glob("raw-*.features"), key=lambda p: p.stat().st_mtime)
    return mapped_pickle.load(entries[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    workspace = tmp_path_factory.mktemp("extension")
    full = write_qlib_directory(workspace / "full", days=ALL_DAYS)
    data = workspace / "qlib_data"
    cut(full, data, FIRST_DAYS)
    before = train(workspace, data, "market")
    shutil.rmtree(data)
    cut(full, data, MIDDLE_DAYS)
    appended = train(workspace, data, "market")
    grow(full, data)
    after = train(workspace, data, "market")
    for path in (data / "features").rglob("*.bin"):  # the same data, newer files: no new day to add
        path.touch()
    touched = train(workspace, data, "market")
    rebuilt = train(workspace, data, "rebuilt")
    return workspace, before, after, rebuilt, appended, touched


def test_a_train_after_new_data_extends_the_cached_features(runs) -> None:
    _, before, after, rebuilt, appended, touched = runs
    tags = [run.data.tags["qtrack.feature_cache"] for run in (before, appended, after, touched, rebuilt)]
    assert tags == ["miss", "extended", "extended", "extended", "miss"]
    assert after.data.tags["qtrack.data_fingerprint"] != before.data.tags["qtrack.data_fingerprint"]
    assert touched.data.tags["qtrack.data_fingerprint"] == rebuilt.data.tags["qtrack.data_fingerprint"]
    # the same data, segments and model: the same numbers, however the features were obtained
    for metric in ("IC", "1day.excess_return_with_cost.annualized_return"):
        assert after.data.metrics[metric] == touched.data.metrics[metric] == rebuilt.data.metrics[metric]


def test_the_extended_raw_features_equal_a_full_rebuild_to_the_bit(runs) -> None:
    workspace = runs[0]
    extended, whole = newest_raw_entry(workspace, "market"), newest_raw_entry(workspace, "rebuilt")
    pd.testing.assert_frame_equal(extended.frame, whole.frame, check_exact=True)
    assert np.array_equal(extended.frame.to_numpy().view(np.int32), whole.frame.to_numpy().view(np.int32))
    instruments = set(extended.frame.index.get_level_values("instrument"))
    assert NEW in instruments and REMOVED not in instruments
    last = extended.frame.index.get_level_values("datetime").max()
    assert last == pd.Timestamp((workspace / "qlib_data" / "calendars" / "day.txt").read_text().split()[-1])
    assert extended.checkpoint == whole.checkpoint == ALL_DAYS - 1 - 2  # the label's horizon before the end
    assert extended.states.keys() == whole.states.keys()
    assert all(np.array_equal(extended.states[key], whole.states[key]) for key in whole.states)
    assert extended.digests == whole.digests


def test_the_label_of_the_last_days_before_the_update_is_filled_in(runs) -> None:
    workspace = runs[0]
    frame = newest_raw_entry(workspace, "market").frame
    old_last = pd.Timestamp((workspace / "full" / "calendars" / "day.txt").read_text().split()[MIDDLE_DAYS - 1])
    label = frame.xs(old_last, level="datetime")["label"].iloc[:, 0]
    assert label.notna().all()  # unknown (NaN) before the update: it needs the two days after


def retrain(workspace: Path, data: Path, *extra: str):
    args = ["retrain", "dataset=csi300", f"dataset.provider_uri={data}", "dataset.name=daily", "model=linear",
            "retrain.train_days=150", "retrain.valid_days=40", "retrain.holdout_days=40", "mlflow.qlib_report=false",
            "mlflow.plots=false", "mlflow.log_model=true", "-q", *extra]
    result = run_cli(args, cwd=workspace, env={"QTRACK_DATA_ROOT": str(workspace / "data")})
    assert result.code == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(workspace))
    experiment = client.get_experiment_by_name("daily_alpha158").experiment_id
    return client.search_runs([experiment], order_by=["attributes.start_time DESC"])[0]


def test_a_daily_retrain_extends_the_features_of_the_day_before(tmp_path: Path) -> None:
    # The train window moves with the data; the features' start moves only every feature_anchor_days, so the
    # next day's retrain extends the cached raw features instead of computing them whole.
    full = write_qlib_directory(tmp_path / "full", days=ALL_DAYS)
    data = tmp_path / "qlib_data"
    cut(full, data, MIDDLE_DAYS)
    first = retrain(tmp_path, data)
    shutil.rmtree(data)
    cut(full, data, ALL_DAYS)
    second = retrain(tmp_path, data)
    moved = [json.loads(run.data.params["dataset.segments.train"])[0] for run in (first, second)]
    assert moved[0] < moved[1]  # the window moved ten days, the features' start did not:
    first_day = (full / "calendars" / "day.txt").read_text().split()[0]
    assert first.data.params["dataset.features_from"] == second.data.params["dataset.features_from"] == first_day
    assert [run.data.tags["qtrack.feature_cache"] for run in (first, second)] == ["miss", "extended"]
