"""Signal metrics for any segment (as Qlib's SigAnaRecord defines them) and regression metrics.

Signal metrics (IC, ICIR, Rank IC, Rank ICIR) compare predictions with the raw label, day by day.

Regression metrics compare predictions with the label the model was trained on (the processed label, for example
the cross-sectional rank of the return), so that their scale is meaningful:
- rmse, mae: as usual;
- mape: the weighted absolute percentage error sum|y - p| / sum|y| -- unlike the mean of |y - p| / |y|
  it cannot be blown up by labels near zero (and it is 1.0 for a model that always predicts 0);
- directional_accuracy: the share of rows where sign(p) == sign(y), ignoring rows where y == 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def regression_metrics(pred: pd.Series, label: pd.Series) -> dict[str, float]:
    frame = pd.concat({"pred": pred, "label": label}, axis=1, join="inner").dropna()
    if frame.empty:
        return {}
    error = frame["pred"] - frame["label"]
    nonzero = frame["label"] != 0
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "mape": float(np.abs(error).sum() / np.abs(frame["label"]).sum()),
        "directional_accuracy": float(
            (np.sign(frame["pred"][nonzero]) == np.sign(frame["label"][nonzero])).mean()
        ),
    }


def daily_ic(pred: pd.Series, label: pd.Series, method: str = "pearson") -> pd.Series:
    frame = pd.concat({"pred": pred, "label": label}, axis=1, join="inner").dropna()
    return frame.groupby(level="datetime").apply(lambda day: day["pred"].corr(day["label"], method=method))


def signal_metrics(pred: pd.Series, label: pd.Series) -> dict[str, float]:
    """Qlib's SigAnaRecord figures (daily Pearson and Spearman IC, their mean and mean/std)."""
    from qlib.contrib.eva.alpha import calc_ic

    ic, rank_ic = calc_ic(pred, label)
    return {
        "IC": float(ic.mean()),
        "ICIR": float(ic.mean() / ic.std()),
        "Rank IC": float(rank_ic.mean()),
        "Rank ICIR": float(rank_ic.mean() / rank_ic.std()),
    }
