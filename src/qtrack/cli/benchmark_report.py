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
    from qtrack.stages.benchmark_report import report as build_report
    from qtrack.tracking import registry

    _, uri = registry.connect(tracking_uri)  # the store checked, adopted and named, as every store command does
    results = build_report(experiment, metric, uri)
    table = ranking(results)
    out.print(ranking_markdown(table, results.metric, results.scope), soft_wrap=True, markup=False)
    if output:
        output.write_text(results_payload(results, table))
