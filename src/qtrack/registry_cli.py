"""`qtrack models ...`: what the Model Registry holds."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Registered models, versions and aliases.")


@app.command("list")
def list_models(
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="Default: MLFLOW_TRACKING_URI or ./mlruns."),
) -> None:
    """Every registered model's versions with their aliases, training data end and key metrics."""
    from rich.table import Table

    from qtrack import registry
    from qtrack.console import out

    client, _ = registry.connect(tracking_uri)
    rows = registry.list_models(client)
    if not rows:
        out.print("no registered models")
        return
    table = Table(title="registered models", title_justify="left")
    for column in rows[0]:
        table.add_column(column, overflow="fold", min_width=len(column))
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    out.print(table)
