"""`qtrack benchmark report`: the ranking of an experiment's latest benchmark, from MLflow alone."""

from __future__ import annotations

from pathlib import Path

import typer

from qtrack.cli.registry import TRACKING_URI_HELP

report_app = typer.Typer(add_completion=False, rich_markup_mode=None)


@report_app.command()
def report(
    experiment: str = typer.Option(..., "--experiment", help="MLflow experiment holding a benchmark."),
    metric: str | None = typer.Option(None, "--metric", help="Rank by this metric (default: the benchmark's)."),
    output: Path | None = typer.Option(None, "--output", help="Also write the ranking as JSON."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    from qtrack.console import out
    from qtrack.evaluation.ranking import ranking, ranking_markdown, results_payload
    from qtrack.runtime import quiet_third_party
    from qtrack.stages.benchmark_report import report as build_report
    from qtrack.tracking.store import announce_store, check_tracking_uri, resolve_tracking_uri, use_store

    quiet_third_party()
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_uri(uri)
    use_store(uri)
    announce_store(uri)
    results = build_report(experiment, metric, uri)
    table = ranking(results)
    out.print(ranking_markdown(table, results.metric, results.scope), soft_wrap=True, markup=False)
    if output:
        output.write_text(results_payload(results, table))
