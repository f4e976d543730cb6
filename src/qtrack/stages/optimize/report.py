"""A sweep's outcome: the line per trial, the files in the run folder, the parent run's record, and
the closing table with the command that reproduces the best trial (secrets masked)."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

from qtrack.config import redact
from qtrack.console import err, out, summary_table
from qtrack.stages.optimize.settings import OptimizeResult, SweepSettings, TrialOutcome
from qtrack.tracking import params as tracking

OUTPUT_FILES = ("trials.csv", "best_command.txt", "optimize.json")


def trial_line(settings: SweepSettings, any_study: Any, outcome: TrialOutcome) -> None:
    from rich.markup import escape

    best = best_trial(any_study)
    best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no best yet"
    if outcome.state == "COMPLETE":
        result = f"{settings.metric} {outcome.value:.4f}"
    elif outcome.state == "PRUNED":
        result = f"[yellow]{escape(outcome.error or 'pruned')}[/]"
    else:
        result = f"[red]failed[/]: {escape(outcome.error or '')}"
    timing = f"[dim]{best_text}  {outcome.seconds:.1f}s[/]"
    err.print(f"trial {outcome.number:>3}  {outcome.state:<8} {result}  {timing}", soft_wrap=True)


def best_trial(any_study: Any) -> Any | None:
    try:
        return any_study.best_trial
    except ValueError:  # no complete trial yet
        return None


def best_command(best: Any | None) -> str | None:
    """`qtrack train ...` for the best trial; secret values are masked and must be supplied again."""
    if best is None:
        return None
    return shlex.join(["qtrack", "train", *redact.argv(best.user_attrs.get("train_overrides", []))])


def result_of(settings: SweepSettings, main_study: Any, outcomes: list[TrialOutcome], parent_run_id: str | None,
              run_dir: Path, feature_builds: int) -> OptimizeResult:
    counts = dict(Counter(trial.state.name for trial in main_study.get_trials(deepcopy=False)))
    best = best_trial(main_study)
    return OptimizeResult(
        study_name=settings.study_name, storage=settings.storage.masked, outcomes=outcomes, counts=counts,
        best_number=best.number if best else None, best_value=best.value if best else None,
        best_params=dict(best.params) if best else {}, best_command=best_command(best),
        parent_run_id=parent_run_id, run_dir=run_dir, feature_builds=feature_builds,
    )


def write_outputs(settings: SweepSettings, main_study: Any, result: OptimizeResult) -> None:
    from qtrack.evaluation import plots

    folder = result.run_dir
    frame = main_study.trials_dataframe()
    frame = frame.apply(lambda column: column.map(_masked_cell) if column.dtype == object else column)
    frame.to_csv(folder / "trials.csv", index=False)
    if result.best_command:
        (folder / "best_command.txt").write_text(result.best_command + "\n")
    complete = [t for t in main_study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    importances = _importances(main_study, len(complete))
    summary = {**_summary(result), "objective": settings.objective, "maximize": settings.maximize,
               "importances": importances}
    (folder / "optimize.json").write_text(json.dumps(summary, indent=2))
    plot_dir = folder / "plots"
    plot_dir.mkdir(exist_ok=True)
    if complete:
        plots.optimization_history_plot([t.number for t in complete], [t.value for t in complete],
                                        settings.maximize, settings.metric, plot_dir / "optimization_history.png")
    if importances:
        plots.param_importance_plot(importances, plot_dir / "param_importances.png")


def _masked_cell(value: Any) -> Any:
    if isinstance(value, list):
        return redact.argv([str(item) for item in value])
    return redact.text(value) if isinstance(value, str) else value


def log_parent(settings: SweepSettings, client: Any, run_id: str, result: OptimizeResult, best: Any | None) -> None:
    figures = {f"trials_{state.lower()}": float(count) for state, count in result.counts.items()}
    figures.update(trials_this_run=float(len(result.outcomes)), feature_builds=float(result.feature_builds))
    if best is not None:
        figures[f"best_{settings.objective}"] = best.value
        figures.update({f"best_test.{name.removeprefix('test ')}": value
                        for name, value in best.user_attrs.items() if name.startswith("test ")})
        tracking.log_params(client, run_id, {f"best.{k}": json.dumps(v) for k, v in best.params.items()})
        client.set_tag(run_id, "qtrack.optimize.best_trial", str(best.number))
        if best.user_attrs.get("mlflow_run_id"):
            client.set_tag(run_id, "qtrack.optimize.best_run_id", best.user_attrs["mlflow_run_id"])
    tracking.log_metrics(client, run_id, figures)
    for name in OUTPUT_FILES:
        if (result.run_dir / name).is_file():
            client.log_artifact(run_id, str(result.run_dir / name))
    if any((result.run_dir / "plots").iterdir()):
        client.log_artifacts(run_id, str(result.run_dir / "plots"), "plots")


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


def print_result(result: OptimizeResult, settings: SweepSettings) -> None:
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
        if redact.MASK in result.best_command:
            err.print(f"[dim]values shown as {redact.MASK} are secrets: supply them again[/]")
