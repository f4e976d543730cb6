"""PNG plots for a run: cumulative excess return against the benchmark, and the daily IC."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(9, 4.5), dpi=100)


def cumulative_return_plot(report: pd.DataFrame, path: Path) -> Path:
    plt, fig, ax = _figure()
    strategy = (report["return"] - report["cost"]).cumsum()
    benchmark = report["bench"].cumsum()
    ax.plot(strategy.index, strategy, label="strategy (after cost)")
    ax.plot(benchmark.index, benchmark, label="benchmark")
    ax.plot(strategy.index, strategy - benchmark, label="excess (after cost)")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    return _save(plt, fig, ax, "Cumulative return, test segment", path)


def daily_ic_plot(ic: pd.Series, path: Path) -> Path:
    plt, fig, ax = _figure()
    ax.bar(ic.index, ic.to_numpy(), width=1.0, color="tab:blue", alpha=0.5, label="daily IC")
    ax.plot(ic.index, ic.rolling(20, min_periods=1).mean(), color="tab:red", label="20-day mean")
    ax.axhline(ic.mean(), color="black", linestyle="--", linewidth=0.8, label=f"mean {ic.mean():.4f}")
    return _save(plt, fig, ax, "Daily IC, test segment", path)


def _save(plt, fig, ax, title: str, path: Path) -> Path:
    ax.set_title(title)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
