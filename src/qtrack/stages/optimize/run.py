"""`qtrack optimize`: compose once, prepare the data once, open the study and the parent run, sweep."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from qtrack import config
from qtrack.config.schema import Settings
from qtrack.console import Observer, err
from qtrack.data.dataset import ensure_data
from qtrack.data.prepare import prepare
from qtrack.models import search_space
from qtrack.stages.context import StageContext
from qtrack.stages.optimize import report, study
from qtrack.stages.optimize.objective import Objective
from qtrack.stages.optimize.settings import (
    OPTIMIZE_KEYS,
    OptimizeResult,
    SweepSettings,
    TrialsFailedError,
    settings_from,
)
from qtrack.stages.optimize.sweep import Sweep
from qtrack.stages.runner import Stage, open_run, run_stage
from qtrack.tracking import names
from qtrack.tracking import params as tracking


def run_optimize(overrides: list[str], quiet: bool = False) -> OptimizeResult:
    # The user's train overrides: the best trial's command repeats them.
    train_overrides = config.train_overrides(overrides, OPTIMIZE_KEYS)
    stage = Stage(config="optimize", check=_check, summary=_print_result,
                  work=lambda cfg, ctx, observer: _optimize(cfg, ctx, observer, train_overrides))
    return run_stage(stage, overrides, quiet)


def _optimize(cfg: Settings, ctx: StageContext, observer: Observer, train_overrides: list[str]) -> OptimizeResult:
    settings, specs = ctx.checked  # _check(cfg), before any work
    for notice in settings.notices():
        err.print(f"[yellow]![/] {notice}")
    # The storage, the study and its space are checked before the data is prepared: a dead server or an
    # incompatible space fails in seconds, not after the features are built.
    backend = study.open_storage(settings.storage)
    identity = study.StudyIdentity(model=cfg.model.name, metric=settings.objective, direction=settings.direction,
                                   fingerprint=ensure_data(cfg.dataset).fingerprint)
    main_study, notices = study.create_or_load(settings.storage, backend, settings.study_name, identity)
    study.check_space(main_study, specs, settings.study_name)
    for notice in notices:
        err.print(f"[yellow]![/] {notice}")
    data = prepare(cfg, observer)  # the optimize settings hold the train settings trials start from
    _announce(settings, main_study)
    with _parent_run(settings, cfg, data) as parent:
        for notice in study.fail_dead_trials(settings.storage, backend, main_study, parent.client if parent else None):
            err.print(f"[yellow]![/] {notice}")
        objective = Objective(settings, cfg, specs, train_overrides, data, lambda: parent.run_id if parent else None)
        outcomes = Sweep(settings, backend, objective, parent.client if parent else None).run()
        result = report.result_of(settings, main_study, outcomes, parent.run_id if parent else None, ctx.run_dir,
                                  data.cache.stats.builds if data.cache else 0)
        report.write_outputs(settings, main_study, result)
        if parent:
            report.log_parent(settings, parent.client, parent.run_id, result, report.best_trial(main_study))
        _check_failures(outcomes)
    return result


def _print_result(result: OptimizeResult, ctx: StageContext) -> None:
    settings, _ = ctx.checked
    report.print_result(result, settings)


def _check(cfg: Settings) -> tuple[SweepSettings, list]:
    """The sweep's settings and search space, checked before any work."""
    return settings_from(cfg), search_space.parse(config.to_container(cfg.search_space), config.to_container(cfg.model))


def _announce(settings: SweepSettings, main_study: Any) -> None:
    existing = len(main_study.get_trials(deepcopy=False))
    budget = f", study budget {settings.max_trials}" if settings.max_trials else ""
    err.print(f"study '{settings.study_name}' ({settings.storage.masked}): {existing} trials so far; "
              f"up to {settings.trials} more here{budget}; objective {settings.direction} "
              f"{settings.metric} on the validation segment", soft_wrap=True)


@contextlib.contextmanager
def _parent_run(settings: SweepSettings, cfg: Settings, data: Any):
    """The sweep's parent run (None with --no-mlflow); trials are its children."""
    if not settings.mlflow:
        yield None
        return
    tags = {names.STAGE: names.OPTIMIZE, names.FEATURE_CACHE: data.cache_status,
            "optuna.study_name": settings.study_name, "optuna.storage": settings.storage.masked}
    with open_run(cfg, f"optimize-{settings.study_name}", data.source.fingerprint, tags) as parent:
        logged = config.to_container(cfg)
        logged["optimize"]["storage"] = logged["optimize"].get("storage") or settings.storage.url
        logged["search_space"] = json.dumps(logged["search_space"], sort_keys=True)
        tracking.log_params(parent.client, parent.run_id, tracking.flatten(logged))
        parent.client.log_text(parent.run_id, config.to_yaml(cfg), "config.yaml")
        yield parent


def _check_failures(outcomes: list) -> None:
    if outcomes and all(outcome.state == "FAIL" for outcome in outcomes):
        first = min(outcomes, key=lambda o: o.number)
        raise TrialsFailedError(f"every trial failed; first error (trial {first.number}): {first.error}")
