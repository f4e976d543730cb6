"""Which tracking store a command uses, and how its URI is shown: the part of the store that is configuration."""

from __future__ import annotations

import os
import re

from qtrack import paths

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]*)@")


def resolve_tracking_uri(configured: str | None = None) -> str:
    """The store a command uses: an explicit flag or override first, then MLFLOW_TRACKING_URI, then
    sqlite:///<cwd>/mlruns/mlflow.db (the order of MLflow's own set_tracking_uri, Hydra and Click)."""
    return (configured or "").strip() or os.environ.get(TRACKING_URI_ENV) or paths.default_tracking_uri()


def mask_uri(uri: str) -> str:
    """`scheme://user:secret@host` becomes `scheme://user:***@host`."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", uri)
