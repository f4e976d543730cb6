"""A run this process opened (ActiveRun), the guarded client every write goes through, the tags every run
carries, and how a run left RUNNING by a process that is gone is ended. The run context itself is
tracking.run_context, which only stages.runner enters."""

from __future__ import annotations

import functools
import inspect
import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from qtrack import __version__
from qtrack.config import redact
from qtrack.runtime import critical, git_output
from qtrack.tracking import names
from qtrack.tracking.inputs import library_tags
from qtrack.tracking.ledger import MetricLedger


@dataclass
class ActiveRun:
    client: Any  # mlflow.tracking.MlflowClient
    run: Any  # mlflow.entities.Run, as created
    experiment_id: str
    experiment_name: str
    tracking_uri: str
    # The Qlib objects (pred.pkl, sig_analysis/ic.pkl, ...) saved in this run: the run is this process's own,
    # so these are all it holds (tracking.recorder).
    objects: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.run.info.run_id


class GuardedClient:
    """An MlflowClient whose every call completes even when Ctrl-C or SIGTERM arrives during it
    (runtime.critical), so an interrupt never leaves the store locked halfway through a write. The metrics
    logged through it are kept in `ledger` (shared with the run's recorder)."""

    def __init__(self, client: Any, ledger: MetricLedger | None = None) -> None:
        self._client = client
        self.ledger = ledger if ledger is not None else MetricLedger()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with critical():
                done = attribute(*args, **kwargs)
            if name in ("log_batch", "log_metric"):
                self._keep_metrics(name, inspect.signature(attribute).bind(*args, **kwargs).arguments)
            return done

        return guarded

    def _keep_metrics(self, method: str, given: dict[str, Any]) -> None:
        if method == "log_batch":
            self.ledger.record(given["run_id"], list(given.get("metrics") or ()))
        else:
            self.ledger.record_one(given["run_id"], given["key"], given["value"], given.get("timestamp"),
                                   given.get("step"))


def client_for(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return GuardedClient(MlflowClient(tracking_uri))


def experiment_id_for(client: Any, name: str) -> str:
    """The experiment's id, created if needed (safe when another process creates it first)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def one_line_error(exc: BaseException) -> str:
    return redact.text(f"{type(exc).__name__}: {' '.join(str(exc).split())}")[:1000]


def run_tags(fingerprint: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags every qtrack run carries, secrets masked."""
    tags = {
        names.VERSION: __version__,
        names.DATA_FINGERPRINT: fingerprint,
        names.COMMAND: shlex.join(invocation()),
    }
    tags.update(library_tags())
    commit = git_output(["rev-parse", "HEAD"])
    if commit:
        tags[names.GIT_COMMIT] = commit
        tags["mlflow.source.git.commit"] = commit
    return {key: redact.text(str(value)) for key, value in {**tags, **(extra or {})}.items()}


def invocation() -> list[str]:
    """The command line as the user can run it again, secrets masked: `run_optimization --trials 5` stays
    that, not `qtrack --trials 5`."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return [program if program == "run_optimization" else "qtrack", *redact.argv(sys.argv[1:])]


def gone_from_this_host(host: str | None, pid: Any, started_by: float) -> str:
    """Why the process that ran something is provably gone, or '' when it may live (or ran elsewhere): it
    ran on this host and no process has its pid, or the pid belongs to a process started after
    `started_by` (epoch seconds), so it was reused."""
    import psutil

    if host != platform.node() or not str(pid or "").isdigit():
        return ""
    try:
        created = psutil.Process(int(pid)).create_time()
    except psutil.NoSuchProcess:
        return f"pid {pid} is gone"
    except psutil.AccessDenied:
        return ""
    return f"pid {pid} now belongs to a newer process" if created > started_by + 1 else ""


def end_killed(client: Any, run_id: str, why: str) -> None:
    """End a run left RUNNING by a process that is gone: KILLED, with the reason as a tag."""
    from mlflow.exceptions import MlflowException

    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, names.ENDED_BY, why)
            client.set_terminated(run_id, "KILLED")
    except MlflowException:
        pass
