"""Where Optuna studies live, and how workers share one safely.

- A journal file (the default, next to the local tracking store) or SQLite serves several processes
  on one machine; PostgreSQL serves several machines; a Redis URL is also accepted.
- Creating the storage and the study, and claiming a trial within the budget, happen under a lock
  that every worker of the study honours: a file lock beside a file storage, an advisory lock in
  PostgreSQL. So two workers never race on the schema, and `max_trials` is never exceeded.
"""

from __future__ import annotations

import os
import platform
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtrack.config.store_uri import mask_uri
from qtrack.errors import QtrackError, TrackingError
from qtrack.paths import tracking_folder
from qtrack.tracking.runs import end_killed, gone_from_this_host
from qtrack.tracking.store import check_database, database_lock

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
INTERRUPTED_ATTR = "interrupted"
HOST_ATTR, PID_ATTR, STARTED_ATTR = "qtrack.host", "qtrack.pid", "qtrack.process_started"
_PROCESS_LOCK = threading.RLock()


@dataclass(frozen=True)
class StudyStorage:
    url: str  # as configured; may hold a password, so show `masked`
    kind: str  # journal, rdb or redis
    path: Path | None = None  # the file of a journal or SQLite storage

    @property
    def masked(self) -> str:
        return mask_uri(self.url)


def resolve(configured: str | None, tracking_uri: str) -> StudyStorage:
    """The storage a URL or path names; nothing given means the journal beside the tracking store."""
    if not configured:
        return _journal(default_journal(tracking_uri))
    scheme = configured.split(":", 1)[0].split("+", 1)[0].lower() if "://" in configured else ""
    if scheme == "sqlite" and configured.split(":///", 1)[-1].strip() in ("", ":memory:"):
        raise QtrackError(f"study storage {configured}: an in-memory study is lost when the process ends and can't "
                          "be resumed; name a file, such as sqlite:///mlruns/optuna.db")
    if scheme in RDB_SCHEMES:
        path = Path(configured.split(":///", 1)[1]) if scheme == "sqlite" and ":///" in configured else None
        url = "postgresql" + configured[len("postgres"):] if configured.startswith("postgres://") else configured
        return StudyStorage(url=url, kind="rdb", path=path)
    if scheme in ("redis", "rediss"):
        return StudyStorage(url=configured, kind="redis")
    if scheme == "journal" or scheme == "file":
        return _journal(Path(configured.split("://", 1)[1]))
    if scheme:
        raise QtrackError(
            f"unsupported study storage '{mask_uri(configured)}': use a file path, sqlite:///, postgresql:// or redis://"
        )
    return _journal(Path(configured))


def _journal(path: Path) -> StudyStorage:
    path = path.expanduser().resolve()
    return StudyStorage(url=f"journal://{path}", kind="journal", path=path)


def default_journal(tracking_uri: str) -> Path:
    return tracking_folder(tracking_uri) / "optuna.journal"


def open_storage(storage: StudyStorage) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_reachable(storage)
    try:
        if storage.kind == "journal":
            storage.path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(storage.path)))
        if storage.kind == "redis":
            return optuna.storages.JournalStorage(JournalRedisBackend(storage.url))
        engine_kwargs = {"connect_args": {"timeout": 60}} if storage.url.startswith("sqlite") else {}
        if storage.path is not None:
            storage.path.parent.mkdir(parents=True, exist_ok=True)
        with lock(storage, "schema"):
            return optuna.storages.RDBStorage(storage.url, engine_kwargs=engine_kwargs)
    except (OSError, ImportError, ValueError) as exc:
        raise QtrackError(f"cannot open study storage {storage.masked}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy/Redis errors: report them in one line
        if type(exc).__module__.split(".")[0] in ("sqlalchemy", "redis", "psycopg"):
            message = " ".join(str(exc).split("\n")[0].split())
            raise QtrackError(f"cannot open study storage {storage.masked}: {mask_uri(message)}") from None
        raise


def check_reachable(storage: StudyStorage) -> None:
    """A database or Redis server that does not answer is a TrackingError (exit 3) now, in a few seconds,
    as for the tracking store; Optuna itself would retry for minutes, after the features were built."""
    scheme = storage.url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("postgresql", "mysql"):
        check_database(storage.url, what="study storage")
    elif storage.kind == "redis":
        import redis

        try:
            redis.Redis.from_url(storage.url, socket_connect_timeout=5, socket_timeout=5).ping()
        except redis.RedisError as exc:
            reason = mask_uri(" ".join(str(exc).split()))
            raise TrackingError(f"study storage {storage.masked} cannot be reached ({reason})") from None


def check_space(study: Any, specs: list, name: str) -> None:
    """Every parameter of the search space keeps the kind (and, for a categorical one, the choices) the study
    has sampled it with: Optuna would fail every new trial ("Cannot set different distribution kind") and
    use up the budget."""
    from optuna.distributions import check_distribution_compatibility

    from qtrack.models.search_space import distribution

    wanted = {spec.name: distribution(spec) for spec in specs}
    for trial in study.get_trials(deepcopy=False):
        for param, stored in trial.distributions.items():
            if param not in wanted:
                continue
            try:
                check_distribution_compatibility(stored, wanted[param])
            except ValueError:
                raise QtrackError(
                    f"search_space.{param} is now {_describe_distribution(wanted[param])}, but study '{name}' "
                    f"sampled it as {_describe_distribution(stored)}: keep it, or start another study with "
                    "--study-name") from None


def _describe_distribution(distribution: Any) -> str:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return f"categorical {list(distribution.choices)}"
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    return f"{kind} [{distribution.low}, {distribution.high}]"


@contextmanager
def lock(storage: StudyStorage, name: str) -> Iterator[None]:
    """A lock every worker of `name` honours: across threads, processes and, for PostgreSQL, machines."""
    with _PROCESS_LOCK:
        if storage.path is not None:
            from filelock import FileLock

            with FileLock(f"{storage.path}.{_key(name)}.lock"):
                yield
        elif storage.url.startswith(("postgresql", "mysql")):
            with database_lock(storage.url, f"optuna-{name}"):
                yield
        else:
            yield  # Redis: this process only (documented)


def _key(name: str) -> int:
    return zlib.crc32(name.encode())


@dataclass
class StudyIdentity:
    """What a study was created for; a worker asking for something else must use another name."""

    model: str
    metric: str
    direction: str
    fingerprint: str


def create_or_load(storage: StudyStorage, backend: Any, name: str, identity: StudyIdentity) -> tuple[Any, list[str]]:
    """The study, created under the lock if new; returns it with notices for the user."""
    import optuna

    with lock(storage, name):
        study = optuna.create_study(storage=backend, study_name=name, direction=identity.direction,
                                    load_if_exists=True)
        attrs = study.user_attrs
        if not attrs:
            for key, value in vars(identity).items():
                study.set_user_attr(f"qtrack.{key}", value)
            return study, []
    return study, _check_identity(name, attrs, identity)


def _check_identity(name: str, attrs: dict, identity: StudyIdentity) -> list[str]:
    for key in ("model", "metric", "direction"):
        found = attrs.get(f"qtrack.{key}")
        if found is not None and found != getattr(identity, key):
            raise QtrackError(
                f"study '{name}' was created for {key} {found}, not {getattr(identity, key)}: "
                "choose another --study-name"
            )
    if attrs.get("qtrack.fingerprint") not in (None, identity.fingerprint):
        return [f"study '{name}' was started on different data; its earlier trials are not comparable"]
    return []


def counted_trials(trials: list) -> int:
    """Trials that use up a budget: finished or running ones, except those interrupted by Ctrl-C."""
    return sum(1 for trial in trials if not trial.user_attrs.get(INTERRUPTED_ATTR))


def ask_within_budget(storage: StudyStorage, study: Any, max_trials: int | None, make_sampler: Any,
                      claim: Any) -> Any | None:
    """A new trial, or None when the study's budget is spent. The sampler is seeded with the trial's
    number, so a sweep replays exactly whichever worker runs a given trial. `claim(number)` hears the
    number before the trial exists, so an interrupt in between can still find and close it."""
    with lock(storage, study.study_name):
        trials = study.get_trials(deepcopy=False)
        if max_trials is not None and counted_trials(trials) >= max_trials:
            return None
        study.sampler = make_sampler(len(trials))
        claim(len(trials))
        trial = study.ask()
        for key, value in process_identity().items():
            trial.set_user_attr(key, value)
        return trial


def process_identity() -> dict[str, Any]:
    """Who runs a trial: host, pid and the process's start time (a reused pid has another)."""
    import psutil

    return {HOST_ATTR: platform.node(), PID_ATTR: os.getpid(), STARTED_ATTR: psutil.Process().create_time()}


def process_is_gone(attrs: dict) -> bool:
    """Provably gone: it ran on this host and no process with its pid and start time exists now."""
    return bool(gone_from_this_host(attrs.get(HOST_ATTR), attrs.get(PID_ATTR), float(attrs.get(STARTED_ATTR, 0))))


def fail_dead_trials(storage: StudyStorage, backend: Any, study: Any, client: Any | None) -> list[str]:
    """RUNNING trials whose process is provably gone (killed with SIGKILL, or its machine rebooted) are
    closed as FAIL and marked interrupted, so they use no budget; their MLflow runs, and the parent run of
    the sweep that died with them, end KILLED. Optuna 5's JournalStorage has no heartbeat, so this check
    covers the default storage; RDB storages get it too."""
    import optuna

    notices, dead_parents = [], set()
    with lock(storage, study.study_name):
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if not process_is_gone(trial.user_attrs):
                continue
            _mark_interrupted(backend, study, trial.number)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            dead_parents.add(trial.user_attrs.get("mlflow_parent_run_id"))
            if client is not None and trial.user_attrs.get("mlflow_run_id"):
                end_killed(client, trial.user_attrs["mlflow_run_id"], "process gone")
            notices.append(f"trial {trial.number} was left RUNNING by a process that is gone (pid "
                           f"{trial.user_attrs.get(PID_ATTR)}): closed as failed, not counted")
    for parent in dead_parents - {None}:
        if client is not None:
            end_killed(client, parent, "process gone")
    return notices


def _mark_interrupted(backend: Any, study: Any, number: int) -> None:
    study_id = backend.get_study_id_from_name(study.study_name)
    trial_id = backend.get_trial_id_from_study_id_trial_number(study_id, number)
    backend.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)


def close_if_running(backend: Any, study: Any, number: int) -> None:
    """Close trial `number` as an interrupted failure if it is still RUNNING (interrupted right after ask)."""
    import optuna

    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if found and found[0].state == optuna.trial.TrialState.RUNNING:
        _mark_interrupted(backend, study, number)
        study.tell(number, state=optuna.trial.TrialState.FAIL)
