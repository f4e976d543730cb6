"""`qtrack rolling`: walk-forward windows, each refitted on its own past, judged on the stitched record."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from helpers import TINY, run_cli, tracking_uri

HORIZON = 2
ROBUST_NORM = ("features.infer_processors=[{class:RobustZScoreNorm,kwargs:{fields_group:feature,clip_outlier:true}},"
               "{class:Fillna,kwargs:{fields_group:feature}}]")
ROLLING = [*TINY, "model.num_boost_round=60", "rolling.step=40", "rolling.valid_days=30", ROBUST_NORM, "-q"]


def artifact(client: MlflowClient, run_id: str, name: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, name, tmp)
        if name.endswith(".png"):
            with Image.open(path) as image:
                return image.size
        with open(path, "rb") as handle:
            return pickle.load(handle)


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("rolling")
    result = run_cli(["rolling", *ROLLING], cwd=work, env={"QTRACK_DATA_ROOT": str(work / "data")})
    assert result.code == 0, result.stderr
    client = MlflowClient(tracking_uri(work))
    experiment = client.get_experiment_by_name("synthetic_alpha158").experiment_id
    runs = client.search_runs([experiment])
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    children = {run.data.tags["qtrack.rolling.window"]: run for run in runs if run is not parent}
    return work, client, parent, children


def calendar(work: Path) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.read_csv(work / "data" / "synthetic" / "calendars" / "day.txt", header=None)[0])


def spans(run) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    return {name: tuple(pd.Timestamp(day) for day in run.data.params[f"segments.{name}"].split(","))
            for name in ("train", "valid", "test")}


def independent_label(work: Path) -> pd.Series:
    """close(t+2) / close(t+1) - 1, read straight from the .bin files (Qlib's label, not Qlib's code)."""
    days = calendar(work)
    parts = []
    for folder in sorted((work / "data" / "synthetic" / "features").iterdir()):
        raw = np.fromfile(folder / "close.day.bin", dtype="<f4")
        start, close = int(raw[0]), raw[1:]
        label = np.full(len(close), np.nan, dtype=np.float32)
        label[:-2] = close[2:] / close[1:-1] - np.float32(1)
        index = pd.MultiIndex.from_product([days[start:start + len(close)], [folder.name.upper()]],
                                           names=["datetime", "instrument"])
        parts.append(pd.Series(label, index=index))
    return pd.concat(parts).sort_index()


def test_windows_are_nested_contiguous_and_keep_the_label_gaps(rolled) -> None:
    work, _, parent, children = rolled
    assert parent.data.tags["qtrack.stage"] == "rolling"
    assert set(children) == {"static", "0", "1", "2", "3"}
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in children.values())
    days = calendar(work)
    position = {day: i for i, day in enumerate(days)}
    windows = [spans(children[str(i)]) for i in range(4)]
    for window in windows:
        assert window["train"][0] == days[0]  # expanding
        assert position[window["valid"][0]] - position[window["train"][1]] > HORIZON
        assert position[window["test"][0]] - position[window["valid"][1]] > HORIZON
        assert position[window["valid"][1]] - position[window["valid"][0]] + 1 == 30
    for earlier, later in zip(windows, windows[1:], strict=False):
        assert position[later["test"][0]] == position[earlier["test"][1]] + 1  # no day twice, no day left out
        assert position[later["test"][0]] - position[earlier["test"][0]] == 40
    assert windows[-1]["test"][1] == days[-1 - HORIZON]  # every labelled day is tested


def test_the_stitched_record_is_every_windows_test_slice_once(rolled) -> None:
    work, client, parent, children = rolled
    stitched = artifact(client, parent.info.run_id, "pred.pkl").iloc[:, 0]
    assert not stitched.index.duplicated().any()
    pieces = pd.concat([artifact(client, children[str(i)].info.run_id, "pred.pkl").iloc[:, 0] for i in range(4)])
    pd.testing.assert_series_equal(stitched.sort_index(), pieces.sort_index(), check_names=False)
    label = independent_label(work).reindex(stitched.index)
    frame = pd.DataFrame({"pred": stitched, "label": label})
    daily_ic = frame.groupby(level="datetime").apply(lambda day: day["pred"].corr(day["label"]))
    daily_rank_ic = frame.groupby(level="datetime").apply(lambda day: day["pred"].corr(day["label"], "spearman"))
    assert parent.data.metrics["IC"] == pytest.approx(daily_ic.mean(), rel=1e-6)
    assert parent.data.metrics["Rank IC"] == pytest.approx(daily_rank_ic.mean(), rel=1e-6)
    assert "1day.excess_return_with_cost.annualized_return" in parent.data.metrics


def test_each_window_is_refitted_on_its_own_past(rolled) -> None:
    _, client, _, children = rolled
    static = artifact(client, children["static"].info.run_id, "pred.pkl").iloc[:, 0]
    norms = []
    for i in range(4):
        run = children[str(i)]
        pred = artifact(client, run.info.run_id, "pred.pkl").iloc[:, 0]
        same_days = static.reindex(pred.index)
        if i == 0:  # the static split is the first window's fit
            np.testing.assert_array_equal(pred.to_numpy(), same_days.to_numpy())
        else:
            assert not np.allclose(pred.to_numpy(), same_days.to_numpy())
        dataset = artifact(client, run.info.run_id, "dataset.pkl")
        norm = next(p for p in dataset.handler.infer_processors if type(p).__name__ == "RobustZScoreNorm")
        assert pd.Timestamp(norm.fit_end_time) == spans(run)["train"][1]  # never fitted on valid or test days
        norms.append(norm.mean_train)
    assert not np.allclose(norms[0], norms[-1])


def test_features_are_built_once_and_the_parent_compares_with_the_static_split(rolled) -> None:
    work, client, parent, children = rolled
    entries = sorted(path.name for path in (work / "data" / ".cache" / "synthetic").glob("*.features"))
    assert len(entries) == 2 and entries[-1].startswith("raw-")  # one built dataset and its raw features
    assert parent.data.metrics["static.IC"] == children["static"].data.metrics["IC"]
    history = client.get_metric_history(parent.info.run_id, "window.IC")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    assert {m.step: m.value for m in history}[2] == pytest.approx(children["2"].data.metrics["IC"], rel=1e-9)
    width, height = artifact(client, parent.info.run_id, "rolling/window_ic.png")
    assert width > 400 and height > 200


def test_rolling_works_for_another_model_with_a_fixed_window(workspace: Path, shared_data_root: Path) -> None:
    result = run_cli(["rolling", *TINY, "model=linear", "rolling.step=60", "rolling.valid_days=20",
                      "rolling.train_window=80", "rolling.compare_static=false", "-q"],
                     cwd=workspace, env={"QTRACK_DATA_ROOT": str(shared_data_root)})
    assert result.code == 0, result.stderr
    client = MlflowClient(tracking_uri(workspace))
    runs = client.search_runs([client.get_experiment_by_name("synthetic_alpha158").experiment_id])
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert children and all(run.data.tags["qtrack.rolling.window"] != "static" for run in children)
    days = pd.DatetimeIndex(pd.read_csv(shared_data_root / "synthetic" / "calendars" / "day.txt", header=None)[0])
    for run in children:
        train = spans(run)["train"]
        assert days.get_loc(train[1]) - days.get_loc(train[0]) + 1 == 80


def test_benchmark_rolling_ranks_models_on_their_walk_forward_record(workspace: Path, shared_data_root: Path) -> None:
    result = run_cli(["benchmark", "rolling=true", "models=[linear,lightgbm]", "seeds=1", *TINY,
                      'model_overrides.lightgbm=["model.num_boost_round=60"]', "rolling.step=60",
                      "rolling.valid_days=30", "-q"], cwd=workspace, env={"QTRACK_DATA_ROOT": str(shared_data_root)})
    assert result.code == 0, result.stderr
    assert "Ranked by Rank IC (walk-forward out-of-sample record)" in result.stdout
    client = MlflowClient(tracking_uri(workspace))
    runs = client.search_runs([client.get_experiment_by_name("synthetic_alpha158").experiment_id])
    benchmark = next(run for run in runs if run.data.tags.get("qtrack.stage") == "benchmark")
    assert benchmark.data.tags["qtrack.benchmark.scope"] == "walk-forward out-of-sample record"
    jobs = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == benchmark.info.run_id]
    assert sorted(job.data.params["model.name"] for job in jobs) == ["lightgbm", "linear"]
    for job in jobs:
        assert job.data.tags["qtrack.stage"] == "rolling"  # each job is a walk-forward record
        windows = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == job.info.run_id]
        assert len(windows) >= 2 and {w.data.tags["qtrack.rolling.window"] for w in windows} != {"static"}
        stitched = artifact(client, job.info.run_id, "pred.pkl")
        assert len(stitched) == sum(len(artifact(client, w.info.run_id, "pred.pkl")) for w in windows)
    best = max(jobs, key=lambda job: job.data.metrics["Rank IC"])
    assert benchmark.data.tags["qtrack.best_model"] == best.data.params["model.name"]


def test_each_window_logs_its_own_step_times(rolled) -> None:
    """A window's time.* metrics add up to no more than its own run lasted (they once summed every earlier
    window's, and the features' build, into the last window's)."""
    _, _, _, children = rolled
    for name, run in children.items():
        timed = sum(value for key, value in run.data.metrics.items() if key.startswith("time."))
        lasted = (run.info.end_time - run.info.start_time) / 1000
        assert 0 < timed <= lasted + 0.05, (name, timed, lasted)
        assert "time.features_seconds" not in run.data.metrics, "the features are built once, by the parent"
