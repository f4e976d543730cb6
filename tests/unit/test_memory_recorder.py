"""Qlib's own records run against the in-memory recorder an evaluation uses: they find their inputs (in their
folder, then their parent's), check them with list_artifacts, and leave their objects and metrics there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qlib.utils.exceptions import LoadObjectError
from qlib.workflow.record_temp import SigAnaRecord

from qtrack.evaluation.memory_recorder import MemoryRecorder


def scored_days() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    index = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=20), [f"S{i}" for i in range(8)]],
                                       names=["datetime", "instrument"])
    label = pd.DataFrame({"LABEL0": rng.normal(size=len(index))}, index=index)
    pred = pd.DataFrame({"score": label["LABEL0"] + rng.normal(size=len(index))}, index=index)
    return pred, label


def test_qlibs_signal_analysis_reads_and_writes_in_memory() -> None:
    pred, label = scored_days()
    recorder = MemoryRecorder()
    recorder.save_objects(**{"pred.pkl": pred, "label.pkl": label})
    SigAnaRecord(recorder=recorder, ana_long_short=False, ann_scaler=252).generate()
    saved = recorder.objects()
    assert {"sig_analysis/ic.pkl", "sig_analysis/ric.pkl"} <= set(saved)
    daily = [np.corrcoef(day["score"], label.loc[day.index, "LABEL0"])[0, 1] for _, day in pred.groupby(level=0)]
    assert recorder.metrics["IC"] == pytest.approx(np.mean(daily), rel=1e-12)
    assert [folder for folder, _ in recorder.saves] == [None, "sig_analysis"]  # one upload per save when recorded


def test_a_load_is_a_copy_and_a_missing_object_is_qlibs_error() -> None:
    pred, _ = scored_days()
    recorder = MemoryRecorder()
    recorder.save_objects(**{"pred.pkl": pred})
    loaded = recorder.load_object("pred.pkl")
    loaded.iloc[0, 0] = 99.0
    pd.testing.assert_frame_equal(recorder.load_object("pred.pkl"), pred)
    with pytest.raises(LoadObjectError):
        recorder.load_object("sig_analysis/pred.pkl")
    assert recorder.list_artifacts() == ["pred.pkl"] and recorder.list_artifacts("sig_analysis") == []
