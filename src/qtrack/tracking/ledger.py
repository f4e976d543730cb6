"""The metrics a process logged, kept as the tracking store keeps them, so that a stage's result is built from
what it logged instead of being read back from the store (one round trip fewer a run, and none per window)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any


class MetricLedger:
    """The latest value of every metric logged through a client, by run: the value at the highest step, then
    the latest timestamp, then the largest value (MLflow's rule for `run.data.metrics`; NaN compares as 0,
    as MLflow stores it)."""

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, tuple[int, int, float, float]]] = {}
        self._lock = threading.Lock()

    def record(self, run_id: str, metrics: list[Any]) -> None:
        """`metrics`: mlflow.entities.Metric objects, as log_batch takes them."""
        with self._lock:
            latest = self._latest.setdefault(run_id, {})
            for metric in metrics:
                value = float(metric.value)
                order = (int(metric.step or 0), int(metric.timestamp), 0.0 if math.isnan(value) else value)
                if metric.key not in latest or order >= latest[metric.key][:3]:
                    latest[metric.key] = (*order, value)

    def record_one(self, run_id: str, key: str, value: float, timestamp: int | None = None,
                   step: int | None = None) -> None:
        from mlflow.entities import Metric

        self.record(run_id, [Metric(key, value, timestamp or int(time.time() * 1000), step or 0)])

    def metrics(self, run_id: str) -> dict[str, float]:
        with self._lock:
            return {key: entry[3] for key, entry in self._latest.get(run_id, {}).items()}
