"""Build, fit and export Qlib models from the `model` config group."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from qtrack.config import model_hyperparameters
from qtrack.runtime import critical


@dataclass
class ModelSpec:
    name: str
    class_name: str
    module_path: str
    flavor: str | None
    init_kwargs: dict
    fit_kwargs: dict = field(default_factory=dict)
    device: str = "auto"  # PyTorch models only
    num_threads: int | None = None


def model_spec(model_cfg: dict, seed: int) -> ModelSpec:
    """Split the model config into constructor and fit() arguments and plant the seed."""
    # null means "not passed": the model class's own default applies (train --from-qrun relies on it)
    hyper = {k: v for k, v in model_hyperparameters(model_cfg).items() if v is not None}
    fit_keys = set(model_cfg.get("fit_keys") or [])
    init_kwargs = {k: v for k, v in hyper.items() if k not in fit_keys}
    fit_kwargs = {k: v for k, v in hyper.items() if k in fit_keys}
    if model_cfg.get("seed_key"):
        init_kwargs.setdefault(model_cfg["seed_key"], seed)
    if model_cfg.get("flavor") in ("lightgbm", "xgboost", "catboost"):
        fit_kwargs["verbose_eval"] = 0  # training curves go to MLflow, not the screen
    if model_cfg.get("flavor") == "xgboost":
        fit_kwargs["evals_result"] = {}
    return ModelSpec(
        name=model_cfg["name"],
        class_name=model_cfg["class"],
        module_path=model_cfg["module_path"],
        flavor=model_cfg.get("flavor"),
        init_kwargs=init_kwargs,
        fit_kwargs=fit_kwargs,
        device=str(model_cfg.get("device") or "auto"),
        num_threads=model_cfg.get("num_threads"),
    )


def build_model(spec: ModelSpec):
    from qlib.utils import init_instance_by_config

    kwargs = dict(spec.init_kwargs)
    if spec.flavor == "pytorch":
        from qtrack.models import torch_runtime

        torch_runtime.prepare(spec.num_threads)
        kwargs["GPU"] = torch_runtime.qlib_gpu(spec.device)
    return init_instance_by_config({"class": spec.class_name, "module_path": spec.module_path, "kwargs": kwargs})


def training_curves(spec: ModelSpec, model: Any) -> dict[str, list[float]]:
    """Per-iteration train/valid losses, named `<metric>.<train|valid>` (Qlib's names for LightGBM)."""
    if spec.flavor == "lightgbm":
        result = getattr(model, "evals_result", None) or {}
        return {
            f"{metric}.{part}".replace("@", "_"): list(map(float, values))
            for part, by_metric in result.items()
            for metric, values in by_metric.items()
        }
    if spec.flavor == "xgboost":
        result = spec.fit_kwargs.get("evals_result") or {}
        return {f"loss.{part}": list(map(float, values)) for part, values in result.items()}
    if spec.flavor == "catboost":
        result = model.model.get_evals_result()
        names = {"learn": "train", "validation": "valid"}
        return {
            f"{metric}.{names.get(part, part)}": list(map(float, values))
            for part, metrics in result.items()
            for metric, values in metrics.items()
        }
    return {}


def log_flavor_model(spec: ModelSpec, model: Any, example, recorder: Any, tracking_uri: str):
    """Log the fitted model as an MLflow model of its own flavour (loadable with mlflow.pyfunc), as the
    run's output. No fluent active run is used: runs in threads stay separate, and MLflow does not copy
    every metric's history onto the model (one request per metric, slow against a server)."""
    import mlflow
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import infer_signature

    if spec.flavor is None:
        return None
    native = _native_model(spec.flavor, model)
    if spec.flavor == "xgboost":
        native.feature_names = [str(c) for c in example.columns]
    signature = infer_signature(example, native_predict(spec.flavor, native, example))
    flavor_module = importlib.import_module(f"mlflow.{spec.flavor}").log_model.__module__
    flavor = importlib.import_module("qtrack.models.pyfunc" if spec.flavor == "pyfunc" else flavor_module)
    extra: dict = {}
    if spec.flavor == "pytorch":  # the network's class is Qlib's, pickled by reference
        extra["pip_requirements"] = [*flavor.get_default_pip_requirements(), f"pyqlib=={metadata.version('pyqlib')}"]
        extra["serialization_format"] = "pickle"
    if spec.flavor == "sklearn":
        from qtrack.models.linear import SKOPS_TRUSTED_TYPES

        extra["skops_trusted_types"] = SKOPS_TRUSTED_TYPES
    mlflow.set_tracking_uri(tracking_uri)  # log_model resolves the global URI; one URI per process
    client, run_id = recorder.client, recorder.id
    created = client.create_logged_model(recorder.experiment_id, name="model", source_run_id=run_id,
                                         tags={"mlflow.source.flavor": spec.flavor})
    # Explicit requirements: inferring them loads the model in a subprocess (about 6 s).
    with critical():
        info = _log_model(flavor, native, created.model_id, signature, example, extra)
    client.log_outputs(run_id, [LoggedModelOutput(created.model_id, step=0)])
    return info


def _native_model(flavor: str, model: Any) -> Any:
    """What the MLflow model saves: the booster, the sklearn pipeline, the network or Qlib's whole model."""
    return {"pyfunc": lambda: model, "sklearn": lambda: model.pipeline, "pytorch": lambda: model.network}.get(
        flavor, lambda: model.model)()


def _log_model(flavor: Any, native: Any, model_id: str, signature: Any, example: Any, extra: dict) -> Any:
    if flavor.__name__ == "qtrack.models.pyfunc":
        return flavor.log_model(native, model_id, signature, example)
    return flavor.log_model(
        native,
        name="model",
        model_id=model_id,
        signature=signature,
        input_example=example.head(2) if hasattr(example, "head") else example[:2],
        **{"pip_requirements": flavor.get_default_pip_requirements(), **extra},
    )


def native_predict(flavor: str, native: Any, frame):
    if flavor == "pyfunc":
        from qtrack.models.pyfunc import ensemble_predict

        return ensemble_predict(native, frame)
    if flavor == "xgboost":
        import xgboost

        return native.predict(xgboost.DMatrix(frame))
    if flavor == "pytorch":
        return network_predict(native, frame)
    return native.predict(frame)


def network_predict(network: Any, inputs: Any) -> Any:
    """A network's scores for a feature frame (or a TSDatasetH model's samples, an array), as the MLflow pytorch
    flavour computes them (float32 input)."""
    import numpy as np
    import torch

    network.eval()
    with torch.no_grad():
        out = network(torch.from_numpy(np.asarray(getattr(inputs, "values", inputs), dtype=np.float32)))
    return out.reshape(-1).cpu().numpy()

