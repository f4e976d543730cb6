"""`qtrack retrain`: train a challenger on the latest data, score it and the champion on the same
most recent holdout, and move the champion alias only when the challenger is better.

Order matters: the challenger is trained, logged, registered and scored before the alias moves, so a
failure at any point leaves the champion as it was. A file lock keeps two retrains of the same model
on one machine apart (exit code 4).
"""

from __future__ import annotations

import json
import math
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qtrack import config, paths
from qtrack.config.schema import Settings
from qtrack.console import Observer, err, out, summary_table
from qtrack.data import segments
from qtrack.errors import QtrackError
from qtrack.evaluation import metrics
from qtrack.paths import atomic_file
from qtrack.stages.context import StageContext
from qtrack.stages.runner import Stage, run_model, run_stage
from qtrack.tracking import registry
from qtrack.tracking.names import DATA_END, higher_is_better, name_filter

DECISION = "qtrack.retrain.decision"

RETRAIN_LAYS_OUT = ("dataset.segments", "dataset.features_from")  # whatever the user gave, retrain sets these


class RetrainLocked(QtrackError):
    """Another retrain of the same model holds the lock on this machine. Exit code 4."""

    exit_code = 4


@dataclass
class RetrainOutcome:
    model: str
    alias: str
    decision: str  # promoted, kept or skipped
    reason: str
    metric: str
    data_end: str
    holdout: list[str] | None = None
    challenger_run_id: str | None = None
    challenger_version: str | None = None
    challenger_score: float | None = None
    champion_version: str | None = None
    champion_score: float | None = None
    summary_path: str | None = None


def retrain(cfg: Settings, ctx: StageContext, observer: Observer) -> RetrainOutcome:
    settings = cfg.retrain
    name = settings.model_name or f"{cfg.dataset.name}-{cfg.model.name}"
    with retrain_lock(cfg.mlflow.tracking_uri, name):
        outcome = _retrain(cfg, name, ctx.run_dir, observer)
    path = Path(settings.summary).expanduser().resolve() if settings.summary else ctx.run_dir / "retrain.json"
    outcome.summary_path = str(path)
    _write_json(path, asdict(outcome))
    return outcome


def run_retrain(overrides: list[str], quiet: bool = False) -> RetrainOutcome:
    return run_stage(Stage(config="retrain", work=retrain, summary=print_outcome), overrides, quiet)


def lock_path(tracking_uri: str, name: str) -> Path:
    safe = re.sub(r"[^\w.-]", "_", name)
    return paths.tracking_folder(tracking_uri) / "locks" / f"retrain-{safe}.lock"


@contextmanager
def retrain_lock(tracking_uri: str, name: str):
    from filelock import FileLock, Timeout

    path = lock_path(tracking_uri, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(path), timeout=0):
            yield
    except Timeout:
        raise RetrainLocked(f"another retrain of model '{name}' is running on this machine (lock {path})") from None


def _retrain(cfg: Settings, name: str, run_dir: Path, observer: Observer) -> RetrainOutcome:
    from qtrack.data.dataset import ensure_data, market_calendar
    from qtrack.data.prepare import prepare

    settings = cfg.retrain
    source = ensure_data(cfg.dataset)
    calendar = market_calendar(source, cfg.dataset.market)
    latest = calendar[-1].strftime("%Y-%m-%d")
    client = registry.client_for(cfg.mlflow.tracking_uri)
    champion = registry.champion(client, name, settings.alias)
    outcome = RetrainOutcome(model=name, alias=settings.alias, decision="skipped", reason="", metric=settings.metric,
                             data_end=latest, champion_version=str(champion.version) if champion else None)
    evaluated = last_evaluated(client, name, champion)
    if evaluated is not None and evaluated.tags.get(DATA_END, "") >= latest:
        role = "the champion" if champion is not None and evaluated.version == champion.version else "kept"
        outcome.reason = (f"no new data since version {evaluated.version} ({role}) was trained "
                          f"(the data ends {latest})")
        return outcome
    champion_pipeline, unusable = _champion_pipeline(client, champion)  # before training: it may be gone
    spans = segments.rolling(calendar, int(settings.train_days), int(settings.valid_days),
                             int(settings.holdout_days), int(cfg.features.label_horizon))
    laid_out = {f"dataset.segments.{k}": [a, b] for k, (a, b) in spans.as_dict().items()}
    laid_out["dataset.features_from"] = feature_anchor(calendar, spans, int(settings.feature_anchor_days))
    train_cfg = config.variant(cfg, values=laid_out, allowed=RETRAIN_LAYS_OUT, drop=("retrain",))
    data = prepare(train_cfg, observer)
    result = run_model(train_cfg, data, observer, run_name=f"retrain-{name}-{latest}", output_dir=run_dir,
                       tags={"qtrack.stage": "retrain", "qtrack.retrain.model": name}, with_data_times=True)
    outcome.holdout = list(spans.as_dict()["test"])
    outcome.challenger_run_id = result.run_id
    outcome.challenger_score = _finite_or_none(result.metrics.get(settings.metric))
    if champion_pipeline is not None:
        with observer.step("champion", f"scoring {name} version {champion.version} on the same holdout"):
            outcome.champion_score = _finite_or_none(_holdout_score(champion_pipeline, data, settings.metric))
    _decide(outcome, float(settings.min_improvement), unusable)
    _commit(client, outcome, result.run_id)
    return outcome


def _champion_pipeline(client: Any, champion: Any) -> tuple[Any, str]:
    """The champion's model and feature pipeline, or why it can't be scored (its run purged, its artifacts
    gone): then the challenger is promoted for that reason instead of failing after every training."""
    if champion is None:
        return None, ""
    try:
        return registry.load_pipeline(client, champion), ""
    except QtrackError as exc:
        return None, str(exc)


def _commit(client: Any, outcome: RetrainOutcome, run_id: str) -> None:
    """Register the challenger, then move the alias, then write the decision, in that order: an interrupt at
    any point leaves either the old champion with no version claiming 'promoted', or the new champion. The
    skip check (last_evaluated) counts only decided versions and the alias's own."""
    version = register_challenger(client, outcome, run_id)
    outcome.challenger_version = str(version.version)
    if outcome.decision == "promoted":
        move_alias(client, outcome.model, outcome.alias, version.version)
    write_decision(client, outcome, run_id, version.version)


def register_challenger(client: Any, outcome: RetrainOutcome, run_id: str) -> Any:
    undecided = {k: v for k, v in _decision_tags(outcome).items() if k != DECISION}
    return registry.register(client, run_id, outcome.model, extra_tags=undecided)


def move_alias(client: Any, name: str, alias: str, version: Any) -> None:
    client.set_registered_model_alias(name, alias, version)


def write_decision(client: Any, outcome: RetrainOutcome, run_id: str, version: Any) -> None:
    client.set_model_version_tag(outcome.model, str(version), DECISION, outcome.decision)
    for key, value in _decision_tags(outcome).items():
        client.set_tag(run_id, key, value)


def feature_anchor(calendar: Any, spans: segments.Segments, every: int) -> str | None:
    """The train window's start rounded down to a multiple of `every` trading days (None when 0). The
    window moves a day at a time; the features' start, and with it the cached raw features, only every
    `every` days, so the retrains in between extend them."""
    if every <= 0:
        return None
    start = int(calendar.get_loc(spans.as_dict()["train"][0]))
    return calendar[start // every * every].strftime("%Y-%m-%d")


def last_evaluated(client: Any, name: str, champion: Any) -> Any:
    """The version trained on the latest data among the champion and every challenger a retrain kept: a
    retrain is due only when the data goes beyond its data end. (Comparing with the champion alone retrained
    forever once a challenger had been kept.) A version that says 'promoted' counts only while the alias
    points at it: one whose promotion was cut short, or that was rolled back, is not the champion."""
    versions = [v for v in client.search_model_versions(name_filter(name)) if v.tags.get(DECISION) == "kept"]
    if champion is not None:
        versions.append(champion)
    return max(versions, key=lambda v: (v.tags.get(DATA_END, ""), int(v.version)), default=None)


def _holdout_score(pipeline: Any, data: Any, metric: str) -> float:
    """The champion's score on the challenger's holdout, through the champion's own feature pipeline."""
    from qlib.data.dataset.handler import DataHandlerLP

    from qtrack.data.qlib_dataset import frames

    start, end = data.segments.as_dict()["test"]
    pred = registry.score(pipeline, start, end)
    label = frames(data.dataset, "test", col_set="label", data_key=DataHandlerLP.DK_R).iloc[:, 0]
    return metrics.signal_metrics(pred, label)[metric]


def _decide(outcome: RetrainOutcome, min_improvement: float, champion_unusable: str = "") -> None:
    """Promote when the challenger beats the champion by at least `min_improvement` in the metric's own
    direction (higher IC is better; lower rmse is better); keep it otherwise, or when its score is undefined.
    A champion that can't be loaded at all (`champion_unusable` says why) can't stay the champion."""
    challenger, champion = outcome.challenger_score, outcome.champion_score
    metric = outcome.metric
    if outcome.champion_version is None:
        outcome.decision, outcome.reason = "promoted", "there was no champion"
    elif champion_unusable:
        outcome.decision = "promoted"
        outcome.reason = f"the champion (version {outcome.champion_version}) can't be scored: {champion_unusable}"
    elif challenger is None:
        outcome.decision, outcome.reason = "kept", f"the challenger's {metric} is undefined"
    elif champion is None:
        outcome.decision, outcome.reason = "promoted", f"the champion's {metric} is undefined on the holdout"
    elif improvement(metric, challenger, champion) >= min_improvement:
        outcome.decision = "promoted"
        outcome.reason = f"{metric} {challenger:.4f} beats {champion:.4f} by at least {min_improvement}"
    else:
        outcome.decision = "kept"
        outcome.reason = f"{metric} {challenger:.4f} does not beat {champion:.4f} by {min_improvement}"


def improvement(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is, positive when better, in the metric's direction."""
    return challenger - champion if higher_is_better(metric) else champion - challenger


def _decision_tags(outcome: RetrainOutcome) -> dict[str, str]:
    tags = {DECISION: outcome.decision, "qtrack.retrain.reason": outcome.reason,
            "qtrack.retrain.metric": outcome.metric, "qtrack.retrain.holdout": ",".join(outcome.holdout or [])}
    for role in ("challenger", "champion"):
        value = getattr(outcome, f"{role}_score")
        tags[f"qtrack.retrain.{role}_score"] = "" if value is None else f"{value:.10g}"
    if outcome.champion_version:
        tags["qtrack.retrain.champion_version"] = outcome.champion_version
    return tags


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _write_json(path: Path, payload: dict) -> None:
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2))


def print_outcome(outcome: RetrainOutcome, ctx: StageContext) -> None:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    rows = [("model", f"{outcome.model} (alias {outcome.alias})"), ("decision", outcome.decision),
            ("why", outcome.reason), ("data ends", outcome.data_end)]
    if outcome.holdout:
        rows += [("holdout", " to ".join(outcome.holdout)),
                 (f"challenger {outcome.metric}", f"{fmt(outcome.challenger_score)} (version "
                                                  f"{outcome.challenger_version}, run {outcome.challenger_run_id})"),
                 (f"champion {outcome.metric}", f"{fmt(outcome.champion_score)} (version {outcome.champion_version})"
                  if outcome.champion_version else "none")]
    rows.append(("summary", str(outcome.summary_path)))
    out.print(summary_table("qtrack retrain", rows))
    if outcome.decision == "skipped":
        err.print("[dim]nothing trained[/]")
