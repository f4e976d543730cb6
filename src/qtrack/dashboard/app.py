"""The Streamlit script `qtrack dashboard` serves: pick a source and an experiment, then a view."""

from __future__ import annotations

import streamlit as st

from qtrack.dashboard import reads, sources, views

LIVE, FILES = "MLflow (Live)", "JSON results"
VIEWS = ("Runs", "Run", "Compare", "Benchmark ranking", "Sweep", "Registry")


def main() -> None:
    st.set_page_config(page_title="qtrack dashboard", layout="wide")
    settings = sources.settings()
    st.sidebar.title("qtrack")
    source = st.sidebar.radio("Data source", (LIVE, FILES), key="source")
    if st.sidebar.button("Refresh"):
        reads.clear()
    if source == FILES:
        st.title("Benchmark results")
        views.json_view(settings.results_dir)
        return
    try:
        experiments = reads.experiments(settings.tracking_uri)
    except sources.Unreachable as exc:
        st.warning(f"MLflow can't be reached, so the JSON results are shown. {exc}")
        st.title("Benchmark results")
        views.json_view(settings.results_dir)
        return
    live(settings, experiments)


def live(settings: sources.Settings, experiments: list[str]) -> None:
    if not experiments:
        st.info("The tracking store holds no experiments yet: run `qtrack train` (or `make train`) to make one.")
        return
    if settings.experiment and settings.experiment not in experiments:
        st.warning(f"Experiment '{settings.experiment}' (MLFLOW_EXPERIMENT_NAME) is not in the store; pick one "
                   "in the sidebar.")
    index = experiments.index(settings.experiment) if settings.experiment in experiments else 0
    experiment = st.sidebar.selectbox("Experiment", experiments, index=index, key="experiment")
    view = st.sidebar.radio("View", VIEWS, key="view")
    limit = int(st.sidebar.number_input("Newest runs to read", 50, 50_000, 1000, step=500, key="limit"))
    st.title(f"{experiment} · {view}")
    if view == "Runs":
        views.runs_view(settings.tracking_uri, experiment, limit)
    elif view == "Run":
        views.run_view(settings.tracking_uri, experiment, limit)
    elif view == "Compare":
        views.compare_view(settings.tracking_uri, experiment, limit)
    elif view == "Benchmark ranking":
        views.benchmark_view(settings.tracking_uri, experiment)
    elif view == "Sweep":
        views.sweep_view(settings.tracking_uri, experiment)
    else:
        views.registry_view(settings.tracking_uri)


main()
