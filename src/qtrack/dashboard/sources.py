"""What the dashboard reads: MLflow through its client (never writing), or the benchmark JSON files.

Every function returns plain data (frames, dicts, bytes) so the app can cache it with st.cache_data.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qtrack.tracking import names

URI_ENV = "QTRACK_DASHBOARD_TRACKING_URI"
RESULTS_ENV = "QTRACK_DASHBOARD_RESULTS"
# The metrics a run's row shows, by their MLflow names, with short headings.
HEADLINE = {
    "IC": "IC", "ICIR": "ICIR", "Rank IC": "Rank IC", "Rank ICIR": "Rank ICIR",
    f"{names.EXCESS_WITH_COST}.annualized_return": "excess return (ann.)",
    f"{names.EXCESS_WITH_COST}.information_ratio": "information ratio",
    f"{names.EXCESS_WITH_COST}.max_drawdown": "max drawdown",
    "mape": "mape",
}
REPORT = "portfolio_analysis/report_normal_1day.pkl"
DAILY_IC = "sig_analysis/ic.pkl"
QLIB_REPORT = "reports/qlib_report.html"


class Unreachable(Exception):
    """The tracking store can't be read; the message says why in one line."""


@dataclass(frozen=True)
class Settings:
    tracking_uri: str
    results_dir: Path
    experiment: str | None


def settings() -> Settings:
    from qtrack.config.store_uri import resolve_tracking_uri

    return Settings(tracking_uri=os.environ.get(URI_ENV) or resolve_tracking_uri(),
                    results_dir=Path(os.environ.get(RESULTS_ENV) or "results/benchmarks"),
                    experiment=os.environ.get("MLFLOW_EXPERIMENT_NAME") or None)


def client(uri: str) -> Any:
    """A read-only use of MlflowClient; a missing SQLite file is not created."""
    from mlflow.tracking import MlflowClient

    from qtrack.runtime import quiet_third_party

    quiet_third_party()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise Unreachable(f"no tracking store at {uri[len('sqlite:///'):]}: run `qtrack train` first")
    return MlflowClient(uri)


def experiments(uri: str) -> list[str]:
    """The experiments' names, newest first; Unreachable when the store can't be read."""
    from qtrack.config.store_uri import mask_uri

    try:
        found = client(uri).search_experiments(order_by=["creation_time DESC"])
    except Unreachable:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read is shown as a notice, not a traceback
        raise Unreachable(f"MLflow at {mask_uri(uri)} can't be read: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}") from None
    return [e.name for e in found if e.name != "Default" or _has_runs(uri, e.experiment_id)]


def _has_runs(uri: str, experiment_id: str) -> bool:
    return bool(client(uri).search_runs([experiment_id], max_results=1))


def runs(uri: str, experiment: str, limit: int = 1000) -> pd.DataFrame:
    """The newest `limit` runs of an experiment: one row each, headline metrics as columns."""
    found = client(uri).get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame()
    rows = [_run_row(run) for run in _search(uri, found.experiment_id, "", limit)]
    return pd.DataFrame(rows)


def _search(uri: str, experiment_id: str, filter_string: str, limit: int) -> list[Any]:
    """search_runs page by page (the store returns at most 1,000 a call)."""
    mlflow_client, found, token = client(uri), [], None
    while len(found) < limit:
        page = mlflow_client.search_runs([experiment_id], filter_string, max_results=min(1000, limit - len(found)),
                                         order_by=["attributes.start_time DESC"], page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    return found


def _run_row(run: Any) -> dict[str, Any]:
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    row = {
        "run_name": run.info.run_name,
        "stage": tags.get(names.STAGE) or ("benchmark-job" if "qtrack.benchmark.job" in tags else ""),
        "model": params.get("model.name", ""), "status": run.info.status,
        "started": pd.to_datetime(run.info.start_time, unit="ms"), "run_id": run.info.run_id,
        "parent": tags.get(names.PARENT_RUN, ""),
    }
    row.update({heading: metrics.get(name) for name, heading in HEADLINE.items()})
    return row


def run_details(uri: str, run_id: str) -> dict[str, Any]:
    run = client(uri).get_run(run_id)
    return {"name": run.info.run_name, "status": run.info.status, "params": dict(run.data.params),
            "metrics": dict(run.data.metrics), "tags": {k: v for k, v in run.data.tags.items()
                                                        if not k.startswith("mlflow.")}}


CURVE_SUFFIXES = (".train", ".valid")  # l2.valid (LightGBM), loss.valid and metric.valid (PyTorch models), ...


def training_curves(uri: str, run_id: str) -> pd.DataFrame:
    """Every per-iteration or per-epoch curve of a run (its metrics named <name>.train or <name>.valid), long form:
    metric, step, value. A running fit's curves hold the epochs logged so far."""
    store = client(uri)
    names_found = [name for name in store.get_run(run_id).data.metrics if name.endswith(CURVE_SUFFIXES)]
    rows = [{"metric": name, "step": point.step, "value": point.value}
            for name in sorted(names_found) for point in store.get_metric_history(run_id, name)]
    return pd.DataFrame(rows, columns=["metric", "step", "value"])


def artifact_bytes(uri: str, run_id: str, path: str) -> bytes | None:
    """One artifact's content, or None when the run has no such artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client(uri).download_artifacts(run_id, path, tmp)
        except Exception:  # noqa: BLE001 - a run without that artifact
            return None
        return Path(local).read_bytes() if Path(local).is_file() else None


def artifact_object(uri: str, run_id: str, path: str) -> Any:
    """A pickled artifact qtrack itself logged (Qlib's records), or None."""
    content = artifact_bytes(uri, run_id, path)
    return pickle.loads(content) if content is not None else None


def parent_runs(uri: str, experiment: str, stage: str, limit: int = 200) -> pd.DataFrame:
    """The experiment's benchmark or sweep parent runs, newest first."""
    found = client(uri).get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame()
    rows = [{"run_name": r.info.run_name, "run_id": r.info.run_id, "status": r.info.status,
             "started": pd.to_datetime(r.info.start_time, unit="ms")}
            for r in _search(uri, found.experiment_id, f"tags.`{names.STAGE}` = '{stage}'", limit)]
    return pd.DataFrame(rows)


def registry(uri: str) -> list[dict[str, Any]]:
    """Each registered model with its aliases and versions, and the retrain decisions on them."""
    mlflow_client = client(uri)
    models = []
    for model in mlflow_client.search_registered_models(max_results=1000):
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        versions = [_version_row(v, aliases) for v in
                    mlflow_client.search_model_versions(names.name_filter(model.name), max_results=1000)]
        models.append({"name": model.name, "aliases": dict(model.aliases or {}),
                       "versions": sorted(versions, key=lambda v: -int(v["version"]))})
    return models


def _version_row(version: Any, aliases: dict[str, list[str]]) -> dict[str, Any]:
    tags = version.tags or {}
    return {"version": str(version.version), "aliases": ", ".join(aliases.get(str(version.version), [])),
            "decision": tags.get("qtrack.retrain.decision", ""), "reason": tags.get("qtrack.retrain.reason", ""),
            "challenger score": tags.get("qtrack.retrain.challenger_score", ""),
            "champion score": tags.get("qtrack.retrain.champion_score", ""),
            "created": pd.to_datetime(version.creation_timestamp, unit="ms"), "run_id": version.run_id}


def json_results(folder: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """The benchmark results files under `folder` (recursive), by path relative to it, and the files that look
    like results but can't be shown, with why. JSON files without a `ranking` are not results: left out."""
    found, problems = {}, {}
    if not folder.is_dir():
        return found, problems
    for path in sorted(folder.rglob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        name = str(path.relative_to(folder))
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            problems[name] = f"is not readable JSON ({' '.join(str(exc).split())[:80]}), perhaps cut short"
            continue
        if not isinstance(payload, dict) or "ranking" not in payload:
            continue
        problem = ranking_problem(payload["ranking"])
        if problem:
            problems[name] = problem
        else:
            found[name] = payload
    return found, problems


def ranking_problem(rows: Any) -> str | None:
    """Why a results file's `ranking` can't be drawn, or None: it must be a list of rows that name their model
    and carry at least one avg_<metric> column."""
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return "has a ranking that is not a list of rows"
    if any("model" not in row for row in rows):
        return "has ranking rows without a model"
    if rows and not any(key.startswith("avg_") for row in rows for key in row):
        return "has ranking rows without any avg_<metric> column"
    return None
