"""The run's Qlib recorder answers loads from what the run saved, without asking the store: Qlib's records look
for each input under their own folder first (sig_analysis/pred.pkl, then pred.pkl), and against a tracking server
with basic auth each miss cost three requests, about a second."""

from __future__ import annotations

import pandas as pd
import pytest
from qlib.utils.exceptions import LoadObjectError
from qlib.workflow.record_temp import SigAnaRecord

from qtrack.tracking.recorder import CachingRecorder, recorder_for
from qtrack.tracking.run_context import run_context


class CountingDownloads:
    """The real client, with its artifact downloads counted."""

    def __init__(self, client) -> None:
        self.client, self.downloads = client, 0

    def download_artifacts(self, *args, **kwargs):
        self.downloads += 1
        return self.client.download_artifacts(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def scores() -> pd.DataFrame:
    index = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02", "2020-01-03"]), ["A", "B"]],
                                       names=["datetime", "instrument"])
    return pd.DataFrame({"score": [0.1, 0.2, 0.3, 0.4]}, index=index)


def test_a_record_finds_its_parents_prediction_without_a_download(store):
    with run_context(store, "recorder", "r", {}) as active:
        recorder = recorder_for(active)
        recorder.save_objects(**{"pred.pkl": scores()})
        recorder.client = CountingDownloads(recorder.client)
        with pytest.raises(LoadObjectError):
            recorder.load_object("sig_analysis/pred.pkl")
        found = SigAnaRecord(recorder).load("pred.pkl")  # Qlib's own lookup: its folder, then its parent's
        pd.testing.assert_frame_equal(found, scores())
        found.iloc[0, 0] = 9.0  # a loaded object is the caller's own
        pd.testing.assert_frame_equal(recorder.load_object("pred.pkl"), scores())
        again = recorder_for(active)  # a second recorder of the same run knows what the first saved
        pd.testing.assert_frame_equal(again.load_object("pred.pkl"), scores())
        assert recorder.client.downloads == 0


def test_a_recorder_of_a_run_it_did_not_create_asks_the_store(store):
    with run_context(store, "recorder", "r", {}) as active:
        recorder_for(active).save_objects(**{"pred.pkl": scores()})
    stranger = CachingRecorder(active.experiment_id, store, mlflow_run=active.run)
    stranger.client = CountingDownloads(stranger.client)
    pd.testing.assert_frame_equal(stranger.load_object("pred.pkl"), scores())
    with pytest.raises(LoadObjectError):
        stranger.load_object("sig_analysis/pred.pkl")
    assert stranger.client.downloads == 2
