"""This invocation's share of a study: workers that claim trials within the budget and run them.

The dataset is shared by every trial, in threads when `n_jobs` > 1. Trials that raise are recorded as
failed and the sweep goes on; Ctrl-C or SIGTERM closes every trial this process claimed (FAIL, marked
interrupted so it uses no budget) and leaves a study that can be resumed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from qtrack.console import err
from qtrack.runtime import critical, raise_if_interrupted
from qtrack.stages.optimize import report, study
from qtrack.stages.optimize.objective import Objective
from qtrack.stages.optimize.settings import SweepSettings, TrialOutcome
from qtrack.tracking.runs import one_line_error


class Sweep:
    def __init__(self, settings: SweepSettings, backend: Any, objective: Objective, client: Any | None = None) -> None:
        self.settings, self.backend, self.objective = settings, backend, objective
        self.client = client  # the tracking client of the trials' runs (None with --no-mlflow)
        self.outcomes: list[TrialOutcome] = []
        self.running: dict[int, tuple[Any, Any]] = {}  # trial number -> (study, trial)
        self.claimed_numbers: dict[int, Any] = {}  # trial number -> study, from ask until the trial ends
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.started = 0  # trials this process has begun
        self.worker_errors: list[BaseException] = []
        self.deadline = time.monotonic() + settings.timeout if settings.timeout else None

    def run(self) -> list[TrialOutcome]:
        """Run this invocation's trials; on Ctrl-C or SIGTERM close the claimed ones, then re-raise."""
        try:
            self._run_workers()
        except KeyboardInterrupt:
            self._abandon_running()
            err.print(f"[yellow]interrupted[/]: the study is saved; run the same command to resume "
                      f"(study '{self.settings.study_name}')")
            raise
        return sorted(self.outcomes, key=lambda o: o.number)

    # -- workers ------------------------------------------------------------------------------
    def _run_workers(self) -> None:
        from qtrack.runtime import captured_output

        with captured_output():
            if self.settings.n_jobs == 1:
                self._worker()
                return
            threads = [threading.Thread(target=self._guarded_worker, daemon=True, name=f"trial-worker-{i}")
                       for i in range(self.settings.n_jobs)]
            for thread in threads:
                thread.start()
            try:
                while any(thread.is_alive() for thread in threads):
                    for thread in threads:
                        thread.join(timeout=0.2)
            except KeyboardInterrupt:
                self.stop.set()
                raise
        if self.worker_errors:
            raise self.worker_errors[0]

    def _guarded_worker(self) -> None:
        try:
            self._worker()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.worker_errors.append(exc)
            self.stop.set()

    def _worker(self) -> None:
        import optuna

        own_study = optuna.load_study(study_name=self.settings.study_name, storage=self.backend,
                                      pruner=self._pruner())
        while self._claim():
            with critical():
                trial = study.ask_within_budget(self.settings.storage, own_study, self.settings.max_trials,
                                                self._sampler, lambda number: self._claim_number(number, own_study))
            if trial is None:
                self.stop.set()
                return
            self._run_trial(own_study, trial)

    def _claim_number(self, number: int, own_study: Any) -> None:
        with self.lock:
            self.claimed_numbers[number] = own_study

    def _claim(self) -> bool:
        raise_if_interrupted()
        with self.lock:
            if self.stop.is_set() or self.started >= self.settings.trials:
                return False
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return False
            self.started += 1
            return True

    def _sampler(self, number: int) -> Any:
        import optuna

        seed = self.settings.seed + number
        if self.settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.settings.startup_trials)

    def _pruner(self) -> Any:
        import optuna

        if self.settings.pruner == "none":
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=self.settings.startup_trials,
                                           n_warmup_steps=self.settings.warmup_steps)

    # -- one trial ----------------------------------------------------------------------------
    def _run_trial(self, own_study: Any, trial: Any) -> None:
        import optuna

        start = time.perf_counter()
        with self.lock:
            self.running[trial.number] = (own_study, trial)
        outcome = TrialOutcome(number=trial.number, state="FAIL", value=None, seconds=0.0)
        try:
            outcome.value = self.objective(trial)
            outcome.state = "COMPLETE"
        except optuna.TrialPruned as exc:
            outcome.state, outcome.error = "PRUNED", str(exc) or "pruned"
        except KeyboardInterrupt:
            self._abandon(own_study, trial)
            raise
        except Exception as exc:  # noqa: BLE001 - a failing trial is recorded and the sweep goes on
            outcome.error = one_line_error(exc)
        outcome.seconds = time.perf_counter() - start
        outcome.run_id = self.objective.run_ids.get(trial.number)
        self._tell(own_study, trial, outcome)

    def _tell(self, own_study: Any, trial: Any, outcome: TrialOutcome) -> None:
        import optuna

        state = optuna.trial.TrialState[outcome.state]
        with self.lock:
            if self.running.pop(trial.number, None) is None:
                return  # abandoned by Ctrl-C in the main thread
        try:
            with critical():
                if outcome.error and outcome.state == "FAIL":
                    trial.set_user_attr("error", outcome.error)
                own_study.tell(trial, outcome.value if outcome.state == "COMPLETE" else None, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # closed by the Ctrl-C handler
        with self.lock:
            self.claimed_numbers.pop(trial.number, None)
            self.outcomes.append(outcome)
        if outcome.run_id and self.client is not None:
            self.client.set_tag(outcome.run_id, "optuna.state", outcome.state)
        report.trial_line(self.settings, own_study, outcome)

    def _abandon(self, own_study: Any, trial: Any) -> None:
        """A trial stopped by Ctrl-C or SIGTERM: failed, marked interrupted (so no budget is spent), run KILLED."""
        import optuna

        with self.lock:
            self.running.pop(trial.number, None)
            self.claimed_numbers.pop(trial.number, None)
        try:
            with critical():
                trial.set_user_attr(study.INTERRUPTED_ATTR, True)
                own_study.tell(trial, state=optuna.trial.TrialState.FAIL)
        except Exception:  # noqa: BLE001 - best effort while shutting down
            pass
        run_id = self.objective.run_ids.get(trial.number)
        if run_id and self.client is not None:
            self.client.set_tag(run_id, "optuna.state", "FAIL")
            self.client.set_terminated(run_id, "KILLED")

    def _abandon_running(self) -> None:
        """Every trial this process asked for and has not finished is closed as interrupted."""
        with self.lock:
            running = list(self.running.values())
            claimed = dict(self.claimed_numbers)
        for own_study, trial in running:
            self._abandon(own_study, trial)
        for number, own_study in claimed.items():
            study.close_if_running(self.backend, own_study, number)  # interrupted right after ask()
