"""`qtrack rolling`: walk-forward evaluation (stages.walk_forward), judged on the stitched out-of-sample record
and set beside the static split."""

from __future__ import annotations

from datetime import datetime

from qtrack.config.schema import Settings
from qtrack.console import Observer, out, summary_table
from qtrack.data.prepare import prepare
from qtrack.stages.context import StageContext
from qtrack.stages.core import SUMMARY_METRICS, metric_label
from qtrack.stages.runner import Stage, run_stage
from qtrack.stages.walk_forward import ROLLING, RollingResult, base_config, plan_windows, rolling_record


def rolling(cfg: Settings, ctx: StageContext, observer: Observer) -> RollingResult:
    windows = plan_windows(cfg)
    base = base_config(cfg, windows)
    data = prepare(base, observer)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    _, result = rolling_record(base, windows, data, observer, settings=cfg.rolling,
                               run_name=cfg.run_name or f"rolling-{cfg.model.name}-{stamp}")
    return result


def _print_summary(result: RollingResult, ctx: StageContext) -> None:
    cfg = ctx.cfg
    rows = [("windows", str(len(result.windows)))]
    for key in SUMMARY_METRICS:
        if key in result.metrics:
            static = result.static_metrics.get(key)
            shown = f"{result.metrics[key]:.4f}" + (f"  (static split: {static:.4f})" if static is not None else "")
            rows.append((metric_label(key), shown))
    rows.append(("parent run", result.parent_run_id))
    out.print(summary_table(f"qtrack rolling ({cfg.model.name}, step {cfg.rolling.step})", rows))


ROLLING_STAGE = Stage(config=ROLLING, work=rolling, summary=_print_summary)


def run_rolling(overrides: list[str], quiet: bool = False) -> RollingResult:
    return run_stage(ROLLING_STAGE, overrides, quiet)
