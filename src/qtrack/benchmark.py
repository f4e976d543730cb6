"""The benchmark stage: every model x seed on one dataset, ranked by mean +- std, tracked in MLflow.

One parent run holds the ranking (JSON, Markdown, PNG), `best_<metric>` and the winner's name; every
model x seed is a child run with everything a train run logs. A model that fails is reported as failed
and the others go on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from qtrack import config
from qtrack.errors import QtrackError

log = logging.getLogger("qtrack")

BENCHMARK_KEYS = ("models", "seeds", "metric", "model_overrides")
LOWER_IS_BETTER = ("rmse", "mae", "mape")
TABLE = {
    "IC": "IC",
    "ICIR": "ICIR",
    "Rank IC": "Rank IC",
    "Rank ICIR": "Rank ICIR",
    "1day.excess_return_with_cost.annualized_return": "Annualized return",
    "1day.excess_return_with_cost.information_ratio": "Information ratio",
    "1day.excess_return_with_cost.max_drawdown": "Max drawdown",
}
STAGE_TAG = "qtrack.stage"


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


@dataclass
class BenchmarkResults:
    metric: str
    jobs: list[Job]
    experiment: str | None = None
    parent_run_id: str | None = None

    def to_dict(self) -> dict:
        return {"metric": self.metric, "experiment": self.experiment, "parent_run_id": self.parent_run_id,
                "jobs": [asdict(job) for job in self.jobs]}

    @classmethod
    def from_dict(cls, data: dict) -> BenchmarkResults:
        return cls(metric=data["metric"], experiment=data.get("experiment"),
                   parent_run_id=data.get("parent_run_id"), jobs=[Job(**job) for job in data["jobs"]])


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def ranking(results: BenchmarkResults, metric: str | None = None) -> pd.DataFrame:
    """Per model: runs, failures, the first error, and the mean and std (ddof=1) of every metric;
    best first by `metric`, models with no successful run last."""
    metric = metric or results.metric
    rows = {}
    for model in dict.fromkeys(job.model for job in results.jobs):
        jobs = [job for job in results.jobs if job.model == model]
        done = pd.DataFrame([job.metrics for job in jobs if job.status == "FINISHED"])
        row: dict[str, Any] = {
            "runs": len(jobs),
            "failed": sum(job.status != "FINISHED" for job in jobs),
            "error": next((job.error for job in jobs if job.error), None),
        }
        for name in done.columns:
            row[f"{name} mean"] = float(done[name].mean())
            row[f"{name} std"] = float(done[name].std(ddof=1))
        rows[model] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    key = f"{metric} mean"
    if key not in table.columns:
        raise QtrackError(f"metric '{metric}' was not logged by any successful run")
    return table.sort_values(key, ascending=not higher_is_better(metric), na_position="last")


def results_payload(results: BenchmarkResults, table: pd.DataFrame) -> str:
    """Every job plus the ranking as an ordered list of rows (best first; NaN written as null)."""
    rows = json.loads(table.reset_index().to_json(orient="records", double_precision=15))
    return json.dumps({**results.to_dict(), "ranking": rows}, indent=2)


def ranking_markdown(table: pd.DataFrame, metric: str) -> str:
    names = [name for name in TABLE if f"{name} mean" in table.columns]
    lines = [f"Ranked by {metric} (test segment), mean ± std over seeds.", "",
             "| Model | " + " | ".join(TABLE[n] for n in names) + " | Runs |",
             "|---|" + "---|" * (len(names) + 1)]
    for model, row in table.iterrows():
        if row["failed"] == row["runs"]:
            cells = ["failed"] * len(names)
        else:
            cells = [f"{row[f'{n} mean']:.4f} ± {_std(row[f'{n} std'])}" for n in names]
        runs = f"{int(row['runs'] - row['failed'])}/{int(row['runs'])}"
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {runs} |")
    failures = table[table["failed"] > 0]
    for model, row in failures.iterrows():
        lines.append(f"\n{model}: {int(row['failed'])} failed: {row['error']}")
    return "\n".join(lines) + "\n"


def _std(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.4f}"


def ranking_chart(table: pd.DataFrame, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table[table["failed"] < table["runs"]]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.bar(ok.index, ok[f"{metric} mean"], yerr=ok[f"{metric} std"].fillna(0.0), capsize=6, color="tab:blue")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_title(f"{metric} by model (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class ModelBenchmark:
    """`qtrack benchmark` as a Python API: run(), save_results(), get_ranking(), load_results()."""

    def __init__(self, overrides: list[str] | None = None, quiet: bool = False) -> None:
        self.overrides = list(overrides or [])
        self.quiet = quiet
        self.results: BenchmarkResults | None = None
        self.run_dir: Path | None = None

    def run(self) -> BenchmarkResults:
        from qtrack.benchmark_runner import run_benchmark

        self.results, self.run_dir = run_benchmark(self.overrides, quiet=self.quiet)
        return self.results

    def get_ranking(self, metric: str | None = None) -> pd.DataFrame:
        if self.results is None:
            raise QtrackError("no results: call run() or load_results() first")
        return ranking(self.results, metric)

    def save_results(self, path: str | Path) -> Path:
        if self.results is None:
            raise QtrackError("no results: call run() or load_results() first")
        path = Path(path)
        path.write_text(results_payload(self.results, self.get_ranking()))
        return path

    @classmethod
    def load_results(cls, path: str | Path) -> ModelBenchmark:
        bench = cls()
        bench.results = BenchmarkResults.from_dict(json.loads(Path(path).read_text()))
        return bench


def benchmark_settings(cfg: Any) -> tuple[list[str], list[int], str, dict[str, list[str]]]:
    models = list(cfg.models)
    valid = config.config_groups()["model"]
    unknown = [m for m in models if m not in valid]
    if not models or unknown:
        raise QtrackError(f"models: unknown {unknown or 'none given'}; choose from {', '.join(valid)}")
    seeds = cfg.seeds
    seeds = list(range(int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise QtrackError("seeds: give a positive count or a list of seeds")
    overrides = {m: [str(o) for o in v] for m, v in config.to_container(cfg.model_overrides).items()}
    return models, seeds, str(cfg.metric), overrides


def run_stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def elapsed_eta(started: float, done: int, total: int) -> str:
    spent = time.perf_counter() - started
    left = spent / max(done, 1) * (total - done)
    return f"{int(left // 60)}m{int(left % 60):02d}s"
