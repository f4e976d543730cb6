"""The train stage: compose the config, prepare the data once, run the core once."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from qtrack.config.schema import Settings
from qtrack.config.store_uri import mask_uri
from qtrack.console import Steps, err, out, summary_table
from qtrack.data.prepare import prepare
from qtrack.stages.context import stage
from qtrack.stages.core import RunResult, metric_rows
from qtrack.stages.runner import run_model
from qtrack.tracking import names


def default_run_name(cfg: Settings, now: datetime | None = None) -> str:
    return cfg.run_name or f"{cfg.model.name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def run_train(overrides: list[str], quiet: bool = False) -> RunResult:
    with stage("train", overrides) as ctx:
        steps = Steps(quiet=quiet)
        data = prepare(ctx.cfg, steps)
        run_name = default_run_name(ctx.cfg)
        result = run_model(ctx.cfg, data, steps, run_name=run_name, tags={names.STAGE: names.TRAIN},
                           output_dir=ctx.run_dir, with_data_times=True)
    print_summary(result, ctx.run_dir)
    return result


def print_summary(result: RunResult, run_dir: Path) -> None:
    rows = metric_rows(result.metrics)
    uri = mask_uri(result.tracking_uri)
    rows += [
        ("run", f"{result.run_name} ({result.run_id})"),
        ("experiment", f"{result.experiment_name} ({result.experiment_id})"),
        ("tracking URI", uri),
        ("run folder", str(run_dir)),
    ]
    out.print(summary_table("qtrack train", rows))
    if uri.startswith("sqlite:"):
        err.print(f"[dim]open the UI: mlflow ui --backend-store-uri {uri}[/]")
