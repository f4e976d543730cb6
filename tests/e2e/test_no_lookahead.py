"""No look-ahead, proven on Qlib itself: prices changed after the train segment's end leave the train
features and the fitted processors exactly as they were, while the test segment does change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qtrack import config
from qtrack.data import qlib_format, synthetic
from qtrack.data.dataset import build_dataset, dataset_config
from qtrack.data.segments import resolve
from qtrack.runtime import init_qlib

SPEC = synthetic.SyntheticSpec(symbols=12, days=260, signal=0.3, seed=5)
PRICES = ("open", "high", "low", "close", "vwap")


def build(root, cfg, segs):
    init_qlib(root, "us", f"sqlite:///{root.parent / 'mlflow.db'}", "lookahead", kernels=1)
    return build_dataset(dataset_config(cfg, segs))


@pytest.mark.slow
def test_prices_after_the_train_end_change_nothing_the_model_learns_from(tmp_path, workspace):
    from qlib.data.dataset.handler import DataHandlerLP

    frames = synthetic.generate(SPEC)
    original, changed = tmp_path / "original", tmp_path / "changed"
    qlib_format.write_dataset(original, frames, {"kind": "test"})
    calendar = qlib_format.read_calendar(original)
    cfg = config.compose("train", ["features=alpha360"]).cfg  # RobustZScoreNorm: a learnable processor
    segs, _ = resolve(calendar, dict(cfg.dataset.segments), dict(cfg.dataset.split), 2)
    train_end = segs.train[1]
    shocked = {}
    for symbol, frame in frames.items():
        frame = frame.copy()
        later = frame.index > train_end
        frame.loc[later, list(PRICES)] *= 1.7
        frame.loc[later, "volume"] *= 3.0
        shocked[symbol] = frame
    qlib_format.write_dataset(changed, shocked, {"kind": "test"})

    before, after = build(original, cfg, segs), build(changed, cfg, segs)
    for data_key in (DataHandlerLP.DK_L, DataHandlerLP.DK_I):
        old = before.prepare("train", col_set="feature", data_key=data_key)
        new = after.prepare("train", col_set="feature", data_key=data_key)
        pd.testing.assert_frame_equal(old, new)
    fitted = [p for p in before.handler.infer_processors if hasattr(p, "mean_train")]
    assert fitted, "alpha360 has a learnable processor"
    for old, new in zip(fitted, [p for p in after.handler.infer_processors if hasattr(p, "mean_train")], strict=True):
        np.testing.assert_array_equal(old.mean_train, new.mean_train)
        np.testing.assert_array_equal(old.std_train, new.std_train)
    test_old = before.prepare("test", col_set="feature", data_key=DataHandlerLP.DK_I)
    test_new = after.prepare("test", col_set="feature", data_key=DataHandlerLP.DK_I)
    assert not test_old.equals(test_new), "the change reached the test segment, so it was really made"
