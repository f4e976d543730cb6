"""The rules where a wrong result would look right, each tested directly: the fit window, cache keys, the
promotion rule, backtest settings, directions, IC by hand, and what gc may touch."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from qtrack import config
from qtrack.data import segments as segmentation
from qtrack.data.dataset import dataset_config
from qtrack.data.feature_cache import cache_key
from qtrack.evaluation import metrics
from qtrack.evaluation.records import backtest_config
from qtrack.stages.retrain import RetrainOutcome, _decide

CALENDAR = pd.bdate_range("2020-01-01", periods=400)


def resolved(overrides: list[str] | None = None):
    cfg = config.compose("train", overrides or []).cfg
    segs, _ = segmentation.resolve(CALENDAR, dict(cfg.dataset.segments), dict(cfg.dataset.split),
                                   int(cfg.features.label_horizon))
    return cfg, segs


# -- no look-ahead ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("features", ["alpha158", "alpha360"])
def test_learnable_processors_are_fitted_on_the_train_segment_only(workspace, features):
    cfg, segs = resolved([f"features={features}"])
    handler = dataset_config(cfg, segs)["kwargs"]["handler"]["kwargs"]
    train, test = segs.as_dict()["train"], segs.as_dict()["test"]
    assert (handler["fit_start_time"], handler["fit_end_time"]) == train
    assert handler["end_time"] == test[1] and handler["start_time"] == train[0]


@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_no_label_of_a_segment_reads_a_price_of_the_next(horizon):
    segs = segmentation.auto_split(CALENDAR, {"train": 0.6, "valid": 0.2, "test": 0.2}, horizon)
    position = {day: i for i, day in enumerate(CALENDAR)}
    spans = [getattr(segs, name) for name in segmentation.NAMES]
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert position[end] + horizon < position[start], "the last label of a segment needs a day of the next"
    assert position[segs.test[1]] + horizon <= len(CALENDAR) - 1, "the last test label needs a day in the data"


# -- cache keys --------------------------------------------------------------------------------------------
CHANGES = {
    "segments": ["dataset.segments.train=[2020-01-01,2020-06-30]", "dataset.segments.valid=[2020-07-06,2020-09-30]",
                 "dataset.segments.test=[2020-10-06,2021-03-31]"],
    "split": ["dataset.split.train=0.5"],
    "market": ["dataset.market=sp50"],
    "label": ["features.label='Ref($close, -3) / Ref($close, -1) - 1'"],
    "horizon": ["features.label_horizon=3"],
    "processors": ["features.learn_processors=[{class: DropnaLabel}]"],
    "infer processors": ["features.infer_processors=[{class: Fillna}]"],
    "handler": ["features=alpha360"],
    "handler module": ["features.module_path=qlib.contrib.data.handler"],
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_input_of_a_cached_dataset_changes_its_key(workspace, change):
    cfg, segs = resolved()
    base = cache_key("fingerprint", dataset_config(cfg, segs))
    other_cfg, other_segs = resolved(CHANGES[change])
    assert cache_key("fingerprint", dataset_config(other_cfg, other_segs)) != base


def test_the_validation_span_alone_changes_the_key(workspace):
    """Train and test stay (so do the handler's span and fit window): only what the valid segment holds moves."""
    spans = {"train": "[2020-01-01,2020-06-30]", "test": "[2020-10-06,2021-03-31]"}
    keys = set()
    for valid in ("[2020-07-06,2020-09-30]", "[2020-07-20,2020-09-30]"):
        given = [*(f"dataset.segments.{k}={v}" for k, v in spans.items()), f"dataset.segments.valid={valid}"]
        cfg, segs = resolved(given)
        handler = dataset_config(cfg, segs)["kwargs"]["handler"]["kwargs"]
        assert (handler["start_time"], handler["end_time"]) == ("2020-01-01", "2021-03-31")
        keys.add(cache_key("fingerprint", dataset_config(cfg, segs)))
    assert len(keys) == 2


def test_the_same_inputs_give_the_same_key_and_other_data_another(workspace):
    cfg, segs = resolved()
    again_cfg, again_segs = resolved(["model=catboost", "seed=3", "backtest.topk=7", "mlflow.experiment_name=x"])
    key = cache_key("fingerprint", dataset_config(cfg, segs))
    assert cache_key("fingerprint", dataset_config(again_cfg, again_segs)) == key, "model and backtest don't matter"
    assert cache_key("other data", dataset_config(cfg, segs)) != key


# -- the promotion rule -----------------------------------------------------------------------------------
def decided(metric: str, challenger: float | None, champion: float | None, margin: float) -> str:
    outcome = RetrainOutcome(model="m", alias="champion", decision="", reason="", metric=metric, data_end="",
                             challenger_score=challenger, champion_score=champion, champion_version="1")
    _decide(outcome, margin)
    return outcome.decision


@pytest.mark.parametrize(
    ("challenger", "champion", "expected"),
    [(0.75, 0.25, "promoted"),   # better by more than the margin
     (0.5, 0.25, "promoted"),    # better by exactly the margin
     (0.375, 0.25, "kept"),      # better by less than the margin
     (0.125, 0.25, "kept"),      # worse
     (0.25, 0.25, "kept"),       # equal
     (None, 0.25, "kept"),       # the challenger's score is undefined (NaN)
     (0.25, None, "promoted")],  # the champion's score is undefined on the holdout
)
def test_promotion_on_the_edges_when_higher_is_better(challenger, champion, expected):
    assert decided("Rank IC", challenger, champion, 0.25) == expected


@pytest.mark.parametrize(
    ("challenger", "champion", "expected"),
    [(0.25, 0.75, "promoted"), (0.25, 0.5, "promoted"), (0.25, 0.375, "kept"), (0.5, 0.25, "kept"),
     (0.25, 0.25, "kept")],
)
def test_promotion_on_the_edges_when_lower_is_better(challenger, champion, expected):
    assert decided("rmse", challenger, champion, 0.25) == expected


def test_without_a_champion_the_challenger_is_promoted():
    outcome = RetrainOutcome(model="m", alias="champion", decision="", reason="", metric="IC", data_end="",
                             challenger_score=-1.0)
    _decide(outcome, 0.0)
    assert outcome.decision == "promoted"


# -- backtest settings -------------------------------------------------------------------------------------
def test_every_backtest_setting_reaches_qlib_as_given(workspace):
    overrides = ["backtest.topk=7", "backtest.n_drop=3", "backtest.open_cost=0.0011", "backtest.close_cost=0.0023",
                 "backtest.min_cost=4.5", "backtest.deal_price=open", "backtest.limit_threshold=0.095",
                 "backtest.account=12345"]
    cfg, segs = resolved(overrides)
    data = SimpleNamespace(segments=segs, benchmark="SH000300")
    found = backtest_config(cfg, data)
    exchange = found["backtest"]["exchange_kwargs"]
    assert found["strategy"]["kwargs"]["topk"] == 7 and found["strategy"]["kwargs"]["n_drop"] == 3
    assert (exchange["open_cost"], exchange["close_cost"], exchange["min_cost"]) == (0.0011, 0.0023, 4.5)
    assert exchange["deal_price"] == "open" and exchange["limit_threshold"] == 0.095
    assert found["backtest"]["account"] == 12345.0 and found["backtest"]["benchmark"] == "SH000300"
    assert (found["backtest"]["start_time"], found["backtest"]["end_time"]) == segs.as_dict()["test"]


# -- directions -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("metric", "direction"), [("ICIR", "maximize"), ("Rank IC", "maximize"),
                                                    ("rmse", "minimize"), ("mape", "minimize")])
def test_the_objective_follows_the_metric(workspace, metric, direction):
    from qtrack.stages.optimize.settings import settings_from

    settings = settings_from(config.compose("optimize", [f"optimize.metric='{metric}'"]).cfg)
    assert settings.direction == direction and settings.maximize == (direction == "maximize")


@pytest.mark.parametrize(("maximize", "sign"), [(True, -1.0), (False, 1.0)])
def test_the_pruner_sees_the_loss_in_the_studys_direction(maximize, sign):
    """A falling validation loss must look like improvement to Optuna: negated when the study maximises."""
    from qtrack.models.pruning import BoostingPruning

    reported = []
    trial = SimpleNamespace(report=lambda value, step: reported.append((step, value)), should_prune=lambda: False)
    pruning = BoostingPruning(trial, {"loss": "mse"}, maximize=maximize)
    for step, loss in enumerate([0.9, 0.5, 0.3]):
        assert pruning.step(step, loss) is False
    assert reported == [(0, sign * 0.9), (1, sign * 0.5), (2, sign * 0.3)]


# -- IC by hand ------------------------------------------------------------------------------------------------
def test_signal_metrics_equal_a_hand_computation():
    index = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02", "2020-01-03"]), ["A", "B", "C", "D"]],
                                       names=["datetime", "instrument"])
    pred = pd.Series([1.0, 2.0, 3.0, 4.0, 4.0, 1.0, 2.0, 3.0], index=index)
    label = pd.Series([0.1, 0.3, 0.2, 0.4, 0.2, 0.1, 0.4, 0.3], index=index)
    # day 1: Pearson of (1,2,3,4) and (.1,.3,.2,.4) = 0.8; ranks (1,2,3,4) v (1,3,2,4): Spearman 0.8
    # day 2: Pearson of (4,1,2,3) and (.2,.1,.4,.3) = 0.1 / sqrt(5 * 0.05) = 0.2; the ranks give 0.2 too
    found = metrics.signal_metrics(pred, label)
    daily = np.array([0.8, 0.2])
    assert found["IC"] == pytest.approx(daily.mean(), abs=1e-12)
    assert found["ICIR"] == pytest.approx(daily.mean() / daily.std(ddof=1), abs=1e-12)
    assert found["Rank IC"] == pytest.approx(0.5, abs=1e-12)
    assert found["Rank ICIR"] == pytest.approx(0.5 / daily.std(ddof=1), abs=1e-12)
    assert found["ICIR"] > 0, "the sign of ICIR follows the IC"
    flipped = metrics.signal_metrics(-pred, label)
    assert flipped["IC"] == pytest.approx(-0.5) and flipped["ICIR"] == pytest.approx(-found["ICIR"])
    assert math.isnan(metrics.signal_metrics(pred * 0 + 1.0, label)["Rank IC"])


# -- gc --------------------------------------------------------------------------------------------------------
def test_gc_never_plans_to_delete_a_running_run_or_one_behind_a_registered_version(tmp_path):
    from datetime import timedelta

    from mlflow.tracking import MlflowClient

    from qtrack.tracking import hygiene
    from qtrack.tracking.store import ensure_sqlite_store

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    ensure_sqlite_store(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("gc")
    long_ago = int((time.time() - 90 * 86_400) * 1000)
    running = client.create_run(experiment, start_time=long_ago).info.run_id
    registered = client.create_run(experiment, start_time=long_ago).info.run_id
    old = client.create_run(experiment, start_time=long_ago).info.run_id
    for run_id in (registered, old):
        client.set_terminated(run_id, "FINISHED", end_time=long_ago)
    client.create_registered_model("kept")
    client.create_model_version("kept", f"runs:/{registered}/model", run_id=registered)
    plan = hygiene.plan(uri, timedelta(days=30), None)
    assert [run.run_id for run in plan.delete] == [old]
    assert [run.run_id for run in plan.kept_registered] == [registered]
    assert running not in {run.run_id for run in plan.delete + plan.kept_registered}


# -- degenerate models -------------------------------------------------------------------------------------------
def test_a_model_that_predicts_a_constant_is_named_and_kept_out_of_the_mean():
    from qtrack.evaluation.ranking import BenchmarkResults, Job, ranking, ranking_markdown

    results = BenchmarkResults(metric="Rank IC", jobs=[
        Job("lightgbm", 0, "FINISHED", metrics={"IC": 0.1, "Rank IC": 0.2}),
        Job("lightgbm", 1, "FINISHED", metrics={"IC": 0.0}, constant=True),  # NaN Rank IC is not logged
        Job("linear", 0, "FINISHED", metrics={"IC": 0.05, "Rank IC": 0.1}),
    ])
    table = ranking(results)
    assert table.loc["lightgbm", "avg_Rank IC"] == pytest.approx(0.2) and table.loc["lightgbm", "constant"] == 1
    assert list(table.index) == ["lightgbm", "linear"]
    assert "lightgbm: 1 run(s) predicted a constant" in ranking_markdown(table, "Rank IC")


def test_gc_plans_per_experiment_by_end_time_and_keeps_the_source_run_of_a_registered_logged_model(
    tmp_path, monkeypatch
):
    from datetime import timedelta

    from mlflow.tracking import MlflowClient

    from qtrack.tracking import hygiene
    from qtrack.tracking.store import ensure_sqlite_store

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the registry looks the logged model up at the global URI
    ensure_sqlite_store(uri)
    client = MlflowClient(uri)
    now = time.time()
    ago = {days: int((now - days * 86_400) * 1000) for days in (90, 40, 10)}
    first, second = client.create_experiment("first"), client.create_experiment("second")

    def ended(experiment: str, started: int, finished: int | None, status: str = "FINISHED") -> str:
        run_id = client.create_run(experiment, start_time=started).info.run_id
        client.set_terminated(run_id, status, end_time=finished)
        return run_id

    old_failed = ended(first, ago[90], ago[40], "FAILED")
    recent_end = ended(first, ago[90], ago[10])  # started long ago, ended recently: stays
    behind_model = ended(first, ago[90], ago[40])
    other_experiment = ended(second, ago[90], ago[40], "KILLED")
    logged = client.create_logged_model(first, source_run_id=behind_model)
    client.create_registered_model("m")
    client.create_model_version("m", logged.artifact_location, model_id=logged.model_id)

    everywhere = hygiene.plan(uri, timedelta(days=30), None)
    assert sorted(r.run_id for r in everywhere.delete) == sorted([old_failed, other_experiment])
    assert [r.run_id for r in everywhere.kept_registered] == [behind_model]
    assert recent_end not in {r.run_id for r in everywhere.delete}
    only_first = hygiene.plan(uri, timedelta(days=30), "first")
    assert [(r.run_id, r.experiment, r.status) for r in only_first.delete] == [(old_failed, "first", "FAILED")]
    assert only_first.delete[0].ended == pytest.approx(ago[40] / 1000)
    with pytest.raises(Exception, match="experiment 'nope' not found"):
        hygiene.plan(uri, timedelta(days=30), "nope")
