"""The optimize stage: an Optuna study over one model's hyperparameters, every trial a train run.

The dataset is built (or loaded from the feature cache) once per process and shared by every trial,
in threads when `n_jobs` > 1. Each trial is a child run of this invocation's parent run. Trials that
raise are recorded as failed and the sweep goes on; Ctrl-C leaves a study that can be resumed.
"""

from __future__ import annotations

import json
import math
import shlex
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtrack import config, search_space, study, tracking
from qtrack.console import Steps, err, out, summary_table
from qtrack.core import fit_and_evaluate, fit_and_score, one_line_error
from qtrack.errors import QtrackError
from qtrack.pruning import BoostingPruning
from qtrack.stage import stage

STAGE_TAG = "qtrack.stage"
METRICS = ("IC", "ICIR", "Rank IC", "Rank ICIR", "rmse", "mae", "mape", "directional_accuracy")
LOWER_IS_BETTER = ("rmse", "mae", "mape")
REPORTED_TEST_METRICS = ("IC", "ICIR", "Rank IC", "Rank ICIR")
OPTIMIZE_KEYS = ("optimize", "search_space")


class TrialsFailedError(QtrackError):
    """Every trial of this invocation failed. Exit code 1."""

    exit_code = 1


@dataclass
class Settings:
    metric: str
    direction: str
    trials: int
    max_trials: int | None
    timeout: float | None
    study_name: str
    storage: study.StudyStorage
    n_jobs: int
    mlflow: bool
    seed: int
    sampler: str
    startup_trials: int
    pruner: str
    warmup_steps: int

    @property
    def objective(self) -> str:
        return f"valid.{self.metric}"


@dataclass
class TrialOutcome:
    number: int
    state: str  # COMPLETE, PRUNED or FAIL
    value: float | None
    seconds: float
    run_id: str | None = None
    error: str | None = None


@dataclass
class OptimizeResult:
    study_name: str
    storage: str  # masked
    outcomes: list[TrialOutcome]
    counts: dict[str, int]
    best_number: int | None
    best_value: float | None
    best_params: dict
    best_command: str | None
    parent_run_id: str | None
    run_dir: Path
    feature_builds: int = 0


def settings_from(cfg: Any) -> Settings:
    opt = cfg.optimize
    if opt.metric not in METRICS:
        raise QtrackError(f"invalid optimize.metric '{opt.metric}': choose one of {', '.join(METRICS)}")
    direction = opt.direction or ("minimize" if opt.metric in LOWER_IS_BETTER else "maximize")
    checks = (
        (direction in ("maximize", "minimize"), f"optimize.direction must be maximize or minimize, got {direction}"),
        (opt.trials >= 0, "optimize.trials must be 0 or more"),
        (opt.max_trials is None or opt.max_trials >= 1, "optimize.max_trials must be positive or null"),
        (opt.timeout is None or opt.timeout > 0, "optimize.timeout must be positive or null"),
        (opt.n_jobs >= 1, "optimize.n_jobs must be at least 1"),
        (opt.sampler in ("tpe", "random"), f"optimize.sampler must be tpe or random, got {opt.sampler}"),
        (opt.pruner in ("median", "none"), f"optimize.pruner must be median or none, got {opt.pruner}"),
    )
    for ok, message in checks:
        if not ok:
            raise QtrackError(f"invalid {message}")
    return Settings(
        metric=opt.metric, direction=direction, trials=int(opt.trials), max_trials=opt.max_trials,
        timeout=opt.timeout, study_name=opt.study_name or f"{cfg.mlflow.experiment_name}-{cfg.model.name}",
        storage=study.resolve(opt.storage, cfg.mlflow.tracking_uri), n_jobs=int(opt.n_jobs),
        mlflow=bool(opt.mlflow), seed=int(cfg.seed), sampler=opt.sampler, startup_trials=int(opt.startup_trials),
        pruner=opt.pruner, warmup_steps=int(opt.warmup_steps),
    )


def run_optimize(overrides: list[str], quiet: bool = False) -> OptimizeResult:
    with stage("optimize", overrides) as ctx:
        cfg = ctx.cfg
        settings = settings_from(cfg)
        specs = search_space.parse(config.to_container(cfg.search_space), config.to_container(cfg.model))
        base = config.train_overrides(overrides, OPTIMIZE_KEYS)
        steps = Steps(quiet=quiet)
        from qtrack.train import prepare

        data = prepare(cfg, steps)  # the optimize config holds the train config the trials start from
        sweep = Sweep(settings, specs, base, data, cfg, ctx.run_dir)
        result = sweep.run()
    print_result(result, settings)
    return result


class Sweep:
    """This invocation's share of a study: workers that claim trials within the budget and run them."""

    def __init__(self, settings: Settings, specs: list, base: list[str], data: Any, cfg: Any, run_dir: Path):
        self.settings, self.specs, self.base, self.data, self.cfg, self.run_dir = (
            settings, specs, base, data, cfg, run_dir)
        self.outcomes: list[TrialOutcome] = []
        self.running: dict[int, tuple[Any, Any]] = {}  # trial number -> (study, trial)
        self.run_ids: dict[int, str] = {}
        self.claimed_numbers: dict[int, Any] = {}  # trial number -> study, from ask until the trial ends
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.started = 0  # trials this process has begun
        self.worker_errors: list[BaseException] = []
        self.deadline = time.monotonic() + settings.timeout if settings.timeout else None
        self.parent_run_id: str | None = None
        self.client: Any = None

    # -- set-up -------------------------------------------------------------------------------
    def run(self) -> OptimizeResult:
        self.backend = study.open_storage(self.settings.storage)
        identity = study.StudyIdentity(
            model=self.cfg.model.name, metric=self.settings.objective, direction=self.settings.direction,
            fingerprint=self.data.source.fingerprint,
        )
        main_study, notices = study.create_or_load(self.settings.storage, self.backend,
                                                   self.settings.study_name, identity)
        for notice in notices:
            err.print(f"[yellow]![/] {notice}")
        self._announce(main_study)
        if self.settings.mlflow:
            self._open_parent()
        status = "FAILED"
        try:
            self._run_workers()
            result = self._finish(main_study)
            status = "FINISHED"
            return result
        except KeyboardInterrupt:
            status = "KILLED"
            self._abandon_running()
            err.print(f"[yellow]interrupted[/]: the study is saved; run the same command to resume "
                      f"(study '{self.settings.study_name}')")
            raise
        finally:
            if self.client is not None:
                self.client.set_terminated(self.parent_run_id, status)

    def _announce(self, main_study: Any) -> None:
        existing = len(main_study.get_trials(deepcopy=False))
        budget = f", study budget {self.settings.max_trials}" if self.settings.max_trials else ""
        err.print(f"study '{self.settings.study_name}' ({self.settings.storage.masked}): {existing} trials so far; "
                  f"up to {self.settings.trials} more here{budget}; objective {self.settings.direction} "
                  f"{self.settings.metric} on the validation segment", soft_wrap=True)

    def _open_parent(self) -> None:
        from mlflow.tracking import MlflowClient

        from qtrack.core import experiment_id_for

        self.client = MlflowClient(self.cfg.mlflow.tracking_uri)
        experiment_id = experiment_id_for(self.client, self.cfg.mlflow.experiment_name)
        tags = tracking.run_tags(self.data.source.fingerprint, {
            STAGE_TAG: "optimize",
            "qtrack.feature_cache": self.data.cache_status,
            "optuna.study_name": self.settings.study_name,
            "optuna.storage": self.settings.storage.masked,
        })
        run = self.client.create_run(experiment_id, run_name=f"optimize-{self.settings.study_name}", tags=tags)
        self.parent_run_id = run.info.run_id
        logged = config.to_container(self.cfg)
        logged["optimize"]["storage"] = logged["optimize"].get("storage") or self.settings.storage.url
        logged["search_space"] = json.dumps(logged["search_space"], sort_keys=True)
        tracking.log_params(self.client, self.parent_run_id, tracking.flatten(logged))
        self.client.log_text(self.parent_run_id, config.to_yaml(self.cfg), "config.yaml")

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
                self.stop.set()  # run() closes the running trials
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
            outcome.value = self._evaluate(trial)
            outcome.state = "COMPLETE"
        except optuna.TrialPruned as exc:
            outcome.state, outcome.error = "PRUNED", str(exc) or "pruned"
        except KeyboardInterrupt:
            self._abandon(own_study, trial)
            raise
        except Exception as exc:  # noqa: BLE001 - a failing trial is recorded and the sweep goes on
            outcome.error = one_line_error(exc)
        outcome.seconds = time.perf_counter() - start
        outcome.run_id = self.run_ids.get(trial.number)
        self._tell(own_study, trial, outcome)

    def _evaluate(self, trial: Any) -> float:
        params = search_space.suggest(trial, self.specs)
        overrides = [*self.base, *search_space.as_overrides(params)]
        trial.set_user_attr("train_overrides", overrides)
        cfg = config.compose("train", overrides).cfg
        pruning = (BoostingPruning(trial, config.to_container(cfg.model), self.settings.direction == "maximize")
                   if self.settings.pruner != "none" else None)
        steps = Steps(quiet=True, capture=False)
        if self.settings.mlflow:
            found = fit_and_evaluate(
                cfg, self.data, run_name=f"trial-{trial.number}", steps=steps, parent_run_id=self.parent_run_id,
                extra_tags={STAGE_TAG: "optimize-trial", "optuna.study_name": self.settings.study_name,
                            "optuna.trial_number": str(trial.number)},
                pruning=pruning, on_start=lambda run_id: self._started(trial, run_id),
            ).metrics
            reported = {name: found.get(name) for name in REPORTED_TEST_METRICS}
        else:
            found = fit_and_score(cfg, self.data, steps, pruning)
            reported = {name: found.get(f"test.{name}") for name in REPORTED_TEST_METRICS}
        for name, value in reported.items():
            if value is not None and math.isfinite(value):
                trial.set_user_attr(f"test {name}", float(value))
        value = found.get(self.settings.objective)
        if value is None or not math.isfinite(value):
            raise ValueError(f"the objective {self.settings.objective} is {value} (does the model predict a constant?)")
        return float(value)

    def _started(self, trial: Any, run_id: str) -> None:
        self.run_ids[trial.number] = run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        if self.parent_run_id:
            trial.set_user_attr("mlflow_parent_run_id", self.parent_run_id)

    def _tell(self, own_study: Any, trial: Any, outcome: TrialOutcome) -> None:
        import optuna

        state = optuna.trial.TrialState[outcome.state]
        with self.lock:
            if self.running.pop(trial.number, None) is None:
                return  # abandoned by Ctrl-C in the main thread
        try:
            if outcome.error and outcome.state == "FAIL":
                trial.set_user_attr("error", outcome.error)
            own_study.tell(trial, outcome.value if outcome.state == "COMPLETE" else None, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # closed by the Ctrl-C handler
        with self.lock:
            self.claimed_numbers.pop(trial.number, None)
        if outcome.run_id and self.client is not None:
            self.client.set_tag(outcome.run_id, "optuna.state", outcome.state)
        with self.lock:
            self.outcomes.append(outcome)
        self._report(own_study, outcome)

    def _abandon(self, own_study: Any, trial: Any) -> None:
        """A trial stopped by Ctrl-C: failed, marked interrupted (so no budget is spent), run KILLED."""
        import optuna

        with self.lock:
            self.running.pop(trial.number, None)
            self.claimed_numbers.pop(trial.number, None)
        try:
            trial.set_user_attr(study.INTERRUPTED_ATTR, True)
            own_study.tell(trial, state=optuna.trial.TrialState.FAIL)
        except Exception:  # noqa: BLE001 - best effort while shutting down
            pass
        run_id = self.run_ids.get(trial.number)
        if run_id and self.client is not None:
            self.client.set_terminated(run_id, "KILLED")

    def _abandon_running(self) -> None:
        """After Ctrl-C: every trial this process asked for and has not finished is closed as interrupted."""
        import optuna

        with self.lock:
            running = list(self.running.values())
            claimed = dict(self.claimed_numbers)
        for own_study, trial in running:
            self._abandon(own_study, trial)
        for number, own_study in claimed.items():
            found = [t for t in own_study.get_trials(deepcopy=False) if t.number == number]
            if found and found[0].state == optuna.trial.TrialState.RUNNING:  # interrupted right after ask()
                own_study.tell(number, state=optuna.trial.TrialState.FAIL)

    def _report(self, own_study: Any, outcome: TrialOutcome) -> None:
        from rich.markup import escape

        best = _best(own_study)
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no best yet"
        if outcome.state == "COMPLETE":
            result = f"{self.settings.metric} {outcome.value:.4f}"
        elif outcome.state == "PRUNED":
            result = f"[yellow]{escape(outcome.error or 'pruned')}[/]"
        else:
            result = f"[red]failed[/]: {escape(outcome.error or '')}"
        timing = f"[dim]{best_text}  {outcome.seconds:.1f}s[/]"
        err.print(f"trial {outcome.number:>3}  {outcome.state:<8} {result}  {timing}", soft_wrap=True)

    # -- closing ------------------------------------------------------------------------------
    def _finish(self, main_study: Any) -> OptimizeResult:
        trials = main_study.get_trials(deepcopy=False)
        counts = dict(Counter(trial.state.name for trial in trials))
        best = _best(main_study)
        command = shlex.join(["qtrack", "train", *best.user_attrs.get("train_overrides", [])]) if best else None
        result = OptimizeResult(
            study_name=self.settings.study_name, storage=self.settings.storage.masked,
            outcomes=sorted(self.outcomes, key=lambda o: o.number), counts=counts,
            best_number=best.number if best else None, best_value=best.value if best else None,
            best_params=dict(best.params) if best else {}, best_command=command,
            parent_run_id=self.parent_run_id, run_dir=self.run_dir,
            feature_builds=self.data.cache.stats.builds if self.data.cache else 0,
        )
        self._write_outputs(main_study, trials, result)
        if self.client is not None:
            self._log_parent(result, best)
        self._check_failures()
        return result

    def _check_failures(self) -> None:
        if self.outcomes and all(outcome.state == "FAIL" for outcome in self.outcomes):
            first = min(self.outcomes, key=lambda o: o.number)
            raise TrialsFailedError(f"every trial failed; first error (trial {first.number}): {first.error}")

    def _write_outputs(self, main_study: Any, trials: list, result: OptimizeResult) -> None:
        from qtrack import plots

        folder = self.run_dir
        frame = main_study.trials_dataframe()
        frame.to_csv(folder / "trials.csv", index=False)
        if result.best_command:
            (folder / "best_command.txt").write_text(result.best_command + "\n")
        (folder / "optimize.json").write_text(json.dumps(_summary(result), indent=2))
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        plot_dir = folder / "plots"
        plot_dir.mkdir(exist_ok=True)
        if complete:
            plots.optimization_history_plot([t.number for t in complete], [t.value for t in complete],
                                            self.settings.direction == "maximize", self.settings.metric,
                                            plot_dir / "optimization_history.png")
        importances = _importances(main_study, len(complete))
        if importances:
            plots.param_importance_plot(importances, plot_dir / "param_importances.png")

    def _log_parent(self, result: OptimizeResult, best: Any) -> None:
        client, run_id = self.client, self.parent_run_id
        figures = {f"trials_{state.lower()}": float(count) for state, count in result.counts.items()}
        figures.update(trials_this_run=float(len(result.outcomes)), feature_builds=float(result.feature_builds))
        if best is not None:
            figures[f"best_{self.settings.objective}"] = best.value
            figures.update({f"best_test.{name.removeprefix('test ')}": value
                            for name, value in best.user_attrs.items() if name.startswith("test ")})
            tracking.log_params(client, run_id, {f"best.{k}": json.dumps(v) for k, v in best.params.items()})
            client.set_tag(run_id, "qtrack.optimize.best_trial", str(best.number))
            if best.user_attrs.get("mlflow_run_id"):
                client.set_tag(run_id, "qtrack.optimize.best_run_id", best.user_attrs["mlflow_run_id"])
        tracking.log_metrics(client, run_id, figures)
        for name in ("trials.csv", "best_command.txt", "optimize.json"):
            if (self.run_dir / name).is_file():
                client.log_artifact(run_id, str(self.run_dir / name))
        if any((self.run_dir / "plots").iterdir()):
            client.log_artifacts(run_id, str(self.run_dir / "plots"), "plots")


def _best(any_study: Any) -> Any | None:
    try:
        return any_study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _importances(any_study: Any, complete: int) -> dict[str, float]:
    import optuna

    if complete < 3:  # fANOVA needs a few finished trials
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(any_study, evaluator=evaluator)
    except (ValueError, RuntimeError):
        return {}


def _summary(result: OptimizeResult) -> dict:
    return {
        "study_name": result.study_name,
        "storage": result.storage,
        "parent_run_id": result.parent_run_id,
        "counts": result.counts,
        "best": {"trial": result.best_number, "value": result.best_value, "params": result.best_params,
                 "command": result.best_command},
        "this_run": [vars(outcome) for outcome in result.outcomes],
    }


def print_result(result: OptimizeResult, settings: Settings) -> None:
    counts = ", ".join(f"{state.lower()} {count}" for state, count in sorted(result.counts.items()))
    rows = [
        ("study", f"{result.study_name} ({result.storage})"),
        ("trials", f"{len(result.outcomes)} this run; study: {counts}"),
    ]
    if result.best_number is not None:
        rows += [
            (f"best {settings.metric} (valid)", f"{result.best_value:.4f} (trial {result.best_number})"),
            ("best params", ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in result.best_params.items())),
        ]
    if result.parent_run_id:
        rows.append(("parent run", result.parent_run_id))
    rows.append(("run folder", str(result.run_dir)))
    out.print(summary_table("qtrack optimize", rows))
    if result.best_command:
        err.print("[dim]reproduce the best trial:[/]")
        out.print(result.best_command, soft_wrap=True, markup=False, highlight=False)
