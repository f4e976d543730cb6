"""The tracking-store commands: `qtrack gc` (old runs, and runs left RUNNING by dead processes) and `qtrack ui`."""

from __future__ import annotations

import typer

from qtrack.cli.registry import TRACKING_URI_HELP


def gc(
    older_than: str | None = typer.Option(
        None, "--older-than", help="Age such as 30d, 12h or 1d12h. With --stale: how long a run on another host "
        "must have shown no sign of life (default 1d)."),
    stale: bool = typer.Option(False, "--stale", help="End RUNNING runs whose process is provably gone as KILLED, "
                               "instead of deleting old runs."),
    experiment: str | None = typer.Option(None, "--experiment", help="Only this experiment (default: all)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Delete finished runs older than a cutoff, with their artifacts (runs behind registered models and
    RUNNING runs stay); or, with --stale, end runs whose process is gone."""
    from qtrack.config.store_uri import mask_uri, resolve_tracking_uri
    from qtrack.console import err, out
    from qtrack.runtime import quiet_third_party
    from qtrack.tracking import hygiene
    from qtrack.tracking.store import adopt_store

    if not stale and older_than is None:
        raise typer.BadParameter("give --older-than AGE (or --stale)", param_hint="--older-than")
    # Only an absent --older-than takes the default: an empty one (an unset $RETENTION) is an error.
    age = hygiene.parse_age(hygiene.DEFAULT_STALE_AGE if older_than is None else older_than)
    uri = resolve_tracking_uri(tracking_uri)
    hygiene.check_direct_store(uri)
    adopt_store(uri)
    quiet_third_party()
    if stale:
        found = hygiene.stale_runs(uri, age, experiment)
        what, verb = f"RUNNING runs whose process is gone in {mask_uri(uri)}", "end as KILLED"
    else:
        plan = hygiene.plan(uri, age, experiment)
        if plan.kept_registered:
            err.print(f"keeping {len(plan.kept_registered)} old run(s) behind registered model versions")
        found = plan.delete
        what, verb = f"finished runs older than {older_than} in {mask_uri(uri)}", "delete with their artifacts"
    if not found:
        out.print(f"no {what}", soft_wrap=True)
        return
    out.print(f"{what}:", soft_wrap=True)
    for run in found:
        out.print(f"  {run.describe()}", soft_wrap=True, markup=False)
    if dry_run:
        out.print(f"dry run: {len(found)} run(s) would be changed; nothing was")
        return
    if not yes and not typer.confirm(f"{verb.capitalize()} these {len(found)} run(s)?", err=True):
        out.print("nothing changed")
        raise typer.Exit(1)
    if stale:
        hygiene.end_stale(uri, found)
        out.print(f"ended {len(found)} run(s) as KILLED")
    else:
        hygiene.purge(uri, found)
        out.print(f"deleted {len(found)} run(s) and their artifacts")


def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(5000, "--port", min=1, max=65535),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Open the MLflow UI on the local tracking store (127.0.0.1:5000 unless told otherwise)."""
    import os

    from qtrack.config.store_uri import resolve_tracking_uri
    from qtrack.tracking.hygiene import check_port_free, ui_command
    from qtrack.tracking.store import adopt_store

    uri = resolve_tracking_uri(tracking_uri)
    command = ui_command(uri, host, port)
    check_port_free(host, port)
    adopt_store(uri)
    typer.echo(f"MLflow UI on http://{host}:{port} (Ctrl-C stops it)", err=True)
    os.execve(command[0], command, os.environ)


def add_to(app: typer.Typer) -> None:
    app.command()(ui)
    app.command()(gc)
