"""The train stage: prepare the data once, one model in one run."""

from __future__ import annotations

from datetime import datetime

from qtrack.config.schema import Settings
from qtrack.config.store_uri import mask_uri
from qtrack.console import Observer, err, out, summary_table
from qtrack.data.prepare import prepare
from qtrack.stages.context import StageContext
from qtrack.stages.core import RunResult, metric_rows
from qtrack.stages.runner import Stage, run_model, run_stage
from qtrack.tracking import names


def default_run_name(cfg: Settings, now: datetime | None = None) -> str:
    return cfg.run_name or f"{cfg.model.name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def train(cfg: Settings, ctx: StageContext, observer: Observer) -> RunResult:
    data = prepare(cfg, observer)
    return run_model(cfg, data, observer, run_name=default_run_name(cfg), tags={names.STAGE: names.TRAIN},
                     output_dir=ctx.run_dir, with_data_times=True, last_use_of_data=True)


def print_summary(result: RunResult, ctx: StageContext) -> None:
    rows = metric_rows(result.metrics)
    uri = mask_uri(result.tracking_uri)
    rows += [
        ("run", f"{result.run_name} ({result.run_id})"),
        ("experiment", f"{result.experiment_name} ({result.experiment_id})"),
        ("tracking URI", uri),
        ("run folder", str(ctx.run_dir)),
    ]
    out.print(summary_table("qtrack train", rows))
    if uri.startswith("sqlite:"):
        err.print(f"[dim]open the UI: mlflow ui --backend-store-uri {uri}[/]")


TRAIN = Stage(config="train", work=train, summary=print_summary)


def run_train(overrides: list[str], quiet: bool = False) -> RunResult:
    return run_stage(TRAIN, overrides, quiet)
