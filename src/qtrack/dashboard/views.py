"""The dashboard's views. Each takes what it shows from `reads` and says plainly what to run when there
is nothing to show."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from qtrack.dashboard import charts, reads, sources
from qtrack.evaluation.ranking import RANKABLE

NO_RUNS = "This experiment has no runs yet: run `qtrack train` to make one."


def _runs_or_say(uri: str, experiment: str, limit: int) -> pd.DataFrame | None:
    """The experiment's runs, or None after saying there are none."""
    table = reads.runs(uri, experiment, limit)
    if table.empty:
        st.info(NO_RUNS)
        return None
    return table


def _pick_parent(uri: str, experiment: str, stage: str, label: str, none_yet: str) -> str | None:
    """A benchmark or sweep parent run chosen in a select box, or None after saying what to run."""
    parents = reads.parent_runs(uri, experiment, stage)
    if parents.empty:
        st.info(none_yet)
        return None
    return _pick_run(parents.assign(stage=stage), label, stage)


def runs_view(uri: str, experiment: str, limit: int) -> None:
    table = _runs_or_say(uri, experiment, limit)
    if table is None:
        return
    left, right = st.columns(2)
    models = left.multiselect("Model", sorted(m for m in table["model"].unique() if m))
    stages = right.multiselect("Stage", sorted(s for s in table["stage"].unique() if s))
    keep = pd.Series(True, index=table.index)
    if models:
        keep &= table["model"].isin(models)
    if stages:
        keep &= table["stage"].isin(stages)
    shown = table[keep]
    _latest_cards(shown)
    st.caption(f"{len(shown)} of {len(table)} runs (newest {limit} read); click a heading to sort.")
    st.dataframe(shown.drop(columns=["parent"]), hide_index=True, width="stretch")


def _latest_cards(table: pd.DataFrame) -> None:
    """The newest run with signal metrics, as cards (text a reader, or a browser test, can find)."""
    scored = table[table["IC"].notna()] if "IC" in table.columns else table.iloc[:0]
    if scored.empty:
        return
    latest = scored.iloc[0]
    st.markdown(f"**Latest run with results:** {latest['run_name']} ({latest['run_id'][:8]}, {latest['model']})")
    headings = [h for h in ("IC", "ICIR", "Rank IC", "Rank ICIR", "excess return (ann.)") if h in scored.columns]
    for column, heading in zip(st.columns(len(headings)), headings, strict=True):
        value = latest[heading]
        column.metric(heading, "n/a" if pd.isna(value) else f"{value:.4f}")


def _pick_run(table: pd.DataFrame, label: str, key: str) -> str | None:
    labels = {f"{row.run_name} ({row.run_id[:8]}, {row.stage or 'run'})": row.run_id for row in table.itertuples()}
    chosen = st.selectbox(label, list(labels), key=key)
    return labels.get(chosen) if chosen else None


def run_view(uri: str, experiment: str, limit: int) -> None:
    table = _runs_or_say(uri, experiment, limit)
    if table is None:
        return
    run_id = _pick_run(table, "Run", "run")
    details = reads.run_details(uri, run_id)
    st.subheader(f"{details['name']} · {details['status']}")
    metrics, params = st.columns(2)
    metrics.dataframe(pd.Series(details["metrics"], name="value").sort_index().rename_axis("metric"), width="stretch")
    params.dataframe(pd.Series(details["params"], name="value").sort_index().rename_axis("param"), width="stretch")
    curves = reads.training_curves(uri, run_id)
    if not curves.empty:
        st.plotly_chart(charts.training_curves(curves), width="stretch")
    _run_plots(uri, run_id)
    _qlib_report(uri, run_id)


def _run_plots(uri: str, run_id: str) -> None:
    report = reads.artifact_object(uri, run_id, sources.REPORT)
    ic = reads.artifact_object(uri, run_id, sources.DAILY_IC)
    if report is None and ic is None:
        st.info("This run has no backtest or IC records to plot (a sweep parent, a benchmark parent, or a run "
                "that failed): pick a train run, or run `qtrack train`.")
        return
    if report is not None:
        st.plotly_chart(charts.strategy_and_benchmark(report), width="stretch")
    if ic is not None:
        st.plotly_chart(charts.daily_ic(ic), width="stretch")


def _qlib_report(uri: str, run_id: str) -> None:
    page = reads.artifact_bytes(uri, run_id, sources.QLIB_REPORT)
    st.markdown("#### Qlib's report graphs")
    if page is None:
        st.info("No Qlib report for this run: runs log `reports/qlib_report.html` when `mlflow.qlib_report=true` "
                "(the default for train, benchmark and retrain).")
        return
    st.iframe(sandboxed(page.decode("utf-8", errors="replace")), height=920)


def sandboxed(page: str) -> str:
    """An artifact's HTML in a frame of its own, sandboxed with `allow-scripts` alone (as MLflow's UI does):
    its plotly scripts run, but in an opaque origin that can't reach the dashboard's page, its cookies or
    its storage. Streamlit's own frame around it allows same-origin scripts; this document runs none."""
    return (f'<iframe sandbox="allow-scripts" title="Qlib report" style="width:100%;height:900px;border:0" '
            f'srcdoc="{html.escape(page, quote=True)}"></iframe>')


def compare_view(uri: str, experiment: str, limit: int) -> None:
    table = _runs_or_say(uri, experiment, limit)
    if table is None:
        return
    labels = {f"{row.run_name} ({row.run_id[:8]})": row.run_id for row in table.itertuples()}
    chosen = st.multiselect("Runs to compare (two or more)", list(labels), default=list(labels)[:2])
    if len(chosen) < 2:
        st.info("Pick at least two runs.")
        return
    picked = table.set_index("run_id").loc[[labels[c] for c in chosen]]
    headline = [h for h in sources.HEADLINE.values() if h in picked.columns]
    side_by_side = picked[headline].set_axis(chosen).T.rename_axis("metric")
    st.caption(" · ".join(f"{row.run_name}: {row.model or '?'} ({row.stage or 'run'})" for row in picked.itertuples()))
    st.dataframe(side_by_side, width="stretch")
    reports = {c: r for c in chosen if (r := reads.artifact_object(uri, labels[c], sources.REPORT)) is not None}
    if reports:
        st.plotly_chart(charts.cumulative_returns(reports), width="stretch")
    else:
        st.info("None of these runs has a backtest report to overlay.")


def benchmark_view(uri: str, experiment: str) -> None:
    run_id = _pick_parent(uri, experiment, "benchmark", "Benchmark",
                          "No benchmark in this experiment: run `qtrack benchmark` to rank models.")
    if run_id is None:
        return
    content = reads.artifact_bytes(uri, run_id, "ranking.json")
    if content is None:
        st.info("This benchmark has no ranking (it failed or is still running).")
        return
    ranking_view(json.loads(content))


def ranking_view(payload: dict) -> None:
    table = pd.DataFrame(payload["ranking"])
    if table.empty:
        st.info("This results file holds no ranked model.")
        return
    metrics = [m for m in RANKABLE if f"avg_{m}" in table.columns]
    default = payload.get("metric") if payload.get("metric") in metrics else metrics[0]
    metric = st.selectbox("Metric", metrics, index=metrics.index(default))
    st.plotly_chart(charts.ranking_bars(table, metric), width="stretch")
    columns = ["model", "runs", "failed", *[c for m in metrics for c in (f"avg_{m}", f"std_{m}")]]
    st.dataframe(table[[c for c in columns if c in table.columns]], hide_index=True, width="stretch")


def sweep_view(uri: str, experiment: str) -> None:
    run_id = _pick_parent(uri, experiment, "optimize", "Sweep",
                          "No sweep in this experiment: run `run_optimization --trials 20` to make one.")
    if run_id is None:
        return
    summary_bytes = reads.artifact_bytes(uri, run_id, "optimize.json")
    trials_bytes = reads.artifact_bytes(uri, run_id, "trials.csv")
    if summary_bytes is None or trials_bytes is None:
        st.info("This sweep has no results yet (it failed or is still running).")
        return
    summary, trials = json.loads(summary_bytes), pd.read_csv(io.BytesIO(trials_bytes))
    objective = summary.get("objective", "value")
    if (trials["state"] == "COMPLETE").any():
        st.plotly_chart(charts.optimization_history(trials, summary.get("maximize", True), objective), width="stretch")
    if summary.get("importances"):
        st.plotly_chart(charts.importances(summary["importances"]), width="stretch")
    best = summary.get("best", {})
    st.markdown(f"**Best trial** {best.get('trial')}: {objective} = {best.get('value')}")
    if best.get("command"):
        st.code(best["command"], language="bash")


def registry_view(uri: str) -> None:
    models = reads.registry(uri)
    if not models:
        st.info("No registered model: `qtrack register` or `qtrack retrain` registers one.")
        return
    for model in models:
        aliases = ", ".join(f"{alias} → v{version}" for alias, version in sorted(model["aliases"].items()))
        st.subheader(model["name"])
        st.caption(f"aliases: {aliases or 'none'}")
        st.dataframe(pd.DataFrame(model["versions"]), hide_index=True, width="stretch")


def json_view(folder: Path) -> None:
    if folder.is_file():
        st.warning(f"{folder} is a file, not a folder: give --results the folder that holds the results files.")
        return
    results, problems = reads.json_results(folder)
    for name, problem in problems.items():
        st.warning(f"Left out {name}: it {problem}.")
    if not results:
        st.info(f"No benchmark results under {folder}: `qtrack benchmark` writes them there.")
        return
    chosen = st.selectbox("Results file", list(results))
    st.caption(f"experiment {results[chosen].get('experiment')}, parent run {results[chosen].get('parent_run_id')}")
    ranking_view(results[chosen])
