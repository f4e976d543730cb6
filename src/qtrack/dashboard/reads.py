"""The sources' reads, cached for a short while so a rerun of the page (every click) does not hit the
store again; the "Refresh" button clears them."""

from __future__ import annotations

import streamlit as st

from qtrack.dashboard import sources

TTL = 30  # seconds: live enough for a running sweep, cheap for an experiment of 1,000 runs

experiments = st.cache_data(ttl=TTL, show_spinner=False)(sources.experiments)
runs = st.cache_data(ttl=TTL, show_spinner="reading runs")(sources.runs)
run_details = st.cache_data(ttl=TTL, show_spinner=False)(sources.run_details)
training_curves = st.cache_data(ttl=5, show_spinner=False)(sources.training_curves)  # a fit's epochs arrive live
artifact_bytes = st.cache_data(ttl=TTL, show_spinner=False, max_entries=64)(sources.artifact_bytes)
artifact_object = st.cache_data(ttl=TTL, show_spinner=False, max_entries=64)(sources.artifact_object)
parent_runs = st.cache_data(ttl=TTL, show_spinner=False)(sources.parent_runs)
registry = st.cache_data(ttl=TTL, show_spinner=False)(sources.registry)
json_results = st.cache_data(ttl=TTL, show_spinner=False)(sources.json_results)


def clear() -> None:
    st.cache_data.clear()
