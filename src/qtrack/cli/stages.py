"""The stage commands: train, benchmark, optimize, retrain. Each passes Hydra overrides through untouched."""

from __future__ import annotations

from pathlib import Path

import typer

from qtrack.runtime import long_lived_imports

OVERRIDES_HELP = "Hydra overrides such as model=catboost model.learning_rate=0.05 seed=3."
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def groups_epilog() -> str:
    from qtrack.config import config_groups

    try:
        groups = config_groups()
    except OSError:
        return ""
    lines = [f"  {group}: {', '.join(options)}" for group, options in groups.items()]
    return "Config groups (choose with GROUP=OPTION):\n\n" + "\n\n".join(lines)


def train(
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    cfg: bool = typer.Option(False, "--cfg", help="Print the resolved config and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final summary."),
    from_qrun: Path | None = typer.Option(
        None, "--from-qrun", help="A qrun workflow YAML: print the equivalent qtrack command and run it "
        "(overrides given here come after the workflow's)."
    ),
) -> None:
    """Fit one model on a dataset and log the whole run (metrics, predictions, model, plots) to MLflow."""
    args = overrides or []
    if from_qrun is not None:
        from qtrack.config.qrun import honoured

        args = _announced("train", honoured(from_qrun).overrides, args)
    if cfg:
        from qtrack.config import compose, to_yaml

        typer.echo(to_yaml(compose("train", args).cfg), nl=False)
        return
    with long_lived_imports():
        from qtrack.stages.train import run_train

    run_train(args, quiet=quiet)


def _announced(stage: str, workflow: list[str], given: list[str]) -> list[str]:
    """The workflow's overrides then the user's, after printing the equivalent command."""
    from qtrack.config.qrun_benchmark import command_line
    from qtrack.console import err

    combined = [*workflow, *given]
    err.print(f"equivalent: {command_line(stage, combined)}", markup=False, soft_wrap=True)
    return combined


def benchmark(
    overrides: list[str] | None = typer.Argument(
        None, help="models=[lightgbm,linear] seeds=3 metric='Rank IC', then any train override. "
        "`qtrack benchmark report --experiment NAME [--metric M] [--output FILE]` ranks existing runs."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the ranking."),
    from_qrun: list[Path] | None = typer.Option(
        None, "--from-qrun", help="qrun workflow YAMLs (repeat the option, or list them after it) that share one "
        "dataset: their models are ranked side by side."
    ),
) -> None:
    """Fit every model x seed on one dataset and rank them (mean ± std), under one MLflow parent run."""
    args = overrides or []
    if from_qrun:
        from qtrack.config.qrun_benchmark import benchmark_overrides

        is_yaml = [a.endswith((".yaml", ".yml")) for a in args]  # `--from-qrun a.yaml b.yaml` lists the rest after it
        yamls = [*from_qrun, *(Path(a) for a, listed in zip(args, is_yaml, strict=True) if listed)]
        rest = [a for a, listed in zip(args, is_yaml, strict=True) if not listed]
        args = _announced("benchmark", benchmark_overrides(yamls), rest)
    if args and args[0] == "report":
        from qtrack.cli.benchmark_report import report_app

        report_app(args=args[1:], prog_name="qtrack benchmark report", standalone_mode=False)
        return
    from qtrack.config import expand_switches
    with long_lived_imports():
        from qtrack.stages.benchmark import SWITCHES, run_benchmark

    results, _ = run_benchmark(expand_switches(args, SWITCHES), quiet=quiet)
    if any(job.status != "FINISHED" for job in results.jobs):
        raise typer.Exit(1)


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
    with long_lived_imports():
        from qtrack.stages.optimize.run import run_optimize

    options = {"trials": trials, "max_trials": max_trials, "timeout": timeout, "study_name": study_name,
               "storage": storage, "n_jobs": n_jobs, "mlflow": with_mlflow}
    extra = [f"optimize.{key}={override_value(value)}" for key, value in options.items() if value is not None]
    run_optimize([*(overrides or []), *extra], quiet=quiet)


def retrain(
    overrides: list[str] | None = typer.Argument(None, help="retrain.* settings, then any train override."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the decision."),
) -> None:
    """Train a challenger on the latest data; promote it over the champion only when it scores better.

    Exit codes: 0 done (promoted, kept or nothing new), 2 bad config or data, 3 tracking server or
    registry unreachable, 4 another retrain of the same model is running on this machine."""
    with long_lived_imports():
        from qtrack.stages.retrain import run_retrain

    run_retrain(overrides or [], quiet=quiet)


def rolling(
    overrides: list[str] | None = typer.Argument(
        None, help="rolling.step=63 rolling.train_window=expanding|N rolling.valid_days=63 "
        "rolling.first_test_day=YYYY-MM-DD, then any train override."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final summary."),
) -> None:
    """Walk-forward evaluation: refit every rolling.step days, judged on the stitched out-of-sample record,
    beside the same model's static split."""
    with long_lived_imports():
        from qtrack.stages.rolling import run_rolling

    run_rolling(overrides or [], quiet=quiet)


def backtest(
    pred: Path = typer.Option(..., "--pred", help="Predictions: .csv, .parquet or .pkl with datetime, instrument, "
                              "score."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final summary."),
) -> None:
    """Backtest a prediction file (IC analysis and Qlib's backtest on its days) as a tracked MLflow run."""
    with long_lived_imports():
        from qtrack.stages.backtest import run_backtest_stage

    run_backtest_stage(pred.expanduser().absolute(), overrides or [], quiet=quiet)


def add_to(app: typer.Typer) -> None:
    epilog = groups_epilog()
    app.command(epilog=epilog)(train)
    app.command(epilog=epilog)(backtest)
    app.command(epilog=epilog, context_settings=PASS_THROUGH)(benchmark)
    app.command(epilog=epilog, context_settings=PASS_THROUGH)(optimize)
    app.command(epilog=epilog, context_settings=PASS_THROUGH)(retrain)
    app.command(epilog=epilog, context_settings=PASS_THROUGH)(rolling)
