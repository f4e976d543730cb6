"""A train drops the dataset's frames once its model, records and input example are built, so the logging step (and
the report worker it forks) runs without the features in memory: on 500 stocks that was the run's peak."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from helpers import QLIB_REPORT, TINY, WITH_MODEL

pytestmark = pytest.mark.slow


def allocation(frame) -> np.ndarray:
    """The array that owns the memory of `frame`'s values (the values are a view of it)."""
    values = frame.to_numpy()
    while isinstance(values.base, np.ndarray):
        values = values.base
    return values


def test_the_logging_step_holds_no_copy_of_the_features(tmp_path, monkeypatch):
    from qtrack.stages import runner
    from qtrack.stages.train import run_train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QTRACK_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    features, seen = [], []
    real_evaluate, real_record = runner.evaluate, runner.record

    def evaluate(cfg, data, *args, **kwargs):
        evaluation = real_evaluate(cfg, data, *args, **kwargs)
        features.append(weakref.ref(allocation(data.dataset.handler._data)))
        gc.collect()
        seen.append(("evaluated", features[0]() is not None))
        return evaluation

    def record(*args, **kwargs):
        gc.collect()
        seen.append(("logging", features[0]() is not None))
        return real_record(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", evaluate)
    monkeypatch.setattr(runner, "record", record)
    result = run_train([*TINY, QLIB_REPORT, WITH_MODEL], quiet=True)
    assert seen == [("evaluated", True), ("logging", False)]
    assert result.metrics["IC"] == result.metrics["IC"]  # the records were made before the frames went
    assert {"rmse", "1day.excess_return_with_cost.annualized_return"} <= set(result.metrics)
