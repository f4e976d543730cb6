"""One trial as one train run: sample the search space, derive the trial's config from the sweep's,
fit and evaluate through the shared core, and return the validation objective."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from qtrack import config
from qtrack.config import redact
from qtrack.config.schema import Settings
from qtrack.console import Steps
from qtrack.models import search_space
from qtrack.models.pruning import BoostingPruning
from qtrack.runtime import critical
from qtrack.stages.evaluate import evaluate
from qtrack.stages.optimize.settings import OPTIMIZE_KEYS, REPORTED_TEST_METRICS, SweepSettings
from qtrack.stages.runner import open_run, run_model
from qtrack.tracking import names

RUN_ID_ATTR = "mlflow_run_id"


class Objective:
    def __init__(self, settings: SweepSettings, cfg: Settings, specs: list, base: list[str], data: Any,
                 parent_run_id: Callable[[], str | None]) -> None:
        self.settings, self.cfg, self.specs, self.base, self.data = settings, cfg, specs, base, data
        self.parent_run_id = parent_run_id
        self.run_ids: dict[int, str] = {}  # trial number -> its MLflow run

    def __call__(self, trial: Any) -> float:
        try:
            return self._evaluate(trial)
        except Exception as exc:
            if self.settings.mlflow and trial.number not in self.run_ids:
                self._record_failure(trial, exc)
            raise

    def _record_failure(self, trial: Any, exc: Exception) -> None:
        """A trial that failed before its run opened (sampling, deriving its config) still gets its FAILED
        child run, with the error, as every other failed trial does."""
        try:
            with open_run(self.cfg, f"trial-{trial.number}", self.data.source.fingerprint, self._trial_tags(trial),
                          parent_run_id=self.parent_run_id(), on_start=lambda run_id: self._started(trial, run_id)):
                raise exc
        except type(exc):
            pass

    def _trial_tags(self, trial: Any) -> dict[str, str]:
        return {names.STAGE: names.OPTIMIZE_TRIAL, "optuna.study_name": self.settings.study_name,
                "optuna.trial_number": str(trial.number)}

    def _evaluate(self, trial: Any) -> float:
        params = search_space.suggest(trial, self.specs)
        # Secrets are masked in the study too: the best command asks for them again.
        with critical():
            trial.set_user_attr("train_overrides", redact.argv([*self.base, *search_space.as_overrides(params)]))
        cfg = config.variant(self.cfg, values={f"model.{k}": v for k, v in params.items()}, drop=OPTIMIZE_KEYS)
        pruning = (BoostingPruning(trial, config.to_container(cfg.model), self.settings.maximize)
                   if self.settings.pruner != "none" else None)
        observer = Steps(quiet=True, capture=False)
        if self.settings.mlflow:
            found = run_model(cfg, self.data, observer, run_name=f"trial-{trial.number}", tags=self._trial_tags(trial),
                              parent_run_id=self.parent_run_id(), pruning=pruning,
                              on_start=lambda run_id: self._started(trial, run_id)).metrics
            reported = {name: found.get(name) for name in REPORTED_TEST_METRICS}
        else:
            evaluation = evaluate(cfg, self.data, observer, pruning=pruning, records_on_test=False)
            found = evaluation.all_metrics()
            reported = {name: evaluation.test_metric(name) for name in REPORTED_TEST_METRICS}
        with critical():
            for name, value in reported.items():
                if value is not None and math.isfinite(value):
                    trial.set_user_attr(f"test {name}", float(value))
        value = found.get(self.settings.objective)
        if value is None or not math.isfinite(value):
            raise ValueError(f"the objective {self.settings.objective} is {value} (does the model predict a constant?)")
        return float(value)

    def _started(self, trial: Any, run_id: str) -> None:
        self.run_ids[trial.number] = run_id
        with critical():
            trial.set_user_attr(RUN_ID_ATTR, run_id)
            parent = self.parent_run_id()
            if parent:
                trial.set_user_attr("mlflow_parent_run_id", parent)
