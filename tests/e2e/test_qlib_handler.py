"""qtrack's handlers skip one copy of the frame; everything they produce must equal Qlib's handlers'."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from qtrack.data import qlib_format, synthetic

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
    for key in ("_data", "_infer", "_learn"):
        pd.testing.assert_frame_equal(getattr(ours, key), getattr(theirs, key), check_exact=True)
    raw_label = ours._data["label"].dropna()
    assert not raw_label.equals(ours._learn["label"]), "the learn processors normalised a copy, not the raw data"
