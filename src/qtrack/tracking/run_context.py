"""The one run context: an MLflow run that always ends with an honest status. Only stages.runner enters it.

FINISHED when the block ends, FAILED on an error (with the error as a tag), KILLED on Ctrl-C, on
SIGTERM (runtime.install_signal_handlers turns it into an exception) or when the caller stops on
purpose (a pruned trial). Runs carry the pid and host that run them, so `qtrack gc --stale` can prove
a RUNNING run's process is gone after a SIGKILL.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

from qtrack.errors import Terminated
from qtrack.tracking import names
from qtrack.tracking.runs import ActiveRun, client_for, experiment_id_for, one_line_error


@contextmanager
def run_context(
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    tags: dict[str, str],
    *,
    parent_run_id: str | None = None,
    stopped: tuple[type[BaseException], ...] = (),
) -> Iterator[ActiveRun]:
    """Create a run, yield it, and end it FINISHED, FAILED or KILLED (`stopped`: exceptions that
    mean the caller stopped the run on purpose)."""
    client = client_for(tracking_uri)
    experiment_id = experiment_id_for(client, experiment_name)
    if parent_run_id is None:
        from qtrack.tracking.store import announce_store

        announce_store(tracking_uri)
    all_tags = {**tags, names.PID: str(os.getpid()), names.HOST: platform.node()}
    if parent_run_id:
        all_tags[names.PARENT_RUN] = parent_run_id
    created = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    active = ActiveRun(client, created, experiment_id, experiment_name, tracking_uri)
    status = "FAILED"
    try:
        yield active
        status = "FINISHED"
    except BaseException as exc:
        status, reason = ending(exc, stopped)
        client.set_tag(active.run_id, names.ENDED_BY if status == "KILLED" else names.ERROR, reason)
        raise
    finally:
        client.set_terminated(active.run_id, status)


def ending(exc: BaseException, stopped: tuple[type[BaseException], ...] = ()) -> tuple[str, str]:
    """The status a run ends with after `exc`, and why."""
    if isinstance(exc, Terminated):
        return "KILLED", "terminated"
    if isinstance(exc, KeyboardInterrupt):
        return "KILLED", "interrupted"
    if stopped and isinstance(exc, stopped):
        return "KILLED", "stopped"
    return "FAILED", one_line_error(exc)
