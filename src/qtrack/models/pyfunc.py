"""An MLflow pyfunc over a Qlib model that no MLflow flavour holds (DEnsembleModel: LightGBM sub-models,
each on its own feature subset, averaged with weights), so such runs can be registered and loaded with
mlflow.pyfunc like the others. qtrack's own `predict` still loads Qlib's params.pkl."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd


def ensemble_predict(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """DEnsembleModel.predict on a feature frame: the sub-models' weighted mean, as Qlib computes it."""
    total = np.zeros(len(frame))
    for submodel, features, weight in zip(model.ensemble, model.sub_features, model.sub_weights, strict=True):
        total += submodel.predict(frame.loc[:, features].values) * weight
    return total / np.sum(model.sub_weights)


class QlibEnsembleModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        import pickle

        with open(context.artifacts["qlib_model"], "rb") as handle:
            self.model = pickle.load(handle)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return ensemble_predict(self.model, model_input)


def log_model(native: Any, model_id: str, signature: Any, example: pd.DataFrame) -> Any:
    import pickle
    import tempfile
    from importlib.metadata import version as package_version
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "qlib_model.pkl"
        path.write_bytes(pickle.dumps(native))
        return mlflow.pyfunc.log_model(
            name="model", python_model=QlibEnsembleModel(), artifacts={"qlib_model": str(path)},
            model_id=model_id, signature=signature, input_example=example.head(2),
            pip_requirements=[f"pyqlib=={package_version('pyqlib')}", f"lightgbm=={package_version('lightgbm')}",
                              f"mlflow=={package_version('mlflow')}"],
        )
