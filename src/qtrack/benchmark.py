"""`qtrack benchmark` as the tracking playbook's Python API.

    mlflow.set_experiment("walmart_sales_forecasting")
    with mlflow.start_run(run_name="lightgbm_vs_catboost"):
        benchmark = ModelBenchmark(output_dir="results/benchmarks/mlflow")
        benchmark.run(["models=[lightgbm,catboost]"])
        path = benchmark.save_results("walmart_lightgbm_vs_catboost.json")
        mlflow.log_artifact(path)
        mlflow.log_metric("best_mape", benchmark.get_ranking().iloc[0]["avg_mape"])

Inside an open MLflow run, the benchmark logs to that run's store and experiment, and its parent run
nests under it (an explicit `mlflow.tracking_uri=` / `mlflow.experiment_name=` override wins).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from qtrack import paths
from qtrack.errors import QtrackError
from qtrack.evaluation.ranking import BenchmarkResults, ranking, results_payload

DEFAULT_OUTPUT_DIR = Path("results/benchmarks")


class ModelBenchmark:
    def __init__(self, output_dir: str | Path | None = None, overrides: list[str] | None = None, *,
                 quiet: bool = False) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR
        self.overrides = list(overrides or [])
        self.quiet = quiet
        self.results: BenchmarkResults | None = None
        self.run_dir: Path | None = None

    def run(self, overrides: list[str] | None = None) -> BenchmarkResults:
        """Every model x seed; `overrides` extend the constructor's (later ones win)."""
        from qtrack.config import expand_switches, override_value
        from qtrack.stages.benchmark import SWITCHES, run_benchmark

        enclosing = enclosing_run()
        args = [f"output_dir={override_value(str(self.output_dir))}"]
        if enclosing is not None:
            args += [f"mlflow.tracking_uri={override_value(enclosing.tracking_uri)}",
                     f"mlflow.experiment_name={override_value(enclosing.experiment_name)}"]
        args += expand_switches([*self.overrides, *(overrides or [])], SWITCHES)
        self.results, self.run_dir = run_benchmark(args, quiet=self.quiet, enclosing=enclosing)
        return self.results

    def get_ranking(self, metric: str | None = None) -> pd.DataFrame:
        """One row per model, best first by `metric` (default: the benchmark's): `model`, `avg_<metric>`
        and `std_<metric>` for every metric, runs, failed, constant, error."""
        return ranking(self._results(), metric).reset_index()

    def save_results(self, name: str | Path) -> Path:
        """Every job and the ranking as JSON under `output_dir`; a name that leads out of it is refused."""
        folder = Path(self.output_dir).resolve()
        path = (folder / name).resolve()
        if not path.is_relative_to(folder) or path == folder:
            raise QtrackError(f"results name '{name}' leads outside output_dir {folder}: give a file name under it")
        with paths.atomic_file(path) as temporary:
            temporary.write_text(results_payload(self._results(), ranking(self._results())))
        return path

    @classmethod
    def load_results(cls, path: str | Path, output_dir: str | Path | None = None) -> ModelBenchmark:
        bench = cls(output_dir=output_dir)
        try:
            bench.results = BenchmarkResults.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise QtrackError(f"{path}: not a benchmark results file ({type(exc).__name__}: {exc})") from None
        return bench

    def _results(self) -> BenchmarkResults:
        if self.results is None:
            raise QtrackError("no results: call run() or load_results() first")
        return self.results


def enclosing_run():
    """The caller's open MLflow run (fluent API), as an EnclosingRun, or None."""
    import mlflow

    from qtrack.stages.benchmark import EnclosingRun

    active = mlflow.active_run()
    if active is None:
        return None
    uri = mlflow.get_tracking_uri()
    experiment = mlflow.tracking.MlflowClient(uri).get_experiment(active.info.experiment_id)
    return EnclosingRun(tracking_uri=uri, experiment_name=experiment.name, run_id=active.info.run_id)

