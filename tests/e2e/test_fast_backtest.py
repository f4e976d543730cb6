"""The fast backtest gives Qlib's own backtest, value for value: the daily report, every day's positions,
the trade indicators and the risk analysis, for the default config and for randomised topk, n_drop, costs,
limit thresholds and deal prices, on a market with suspensions, late listings, limit moves and tied scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DAYS = 130
STOCKS = 24


def _market(target: Path) -> None:
    from qtrack.data.qlib_format import write_dataset

    rng = np.random.default_rng(3)
    calendar = pd.bdate_range("2021-01-04", periods=DAYS)
    frames = {}
    for i in range(STOCKS):
        start = 0 if i % 6 else 40  # late listings
        days = calendar[start:]
        close = 30 * np.exp(np.cumsum(rng.normal(0, 0.03, days.size)))
        frame = pd.DataFrame({"close": close, "open": close * (1 + rng.normal(0, 0.01, days.size))}, index=days)
        frame["high"] = frame[["open", "close"]].max(axis=1) * 1.01
        frame["low"] = frame[["open", "close"]].min(axis=1) * 0.99
        frame["vwap"] = (frame.high + frame.low + frame.close) / 3
        frame["volume"] = rng.integers(1_000, 50_000, days.size).astype(float)
        frame["factor"] = 1.0
        frame["change"] = frame.close.pct_change()  # Qlib's limit rules read $change
        if i % 5 == 1:  # suspended days: no row, so NaN in the .bin
            frame = frame.drop(days[rng.choice(np.arange(10, days.size), 8, replace=False)])
        frames[f"S{i:02d}"] = frame
    write_dataset(target, frames, {"source": "backtest cases"})


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qtrack.runtime import init_qlib

    root = tmp_path_factory.mktemp("bt") / "data" / "bt"
    root.parent.mkdir(parents=True)
    _market(root)
    init_qlib(root, "us", f"sqlite:///{root.parent}/mlflow.db", "backtest")  # applies qlib_compat's fix
    return root


def _predictions(seed: int) -> pd.DataFrame:
    """Scores over the last 70 days, rounded so that ties are common (as a tree model's are)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2021-01-04", periods=DAYS)[-70:]
    index = pd.MultiIndex.from_product([days, [f"S{i:02d}" for i in range(STOCKS)]], names=["datetime", "instrument"])
    scores = np.round(rng.normal(size=len(index)), 1)
    return pd.DataFrame({"score": scores}, index=index)


def _config(pred: pd.DataFrame, topk: int, n_drop: int, exchange: dict) -> dict:
    days = pred.index.get_level_values("datetime").unique()
    bench = pd.Series(np.random.default_rng(1).normal(0, 0.01, days.size).astype(np.float32), index=days)
    return {
        "executor": {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                     "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}},
        "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                     "kwargs": {"signal": pred, "topk": topk, "n_drop": n_drop}},
        "start_time": days[1], "end_time": days[-2], "account": 1e7, "benchmark": bench,
        "exchange_kwargs": {"freq": "day", **exchange},
    }


DEFAULT = {"deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5.0,
           "limit_threshold": None}


def _random_cases(count: int) -> list[tuple[int, int, dict]]:
    rng = np.random.default_rng(11)
    cases = []
    for _ in range(count):
        topk = int(rng.integers(1, 16))
        cases.append((topk, int(rng.integers(0, topk + 1)), {
            "deal_price": str(rng.choice(["close", "open", "vwap"])),
            "open_cost": float(rng.uniform(0, 0.01)),
            "close_cost": float(rng.uniform(0, 0.01)),
            "min_cost": float(rng.choice([0.0, 5.0, 200.0])),
            "limit_threshold": None if rng.random() < 0.3 else float(rng.uniform(0.01, 0.06)),
        }))
    return cases


CASES = [(10, 2, DEFAULT), (10, 0, DEFAULT), *_random_cases(7)]


@pytest.mark.parametrize(("topk", "n_drop", "exchange"), CASES)
def test_fast_backtest_equals_qlibs(market, topk: int, n_drop: int, exchange: dict) -> None:
    from qlib.backtest import backtest as qlib_backtest
    from qlib.contrib.evaluate import risk_analysis

    from qtrack.evaluation import fast_backtest

    config = _config(_predictions(topk * 100 + n_drop), topk, n_drop, exchange)
    assert fast_backtest.supports(config["executor"], config["strategy"], config["exchange_kwargs"])
    (fast_report, fast_positions), (fast_indicators, _) = _unpack(fast_backtest.backtest(**config))
    (qlib_report, qlib_positions), (qlib_indicators, _) = _unpack(qlib_backtest(**config))

    pd.testing.assert_frame_equal(fast_report, qlib_report, check_exact=False, rtol=1e-9, atol=1e-9)
    assert fast_report["turnover"].sum() > 0, "the case must trade"
    assert list(fast_positions) == list(qlib_positions)
    for day, position in qlib_positions.items():
        _assert_position_equal(fast_positions[day].position, position.position, day)
    pd.testing.assert_frame_equal(fast_indicators, qlib_indicators, check_exact=False, rtol=1e-9, atol=1e-9)
    for column in ("return", "bench"):
        pd.testing.assert_frame_equal(risk_analysis(fast_report[column]), risk_analysis(qlib_report[column]),
                                      check_exact=False, rtol=1e-9, atol=1e-9)


def _unpack(result):
    portfolio, indicators = result
    return portfolio["1day"], indicators["1day"]


def _assert_position_equal(fast: dict, qlib: dict, day) -> None:
    assert list(fast) == list(qlib), day
    for key, value in qlib.items():
        if isinstance(value, dict):
            assert fast[key].keys() == value.keys(), (day, key)
            np.testing.assert_allclose([fast[key][k] for k in value], list(value.values()), rtol=1e-9, atol=1e-9)
        else:
            np.testing.assert_allclose(fast[key], value, rtol=1e-9, atol=1e-9, err_msg=f"{day} {key}")


def test_the_cases_reach_limits_suspensions_and_ties(market) -> None:
    from qlib.data import D

    quote = D.features(D.instruments("all"), ["$close", "$change"], "2021-01-04", "2021-07-02")
    assert quote["$close"].isna().sum() > 0, "suspended days"
    assert (quote["$change"].abs() >= 0.06).sum() > 10, "limit moves at the thresholds drawn"
    scores = _predictions(1)["score"]
    assert scores.groupby(level="datetime").apply(lambda s: s.duplicated().sum()).min() > 0, "ties every day"


def test_unsupported_configs_go_to_qlib() -> None:
    from qtrack.evaluation import fast_backtest

    executor = {"class": "SimulatorExecutor", "kwargs": {"time_per_step": "day"}}
    strategy = {"class": "TopkDropoutStrategy", "kwargs": {"signal": None, "topk": 5, "n_drop": 1}}
    assert fast_backtest.supports(executor, strategy, {"deal_price": "close"})
    assert not fast_backtest.supports(executor, {**strategy, "class": "WeightStrategyBase"}, {})
    assert not fast_backtest.supports(executor, {"class": "TopkDropoutStrategy",
                                                 "kwargs": {"topk": 5, "n_drop": 1, "method_sell": "random"}}, {})
    assert not fast_backtest.supports(executor, strategy, {"impact_cost": 0.1})
    assert not fast_backtest.supports({**executor, "kwargs": {"time_per_step": "30min"}}, strategy, {})
