"""`qtrack gc`: show what goes, ask, then delete and purge."""

from __future__ import annotations

from datetime import datetime

import typer

from qtrack.console import err, out


def run_gc(older_than: str, experiment: str | None, dry_run: bool, yes: bool, tracking_uri: str | None) -> None:
    from qtrack.config import tracking_uri as resolve_uri
    from qtrack.hygiene import check_direct_store, parse_age, plan, purge
    from qtrack.runtime import quiet_third_party
    from qtrack.tracking_store import mask_uri

    age = parse_age(older_than)
    uri = resolve_uri(tracking_uri)
    check_direct_store(uri)
    quiet_third_party()
    found = plan(uri, age, experiment)
    if found.kept_registered:
        err.print(f"keeping {len(found.kept_registered)} old run(s) behind registered model versions")
    if not found.delete:
        out.print(f"no finished run older than {older_than} to delete in {mask_uri(uri)}")
        return
    out.print(f"finished runs older than {older_than} in {mask_uri(uri)}:", soft_wrap=True)
    for run in found.delete:
        ended = datetime.fromtimestamp(run.ended).strftime("%Y-%m-%d %H:%M")
        out.print(f"  {run.run_id}  {run.status:<8}  ended {ended}  {run.experiment}/{run.name}",
                  soft_wrap=True, markup=False)
    if dry_run:
        out.print(f"dry run: {len(found.delete)} run(s) would be deleted; nothing was")
        return
    if not yes and not typer.confirm(f"Delete these {len(found.delete)} run(s) and their artifacts?", err=True):
        out.print("nothing deleted")
        raise typer.Exit(1)
    purge(uri, found.delete)
    out.print(f"deleted {len(found.delete)} run(s) and their artifacts")
