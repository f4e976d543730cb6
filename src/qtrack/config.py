"""Compose conf/<stage>.yaml with command-line overrides, validate it, and fill derived values.

Hydra's compose API is used (not @hydra.main) so that Typer owns the command line. Compose mode has
no output folder or HydraConfig, so `hydra.run.dir=...` is taken out here and handled by outputs.py.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtrack import paths
from qtrack.errors import QtrackError

RUN_DIR_OVERRIDE = "hydra.run.dir="
_HYDRA_LOCK = threading.Lock()
_PLAIN_VALUE = re.compile(r"[A-Za-z_][\w.\-]*")
MODEL_RESERVED_KEYS = ("name", "class", "module_path", "seed_key", "fit_keys", "flavor")


def config_groups(config_dir: Path | None = None) -> dict[str, list[str]]:
    """Each config group and its options, read from the folder (cheap: no Hydra import)."""
    root = config_dir or paths.config_dir()
    groups = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        groups[folder.name] = sorted(p.stem for p in folder.glob("*.yaml"))
    return groups


@dataclass
class Composed:
    cfg: Any  # omegaconf.DictConfig
    run_dir: str | None


def compose(stage: str, overrides: list[str]) -> Composed:
    """The validated config for `stage` with `overrides` applied, or a QtrackError in one line."""
    run_dir, overrides = _take_run_dir(overrides)
    _check_group_choices(overrides)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    with _HYDRA_LOCK:  # Hydra's compose state is a process-wide singleton
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(paths.config_dir()), version_base="1.3"):
                cfg = hydra_compose(config_name=stage, overrides=overrides)
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            raise QtrackError(f"bad override: {_one_line(exc)}") from None
        finally:
            GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    _validate(cfg)
    _fill_derived(cfg)
    OmegaConf.set_struct(cfg, True)
    return Composed(cfg=cfg, run_dir=run_dir)


def _take_run_dir(overrides: list[str]) -> tuple[str | None, list[str]]:
    run_dir, rest = None, []
    for item in overrides:
        if item.startswith(RUN_DIR_OVERRIDE):
            run_dir = item[len(RUN_DIR_OVERRIDE) :]
        elif item.startswith("hydra."):
            raise QtrackError(f"unsupported override '{item}': only hydra.run.dir can be set")
        else:
            rest.append(item)
    return run_dir, rest


def _check_group_choices(overrides: list[str]) -> None:
    groups = config_groups()
    for item in overrides:
        match = re.fullmatch(r"[+~]?([\w/]+)=(.*)", item)
        if not match or match.group(1) not in groups:
            continue
        group, choice = match.groups()
        if choice not in groups[group]:
            valid = ", ".join(groups[group])
            raise QtrackError(f"unknown {group} '{choice}': choose one of {valid}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.split("\n    full_key:")[0].split("\nfull_key:")[0]
    return re.sub(r"\s+", " ", text)


def _validate(cfg: Any) -> None:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from qtrack.schema import SCHEMAS

    for group, schema in SCHEMAS.items():
        if group not in cfg:
            continue
        try:
            cfg[group] = OmegaConf.merge(OmegaConf.structured(schema), cfg[group])
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", "") or ""
            where = f"{group}.{key}" if key else group
            raise QtrackError(f"invalid {where}: {_one_line(exc)}") from None
    if "model" in cfg:
        _validate_model(cfg.model)
    for key in ("seed",):
        if key in cfg and not isinstance(cfg[key], int):
            raise QtrackError(f"invalid {key}: expected an integer, got {cfg[key]!r}")
    if cfg.get("kernels") is not None and (not isinstance(cfg.kernels, int) or cfg.kernels < 1):
        raise QtrackError(f"invalid kernels: expected a positive integer or null, got {cfg.kernels!r}")


def _validate_model(model: Any) -> None:
    """Hyperparameters keep the type of the model's own default (an int is fine for a float)."""
    from omegaconf import OmegaConf

    defaults_file = paths.config_dir() / "model" / f"{model.name}.yaml"
    defaults = OmegaConf.to_container(OmegaConf.load(defaults_file)) if defaults_file.is_file() else {}
    for key, default in defaults.items():
        value = model.get(key)
        if default is None or value is None or key in ("fit_keys",):
            continue
        if not _same_kind(default, value):
            raise QtrackError(
                f"invalid model.{key}: expected {type(default).__name__}, got {value!r}"
            )


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _fill_derived(cfg: Any) -> None:
    if "mlflow" not in cfg:
        return
    cfg.mlflow.tracking_uri = tracking_uri(cfg.mlflow.tracking_uri)
    if not cfg.mlflow.experiment_name:
        cfg.mlflow.experiment_name = f"{cfg.dataset.name}_{cfg.features.name}"


def tracking_uri(configured: str | None = None) -> str:
    """MLFLOW_TRACKING_URI when set, else the configured URI, else sqlite:///<cwd>/mlruns/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or paths.default_tracking_uri()


def model_hyperparameters(model_cfg: dict) -> dict:
    return {k: v for k, v in model_cfg.items() if k not in MODEL_RESERVED_KEYS}


def to_container(cfg: Any) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, secrets masked: this is what qtrack writes and prints."""
    from omegaconf import OmegaConf

    from qtrack import redact

    return OmegaConf.to_yaml(OmegaConf.create(redact.tree(to_container(cfg))))


def train_overrides(overrides: list[str], stage_keys: tuple[str, ...]) -> list[str]:
    """The user's overrides that a stage's train configs take: not hydra.*, not the stage's own keys
    (a key matches itself and everything under it: `retrain` covers retrain.metric)."""
    kept = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra.") or any(key == k or key.startswith(f"{k}.") for k in stage_keys):
            continue
        kept.append(item)
    return kept


def override_value(value: Any) -> str:
    """`value` written so that a Hydra override parses it back to exactly the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN_VALUE.fullmatch(text) and text.lower() not in ("true", "false", "null", "inf", "nan"):
        return text
    # Hydra's quoted strings keep backslashes, except a run of them before a quote or at the end.
    escaped = re.sub(r"(\\+)(?='|$)", lambda run: run.group(1) * 2, text)
    return "'" + escaped.replace("'", "\\'") + "'"
