"""What every stage shares of a model's run: its result, the metrics a summary shows, and how it names them.
The run itself is stages.runner's: it evaluates (stages.evaluate) and records (stages.record)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qtrack.tracking import names

SUMMARY_METRICS = (
    *names.SIGNAL_METRICS,
    f"{names.EXCESS_WITH_COST}.annualized_return",
    f"{names.EXCESS_WITH_COST}.information_ratio",
    f"{names.EXCESS_WITH_COST}.max_drawdown",
    *names.REGRESSION_METRICS,
)


def metric_label(name: str) -> str:
    """How a summary table names a metric: Qlib's `1day.excess_return_with_cost.x` as `excess, with cost: x`."""
    return name.replace(f"{names.EXCESS_WITH_COST}.", "excess, with cost: ")


def metric_rows(metrics: dict[str, float]) -> list[tuple[str, str]]:
    """The summary table's rows for the SUMMARY_METRICS among `metrics`, in that order."""
    return [(metric_label(name), f"{metrics[name]:.4f}") for name in SUMMARY_METRICS if name in metrics]


@dataclass
class RunResult:
    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    tracking_uri: str
    metrics: dict[str, float]
    seconds: dict[str, float]
    constant_predictions: bool = False  # the model found nothing to learn: Rank IC is undefined
    predictions: Any = field(default=None, repr=False)  # the test segment's scores (pred.pkl), kept in memory


def summary(result: RunResult) -> dict:
    return {
        "run_id": result.run_id,
        "run_name": result.run_name,
        "experiment_id": result.experiment_id,
        "experiment_name": result.experiment_name,
        "metrics": {k: result.metrics[k] for k in SUMMARY_METRICS if k in result.metrics},
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        **({"note": "the model predicts a constant; Rank IC is undefined"} if result.constant_predictions else {}),
    }
