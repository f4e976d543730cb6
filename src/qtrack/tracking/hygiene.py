"""Run hygiene for the tracking store: `qtrack gc` (delete old runs, as `mlflow gc` does) and `qtrack ui`."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from qtrack.config.store_uri import mask_uri
from qtrack.errors import QtrackError
from qtrack.tracking import names
from qtrack.tracking.runs import client_for, end_killed, gone_from_this_host
from qtrack.tracking.store import check_tracking_uri

FINISHED_STATES = ("FINISHED", "FAILED", "KILLED")
DEFAULT_STALE_AGE = "1d"
_AGE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
MAX_AGE = timedelta(days=36500)  # older cutoffs fall before year 1 of Python's calendar
DIRECT_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `1d12h`, `90m`, `45s` (the `mlflow gc --older-than` format)."""
    match = _AGE.fullmatch(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise QtrackError(f"invalid age '{text}': use days, hours, minutes, seconds such as 30d, 12h or 1d12h")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        age = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        age = MAX_AGE * 2
    if age > MAX_AGE:
        raise QtrackError(f"invalid age '{text}': at most {MAX_AGE.days}d (100 years)")
    return age


@dataclass
class OldRun:
    run_id: str
    name: str
    experiment: str
    status: str
    ended: float  # epoch seconds: when it ended, or for a RUNNING run its last sign of life
    why: str = ""

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.ended).strftime("%Y-%m-%d %H:%M")
        label = "last seen" if self.status == "RUNNING" else "ended"
        reason = f"  ({self.why})" if self.why else ""
        return f"{self.run_id}  {self.status:<8}  {label} {when}  {self.experiment}/{self.name}{reason}"


@dataclass
class GcPlan:
    delete: list[OldRun]
    kept_registered: list[OldRun]


def plan(tracking_uri: str, older_than: timedelta, experiment: str | None) -> GcPlan:
    """Finished runs that ended before the cutoff, minus those a registered model version points at."""
    client = client_for(tracking_uri)
    experiments = _experiments(client, experiment)
    cutoff_ms = (time.time() - older_than.total_seconds()) * 1000
    registered = _registered_run_ids(client)
    delete, kept = [], []
    for exp in experiments:
        for run in _all_runs(client, exp.experiment_id):
            ended = run.info.end_time or run.info.start_time
            if run.info.status not in FINISHED_STATES or ended is None or ended >= cutoff_ms:
                continue
            old = OldRun(run.info.run_id, run.info.run_name or "", exp.name, run.info.status, ended / 1000)
            (kept if old.run_id in registered else delete).append(old)
    return GcPlan(delete=delete, kept_registered=kept)


def stale_runs(tracking_uri: str, silent_for: timedelta, experiment: str | None) -> list[OldRun]:
    """RUNNING runs whose process is provably gone: on this host, no process with the run's pid exists
    (or it started after the run); on another host, nothing was logged for longer than `silent_for`."""
    client = client_for(tracking_uri)
    cutoff = time.time() - silent_for.total_seconds()
    found = []
    for exp in _experiments(client, experiment):
        for run in _all_runs(client, exp.experiment_id, "attributes.status = 'RUNNING'"):
            last_seen = _last_sign_of_life(run)
            why = _why_gone(run, last_seen, cutoff)
            if why:
                found.append(OldRun(run.info.run_id, run.info.run_name or "", exp.name, "RUNNING", last_seen, why))
    return found


def _why_gone(run: Any, last_seen: float, cutoff: float) -> str:
    host = run.data.tags.get(names.HOST)
    if host == platform.node():
        return gone_from_this_host(host, run.data.tags.get(names.PID), run.info.start_time / 1000)
    if last_seen < cutoff:
        return f"host {host or 'unknown'}: no sign of life since {datetime.fromtimestamp(last_seen):%Y-%m-%d %H:%M}"
    return ""


def _last_sign_of_life(run: Any) -> float:
    """The latest of the run's start and its metrics' timestamps, in epoch seconds."""
    stamps = [run.info.start_time or 0]
    stamps += [metric.timestamp for metric in run.data.to_proto().metrics]  # the latest value of each, timed
    return max(stamps) / 1000


def end_stale(tracking_uri: str, runs: list[OldRun]) -> None:
    client = client_for(tracking_uri)
    for run in runs:
        end_killed(client, run.run_id, f"qtrack gc --stale: {run.why}")


def _experiments(client: Any, name: str | None) -> list:
    if name is None:
        return client.search_experiments()
    found = client.get_experiment_by_name(name)
    if found is None:
        raise QtrackError(f"experiment '{name}' not found")
    return [found]


def _all_runs(client: Any, experiment_id: str, filter_string: str = "") -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _registered_run_ids(client: Any) -> set[str]:
    """Runs behind any registered model version: directly, or as the source run of its logged model."""
    ids, token = set(), None
    while True:
        page = client.search_model_versions(max_results=1000, page_token=token)
        for version in page:
            if version.run_id:
                ids.add(version.run_id)
            model_id = getattr(version, "model_id", None)
            if model_id:
                source = client.get_logged_model(model_id).source_run_id
                if source:
                    ids.add(source)
        token = page.token
        if not token:
            return ids


def purge(tracking_uri: str, runs: list[OldRun]) -> None:
    """Mark the runs deleted, then purge them and their artifacts with `mlflow gc`."""
    if not runs:
        return
    client = client_for(tracking_uri)
    for run in runs:
        client.delete_run(run.run_id)
    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", tracking_uri,
         "--run-ids", ",".join(run.run_id for run in runs)],
        capture_output=True, text=True, check=False, env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise QtrackError(f"mlflow gc failed on {mask_uri(tracking_uri)}: {mask_uri(last)}")


def check_direct_store(tracking_uri: str) -> None:
    scheme = tracking_uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in DIRECT_SCHEMES:
        raise QtrackError(
            f"qtrack gc needs the tracking store itself (sqlite:/// or postgresql://), not {mask_uri(tracking_uri)}: "
            "run it where the server's backend store is reachable"
        )
    check_tracking_uri(tracking_uri)


def check_port_free(host: str, port: int) -> None:
    """A QtrackError now when something listens on host:port already: MLflow's server would print
    'Address already in use' and still exit 0."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise QtrackError(f"can't serve the UI on {host}:{port}: {exc.strerror or exc} "
                              "(choose another --port)") from None


def ui_command(tracking_uri: str, host: str, port: int) -> list[str]:
    scheme = tracking_uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        raise QtrackError(f"the tracking URI is already a server: open {mask_uri(tracking_uri)}")
    check_tracking_uri(tracking_uri)
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host,
            "--port", str(port)]
