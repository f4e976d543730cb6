"""PNG plots: a run's cumulative excess return and daily IC; a sweep's history and importances."""

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
    # One line per day in one artist: 400 bars were 400 patches, 0.3 s of the logging step.
    ax.vlines(ic.index, 0.0, ic.to_numpy(), color="tab:blue", alpha=0.5, linewidth=1.0, label="daily IC")
    ax.plot(ic.index, ic.rolling(20, min_periods=1).mean(), color="tab:red", label="20-day mean")
    ax.axhline(ic.mean(), color="black", linestyle="--", linewidth=0.8, label=f"mean {ic.mean():.4f}")
    return _save(plt, fig, ax, "Daily IC, test segment", path)


def window_ic_plot(table: pd.DataFrame, path: Path) -> Path:
    """Rolling: each window's test-slice IC (bars), and the static split's IC on the same slice (dots)."""
    plt, fig, ax = _figure()
    labels = [str(day) for day in table["test_start"]]
    ax.bar(labels, table["IC"], color="tab:blue", alpha=0.7, label="rolling (refitted) IC")
    if "static IC" in table:
        ax.plot(labels, table["static IC"], "o", color="tab:orange", label="static split IC")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("test slice start")
    ax.tick_params(axis="x", labelrotation=45)
    return _save(plt, fig, ax, "IC per walk-forward window", path)


def _save(plt, fig, ax, title: str, path: Path) -> Path:
    ax.set_title(title)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def optimization_history_plot(numbers: list[int], values: list[float], maximize: bool, metric: str, path: Path) -> Path:
    plt, fig, ax = _figure()
    series = pd.Series(values, index=numbers, dtype=float)
    best = series.cummax() if maximize else series.cummin()
    ax.scatter(series.index, series.to_numpy(), s=14, color="tab:blue", label="trial")
    ax.step(best.index, best.to_numpy(), where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    fig.tight_layout()
    return _save(plt, fig, ax, f"Optimisation history ({metric}, validation segment)", path)


def param_importance_plot(importances: dict[str, float], path: Path) -> Path:
    plt, fig, ax = _figure()
    names = list(importances)[::-1]
    ax.barh(names, [importances[name] for name in names], color="tab:blue", label="importance")
    ax.set_xlabel("share of the objective's variance (fANOVA)")
    return _save(plt, fig, ax, "Hyperparameter importance", path)
