"""What a sweep was asked to do, checked before any work, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qtrack.config.schema import Settings
from qtrack.errors import QtrackError
from qtrack.stages.optimize import study
from qtrack.tracking.names import LOWER_IS_BETTER, REGRESSION_METRICS, SIGNAL_METRICS

METRICS = (*SIGNAL_METRICS, *REGRESSION_METRICS)
REPORTED_TEST_METRICS = SIGNAL_METRICS
OPTIMIZE_KEYS = ("optimize", "search_space")


class TrialsFailedError(QtrackError):
    """Every trial of this invocation failed. Exit code 1."""

    exit_code = 1


@dataclass
class SweepSettings:
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

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def notices(self) -> list[str]:
        """A direction against the metric's own sense is allowed (a study may look for the worst) but said."""
        natural = "minimize" if self.metric in LOWER_IS_BETTER else "maximize"
        if self.direction == natural:
            return []
        sense = "lower" if natural == "minimize" else "higher"
        return [f"optimize.direction={self.direction} looks for the worst {self.metric} ({sense} is better): "
                f"leave optimize.direction unset for the best"]


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


def settings_from(cfg: Settings) -> SweepSettings:
    """The sweep's settings; ranges and choices are checked by the optimize schema when composing."""
    opt = cfg.optimize
    if opt.metric not in METRICS:
        raise QtrackError(f"invalid optimize.metric '{opt.metric}': choose one of {', '.join(METRICS)}")
    direction = opt.direction or ("minimize" if opt.metric in LOWER_IS_BETTER else "maximize")
    return SweepSettings(
        metric=opt.metric, direction=direction, trials=int(opt.trials), max_trials=opt.max_trials,
        timeout=opt.timeout, study_name=opt.study_name or f"{cfg.mlflow.experiment_name}-{cfg.model.name}",
        storage=study.resolve(opt.storage, cfg.mlflow.tracking_uri), n_jobs=int(opt.n_jobs),
        mlflow=bool(opt.mlflow), seed=int(cfg.seed), sampler=opt.sampler, startup_trials=int(opt.startup_trials),
        pruner=opt.pruner, warmup_steps=int(opt.warmup_steps),
    )
