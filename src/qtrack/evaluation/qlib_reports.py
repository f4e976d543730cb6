"""Qlib's own analysis graphs (`qlib.contrib.report`) as one self-contained HTML page per run.

The page holds `analysis_position.report_graph`, `risk_analysis_graph`,
`analysis_model.model_performance_graph` and `analysis_position.score_ic_graph`, drawn by Qlib from
the run's own records, with plotly.js inlined once so the file opens anywhere, offline.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

REPORT_NAME = "qlib_report.html"
ARTIFACT_DIR = "reports"
# The records the page is drawn from: predictions, label, the backtest's daily report and its risk analysis.
INPUTS = ("pred.pkl", "label.pkl", "portfolio_analysis/report_normal_1day.pkl",
          "portfolio_analysis/port_analysis_1day.pkl")


def pred_label(pred: pd.DataFrame, label: pd.DataFrame) -> pd.DataFrame:
    """Qlib's `pred_label` frame: `label` and `score` on the label's (datetime, instrument) index."""
    frame = pd.concat([label.iloc[:, 0].rename("label"), pred.iloc[:, 0].rename("score")], axis=1, sort=True)
    return frame.reindex(label.index)


def qlib_figures(pred: pd.DataFrame, label: pd.DataFrame, report: pd.DataFrame,
                 analysis: pd.DataFrame) -> list[tuple[str, list | str]]:
    """(Qlib function, its plotly figures or why it could not draw them) for each graph."""
    import warnings

    from qtrack.runtime import captured_output

    analysis_model, analysis_position = import_graphs()
    with captured_output(), warnings.catch_warnings():  # pandas' FutureWarnings
        warnings.simplefilter("ignore")
        return _draw(analysis_model, analysis_position, pred_label(pred, label), report, analysis)


def import_graphs() -> tuple[Any, Any]:
    """Qlib's `analysis_model` and `analysis_position`, and plotly's offline writer: what a page needs imported."""
    import warnings

    from qtrack.runtime import captured_output

    with captured_output(), warnings.catch_warnings():  # gym's notice on import
        warnings.simplefilter("ignore")
        _without_iri_grammars()
        import plotly.offline  # noqa: F401 - write_report's
        from qlib.contrib.report import analysis_model, analysis_position

    return analysis_model, analysis_position


def _without_iri_grammars() -> None:
    """Qlib's report imports plotly's figure factory, which imports nbformat and with it jsonschema. Where the
    package rfc3987-syntax is installed (Jupyter, which pyqlib requires, brings it), jsonschema builds 38 Lark
    grammars at import to check the "iri" string formats: 2.2 s of a run's 2.5 s jsonschema import here. Nothing
    in a qtrack process validates those formats, so jsonschema is imported as if the package were absent."""
    import sys

    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # an import of it raises ImportError, which jsonschema skips


def _draw(analysis_model, analysis_position, joined: pd.DataFrame, report: pd.DataFrame,
          analysis: pd.DataFrame) -> list[tuple[str, list]]:
    drawings = [
        ("analysis_position.report_graph", lambda: analysis_position.report_graph(report, show_notebook=False)),
        ("analysis_position.risk_analysis_graph",
         lambda: analysis_position.risk_analysis_graph(analysis, report, show_notebook=False)),
        *((f"analysis_model.model_performance_graph ({name})",
           lambda name=name: analysis_model.model_performance_graph(joined, graph_names=[name], show_notebook=False))
          for name in ("group_return", "pred_ic", "pred_autocorr")),
        ("analysis_position.score_ic_graph", lambda: analysis_position.score_ic_graph(joined, show_notebook=False)),
    ]
    return [(name, _drawn(draw)) for name, draw in drawings]


def _drawn(draw) -> list | str:
    """Qlib's figures, or why Qlib could not draw them (its graphs refuse some short or sparse records,
    e.g. a monthly IC table with an empty month); one graph failing never fails the run."""
    try:
        return list(draw())
    except Exception as exc:  # noqa: BLE001 - any failure inside Qlib's plotting is reported on the page
        return f"Qlib could not draw this graph for this run: {type(exc).__name__}: {exc}"


def write_report(sections: list[tuple[str, list | str]], title: str, path: Path) -> Path:
    from plotly.offline import get_plotlyjs

    body = []
    for name, figures in sections:
        body.append(f"<h2>{html.escape(name)}</h2>")
        if isinstance(figures, str):
            body.append(f"<p class='failed'>{html.escape(figures)}</p>")
            continue
        body.extend(figure.to_html(full_html=False, include_plotlyjs=False) for figure in figures)
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><script type='text/javascript'>{get_plotlyjs()}</script>"
        "<style>body{font-family:sans-serif;margin:1.5em}h2{margin-top:2em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>",
        encoding="utf-8",
    )
    return path


def draw_report(load, title: str, path: Path) -> Path:
    """The run's page, drawn from its records as `load` (a recorder's `load_object`) reads them: predictions,
    label, the backtest's daily report and its risk analysis."""
    sections = qlib_figures(*(load(name) for name in INPUTS))
    return write_report(sections, title, path)
