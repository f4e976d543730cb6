"""qtrack's handlers skip one copy of the frame and build learning rows on demand; everything they produce must
equal Qlib's handlers'."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from qtrack.data import qlib_format, synthetic

DK_L = "learn"

CONF = Path(__file__).resolve().parents[2] / "conf" / "features"
SPEC = synthetic.SyntheticSpec(symbols=12, days=160, seed=4)


@pytest.fixture(scope="module")
def calendar(tmp_path_factory: pytest.TempPathFactory) -> pd.DatetimeIndex:
    import qlib

    target = tmp_path_factory.mktemp("handler") / "syn"
    synthetic.ensure(target, SPEC)
    qlib.init(provider_uri=str(target), region="us", kernels=1)
    return qlib_format.read_calendar(target)


def handler_kwargs(conf: dict, calendar: pd.DatetimeIndex, end: pd.Timestamp) -> dict:
    return {
        "instruments": "all",
        "start_time": calendar[0],
        "end_time": end,
        "fit_start_time": calendar[0],
        "fit_end_time": calendar[100],
        "infer_processors": conf["infer_processors"],
        "learn_processors": conf["learn_processors"],
    }


@pytest.mark.parametrize(
    ("features", "days_before_end"),
    [("alpha158", 0), ("alpha158", 5), ("alpha360", 0)],
    ids=["alpha158-labels-dropped", "alpha158-nothing-dropped", "alpha360-infer-processors"],
)
def test_frames_equal_qlibs_and_raw_data_untouched(calendar, features, days_before_end):
    from qlib.contrib.data import handler as qlib_handlers

    from qtrack.data import qlib_handler

    conf = yaml.safe_load((CONF / f"{features}.yaml").read_text())
    name = conf["handler"]
    kwargs = handler_kwargs(conf, calendar, calendar[-1 - days_before_end])
    if days_before_end:  # only the symbols whose labels all exist, so dropna keeps every row
        labels = getattr(qlib_handlers, name)(**kwargs)._data["label"].iloc[:, 0]
        missing = labels.isna().groupby(level="instrument").any()
        kwargs["instruments"] = missing.index[~missing].tolist()
    ours, theirs = getattr(qlib_handler, name)(**kwargs), getattr(qlib_handlers, name)(**kwargs)

    dropped = len(theirs._data) - len(theirs._learn)
    assert (dropped > 0) == (days_before_end == 0), "the cases cover both dropna branches"
    for key in ("_data", "_infer"):
        pd.testing.assert_frame_equal(getattr(ours, key), getattr(theirs, key), check_exact=True)
    assert ours.learns_on_demand() and ours._learn is ours._infer, "no second whole frame is kept"
    for selector in (slice(None, None), (calendar[20], calendar[90]), calendar[40]):
        for col_set in ("__all", "__raw", "feature", "label", ["feature", "label"]):
            found = ours.fetch(selector, col_set=col_set, data_key=DK_L)
            expected = theirs.fetch(selector, col_set=col_set, data_key=DK_L)
            pd.testing.assert_frame_equal(found, expected, check_exact=True)
    raw_label = ours._data["label"].dropna()
    assert not raw_label.equals(ours.fetch(col_set="label", data_key=DK_L)), "the raw labels are untouched"


def test_learning_rows_by_instrument_or_with_proc_func_are_qlibs(calendar):
    """Selections that are not whole days build the whole learning frame, as Qlib does."""
    from qlib.contrib.data import handler as qlib_handlers

    from qtrack.data import qlib_handler

    conf = yaml.safe_load((CONF / "alpha158.yaml").read_text())
    kwargs = handler_kwargs(conf, calendar, calendar[-1])
    ours, theirs = qlib_handler.Alpha158(**kwargs), qlib_handlers.Alpha158(**kwargs)
    symbol = ours._data.index.get_level_values("instrument")[0]
    pd.testing.assert_frame_equal(ours.fetch(symbol, level="instrument", data_key=DK_L),
                                  theirs.fetch(symbol, level="instrument", data_key=DK_L), check_exact=True)
    assert not ours.learns_on_demand() and ours._learn is not ours._infer
    pd.testing.assert_frame_equal(ours.fetch(data_key=DK_L), theirs.fetch(data_key=DK_L), check_exact=True)


def test_learn_processors_that_read_features_take_qlibs_path(calendar):
    from qtrack.data import qlib_handler

    conf = yaml.safe_load((CONF / "alpha158.yaml").read_text())
    by_day = {"class": "CSZScoreNorm", "kwargs": {"fields_group": "feature"}}
    conf["learn_processors"] = [{"class": "DropnaLabel"}, by_day]
    handler = qlib_handler.Alpha158(**handler_kwargs(conf, calendar, calendar[-1]))
    assert not handler.learns_on_demand() and handler._learn is not handler._infer


def test_lightgbm_reads_the_training_rows_from_the_handlers_frame(calendar):
    """No copy of a segment's rows for LightGBM: its rows are a view of the handler's frame, and they are the
    learning frame's rows and labels."""
    import numpy as np

    from qtrack.data import qlib_handler
    from qtrack.data.qlib_dataset import DatasetH
    from qtrack.models.boosters import segment_rows
    from qtrack.models.lgb_rows import SelectedRows

    conf = yaml.safe_load((CONF / "alpha158.yaml").read_text())
    handler = qlib_handler.Alpha158(engine="fast", **handler_kwargs(conf, calendar, calendar[-1]))
    dataset = DatasetH(handler=handler, segments={"train": (calendar[0], calendar[100]),
                                                  "valid": (calendar[103], calendar[130])})
    features, label = segment_rows(dataset, "train")
    assert isinstance(features, SelectedRows)
    assert np.shares_memory(features.matrix, handler.fetch(col_set="__raw").to_numpy()), "the fast engine's frame"
    learned = dataset.prepare("train", col_set=["feature", "label"], data_key=DK_L)
    np.testing.assert_array_equal(features[0 : len(features)], learned["feature"].to_numpy())
    np.testing.assert_array_equal(label, learned["label"].to_numpy()[:, 0])
