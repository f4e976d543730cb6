"""Logging to MLflow within its limits: params in batches of 100, values cut visibly, batched metrics."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from qtrack.config import redact

log = logging.getLogger("qtrack")

# pyqlib lowers mlflow.utils.validation.MAX_PARAM_VAL_LENGTH from 6000 to 1000 on import.
PARAM_VALUE_LIMIT = 1000
PARAM_KEY_LIMIT = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
TRUNCATION_MARK = "...[truncated {n} chars; see config.yaml]"


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """Nested dicts become dotted keys; lists and scalars become their JSON text."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


def fit_value(value: str) -> tuple[str, bool]:
    if len(value) <= PARAM_VALUE_LIMIT:
        return value, False
    mark = TRUNCATION_MARK.format(n=len(value))
    return value[: PARAM_VALUE_LIMIT - len(mark)] + mark, True


def log_params(client: Any, run_id: str, params: dict[str, str]) -> list[str]:
    """Log every param; returns the keys whose values had to be truncated."""
    from mlflow.entities import Param

    truncated, entries = [], []
    for key, value in params.items():
        fitted, cut = fit_value(redact.MASK if redact.is_secret_key(key) else redact.text(value))
        if cut:
            truncated.append(key)
            log.warning("param %s is %d chars long; logged truncated to %d", key, len(value), PARAM_VALUE_LIMIT)
        entries.append(Param(key[:PARAM_KEY_LIMIT], fitted))
    for start in range(0, len(entries), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=entries[start : start + PARAMS_PER_BATCH], synchronous=True)
    return truncated


def log_metrics(client: Any, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [Metric(k, float(v), now, step) for k, v in metrics.items() if _finite(v)]
    _log_metric_entries(client, run_id, entries)


def log_curves(client: Any, run_id: str, curves: dict[str, list[float]]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entries = [
        Metric(name, value, now, step)
        for name, values in curves.items()
        for step, value in enumerate(values)
        if _finite(value)
    ]
    _log_metric_entries(client, run_id, entries)


def _log_metric_entries(client: Any, run_id: str, entries: list) -> None:
    for start in range(0, len(entries), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=entries[start : start + METRICS_PER_BATCH], synchronous=True)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False

