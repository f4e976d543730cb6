"""The tracking URI: check it can be used, create a local store safely, never print its secrets."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from qtrack import paths
from qtrack.config.store_uri import TRACKING_URI_ENV, mask_uri
from qtrack.errors import QtrackError, TrackingError
from qtrack.runtime import quiet_third_party

REMOTE_SCHEMES = ("http", "https", "postgresql", "mysql", "mssql", "databricks")
DATABASE_SCHEMES = ("postgresql", "mysql")



def use_store(uri: str) -> None:
    """Make `uri` this process's store. MLflow's fluent API, Qlib's recorder and every child process (the
    MLflow UI, `mlflow gc`, the dashboard) read MLFLOW_TRACKING_URI, so an explicit choice replaces what
    the environment said: nothing can fall back to a store the user did not name."""
    os.environ[TRACKING_URI_ENV] = uri


def adopt_store(uri: str) -> None:
    """What a store command does once its store is checked: make it this process's store, and say so."""
    use_store(uri)
    announce_store(uri)


def announce_store(uri: str) -> None:
    """Say which store a command reads or writes, credentials masked (once a command: where it opens its
    top-level run, or where a store command connects)."""
    from qtrack.console import err

    err.print(f"tracking store: {mask_uri(uri)}", soft_wrap=True, markup=False, style="dim")


def check_tracking_uri(uri: str) -> None:
    """A QtrackError in one line when the URI cannot possibly work; local SQLite stores are created."""
    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if scheme == "sqlite":
        ensure_sqlite_store(uri)
    elif scheme in DATABASE_SCHEMES:
        check_database(uri)
        # Workers started together on a new database would all run MLflow's migrations at once (mlflow
        # #19943): the first creates the schema while the others wait, then find it there.
        with database_lock(uri, "mlflow-schema"):
            check_remote_store(uri)
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
        paths.check_writable(path.parent, "the tracking store's folder")
        with FileLock(str(path) + ".lock", timeout=120):
            if path.exists() and path.stat().st_size > 0:
                _check_sqlite_file(path)
                return
            _create_sqlite_store(uri, path)
    except OSError as exc:
        raise QtrackError(f"tracking URI {uri} can't be used: {exc.strerror or exc}") from None


def _create_sqlite_store(uri: str, path: Path) -> None:
    """A copy of the template when there is one (MLflow verifies its schema and adds the Default experiment),
    else MLflow's migrations, whose result becomes the template."""
    from qtrack.tracking import store_template

    if store_template.copy_template(path):
        try:
            _probe(uri)
        except BaseException:  # a template MLflow won't take: dropped, with the copy; the next command migrates
            store_template.forget_template()
            path.unlink(missing_ok=True)
            raise
        return
    made_here = not path.exists()
    _migrate_beside_others(uri, path)
    if made_here:
        store_template.save_template(path)


def _migrate_beside_others(uri: str, path: Path, attempts: int = 4) -> None:
    """MLflow's migrations on a new file. A process that is not qtrack (an `mlflow ui` on the same folder, a
    notebook's MlflowClient) takes no qtrack lock and may migrate the same file at the same moment; alembic then
    fails on a step the other took, in several shapes. Once the file's schema stops moving, the store is whole."""
    for attempt in range(attempts):
        try:
            _probe(uri)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            _wait_until_schema_settles(path)


def _wait_until_schema_settles(path: Path, still_for: float = 1.0, at_most: float = 60.0) -> None:
    deadline = time.monotonic() + at_most
    seen, since = _schema_version(path), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < still_for:
        time.sleep(0.2)
        now = _schema_version(path)
        if now != seen:
            seen, since = now, time.monotonic()


def _schema_version(path: Path) -> str | None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _check_sqlite_file(path: Path) -> None:
    """A store file that SQLite cannot read is a TrackingError (exit 3) now, not a SQL error after the features."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
            connection.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise TrackingError(f"tracking store {path} is not a usable SQLite database ({exc}): move it away "
                            "or name another store") from None


def check_database(uri: str, timeout: int = 5, what: str = "tracking database") -> None:
    """One connection with a short timeout: MLflow (and Optuna) retry a dead database with back-off for about
    100 s. A TrackingError (exit 3) naming `what` and the masked URI when it does not answer."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool,
                                          connect_args={"connect_timeout": timeout})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line naming the masked URI
        raise TrackingError(f"{what} {mask_uri(uri)} {_describe(exc)}") from None


_LOCK_STATEMENTS = {
    "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
    "mysql": ("SELECT GET_LOCK(CONCAT('qtrack-', :key), 600)", "SELECT RELEASE_LOCK(CONCAT('qtrack-', :key))"),
}


@contextmanager
def database_lock(url: str, name: str) -> Iterator[None]:
    """A lock that every qtrack process on every machine honours while it holds a connection to the database:
    an advisory lock in PostgreSQL, GET_LOCK in MySQL (other schemes: no lock)."""
    import sqlalchemy

    scheme = urlsplit(url).scheme.split("+")[0].lower()
    if scheme not in _LOCK_STATEMENTS:
        yield
        return
    key = zlib.crc32(name.encode())
    take, release = _LOCK_STATEMENTS[scheme]
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(take), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(release), {"key": key})
    finally:
        engine.dispose()


def check_remote_store(uri: str) -> None:
    """One cheap request, so an unreachable server or a refused password fails now, in one line (exit 3)."""
    try:
        _probe(uri)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line naming the masked URI
        raise TrackingError(f"tracking server {mask_uri(uri)} {_describe(exc)}") from None


_REFUSED_CREDENTIALS = re.compile(
    r"(?<![\w:.])(?<!port )(401|403)(?![\w.])|\b(Unauthorized|UNAUTHENTICATED|PERMISSION_DENIED)\b")


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # Whole words only: a port such as 56403 inside the URL is not an HTTP 403.
    if _REFUSED_CREDENTIALS.search(text):
        return ("refused the credentials (check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
                "or MLFLOW_TRACKING_TOKEN)")
    lowered = text.lower()
    for needle, reason in (("connection refused", "connection refused"), ("timed out", "timed out"),
                           ("timeout expired", "timed out"),
                           ("name or service not known", "unknown host"), ("max retries exceeded", "no answer")):
        if needle in lowered:
            return f"cannot be reached ({reason})"
    return f"cannot be used: {mask_uri(text)[:300]}"


def _probe(uri: str) -> None:
    """One cheap request that creates (or upgrades) a SQL store and proves a server answers."""
    from mlflow.tracking import MlflowClient

    quiet_third_party()  # after MLflow's import, which sets its own log levels
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
