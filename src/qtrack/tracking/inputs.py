"""What MLflow users expect of a run besides params and metrics: its datasets (one input per segment, with
a digest of what it was built from) and the versions of the libraries that produced it."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import metadata
from typing import Any

from qtrack import config
from qtrack.config.schema import Settings

CONTEXTS = {"train": "training", "valid": "validation", "test": "testing"}
LIBRARIES = ("pyqlib", "mlflow", "lightgbm", "catboost", "xgboost", "scikit-learn", "pandas", "numpy", "numba",
             "optuna", "hydra-core")


def segment_digest(fingerprint: str, handler: dict, market: str, span: tuple[str, str]) -> str:
    """The data's fingerprint, the handler config (features, label, processors) and the segment's span:
    the same digest means the same rows and columns."""
    key = json.dumps({"data": fingerprint, "handler": handler, "market": market, "span": list(span)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:32]  # MLflow keeps at most 36 characters


def segment_inputs(cfg: Settings, data: Any) -> list[Any]:
    """One MLflow dataset input per segment. Built from metadata only: MLflow never sees, and so never
    profiles, the feature frame."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    handler = config.to_container(cfg.features)
    market = str(cfg.dataset.market)
    inputs = []
    for segment, span in data.segments.as_dict().items():
        dataset = Dataset(
            name=f"{data.source.name}/{cfg.features.name}/{segment}",
            digest=segment_digest(data.source.fingerprint, handler, market, span),
            source_type="qlib",
            source=json.dumps({"uri": str(data.source.path), "market": market}),
            profile=json.dumps({"start": span[0], "end": span[1], "data_fingerprint": data.source.fingerprint}),
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", CONTEXTS[segment])]))
    return inputs


def log_segment_inputs(client: Any, run_id: str, cfg: Settings, data: Any) -> None:
    client.log_inputs(run_id, datasets=segment_inputs(cfg, data))


@cache
def library_tags() -> dict[str, str]:
    """`qtrack.lib.<distribution>`: the installed version of each library a run's numbers depend on."""
    tags = {}
    for name in LIBRARIES:
        try:
            tags[f"qtrack.lib.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return tags
