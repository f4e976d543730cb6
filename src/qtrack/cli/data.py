"""`qtrack data`: import, synthesise, list and describe datasets. Thin: the work is in datasets.py."""

from __future__ import annotations

from pathlib import Path

import typer

from qtrack.errors import QtrackError

DEFAULT_FROM_CONF = "Default: conf/dataset/synthetic.yaml."

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Import, generate and inspect datasets.")


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise QtrackError(f"{what} takes KEY=VALUE, got '{item}'")
        pairs[key.strip()] = value.strip()
    return pairs


def _waiting_for(name: str):
    """What a writer says while another import or update of the same dataset holds it."""

    def say() -> None:
        from qtrack.console import err

        err.print(f"waiting for another import or update of '{name}' to finish...")

    return say


@app.command("import")
def import_command(
    source: Path = typer.Argument(..., help="A folder of per-symbol CSV files, or one long CSV with a symbol column."),
    name: str = typer.Option(..., "--name", help="Dataset name under the data root."),
    mapping: list[str] | None = typer.Option(
        None, "--map", help="Source column for a field, SRC=FIELD (fields: date symbol open high low close "
        "adjclose volume vwap). Repeatable."
    ),
    market: list[str] | None = typer.Option(
        None, "--market", help="A market NAME=FILE: a file of symbols, or a CSV with a symbol column. Repeatable."
    ),
) -> None:
    """Import prices as a Qlib dataset, atomically; bad symbols are reported and skipped."""
    from qtrack.console import out
    from qtrack.data.store import import_dataset

    markets = {key: Path(value) for key, value in _pairs(market, "--market").items()}
    report = import_dataset(source, name, _pairs(mapping, "--map"), markets, on_wait=_waiting_for(name))
    start, end = report["calendar"]
    out.print(f"[green]✓[/] imported {report['imported']} symbols as '{name}', {start} to {end}")
    for file, dialect in report["dialects"].items():
        out.print(f"[dim]detected in {file}: {dialect}[/]", markup=True)
    for stored, original in report["symbols"].items():
        out.print(f"[dim]symbol {original!r} stored as {stored}[/]")
    for symbol, reason in report["skipped"].items():
        out.print(f"[yellow]skipped[/] {symbol}: {reason}")
    for symbol, notes in report["warnings"].items():
        out.print(f"[dim]note {symbol}: {'; '.join(notes)}[/]")
    out.print(f"[dim]vwap: {report['vwap']}; markets: all{''.join(', ' + m for m in report['markets'])}[/]")
    out.print(f"train on it: qtrack train dataset.name={name}")


@app.command("update")
def update_command(
    source: Path = typer.Argument(..., help="A folder of per-symbol CSV files, or one long CSV with a symbol column."),
    name: str = typer.Option(..., "--name", help="The dataset to update."),
    mapping: list[str] | None = typer.Option(None, "--map", help="Source column for a field, SRC=FIELD. Repeatable."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would change; write nothing."),
    allow_dropping_days: bool = typer.Option(
        False, "--allow-dropping-days", help="Rewrite symbols even when the source lacks stored days (they are lost)."),
) -> None:
    """Append new days and symbols; rewrite a symbol whose history changed (adjusted prices), atomically."""
    from qtrack.console import out
    from qtrack.data.update import update_dataset

    plan = update_dataset(source, name, _pairs(mapping, "--map"), dry_run=dry_run,
                          allow_dropping=allow_dropping_days, on_wait=_waiting_for(name))
    if not plan.changed:
        out.print(f"[green]✓[/] '{name}' is up to date with {source}: nothing changed (data ends {plan.end_before})")
    else:
        counts = (f"{len(plan.appended)} symbols with new days, {len(plan.added)} new, {len(plan.rewritten)} "
                  f"rewritten, {len(plan.unchanged)} unchanged")
        done = "dry run, nothing written: would update" if dry_run else "updated"
        out.print(f"[green]✓[/] {done} '{name}': data ends {plan.end_before} -> {plan.end_after}; {counts}")
    for symbol in plan.added:
        out.print(f"[dim]new symbol {symbol} (in market all)[/]")
    for symbol, why in plan.rewritten.items():
        out.print(f"[yellow]rewritten[/] {symbol}: {why}")
    for symbol, days in plan.dropped.items():
        out.print(f"[red]drops stored days[/] {symbol}: {days} (not in the source)")
    if plan.kept:
        out.print(f"[dim]kept as they are (not in the source): {', '.join(plan.kept)}[/]")
    for symbol, reason in plan.skipped.items():
        out.print(f"[yellow]skipped[/] {symbol}: {reason}")
    if plan.changed and not dry_run:
        out.print(f"[dim]fingerprint {plan.fingerprint}[/]")


@app.command("synth")
def synth_command(
    name: str = typer.Option(..., "--name", help="Dataset name under the data root."),
    symbols: int | None = typer.Option(None, "--symbols", min=2, help=DEFAULT_FROM_CONF),
    days: int | None = typer.Option(None, "--days", min=30, help=DEFAULT_FROM_CONF),
    signal: float | None = typer.Option(None, "--signal", help=f"Planted signal; 0: none. {DEFAULT_FROM_CONF}"),
    seed: int | None = typer.Option(None, "--seed", help=DEFAULT_FROM_CONF),
) -> None:
    """Write an explicit synthetic market (see the README for its model and theoretical IC)."""
    from qtrack.console import out
    from qtrack.data.store import synthesise
    from qtrack.data.synthetic import SyntheticSpec

    given = {"symbols": symbols, "days": days, "signal": signal, "seed": seed}
    spec = SyntheticSpec(**{key: value for key, value in given.items() if value is not None})
    if not 0 <= abs(spec.signal) < 1:
        raise QtrackError("--signal must lie in (-1, 1)")
    path = synthesise(name, spec)
    out.print(f"[green]✓[/] wrote '{name}' ({spec.symbols} symbols x {spec.days} days, theoretical IC "
              f"{spec.theoretical_ic:.4f}) at {path}")


@app.command("list")
def list_command() -> None:
    """The datasets under the data root."""
    from rich.table import Table

    from qtrack import paths
    from qtrack.console import out
    from qtrack.data.store import list_datasets

    rows = list_datasets()
    if not rows:
        out.print(f"no datasets under {paths.data_root()}")
        return
    table = Table("name", "kind", "symbols", "start", "end", title=str(paths.data_root()), title_justify="left")
    for row in rows:
        table.add_row(row["name"], row["kind"], str(row["symbols"]), row["start"], row["end"])
    out.print(table)


@app.command("info")
def info_command(name: str = typer.Argument(..., help="Dataset name.")) -> None:
    """Calendar, symbols, missing values per field, symbols skipped at import, feature cache size."""
    from qtrack.console import out, summary_table
    from qtrack.data.store import dataset_info

    info = dataset_info(name)
    start, end, days = info["calendar"]
    rows = [
        ("path", info["path"]),
        ("kind", info["kind"]),
        ("calendar", f"{start} to {end} ({days} days)"),
        ("symbols", str(info["symbols"])),
        ("markets", ", ".join(info["markets"])),
        ("fingerprint", info["fingerprint"]),
        ("feature cache", f"{info['feature_cache_bytes'] / 2**20:.1f} MiB"),
    ]
    rows += [(f"version {v['version']}", _version_line(v)) for v in info["versions"]]
    rows += [(f"missing {field}", f"{share:.2%}") for field, share in info["missing_share"].items()]
    if info["vwap"]:
        rows.append(("vwap", info["vwap"]))
    rows += [(f"symbol {stored}", f"vendor symbol {original!r}") for stored, original in info["renamed"].items()]
    rows += [(f"format of {file}", dialect) for file, dialect in info["dialects"].items()]
    rows += [(f"skipped {symbol}", reason) for symbol, reason in info["skipped"].items()]
    rows += [(f"note {symbol}", "; ".join(notes)) for symbol, notes in info["warnings"].items()]
    out.print(summary_table(f"dataset {name}", rows))


def _version_line(version: dict) -> str:
    changes = ""
    if version.get("action") == "update":
        changes = (f", {version.get('appended', 0)} appended, {version.get('added', 0)} added, "
                   f"{len(version.get('rewritten', []))} rewritten")
    return (f"{version.get('at', '')} {version.get('action', '')} to {version.get('end', '')}{changes} "
            f"({str(version.get('fingerprint', ''))[:12]})").strip()
