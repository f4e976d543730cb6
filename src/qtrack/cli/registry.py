"""The registry commands: `qtrack register`, `qtrack predict` and `qtrack models ...`."""

from __future__ import annotations

from pathlib import Path

import typer

TRACKING_URI_HELP = ("Tracking store. This flag beats MLFLOW_TRACKING_URI, which beats the local store "
                     "sqlite:///./mlruns/mlflow.db.")

models_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Registered models, versions and aliases.")


def register(
    run_id: str = typer.Argument(..., help="A train run whose model to register."),
    name: str = typer.Option(..., "--name", help="The registered model's name."),
    alias: str | None = typer.Option(None, "--alias", help="Point this alias (for example champion) at the version."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Register a train run's model in the MLflow Model Registry as a new version."""
    from qtrack.console import out
    from qtrack.tracking import registry

    registry.check_names(name, alias)
    client, _ = registry.connect(tracking_uri)
    version = registry.register(client, run_id, name, alias)
    out.print(f"registered {name} version {version.version}" + (f" as @{alias}" if alias else ""))


def predict(
    model: str = typer.Option(..., "--model", help="MODEL@ALIAS or MODEL/VERSION."),
    output: Path = typer.Option(..., "--output", help="A .csv or .parquet file."),
    data: str | None = typer.Option(None, "--data", help="Dataset name (default: the one the model trained on)."),
    start: str | None = typer.Option(None, "--start", help="First day (default: the data's latest day)."),
    end: str | None = typer.Option(None, "--end", help="Last day (default: the data's latest day)."),
    latest: bool = typer.Option(False, "--latest", help="Tomorrow's list: the last day's trading instruments, "
                                "ranked, with a top_k flag."),
    topk: int | None = typer.Option(None, "--topk", help="With --latest: how many get top_k (default: the "
                                    "model's backtest.topk)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Score every instrument on the requested days with a registered model and its own feature pipeline."""
    from qtrack.console import out
    from qtrack.stages.predict import run_predict

    done = run_predict(model, data, start, end, output, tracking_uri, latest=latest, topk=topk)
    out.print(f"{done.model} version {done.version}: {done.rows} scores ({done.instruments} instruments x "
              f"{done.days} days, {done.start} to {done.end}) written to {done.output}", soft_wrap=True)


@models_app.command("list")
def list_models(
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Every registered model's versions with their aliases, training data end and key metrics."""
    from rich.table import Table

    from qtrack.console import out
    from qtrack.tracking import registry

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


def add_to(app: typer.Typer) -> None:
    app.command()(register)
    app.command()(predict)
