"""A benchmark's results and their ranking: per model, the mean and std over seeds of every metric,
best first, as a table, JSON, Markdown and a bar chart."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from qtrack.errors import QtrackError
from qtrack.tracking.names import REGRESSION_METRICS, higher_is_better

TABLE = {
    "IC": "IC",
    "ICIR": "ICIR",
    "Rank IC": "Rank IC",
    "Rank ICIR": "Rank ICIR",
    "1day.excess_return_with_cost.annualized_return": "Annualized return",
    "1day.excess_return_with_cost.information_ratio": "Information ratio",
    "1day.excess_return_with_cost.max_drawdown": "Max drawdown",
}
# What a benchmark may rank by: Qlib's signal and backtest metrics and qtrack's regression metrics.
RANKABLE = (*TABLE, *REGRESSION_METRICS)


@dataclass
class Job:
    model: str
    seed: int
    status: str = "PENDING"  # FINISHED or FAILED once run
    run_id: str | None = None
    run_name: str | None = None
    error: str | None = None
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    constant: bool = False  # the model predicted a constant: its Rank IC is NaN and left out of the mean


TEST_SEGMENT = "test segment"
WALK_FORWARD = "walk-forward out-of-sample record"


@dataclass
class BenchmarkResults:
    metric: str
    jobs: list[Job]
    experiment: str | None = None
    parent_run_id: str | None = None
    scope: str = TEST_SEGMENT  # what the jobs' metrics cover

    def to_dict(self) -> dict:
        return {"metric": self.metric, "experiment": self.experiment, "parent_run_id": self.parent_run_id,
                "scope": self.scope, "jobs": [asdict(job) for job in self.jobs]}

    @classmethod
    def from_dict(cls, data: dict) -> BenchmarkResults:
        return cls(metric=data["metric"], experiment=data.get("experiment"),
                   parent_run_id=data.get("parent_run_id"), scope=data.get("scope", TEST_SEGMENT),
                   jobs=[Job(**job) for job in data["jobs"]])


def ranking(results: BenchmarkResults, metric: str | None = None) -> pd.DataFrame:
    """Per model (the index, `model`): runs, failures, the first error, runs that predicted a constant, and
    `avg_<metric>` / `std_<metric>` (ddof=1; the playbook's names) of every metric over the runs that logged
    it (an undefined Rank IC is not logged, so it stays out of the mean); best first by `metric`, models
    with no successful run last."""
    metric = metric or results.metric
    rows = {}
    for model in dict.fromkeys(job.model for job in results.jobs):
        jobs = [job for job in results.jobs if job.model == model]
        done = pd.DataFrame([job.metrics for job in jobs if job.status == "FINISHED"])
        row: dict[str, Any] = {
            "runs": len(jobs),
            "failed": sum(job.status != "FINISHED" for job in jobs),
            "error": next((job.error for job in jobs if job.error), None),
            "constant": sum(job.constant for job in jobs if job.status == "FINISHED"),
        }
        for name in done.columns:
            row[f"avg_{name}"] = float(done[name].mean())
            row[f"std_{name}"] = float(done[name].std(ddof=1))
        rows[model] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    key = f"avg_{metric}"
    if key not in table.columns:
        raise QtrackError(f"metric '{metric}' was not logged by any successful run")
    return table.sort_values(key, ascending=not higher_is_better(metric), na_position="last")


def results_payload(results: BenchmarkResults, table: pd.DataFrame) -> str:
    """Every job plus the ranking as an ordered list of rows (best first; NaN written as null)."""
    rows = json.loads(table.reset_index().to_json(orient="records", double_precision=15))
    return json.dumps({**results.to_dict(), "ranking": rows}, indent=2)


def ranking_markdown(table: pd.DataFrame, metric: str, scope: str = TEST_SEGMENT) -> str:
    names = [name for name in TABLE if f"avg_{name}" in table.columns]
    lines = [f"Ranked by {metric} ({scope}), mean ± std over seeds.", "",
             "| Model | " + " | ".join(TABLE[n] for n in names) + " | Runs |",
             "|---|" + "---|" * (len(names) + 1)]
    for model, row in table.iterrows():
        if row["failed"] == row["runs"]:
            cells = ["failed"] * len(names)
        else:
            cells = [f"{row[f'avg_{n}']:.4f} ± {_std(row[f'std_{n}'])}" for n in names]
        runs = f"{int(row['runs'] - row['failed'])}/{int(row['runs'])}"
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {runs} |")
    failures = table[table["failed"] > 0]
    for model, row in failures.iterrows():
        lines.append(f"\n{model}: {int(row['failed'])} failed: {row['error']}")
    for model, row in table[table.get("constant", 0) > 0].iterrows():
        lines.append(f"\n{model}: {int(row['constant'])} run(s) predicted a constant (the model found nothing to "
                     "learn); their Rank IC is undefined and left out of the mean")
    return "\n".join(lines) + "\n"


def _std(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.4f}"


def ranking_chart(table: pd.DataFrame, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table[table["failed"] < table["runs"]]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.bar(ok.index, ok[f"avg_{metric}"], yerr=ok[f"std_{metric}"].fillna(0.0), capsize=6, color="tab:blue")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_title(f"{metric} by model (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def numeric_metrics(metrics: dict) -> dict[str, float]:
    """A run's metrics that rank: numbers, without the step timings."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not k.startswith("time.")}
