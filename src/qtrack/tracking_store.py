"""The tracking URI: check it can be used, create a local store safely, never print its secrets."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from qtrack.errors import QtrackError, TrackingError

REMOTE_SCHEMES = ("http", "https", "postgresql", "mysql", "mssql", "databricks")
# MLflow's defaults (7 retries, 120 s timeout) hang a CI job for minutes on an unreachable server.
# These apply unless the environment sets them.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]*)@")


def mask_uri(uri: str) -> str:
    """`scheme://user:secret@host` becomes `scheme://user:***@host`."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", uri)


def check_tracking_uri(uri: str) -> None:
    """A QtrackError in one line when the URI cannot possibly work; local SQLite stores are created."""
    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if scheme == "sqlite":
        ensure_sqlite_store(uri)
    elif scheme in REMOTE_SCHEMES:
        check_remote_store(uri)
    elif scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
            raise QtrackError(
                f"tracking URI {mask_uri(uri)} is a file store, which MLflow 3 refuses; "
                "use sqlite:///<path>/mlflow.db (the default) or a server"
            )
    else:
        raise QtrackError(f"tracking URI {mask_uri(uri)} has an unsupported scheme '{scheme}'")


def sqlite_path(uri: str) -> Path:
    if not uri.startswith("sqlite:///"):
        raise QtrackError(f"tracking URI {uri} must look like sqlite:///<path>/mlflow.db")
    return Path(uri[len("sqlite:///") :])


def ensure_sqlite_store(uri: str) -> None:
    """Create or upgrade the store under a file lock: parallel first-time migrations crash MLflow."""
    from filelock import FileLock

    path = sqlite_path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=120):
            if path.exists() and path.stat().st_size > 0:
                return
            _touch_store(uri)
    except OSError as exc:
        raise QtrackError(f"tracking URI {uri} can't be used: {exc.strerror or exc}") from None


def _touch_store(uri: str) -> None:
    from mlflow.tracking import MlflowClient

    from qtrack.runtime import quiet_third_party

    quiet_third_party()
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def apply_http_defaults() -> None:
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def check_remote_store(uri: str) -> None:
    """One cheap request, so an unreachable server or a refused password fails now, in one line (exit 3)."""
    from mlflow.tracking import MlflowClient

    from qtrack.runtime import quiet_third_party

    quiet_third_party()
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line naming the masked URI
        raise TrackingError(f"tracking server {mask_uri(uri)} {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if any(code in text for code in ("401", "403", "Unauthorized", "UNAUTHENTICATED", "PERMISSION_DENIED")):
        return ("refused the credentials (check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
                "or MLFLOW_TRACKING_TOKEN)")
    lowered = text.lower()
    for needle, reason in (("connection refused", "connection refused"), ("timed out", "timed out"),
                           ("name or service not known", "unknown host"), ("max retries exceeded", "no answer")):
        if needle in lowered:
            return f"cannot be reached ({reason})"
    return f"cannot be used: {mask_uri(text)[:300]}"
