"""Config values turned into what other tools read: plain containers, YAML, Hydra override strings."""

from __future__ import annotations

import re
from typing import Any

MODEL_RESERVED_KEYS = ("name", "class", "module_path", "seed_key", "fit_keys", "flavor")
_PLAIN_VALUE = re.compile(r"[A-Za-z_][\w.\-]*")


def model_hyperparameters(model_cfg: dict) -> dict:
    return {k: v for k, v in model_cfg.items() if k not in MODEL_RESERVED_KEYS}


def to_container(cfg: Any) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, secrets masked: this is what qtrack writes and prints."""
    from omegaconf import OmegaConf

    from qtrack.tracking import redact

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
