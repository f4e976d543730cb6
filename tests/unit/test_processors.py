"""qtrack's CSZScoreNorm gives Qlib's frame to the bit, and the fast engine's handlers use it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qlib.data.dataset import processor as qlib_processors

from qtrack.data import processors

DAYS, STOCKS, FEATURES = 60, 40, 5


def frame() -> pd.DataFrame:
    """Float32 features and a label, with what a real cross-section has: NaNs, a day with one stock, a day
    whose label is constant (zero deviation), a day with no label at all, and days of different sizes."""
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2020-01-01", periods=DAYS)
    rows = [(day, f"S{stock:03d}") for i, day in enumerate(dates) for stock in range(STOCKS - i % 7)]
    index = pd.MultiIndex.from_tuples(rows, names=["datetime", "instrument"])
    values = (rng.standard_t(3, size=(len(index), FEATURES + 1)) * 10).astype(np.float32)
    values[rng.random(values.shape) < 0.05] = np.nan
    day = index.get_level_values("datetime")
    values[day == dates[3], -1] = np.float32(0.25)
    values[day == dates[4], -1] = np.nan
    columns = pd.MultiIndex.from_tuples([*(("feature", f"F{j}") for j in range(FEATURES)), ("label", "LABEL0")])
    data = pd.DataFrame(values, index=index, columns=columns)
    single = data.index.get_level_values("datetime") == dates[5]
    return data[~single | (data.index.get_level_values("instrument") == "S000")]


@pytest.mark.parametrize("group", ["label", "feature", None])
def test_csz_score_norm_is_qlibs_to_the_bit(group) -> None:
    data = frame()
    expected = qlib_processors.CSZScoreNorm(fields_group=group)(data.copy())
    got = processors.CSZScoreNorm(fields_group=group)(data.copy())
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert np.array_equal(got.to_numpy().view(np.int32), expected.to_numpy().view(np.int32))


def test_the_robust_method_and_unordered_days_are_left_to_qlib() -> None:
    data = frame()
    robust = processors.CSZScoreNorm(fields_group="label", method="robust")(data.copy())
    pd.testing.assert_frame_equal(robust, qlib_processors.CSZScoreNorm("label", "robust")(data.copy()))
    shuffled = data.sample(frac=1.0, random_state=0)
    got = processors.CSZScoreNorm(fields_group="label")(shuffled.copy())
    pd.testing.assert_frame_equal(got, qlib_processors.CSZScoreNorm(fields_group="label")(shuffled.copy()))


def test_only_qlibs_own_csz_score_norm_is_swapped() -> None:
    configs = [{"class": "DropnaLabel"}, {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}},
               {"class": "CSZScoreNorm", "module_path": "my.processors"}]
    swapped = processors.fast_processors(configs)
    assert swapped[0] == configs[0] and swapped[2] == configs[2]
    assert swapped[1] == {**configs[1], "module_path": "qtrack.data.processors"}
