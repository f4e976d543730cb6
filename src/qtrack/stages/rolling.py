"""`qtrack rolling`: walk-forward evaluation (stages.walk_forward), judged on the stitched out-of-sample record
and set beside the static split."""

from __future__ import annotations

from datetime import datetime

from qtrack.config.schema import Settings
from qtrack.console import Steps, out, summary_table
from qtrack.data.prepare import prepare
from qtrack.stages.context import stage
from qtrack.stages.core import SUMMARY_METRICS, metric_label
from qtrack.stages.walk_forward import ROLLING, RollingResult, base_config, plan_windows, rolling_record


def run_rolling(overrides: list[str], quiet: bool = False) -> RollingResult:
    with stage(ROLLING, overrides) as ctx:
        steps = Steps(quiet=quiet)
        windows = plan_windows(ctx.cfg)
        base = base_config(ctx.cfg, windows)
        data = prepare(base, steps)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        _, result = rolling_record(base, windows, data, steps, settings=ctx.cfg.rolling,
                                   run_name=ctx.cfg.run_name or f"rolling-{ctx.cfg.model.name}-{stamp}")
    _print_summary(result, ctx.cfg)
    return result


def _print_summary(result: RollingResult, cfg: Settings) -> None:
    rows = [("windows", str(len(result.windows)))]
    for key in SUMMARY_METRICS:
        if key in result.metrics:
            static = result.static_metrics.get(key)
            shown = f"{result.metrics[key]:.4f}" + (f"  (static split: {static:.4f})" if static is not None else "")
            rows.append((metric_label(key), shown))
    rows.append(("parent run", result.parent_run_id))
    out.print(summary_table(f"qtrack rolling ({cfg.model.name}, step {cfg.rolling.step})", rows))
