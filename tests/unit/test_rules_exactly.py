"""The rules' details that a wrong-but-plausible change would slip past (found by `make mutants`)."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pandas as pd
import pytest

from qtrack import config
from qtrack.config import redact
from qtrack.data import segments as segmentation
from qtrack.data.dataset import dataset_config
from qtrack.evaluation import metrics
from qtrack.evaluation.records import backtest_config
from qtrack.models.pruning import BoostingPruning
from qtrack.stages.retrain import RetrainOutcome, _decide

CALENDAR = pd.bdate_range("2020-01-01", periods=400)


def test_redaction_keeps_everything_that_is_not_secret_exactly():
    tree = {"model": {"num_leaves": 31, "layers": [1, 2], "name": "lgb", "note": None},
            "db": {"password": ["a1234", "b5678"], "user": "bob", "empty_secret": ""}, "seed": 0}
    masked = redact.tree(tree)
    assert masked == {"model": {"num_leaves": 31, "layers": [1, 2], "name": "lgb", "note": None},
                      "db": {"password": [redact.MASK, redact.MASK], "user": "bob", "empty_secret": ""}, "seed": 0}


def test_a_secret_key_is_judged_by_its_last_part_only():
    assert not redact.is_secret_key("a.model.seed_key")
    assert redact.is_secret_key("a.b.api_key") and not redact.is_secret_key("password.hint_text")


def test_secret_environment_values_are_masked_longest_first_and_only_for_secret_names(monkeypatch):
    monkeypatch.setenv("VENDOR_TOKEN", "abcd")  # exactly the shortest length that is masked
    monkeypatch.setenv("DB_PASSWORD", "abcdefgh")
    monkeypatch.setenv("QTRACK_NOTE", "/usr/local/lib/plain")  # a long value under a plain name
    assert redact.text("x abcdefgh y abcd z /usr/local/lib/plain") == "x *** y *** z /usr/local/lib/plain"
    assert redact.secret_values()[:2] == ["abcdefgh", "abcd"]


def test_an_override_whose_secret_value_holds_an_equals_sign_is_masked_whole():
    assert redact.argv(["+db.password=ab=cd", "run_name=a=b"]) == ["+db.password=***", "run_name=a=b"]


@pytest.mark.parametrize(
    ("challenger", "champion", "version", "decision", "reason"),
    [(0.3, 0.1, None, "promoted", "there was no champion"),
     (0.3, 0.1, "1", "promoted", "Rank IC 0.3000 beats 0.1000 by at least 0.1"),
     (0.15, 0.1, "1", "kept", "Rank IC 0.1500 does not beat 0.1000 by 0.1"),
     (None, 0.1, "1", "kept", "the challenger's Rank IC is undefined"),
     (0.2, None, "1", "promoted", "the champion's Rank IC is undefined on the holdout")],
)
def test_every_retrain_decision_says_why(challenger, champion, version, decision, reason):
    outcome = RetrainOutcome(model="m", alias="champion", decision="", reason="", metric="Rank IC", data_end="",
                             challenger_score=challenger, champion_score=champion, champion_version=version)
    _decide(outcome, 0.1)
    assert (outcome.decision, outcome.reason) == (decision, reason)


def test_pruning_stops_the_fit_and_says_at_which_iteration():
    calls = iter([False, True])
    trial = SimpleNamespace(report=lambda value, step: None, should_prune=lambda: next(calls))
    pruning = BoostingPruning(trial, {"loss": "mse"}, maximize=False)
    assert pruning.stopped == (optuna.TrialPruned,) and pruning.pruned_at is None
    pruning.after_fit()  # nothing pruned yet: no exception
    assert pruning.step(0, 0.5) is False and pruning.pruned_at is None
    assert pruning.step(1, 0.6) is True and pruning.pruned_at == 1
    with pytest.raises(optuna.TrialPruned, match="pruned at iteration 1"):
        pruning.after_fit()


def test_regression_metrics_align_on_the_index_and_skip_zero_labels_for_direction():
    index = pd.MultiIndex.from_tuples([("2020-01-02", s) for s in "ABCD"], names=["datetime", "instrument"])
    pred = pd.Series([1.0, -1.0, 2.0, 5.0], index=index)
    label = pd.Series([1.0, 0.0, -2.0], index=index[:3])  # D has no label: left out
    found = metrics.regression_metrics(pred, label)
    assert found["mae"] == pytest.approx((0 + 1 + 4) / 3)
    assert found["rmse"] == pytest.approx(((0 + 1 + 16) / 3) ** 0.5)
    assert found["mape"] == pytest.approx(5 / 3)
    assert found["directional_accuracy"] == pytest.approx(0.5)  # A right, C wrong, B (label 0) skipped


def test_the_optimize_settings_are_the_ones_given(workspace):
    from qtrack.stages.optimize.settings import settings_from

    cfg = config.compose("optimize", [
        "optimize.metric=rmse", "optimize.trials=7", "optimize.max_trials=9", "optimize.timeout=60",
        "optimize.n_jobs=2", "optimize.mlflow=false", "seed=5", "optimize.sampler=random",
        "optimize.startup_trials=3", "optimize.pruner=none", "optimize.warmup_steps=4",
        f"optimize.storage={workspace / 'sweeps.journal'}"]).cfg
    found = settings_from(cfg)
    assert (found.metric, found.direction, found.objective) == ("rmse", "minimize", "valid.rmse")
    assert (found.trials, found.max_trials, found.timeout, found.n_jobs) == (7, 9, 60, 2)
    assert (found.mlflow, found.seed, found.sampler, found.startup_trials) == (False, 5, "random", 3)
    assert (found.pruner, found.warmup_steps) == ("none", 4)
    assert found.study_name == "synthetic_alpha158-lightgbm"
    assert found.storage.kind == "journal" and found.storage.path == workspace / "sweeps.journal"
    assert settings_from(config.compose("optimize", ["optimize.study_name=mine"]).cfg).study_name == "mine"
    with pytest.raises(Exception, match="invalid optimize.metric 'Sharpe': choose one of IC, ICIR"):
        settings_from(config.compose("optimize", ["optimize.metric=Sharpe"]).cfg)


def test_segments_are_written_as_iso_days_and_a_one_day_segment_is_allowed():
    given = {"train": ["2020-01-01", "2020-06-30"], "valid": ["2020-07-06", "2020-07-06"],
             "test": ["2020-07-10", "2020-12-31"]}
    segs, _ = segmentation.resolve(CALENDAR, given, {}, 2)
    assert segs.as_dict()["valid"] == ("2020-07-06", "2020-07-06")
    assert segs.as_dict()["train"] == ("2020-01-01", "2020-06-30")


def test_touching_segments_are_refused_and_a_gap_of_exactly_the_horizon_is_kept():
    touching = {"train": ["2020-01-01", "2020-06-30"], "valid": ["2020-06-30", "2020-09-30"],
                "test": ["2020-10-06", "2020-12-31"]}
    with pytest.raises(Exception, match=r"train must end before valid starts \(2020-06-30 >= 2020-06-30\)"):
        segmentation.resolve(CALENDAR, touching, {}, 2)
    exact = {"train": ["2020-01-01", "2020-06-26"], "valid": ["2020-07-01", "2020-09-30"],
             "test": ["2020-10-06", "2020-12-31"]}  # 2020-06-29 and -30 lie between: the 2-day gap exactly
    segs, notices = segmentation.resolve(CALENDAR, exact, {}, 2)
    assert segs.train[1] == pd.Timestamp("2020-06-26") and not [n for n in notices if n.startswith("train")]
    one_short = {**exact, "train": ["2020-01-01", "2020-06-29"]}
    segs, notices = segmentation.resolve(CALENDAR, one_short, {}, 2)
    assert segs.train[1] == pd.Timestamp("2020-06-26") and notices[0].startswith("train now ends 2020-06-26")


def test_the_dataset_and_backtest_configs_qlib_receives(workspace):
    cfg = config.compose("train", ["dataset.market=sp50", "backtest.topk=7", "backtest.n_drop=2"]).cfg
    segs, _ = segmentation.resolve(CALENDAR, dict(cfg.dataset.segments), dict(cfg.dataset.split), 2)
    spans = segs.as_dict()
    assert dataset_config(cfg, segs) == {
        "class": "DatasetH", "module_path": "qtrack.data.qlib_dataset",
        "kwargs": {
            "handler": {"class": "Alpha158", "module_path": "qtrack.data.qlib_handler", "kwargs": {
                "instruments": "sp50", "start_time": spans["train"][0], "end_time": spans["test"][1],
                "fit_start_time": spans["train"][0], "fit_end_time": spans["train"][1], "infer_processors": [],
                "learn_processors": [{"class": "DropnaLabel"},
                                     {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}],
                "engine": "fast"}},
            "segments": {name: list(span) for name, span in spans.items()}}}
    assert backtest_config(cfg, SimpleNamespace(segments=segs, benchmark="B")) == {
        "executor": {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                     "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}},
        "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                     "kwargs": {"signal": "<PRED>", "topk": 7, "n_drop": 2}},
        "backtest": {"start_time": spans["test"][0], "end_time": spans["test"][1], "account": 1e8, "benchmark": "B",
                     "exchange_kwargs": {"freq": "day", "limit_threshold": None, "deal_price": "close",
                                         "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5.0}}}


def test_a_custom_label_reaches_the_handler(workspace):
    cfg = config.compose("train", ["features.label='Ref($close, -3) / Ref($close, -1) - 1'"]).cfg
    segs, _ = segmentation.resolve(CALENDAR, dict(cfg.dataset.segments), dict(cfg.dataset.split), 2)
    handler = dataset_config(cfg, segs)["kwargs"]["handler"]["kwargs"]
    assert handler["label"] == (["Ref($close, -3) / Ref($close, -1) - 1"], ["LABEL0"])


def test_secrets_inside_other_secrets_are_masked_longest_first(monkeypatch):
    monkeypatch.setenv("SHORT_TOKEN", "zzzz")
    monkeypatch.setenv("LONG_PASSWORD", "azzzzb")  # holds the short one, and sorts before it
    assert redact.text("value azzzzb") == "value ***"


def test_mlflow_logging_stays_on_by_default(workspace):
    from qtrack.stages.optimize.settings import settings_from

    assert settings_from(config.compose("optimize", []).cfg).mlflow is True


def test_the_automatic_split_follows_the_shares_whatever_they_add_up_to():
    segs = segmentation.auto_split(CALENDAR, {"train": 1.2, "valid": 0.4, "test": 0.4}, 2)
    position = {day: i for i, day in enumerate(CALENDAR)}
    usable = len(CALENDAR) - 3 * 2
    assert position[segs.train[1]] + 1 == int(usable * 0.6)
    assert position[segs.valid[1]] - position[segs.valid[0]] + 1 == int(usable * 0.2)
    with pytest.raises(Exception, match="dataset.split: every share must be positive"):
        segmentation.auto_split(CALENDAR, {"train": 0.6, "valid": 0.0, "test": 0.4}, 2)


@pytest.mark.parametrize(("days", "ok"), [(31, True), (30, False)])
def test_the_shortest_calendar_that_splits_gives_five_days_a_segment(days, ok):
    calendar = CALENDAR[:days]  # 31 days, horizon 2: 25 usable days, 5 of them in the smallest segment
    split = {"train": 0.6, "valid": 0.2, "test": 0.2}
    if ok:
        segs = segmentation.auto_split(calendar, split, 2)
        assert min(len(calendar[(calendar >= a) & (calendar <= b)]) for a, b in (segs.valid, segs.test)) == 5
    else:
        with pytest.raises(Exception, match="too short to split"):
            segmentation.auto_split(calendar, split, 2)


def test_given_segments_are_checked_and_a_test_end_on_the_last_labelled_day_stays():
    with pytest.raises(Exception, match=r"dataset.segments.train: expected \[start, end\], got \['2020-01-01'\]"):
        segmentation.resolve(CALENDAR, {"train": ["2020-01-01"], "valid": ["2020-07-06", "2020-09-30"],
                                        "test": ["2020-10-06", "2020-12-31"]}, {}, 2)
    last_labelled = CALENDAR[-3]
    given = {"train": ["2020-01-01", "2020-06-30"], "valid": ["2020-07-06", "2020-09-30"],
             "test": ["2020-10-06", str(last_labelled.date())]}
    segs, notices = segmentation.resolve(CALENDAR, given, {}, 2)
    assert segs.test[1] == last_labelled and not notices


def test_a_segment_that_starts_too_early_for_the_label_gap_is_refused():
    """Found by mutation testing: the gap rule used to clamp at the calendar's first day, so a train
    segment of one day right before valid kept a label that read valid's prices."""
    given = {"train": ["2020-01-01", "2020-01-01"], "valid": ["2020-01-02", "2020-06-30"],
             "test": ["2020-07-06", "2020-12-31"]}
    with pytest.raises(Exception, match="valid starts too early"):
        segmentation.resolve(CALENDAR, given, {}, 2)
    given["valid"][0] = "2020-01-06"  # three trading days later: the 2-day gap fits, train keeps its day
    segs, notices = segmentation.resolve(CALENDAR, given, {}, 2)
    assert segs.train == (CALENDAR[0], CALENDAR[0]) and not [n for n in notices if n.startswith("train")]
