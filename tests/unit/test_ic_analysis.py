"""qtrack's daily IC and Rank IC against Qlib's `calc_ic`, to the bit, on the cases a real test segment has:
tied scores, float32 predictions, NaN labels and scores, a day with one stock, a day with no valid pair, rows in
any order, and instruments that only one side holds."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from qlib.contrib.eva.alpha import calc_ic as qlib_calc_ic

from qtrack.evaluation.ic_analysis import calc_ic


def hostile_segment(seed: int) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-01", periods=60)
    codes = [f"S{i:03d}" for i in range(40)]
    index = pd.MultiIndex.from_product([days, codes], names=["datetime", "instrument"])
    pred = pd.Series(np.round(rng.normal(size=len(index)), 1), index=index).astype("float32")  # ties
    label = pd.Series(rng.normal(size=len(index)), index=index)
    label.iloc[::7] = np.nan
    pred.iloc[::11] = np.nan
    pred = pred.drop(pred.index[pred.index.get_level_values("datetime") == days[3]][1:])  # one stock that day
    label.loc[days[5]] = np.nan  # no valid pair that day
    label = label.drop(label.index[label.index.get_level_values("instrument") == "S039"])  # pred only
    return pred.sample(frac=1, random_state=seed), label  # rows in any order


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dropna", [False, True])
def test_ic_and_rank_ic_are_qlibs_to_the_bit(seed: int, dropna: bool) -> None:
    pred, label = hostile_segment(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn alike on the one-stock and empty days
        expected = qlib_calc_ic(pred, label, dropna=dropna)
        found = calc_ic(pred, label, dropna=dropna)
    for ours, theirs in zip(found, expected, strict=True):
        pd.testing.assert_series_equal(ours, theirs, check_exact=True)
        assert np.array_equal(ours.to_numpy(), theirs.to_numpy(), equal_nan=True)
    assert found[0].isna().sum() == (0 if dropna else 2)  # the one-stock day and the empty day
