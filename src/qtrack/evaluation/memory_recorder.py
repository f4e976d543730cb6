"""A recorder that Qlib's records (SignalRecord, SigAnaRecord, PortAnaRecord) write to and read from in memory.

An evaluation runs Qlib's own records against it and tracks nothing: what they save and the metrics they log
stay here, in the order they came, until `stages.record` writes them to a run. Loads answer as Qlib's MLflow
recorder does: a copy of what was saved, or LoadObjectError for what never was (Qlib's records then look in
their parent's folder).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

IN_MEMORY = "in-memory"  # the experiment and run id Qlib's records print


@dataclass
class MemoryRecorder:
    id: str = IN_MEMORY
    experiment_id: str = IN_MEMORY
    # (artifact folder or None, {name: object}) per save, in order: each is one upload when recorded
    saves: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # as Qlib logged them: NaN included, the last wins

    def save_objects(self, local_path: Any = None, artifact_path: str | None = None, **objects: Any) -> None:
        if local_path is not None:
            raise ValueError("an in-memory recorder saves objects, not local files")
        self.saves.append((artifact_path or None, dict(objects)))

    def objects(self) -> dict[str, Any]:
        """Every saved object by its path in the run (`pred.pkl`, `sig_analysis/ic.pkl`); the last save wins."""
        return {_path(folder, name): value for folder, saved in self.saves for name, value in saved.items()}

    def load_object(self, name: str, unpickler: Any = None) -> Any:
        from qlib.utils.exceptions import LoadObjectError

        found = self.objects()
        if name not in found:
            raise LoadObjectError(f"{name} was not saved in this evaluation")
        return copy.deepcopy(found[name])  # a loaded object is the caller's own, as from disk

    def list_artifacts(self, artifact_path: str | None = None) -> list[str]:
        folder = artifact_path or ""
        return [path for path in self.objects() if path.rpartition("/")[0] == folder]

    def log_metrics(self, step: int | None = None, **metrics: Any) -> None:
        self.metrics.update({name: float(value) for name, value in metrics.items()})


def _path(folder: str | None, name: str) -> str:
    return f"{folder}/{name}" if folder else name
