"""Config values turned into what other tools read: plain containers, YAML, Hydra override strings."""

from __future__ import annotations

import datetime
import re
from typing import Any

from qtrack.config.settings import to_container

# Not passed to the model: qtrack's own keys. step_len makes the dataset Qlib's TSDatasetH (samples of step_len days).
MODEL_RESERVED_KEYS = ("name", "class", "module_path", "seed_key", "fit_keys", "flavor", "step_len")
# Where a PyTorch model (flavor: pytorch) runs: qtrack's keys there. LightGBM's num_threads is its own hyperparameter.
TORCH_RUNTIME_KEYS = ("device", "num_threads")
_PLAIN_VALUE = re.compile(r"[A-Za-z_][\w.\-]*")


def model_hyperparameters(model_cfg: dict) -> dict:
    reserved = MODEL_RESERVED_KEYS + (TORCH_RUNTIME_KEYS if model_cfg.get("flavor") == "pytorch" else ())
    return {k: v for k, v in model_cfg.items() if k not in reserved}


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, secrets masked: this is what qtrack writes and prints."""
    from omegaconf import OmegaConf

    from qtrack.config import redact

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


def expand_switches(overrides: list[str], switches: dict[str, str]) -> list[str]:
    """Overrides with each on/off switch the user types (`rolling=true`) written as the key it sets
    (`rolling.enabled=true`); `+` and `++` prefixes included."""
    expanded = []
    for item in overrides:
        key, _, value = item.partition("=")
        target = switches.get(key.lstrip("+"))
        expanded.append(f"{target}={value.lower()}" if target and value.lower() in ("true", "false") else item)
    return expanded


def override_value(value: Any) -> str:
    """`value` written so that a Hydra override parses it back to exactly the same value: the one quoting
    function of qtrack (trial and benchmark settings, the qrun translation, printed commands). Lists, tuples
    and dicts are written element by element, dates as days; strings stay bare where Hydra reads them back
    unchanged (names, dates, paths, URIs), and are quoted otherwise."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{override_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.strftime("%Y-%m-%d")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _reads_back(text):
        return text
    # Hydra's quoted strings keep backslashes, except a run of them before a quote or at the end.
    escaped = re.sub(r"(\\+)(?='|$)", lambda run: run.group(1) * 2, text)
    return "'" + escaped.replace("'", "\\'") + "'"


def _reads_back(text: str) -> bool:
    """Whether Hydra parses `text`, unquoted, back to the same string."""
    if not text or text.strip() != text or text.lower() in ("true", "false", "null", "inf", "-inf", "nan"):
        return False
    if _PLAIN_VALUE.fullmatch(text):
        return True
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(f"k={text}").value() == text
    except HydraException:
        return False
