"""The MLflow Model Registry side of qtrack: register a train run's model, list models, load a
registered model with the exact feature pipeline it was trained with, and score days with it."""

from __future__ import annotations

import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qtrack.errors import QtrackError
from qtrack.paths import atomic_file
from qtrack.tracking.names import name_filter

KEY_METRICS = ("IC", "ICIR", "Rank IC", "Rank ICIR")
# Where the classes inside models registered by qtrack 0.1's flat layout live now.
_MOVED_MODULES = {
    "qtrack.boosters": "qtrack.models.boosters",
    "qtrack.linear": "qtrack.models.linear",
    "qtrack.qlib_dataset": "qtrack.data.qlib_dataset",
    "qtrack.qlib_handler": "qtrack.data.qlib_handler",
}
_REFERENCE = re.compile(r"(?P<name>[^@/]+)(?:@(?P<alias>[\w\-]+)|/(?P<version>\d+))")


def connect(configured: str | None = None) -> tuple[Any, str]:
    """A client for the configured (or default) tracking URI, checked first: exit 3 when unreachable."""
    from qtrack.config.store_uri import resolve_tracking_uri
    from qtrack.runtime import quiet_third_party
    from qtrack.tracking.store import adopt_store, check_tracking_uri

    quiet_third_party()
    uri = resolve_tracking_uri(configured)
    check_tracking_uri(uri)
    adopt_store(uri)
    return client_for(uri), uri


def client_for(tracking_uri: str) -> Any:
    import mlflow

    from qtrack.tracking.runs import client_for

    mlflow.set_tracking_uri(tracking_uri)  # mlflow.register_model resolves the global URI
    return client_for(tracking_uri)


def check_names(name: str, alias: str | None = None) -> None:
    """A QtrackError (exit 2) for a name or alias the registry or qtrack's readers can't take, before anything
    is created."""
    from qtrack.config.names import alias_problem, model_name_problem

    problem = model_name_problem(name) or (alias_problem(alias) if alias is not None else None)
    if problem:
        raise QtrackError(problem)


def register(client: Any, run_id: str, name: str, alias: str | None = None, extra_tags: dict | None = None) -> Any:
    """A new version of `name` from the run's logged model, tagged with the run's key facts."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from qtrack.runtime import captured_output, critical

    check_names(name, alias)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise QtrackError(f"run {run_id} not found") from None
    model_uri = run.data.tags.get("qtrack.model_uri")
    if not model_uri:
        raise QtrackError(f"run {run_id} has no logged model (was it trained with mlflow.log_model=false?)")
    tags = {f"qtrack.{k.replace(' ', '_')}": f"{run.data.metrics[k]:.6f}" for k in KEY_METRICS
            if k in run.data.metrics}
    for key in ("qtrack.data_end", "qtrack.data_fingerprint"):
        if key in run.data.tags:
            tags[key] = run.data.tags[key]
    tags.update({"qtrack.run_id": run_id, "qtrack.dataset": run.data.params.get("dataset.name", "")})
    tags.update(extra_tags or {})
    with captured_output(), critical():  # MLflow prints "Successfully registered model ..." itself
        version = mlflow.register_model(model_uri, name, tags=tags)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def resolve(client: Any, reference: str) -> Any:
    """`MODEL@ALIAS` or `MODEL/VERSION` to its model version."""
    from mlflow.exceptions import MlflowException

    match = _REFERENCE.fullmatch(reference.strip())
    if not match:
        raise QtrackError(f"invalid model '{reference}': use MODEL@ALIAS or MODEL/VERSION")
    try:
        if match["alias"]:
            return client.get_model_version_by_alias(match["name"], match["alias"])
        return client.get_model_version(match["name"], match["version"])
    except MlflowException:
        raise QtrackError(f"model {reference} not found in the registry") from None


def champion(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass
class Pipeline:
    """A trained Qlib model with the dataset definition (fitted processors, no data) it was trained on."""

    model: Any
    dataset: Any
    run_id: str
    dataset_name: str
    region: str
    provider_uri: str | None = None  # an existing Qlib directory the model was trained on, read in place


def load_pipeline(client: Any, version: Any) -> Pipeline:
    run_id = version.run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model_path = client.download_artifacts(run_id, "params.pkl", tmp)
            dataset_path = client.download_artifacts(run_id, "dataset.pkl", tmp)
        except Exception as exc:  # noqa: BLE001 - a missing artifact is one clear line
            raise QtrackError(
                f"the run {run_id} of model version {version.name}/{version.version} lacks its model or "
                f"dataset definition: {' '.join(str(exc).split())[:200]}"
            ) from None
        from qtrack.runtime import captured_output

        with captured_output():  # unpickling imports Qlib's model zoo, which prints about PyTorch
            model = load_pickle(Path(model_path))
            dataset = load_pickle(Path(dataset_path))
    params = client.get_run(run_id).data.params
    return Pipeline(model=model, dataset=dataset, run_id=run_id, dataset_name=params.get("dataset.name", ""),
                    region=params.get("dataset.region", "us"),
                    provider_uri=_given(params.get("dataset.provider_uri")))


def _given(param: str | None) -> str | None:
    return None if param in (None, "", "None", "null") else param


class _MovedModulesUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(_MOVED_MODULES.get(module, module), name)


def load_pickle(path: Path) -> Any:
    """A pickled model or dataset definition, including those saved before qtrack's modules moved."""
    with path.open("rb") as handle:
        return _MovedModulesUnpickler(handle).load()


def score(pipeline: Pipeline, start: str, end: str) -> pd.Series:
    """Scores for [start, end]: the features are computed afresh and passed through the processors
    fitted on the model's own training window (Qlib's IT_LS: load and transform, never refit)."""
    from qlib.data.dataset.handler import DataHandlerLP

    dataset = pipeline.dataset
    dataset.config(handler_kwargs={"start_time": start, "end_time": end}, segments={"test": (start, end)})
    dataset.setup_data(handler_kwargs={"init_type": DataHandlerLP.IT_LS})
    pred = pipeline.model.predict(dataset, segment="test")
    return pred.rename("score")


def list_models(client: Any) -> list[dict]:
    rows = []
    for model in client.search_registered_models():
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for version in client.search_model_versions(name_filter(model.name)):
            rows.append({
                "model": model.name,
                "version": int(version.version),
                "aliases": ",".join(sorted(aliases.get(str(version.version), []))),
                "run_id": version.run_id,
                "Rank IC": version.tags.get("qtrack.Rank_IC", ""),
                "IC": version.tags.get("qtrack.IC", ""),
                "data_end": version.tags.get("qtrack.data_end", ""),
            })
    return sorted(rows, key=lambda row: (row["model"], -row["version"]))


def write_scores(scores: pd.Series, output: Path) -> int:
    """CSV or Parquet by extension, written to a temporary file and renamed into place."""
    frame = scores.reset_index()
    frame.columns = ["datetime", "instrument", "score"]
    return write_table(frame, output)


def write_table(frame: pd.DataFrame, output: Path) -> int:
    suffix = output.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise QtrackError(f"--output {output}: use a .csv or .parquet file name")
    with atomic_file(output) as temporary:
        if suffix == ".csv":
            frame.to_csv(temporary, index=False, date_format="%Y-%m-%d")
        else:
            frame.to_parquet(temporary, index=False)
    return len(frame)
