"""A Qlib linear model that carries its own preprocessing as a scikit-learn pipeline.

Alpha158 features contain NaN and inf and differ in scale by orders of magnitude, which Qlib's
LinearModel does not handle. Here infinities become NaN, NaN is imputed with the train median,
features are scaled robustly and clipped, and the estimator is fitted -- all on the train segment,
inside fit(), so the same dataset serves tree models and no test information leaks into training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from qlib.data.dataset import DatasetH
from qlib.data.dataset.handler import DataHandlerLP
from qlib.model.base import Model

ESTIMATORS = ("ols", "ridge", "lasso")
# What MLflow's skops serialiser must be told to trust in this pipeline (all plain numpy callables).
SKOPS_TRUSTED_TYPES = ["numpy.clip", "numpy.dtype", "numpy.nan_to_num"]


def make_pipeline(estimator: str, alpha: float, clip: float):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Lasso, LinearRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, RobustScaler

    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    regressor = {
        "ols": LinearRegression(),
        "ridge": Ridge(alpha=alpha),
        "lasso": Lasso(alpha=alpha),
    }[estimator]
    return Pipeline(
        [
            ("finite", FunctionTransformer(np.nan_to_num, kw_args={"nan": np.nan, "posinf": np.nan, "neginf": np.nan})),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", RobustScaler(quantile_range=(5.0, 95.0))),
            ("clip", FunctionTransformer(np.clip, kw_args={"a_min": -clip, "a_max": clip})),
            ("regress", regressor),
        ]
    )


class StandardizedLinearModel(Model):
    def __init__(self, estimator: str = "ridge", alpha: float = 1.0, clip: float = 3.0):
        self.pipeline = make_pipeline(estimator, alpha, clip)
        self.fitted = False

    def fit(self, dataset: DatasetH, reweighter=None):
        frame = dataset.prepare("train", col_set=["feature", "label"], data_key=DataHandlerLP.DK_L)
        frame = frame[frame["label"].notna().all(axis=1)]
        if frame.empty:
            raise ValueError("no training rows with a label: check the dataset's segments")
        self.pipeline.fit(frame["feature"], np.ravel(frame["label"].to_numpy()))
        self.fitted = True
        return self

    def predict(self, dataset: DatasetH, segment: str | slice = "test") -> pd.Series:
        if not self.fitted:
            raise ValueError("model is not fitted yet")
        features = dataset.prepare(segment, col_set="feature", data_key=DataHandlerLP.DK_I)
        return pd.Series(self.pipeline.predict(features), index=features.index)
