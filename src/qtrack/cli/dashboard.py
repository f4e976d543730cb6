"""`qtrack dashboard`: serve the Streamlit app over the tracking store."""

from __future__ import annotations

from pathlib import Path

import typer

from qtrack.cli.registry import TRACKING_URI_HELP


def dashboard(
    port: int = typer.Option(8501, "--port", min=1, max=65535),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
    results: Path = typer.Option(Path("results/benchmarks"), "--results",
                                 help="Benchmark JSON files shown when MLflow can't be reached."),
) -> None:
    """Browse runs, rankings, sweeps and the registry, live from MLflow (read only)."""
    import os
    import sys

    from qtrack.config.store_uri import TRACKING_URI_ENV, mask_uri, resolve_tracking_uri
    from qtrack.dashboard import sources

    uri = resolve_tracking_uri(tracking_uri)
    env = {**os.environ, TRACKING_URI_ENV: uri, sources.URI_ENV: uri, sources.RESULTS_ENV: str(results.resolve())}
    command = [sys.executable, "-m", "streamlit", "run", _script(), "--server.port", str(port),
               "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--global.developmentMode", "false",
               "--client.toolbarMode", "viewer"]
    typer.echo(f"qtrack dashboard on http://{host}:{port} over {mask_uri(uri)} (Ctrl-C stops it)", err=True)
    os.execve(sys.executable, command, env)


def _script() -> str:
    return str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def add_to(app: typer.Typer) -> None:
    app.command()(dashboard)
