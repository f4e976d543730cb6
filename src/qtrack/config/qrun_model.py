"""The model part of a qrun workflow as qtrack overrides (config.qrun), and the value helpers both use."""

from __future__ import annotations

import datetime
from typing import Any

from qtrack.config.values import model_hyperparameters, override_value

# (class, Qlib's module) -> qtrack's model option.
QLIB_MODELS = {
    ("LGBModel", "qlib.contrib.model.gbdt"): "lightgbm",
    ("CatBoostModel", "qlib.contrib.model.catboost_model"): "catboost",
    ("XGBModel", "qlib.contrib.model.xgboost"): "xgboost",
    ("DEnsembleModel", "qlib.contrib.model.double_ensemble"): "double_ensemble",
    ("DNNModelPytorch", "qlib.contrib.model.pytorch_nn"): "mlp",
    ("GRU", "qlib.contrib.model.pytorch_gru"): "gru",
    ("LSTM", "qlib.contrib.model.pytorch_lstm"): "lstm",
    ("ALSTM", "qlib.contrib.model.pytorch_alstm"): "alstm",
    ("TransformerModel", "qlib.contrib.model.pytorch_transformer"): "transformer",
    ("TCN", "qlib.contrib.model.pytorch_tcn"): "tcn",
    ("GRU", "qlib.contrib.model.pytorch_gru_ts"): "gru_ts",
    ("LSTM", "qlib.contrib.model.pytorch_lstm_ts"): "lstm_ts",
}


def translate_model(model: dict, out: Any) -> None:
    key = (model.get("class"), model.get("module_path"))
    name = QLIB_MODELS.get(key)
    if name is None:
        known = ", ".join(f"{c} ({m})" for c, m in QLIB_MODELS)
        out.problems.append(f"task.model ({key[0]} from {key[1]}: qtrack runs {known})")
        return
    out.model = name
    defaults = model_defaults(name)
    kwargs = model.get("kwargs") or {}
    for key_name, value in kwargs.items():
        if key_name == "GPU" and defaults.get("flavor") == "pytorch":
            out.model_overrides.append(f"model.device={_device(value)}")
            continue
        if key_name == "scheduler" and value is None:  # Qlib's "no schedule"; a null would mean Qlib's default
            value = "none"
        prefix = "" if key_name in defaults else "+"
        out.model_overrides.append(set_value(f"{prefix}model.{key_name}", plain(value)))
    fit_keys = set(defaults.get("fit_keys") or [])
    for key_name in defaults:
        if key_name not in kwargs and key_name in model_hyperparameters(defaults) and key_name not in fit_keys:
            out.model_overrides.append(f"model.{key_name}=null")
    out.model_overrides.append("model.seed_key=null")


def _device(gpu: Any) -> str:
    """qtrack's device for Qlib's `GPU` argument: a negative number is the CPU; N is cuda:N when PyTorch sees a GPU
    and the CPU otherwise, which is `auto` for 0."""
    if isinstance(gpu, str):
        return gpu
    return "cpu" if int(gpu) < 0 else "auto" if int(gpu) == 0 else f"cuda:{int(gpu)}"


def model_defaults(name: str) -> dict:
    from omegaconf import OmegaConf

    from qtrack import paths

    defaults = OmegaConf.to_container(OmegaConf.load(paths.config_dir() / "model" / f"{name}.yaml"))
    defaults.pop("defaults", None)  # Hydra's defaults list, not a hyperparameter
    return defaults


def day(value: Any) -> str:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.strftime("%Y-%m-%d")
    return str(value)


def plain(value: Any) -> Any:
    """YAML values as Hydra accepts them: dates as strings, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return day(value)
    return value


def set_value(key: str, value: Any) -> str:
    return f"{key}={override_value(plain(value))}"
