"""The dashboard's interactive Plotly figures."""

from __future__ import annotations

import pandas as pd


def cumulative_returns(reports: dict[str, pd.DataFrame]) -> object:
    """Cumulative excess return after cost, one line per run (Qlib's report_normal frames)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, report in reports.items():
        excess = (report["return"] - report["cost"] - report["bench"]).cumsum()
        figure.add_trace(go.Scatter(x=excess.index, y=excess.to_numpy(), mode="lines", name=name))
    figure.update_layout(title="Cumulative excess return after cost (test segment)", yaxis_title="excess return",
                         hovermode="x unified", legend={"orientation": "h"})
    return figure


def strategy_and_benchmark(report: pd.DataFrame) -> object:
    import plotly.graph_objects as go

    strategy = (report["return"] - report["cost"]).cumsum()
    figure = go.Figure([
        go.Scatter(x=strategy.index, y=strategy.to_numpy(), name="strategy (after cost)"),
        go.Scatter(x=report.index, y=report["bench"].cumsum().to_numpy(), name="benchmark"),
        go.Scatter(x=strategy.index, y=(strategy - report["bench"].cumsum()).to_numpy(), name="excess"),
    ])
    figure.update_layout(title="Cumulative return (test segment)", hovermode="x unified")
    return figure


def training_curves(curves: pd.DataFrame) -> object:
    """Train and validation curves by iteration or epoch, one line per metric (losses and metrics apart)."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, points in curves.sort_values("step").groupby("metric", sort=True):
        figure.add_trace(go.Scatter(x=points["step"], y=points["value"], mode="lines+markers", name=name,
                                    yaxis="y2" if name.startswith("metric.") else "y"))
    layout = {"title": "Training curves", "xaxis_title": "iteration or epoch", "yaxis_title": "loss",
              "hovermode": "x unified"}
    if curves["metric"].str.startswith("metric.").any():
        layout["yaxis2"] = {"title": "metric", "overlaying": "y", "side": "right"}
    figure.update_layout(**layout)
    return figure


def daily_ic(ic: pd.Series) -> object:
    import plotly.graph_objects as go

    figure = go.Figure([
        go.Bar(x=ic.index, y=ic.to_numpy(), name="daily IC", opacity=0.5),
        go.Scatter(x=ic.index, y=ic.rolling(20, min_periods=1).mean().to_numpy(), name="20-day mean"),
    ])
    figure.update_layout(title=f"Daily IC (mean {ic.mean():.4f})", hovermode="x unified")
    return figure


def ranking_bars(table: pd.DataFrame, metric: str) -> object:
    """Mean ± std of `metric` per model, with error bars."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Bar(x=table["model"], y=table[f"avg_{metric}"],
                              error_y={"type": "data", "array": table[f"std_{metric}"].fillna(0.0).to_numpy()}))
    figure.update_layout(title=f"{metric} by model (mean ± std over seeds)", yaxis_title=metric)
    return figure


def optimization_history(trials: pd.DataFrame, maximize: bool, objective: str) -> object:
    import plotly.graph_objects as go

    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    best = done["value"].cummax() if maximize else done["value"].cummin()
    figure = go.Figure([
        go.Scatter(x=done["number"], y=done["value"], mode="markers", name="trial"),
        go.Scatter(x=done["number"], y=best, mode="lines", line_shape="hv", name="best so far"),
    ])
    figure.update_layout(title=f"Optimisation history ({objective})", xaxis_title="trial", yaxis_title=objective)
    return figure


def importances(values: dict[str, float]) -> object:
    import plotly.graph_objects as go

    ordered = sorted(values.items(), key=lambda item: item[1])
    figure = go.Figure(go.Bar(x=[v for _, v in ordered], y=[k for k, _ in ordered], orientation="h"))
    figure.update_layout(title="Parameter importance (fANOVA)")
    return figure
