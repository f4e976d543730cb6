"""Qlib's MLflow recorder, with fewer round trips to the tracking store.

Qlib's records save an object (pred.pkl, label.pkl) and then load it back through the artifact store,
look for each input under their own folder before their parent's (sig_analysis/pred.pkl, then pred.pkl),
and log metrics one request each. Against a tracking server every request costs (basic auth hashes
the password on each one). This recorder keeps what was saved in the run in memory and hands back copies,
answers a load of anything else as Qlib's store does when the object is absent, and logs each call's
metrics in one batch. That holds because the run is one this process created (tracking.run_context):
every Qlib object in it was saved through a recorder of that run. What is stored in MLflow is unchanged.
"""

from __future__ import annotations

import copy
import pickle
import time
from typing import Any

from qlib.utils.exceptions import LoadObjectError
from qlib.workflow.recorder import MLflowRecorder

from qtrack.tracking.ledger import MetricLedger
from qtrack.tracking.runs import GuardedClient


def recorder_for(active: Any) -> CachingRecorder:
    """The recorder of an open run (tracking.runs.ActiveRun), sharing its client's metric ledger."""
    return CachingRecorder(active.experiment_id, active.tracking_uri, mlflow_run=active.run,
                           ledger=active.client.ledger, saved=active.objects)


class CachingRecorder(MLflowRecorder):
    def __init__(self, experiment_id: str, uri: str, mlflow_run: Any, ledger: MetricLedger | None = None,
                 saved: dict[str, Any] | None = None) -> None:
        super().__init__(experiment_id, uri, mlflow_run=mlflow_run)
        self.client = GuardedClient(self.client, ledger)  # Qlib's records write through it
        # Shared by every recorder of the run; None: a run this process did not create, so ask the store.
        self._saved: dict[str, Any] = {} if saved is None else saved
        self._complete = saved is not None

    def save_objects(self, local_path: Any = None, artifact_path: str | None = None, **kwargs: Any) -> None:
        super().save_objects(local_path=local_path, artifact_path=artifact_path, **kwargs)
        for name, value in kwargs.items():
            self._saved[f"{artifact_path}/{name}" if artifact_path else name] = value

    def load_object(self, name: str, unpickler: Any = pickle.Unpickler) -> Any:
        if name in self._saved:
            return copy.deepcopy(self._saved[name])  # a loaded object is the caller's own, as from disk
        if self._complete:
            raise LoadObjectError(f"{name} was not saved in run {self.id}")  # what Qlib's store would say
        return super().load_object(name, unpickler=unpickler)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step or 0) for name, value in kwargs.items()]
        if metrics:
            self.client.log_batch(self.id, metrics=metrics, synchronous=True)
