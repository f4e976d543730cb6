"""TopkDropout's daily choice on arrays is Qlib's pandas choice, on hostile days: scores rounded so that ties are
everywhere, held stocks without a score, more held stocks than topk + n_drop, n_drop of 0, float32 scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qtrack.evaluation.topk_dropout import choose


def qlibs_choice(scores: pd.Series, held: list[str], topk: int, n_drop: int) -> tuple[list[str], list[str]]:
    """The pandas lines of TopkDropoutStrategy.generate_trade_decision (method_sell=bottom, method_buy=top)."""
    last = scores.reindex(held).sort_values(ascending=False).index
    today = list(scores[~scores.index.isin(last)].sort_values(ascending=False).index)[: n_drop + topk - len(last)]
    comb = scores.reindex(last.union(pd.Index(today))).sort_values(ascending=False).index
    sell = last[last.isin(list(comb)[-n_drop:])]
    return list(sell), today[: len(sell) + topk - len(last)]


def a_day(rng: np.random.Generator, dtype: str) -> tuple[pd.Series, list[str]]:
    universe = [f"S{i:03d}" for i in range(int(rng.integers(1, 80)))]
    scored = [name for name in universe if rng.random() < 0.9] or universe[:1]
    scores = pd.Series(np.round(rng.normal(size=len(scored)), int(rng.integers(0, 3))).astype(dtype),
                       index=pd.Index(rng.permutation(scored), dtype=object))
    held = list(rng.choice(universe, size=int(rng.integers(0, min(len(universe), 30) + 1)), replace=False))
    return scores, held


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_choice_is_qlibs_on_thousands_of_hostile_days(dtype: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(3000):
        scores, held = a_day(rng, dtype)
        topk, n_drop = int(rng.integers(1, 25)), int(rng.integers(0, 8))
        assert choose(scores, held, topk, n_drop) == qlibs_choice(scores, held, topk, n_drop), (held, topk, n_drop)


def test_an_empty_holding_and_an_unchanged_one() -> None:
    scores = pd.Series([0.5, 0.5, 0.1, 0.5], index=pd.Index(["D", "B", "C", "A"], dtype=object))
    for held in ([], ["D", "B"], ["A", "B", "D"]):
        assert choose(scores, held, 2, 1) == qlibs_choice(scores, held, 2, 1)
