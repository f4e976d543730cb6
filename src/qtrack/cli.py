"""The `qtrack` command line. Thin: it parses, calls a stage and turns errors into exit codes.

Heavy libraries (Qlib, MLflow, Hydra) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import sys

import typer

from qtrack import __version__
from qtrack.errors import QtrackError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Train, sweep and compare Qlib models, with every run tracked in MLflow.",
)

OVERRIDES_HELP = "Hydra overrides such as model=catboost model.learning_rate=0.05 seed=3."


def _groups_epilog() -> str:
    from qtrack.config import config_groups

    try:
        groups = config_groups()
    except OSError:
        return ""
    lines = [f"  {group}: {', '.join(options)}" for group, options in groups.items()]
    return "Config groups (choose with GROUP=OPTION):\n\n" + "\n\n".join(lines)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qtrack {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool | None = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train, sweep and compare Qlib models, with every run tracked in MLflow."""


@app.command(epilog=_groups_epilog())
def train(
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    cfg: bool = typer.Option(False, "--cfg", help="Print the resolved config and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final summary."),
) -> None:
    """Fit one model on a dataset and log the whole run (metrics, predictions, model, plots) to MLflow."""
    if cfg:
        from qtrack.config import compose, to_yaml

        typer.echo(to_yaml(compose("train", overrides or []).cfg), nl=False)
        return
    from qtrack.train import run_train

    run_train(overrides or [], quiet=quiet)


@app.command(
    epilog=_groups_epilog(),
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def benchmark(
    overrides: list[str] | None = typer.Argument(
        None, help="models=[lightgbm,linear] seeds=3 metric='Rank IC', then any train override. "
        "`qtrack benchmark report --experiment NAME [--metric M] [--output FILE]` ranks existing runs."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the ranking."),
) -> None:
    """Fit every model x seed on one dataset and rank them (mean ± std), under one MLflow parent run."""
    args = overrides or []
    if args and args[0] == "report":
        from qtrack.benchmark_cli import report_app

        report_app(args=args[1:], prog_name="qtrack benchmark report", standalone_mode=False)
        return
    from qtrack.benchmark import ModelBenchmark

    results = ModelBenchmark(args, quiet=quiet).run()
    failed = [job for job in results.jobs if job.status != "FINISHED"]
    if failed:
        raise typer.Exit(1)


@app.command(
    epilog=_groups_epilog(),
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def optimize(
    overrides: list[str] | None = typer.Argument(
        None, help="Train overrides (model=catboost ...), optimize.* settings and search_space.* entries."
    ),
    trials: int | None = typer.Option(None, "--trials", min=0, help="Trials to run now (on top of earlier ones)."),
    max_trials: int | None = typer.Option(
        None, "--max-trials", min=1, help="Budget for the whole study, shared by every worker."
    ),
    timeout: float | None = typer.Option(None, "--timeout", min=1, help="Start no new trial after SECONDS."),
    study_name: str | None = typer.Option(None, "--study-name", help="Default: <experiment>-<model>."),
    storage: str | None = typer.Option(
        None, "--storage", help="A journal file, sqlite:///FILE or postgresql://... (default: mlruns/optuna.journal)."
    ),
    n_jobs: int | None = typer.Option(None, "--n-jobs", min=1, help="Trials at once in this process (threads)."),
    with_mlflow: bool | None = typer.Option(
        None, "--with-mlflow/--no-mlflow", help="Log a parent run and one child run per trial (default: on)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the trial lines and the result."),
) -> None:
    """Sweep a model's hyperparameters with Optuna on the validation segment; resumable and distributable."""
    from qtrack.config import override_value
    from qtrack.optimize import run_optimize

    options = {"trials": trials, "max_trials": max_trials, "timeout": timeout, "study_name": study_name,
               "storage": storage, "n_jobs": n_jobs, "mlflow": with_mlflow}
    extra = [f"optimize.{key}={override_value(value)}" for key, value in options.items() if value is not None]
    run_optimize([*(overrides or []), *extra], quiet=quiet)


TRACKING_URI_HELP = "Default: MLFLOW_TRACKING_URI, else the local store sqlite:///./mlruns/mlflow.db."


@app.command()
def register(
    run_id: str = typer.Argument(..., help="A train run whose model to register."),
    name: str = typer.Option(..., "--name", help="The registered model's name."),
    alias: str | None = typer.Option(None, "--alias", help="Point this alias (for example champion) at the version."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Register a train run's model in the MLflow Model Registry as a new version."""
    from qtrack import registry
    from qtrack.console import out

    client, _ = registry.connect(tracking_uri)
    version = registry.register(client, run_id, name, alias)
    out.print(f"registered {name} version {version.version}" + (f" as @{alias}" if alias else ""))


@app.command()
def predict(
    model: str = typer.Option(..., "--model", help="MODEL@ALIAS or MODEL/VERSION."),
    output: str = typer.Option(..., "--output", help="A .csv or .parquet file."),
    data: str | None = typer.Option(None, "--data", help="Dataset name (default: the one the model trained on)."),
    start: str | None = typer.Option(None, "--start", help="First day (default: the data's latest day)."),
    end: str | None = typer.Option(None, "--end", help="Last day (default: the data's latest day)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Score every instrument on the requested days with a registered model and its own feature pipeline."""
    from pathlib import Path

    from qtrack.console import out
    from qtrack.predict import run_predict

    done = run_predict(model, data, start, end, Path(output), tracking_uri)
    out.print(f"{done.model} version {done.version}: {done.rows} scores ({done.instruments} instruments x "
              f"{done.days} days, {done.start} to {done.end}) written to {done.output}", soft_wrap=True)


@app.command(
    epilog=_groups_epilog(),
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def retrain(
    overrides: list[str] | None = typer.Argument(None, help="retrain.* settings, then any train override."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the decision."),
) -> None:
    """Train a challenger on the latest data; promote it over the champion only when it scores better.

    Exit codes: 0 done (promoted, kept or nothing new), 2 bad config or data, 3 tracking server or
    registry unreachable, 4 another retrain of the same model is running on this machine."""
    from qtrack.retrain import run_retrain

    run_retrain(overrides or [], quiet=quiet)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(5000, "--port", min=1, max=65535),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Open the MLflow UI on the local tracking store (127.0.0.1:5000 unless told otherwise)."""
    import os

    from qtrack.config import tracking_uri as resolve_uri
    from qtrack.hygiene import ui_command

    command = ui_command(resolve_uri(tracking_uri), host, port)
    typer.echo(f"MLflow UI on http://{host}:{port} (Ctrl-C stops it)", err=True)
    os.execv(command[0], command)


@app.command()
def gc(
    older_than: str = typer.Option(..., "--older-than", help="Age such as 30d, 12h or 1d12h."),
    experiment: str | None = typer.Option(None, "--experiment", help="Only this experiment (default: all)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be deleted; delete nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Delete finished runs older than a cutoff, with their artifacts; runs behind registered models stay."""
    from qtrack.gc_cli import run_gc

    run_gc(older_than, experiment, dry_run, yes, tracking_uri)


def _add_subcommands() -> None:
    from qtrack.data_cli import app as data_app
    from qtrack.registry_cli import app as models_app

    app.add_typer(data_app, name="data")
    app.add_typer(models_app, name="models")


_add_subcommands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    import click

    try:
        # Without standalone mode Click returns (not raises) the code of a typer.Exit.
        code = app(args=argv, prog_name="qtrack", standalone_mode=False)
    except QtrackError as exc:
        _fail(str(exc))
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        _fail(exc.format_message())
        return exc.exit_code
    except click.exceptions.Abort:
        _fail("aborted")
        return 130
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, details in the log
        _fail(f"{type(exc).__name__}: {exc} (the run folder's run.log has the traceback)")
        return 1
    return code if isinstance(code, int) else 0


def _fail(message: str) -> None:
    from qtrack.redact import text

    sys.stderr.write(f"qtrack: error: {text(' '.join(message.split()))}\n")


def run_optimization() -> int:
    """The `run_optimization` console script: `qtrack optimize` under its own name."""
    return main(["optimize", *sys.argv[1:]])
