"""The vocabulary qtrack writes to MLflow: tag keys, stage names and the metric names Qlib logs."""

from __future__ import annotations

# Tags on every run.
VERSION = "qtrack.version"
STAGE = "qtrack.stage"
COMMAND = "qtrack.command"
HOST = "qtrack.host"
PID = "qtrack.pid"
GIT_COMMIT = "qtrack.git_commit"
DATA_FINGERPRINT = "qtrack.data_fingerprint"
DATA_END = "qtrack.data_end"
FEATURE_CACHE = "qtrack.feature_cache"
BENCHMARK_SCOPE = "qtrack.benchmark.scope"  # what a benchmark ranks on: the test segment or a walk-forward record
ERROR = "qtrack.error"
ENDED_BY = "qtrack.ended_by"  # why a run ended KILLED: interrupted, terminated, pruned, gc-stale
MODEL_URI = "qtrack.model_uri"
CONSTANT_PREDICTIONS = "qtrack.constant_predictions"
TRUNCATED_PARAMS = "qtrack.truncated_params"
PARENT_RUN = "mlflow.parentRunId"

def name_filter(name: str) -> str:
    """An MLflow filter for one registered model's versions that holds for any name, including one with a quote
    (registered before qtrack refused them, or by another tool): MLflow reads a double-quoted value too."""
    quote = '"' if "'" in name else "'"
    return f"name = {quote}{name}{quote}"


# Stage names (the value of qtrack.stage).
TRAIN, OPTIMIZE, OPTIMIZE_TRIAL, BENCHMARK, RETRAIN = "train", "optimize", "optimize-trial", "benchmark", "retrain"

# Metric names as Qlib logs them (spaces included) and qtrack's own.
SIGNAL_METRICS = ("IC", "ICIR", "Rank IC", "Rank ICIR")
EXCESS_WITH_COST = "1day.excess_return_with_cost"
REGRESSION_METRICS = ("rmse", "mae", "mape", "directional_accuracy")
LOWER_IS_BETTER = ("rmse", "mae", "mape")


def higher_is_better(metric: str) -> bool:
    return metric.rsplit(".", 1)[-1] not in LOWER_IS_BETTER
