"""Types and ranges of every config group. The YAML files under conf/ hold the values; these schemas
say what a value may be. OmegaConf checks the types and rejects unknown keys; `check` checks the ranges,
choices and the rules that join two keys, so a value that makes no sense is refused before any work.

`model` has no dataclass schema: its hyperparameters differ per model. They keep the type of the
model's own default (compose._validate_model) and the ranges in MODEL_RANGES.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import MISSING

from qtrack.config.names import ALIAS, RESERVED_ALIAS, model_name_problem
from qtrack.config.ranges import COST, POSITIVE_SHARE, SYNTHETIC_RANGES, TOP_LEVEL, ranged
from qtrack.config.settings import FrozenMapping, ModelSettings, SettingsGroup
from qtrack.config.synthetic import SyntheticSpec
from qtrack.paths import SAFE_NAME

NAME_HINT = "a name, not a path (letters, digits, '.', '_' and '-')"


@dataclass(frozen=True)
class SplitSchema(SettingsGroup):
    train: float = ranged(**POSITIVE_SHARE)
    valid: float = ranged(**POSITIVE_SHARE)
    test: float = ranged(**POSITIVE_SHARE)


@dataclass(frozen=True)
class SegmentsSchema(SettingsGroup):
    train: Optional[tuple[str, ...]] = None
    valid: Optional[tuple[str, ...]] = None
    test: Optional[tuple[str, ...]] = None


@dataclass(frozen=True)
class DatasetSchema(SettingsGroup):
    # A name under the data root, never a path: letters, digits, '.', '_' and '-', no leading dot.
    name: str = ranged(pattern=SAFE_NAME.pattern, hint=NAME_HINT)
    market: str = ranged(pattern=SAFE_NAME.pattern, hint=NAME_HINT)
    benchmark: Optional[str] = None
    region: str = ranged(choices=("us", "cn"))
    # An existing Qlib data directory, read in place; null reads `name` under qtrack's data root.
    provider_uri: Optional[str] = None
    # The market's daily price limit (0.095 for China A-shares); backtest.limit_threshold follows it.
    limit_threshold: Optional[float] = ranged(None, gt=0.0, lt=1.0)
    segments: SegmentsSchema = field(default_factory=SegmentsSchema)
    split: SplitSchema = field(default_factory=SplitSchema)
    # The first day features are computed from (the handler's start); null: the train segment's start.
    features_from: Optional[str] = None
    cache: bool = MISSING
    synthetic: Optional[SyntheticSpec] = None


@dataclass(frozen=True)
class FeaturesSchema(SettingsGroup):
    name: str = MISSING
    handler: str = MISSING
    module_path: str = MISSING
    # fast: qtrack's compiled engine (qtrack.features), bit-identical to Qlib's; qlib: Qlib's own.
    engine: str = ranged(choices=("fast", "qlib"))
    label: Optional[str] = None
    label_horizon: int = ranged(ge=1)
    infer_processors: tuple[Any, ...] = ()
    learn_processors: tuple[Any, ...] = ()


@dataclass(frozen=True)
class BacktestSchema(SettingsGroup):
    # fast: qtrack's loop over Qlib's own account objects (qtrack.evaluation.fast_backtest); qlib: Qlib's.
    engine: str = ranged(choices=("fast", "qlib"))
    strategy: str = ranged(choices=("TopkDropoutStrategy",))
    topk: int = ranged(ge=1)
    n_drop: int = ranged(ge=0)  # at most topk: checked in check()
    account: float = ranged(gt=0.0)
    deal_price: str = ranged(choices=("close", "open", "vwap", "$close", "$open", "$vwap"))
    open_cost: float = ranged(**COST)
    close_cost: float = ranged(**COST)
    min_cost: float = ranged(ge=0.0)
    limit_threshold: Optional[float] = ranged(None, gt=0.0, lt=1.0)


@dataclass(frozen=True)
class MlflowSchema(SettingsGroup):
    tracking_uri: Optional[str] = None
    experiment_name: Optional[str] = None
    log_model: bool = MISSING
    plots: bool = MISSING
    qlib_report: bool = MISSING


@dataclass(frozen=True)
class OptimizeSchema(SettingsGroup):
    metric: str = MISSING  # checked with the objective's metrics (stages.optimize.settings)
    direction: Optional[str] = ranged(None, choices=("maximize", "minimize"))
    trials: int = ranged(ge=0)
    max_trials: Optional[int] = ranged(None, ge=1)
    timeout: Optional[float] = ranged(None, gt=0.0)
    study_name: Optional[str] = None
    storage: Optional[str] = None
    n_jobs: int = ranged(ge=1)
    mlflow: bool = MISSING
    sampler: str = ranged(choices=("tpe", "random"))
    startup_trials: int = ranged(ge=0)
    pruner: str = ranged(choices=("median", "none"))
    warmup_steps: int = ranged(ge=0)


@dataclass(frozen=True)
class RetrainSchema(SettingsGroup):
    model_name: Optional[str] = None
    alias: str = ranged(pattern=ALIAS.pattern, hint="an alias such as champion")  # not reserved: see check()
    train_days: int = ranged(ge=5)
    valid_days: int = ranged(ge=5)
    holdout_days: int = ranged(ge=5)
    metric: str = ranged(choices=("IC", "ICIR", "Rank IC", "Rank ICIR"))
    min_improvement: float = ranged()
    feature_anchor_days: int = ranged(ge=0)
    summary: Optional[str] = None


@dataclass(frozen=True)
class RollingSchema(SettingsGroup):
    enabled: bool = MISSING
    step: int = ranged(ge=5)
    train_window: str = ranged(pattern=r"expanding|[1-9][0-9]*", hint="expanding or a number of trading days")
    valid_days: int = ranged(ge=5)
    first_test_day: Optional[str] = None
    compare_static: bool = MISSING


@dataclass(frozen=True)
class Settings(SettingsGroup):
    """A stage's whole settings: the train groups, and the parts only some stages have (None elsewhere)."""

    dataset: DatasetSchema
    features: FeaturesSchema
    model: ModelSettings
    backtest: BacktestSchema
    mlflow: MlflowSchema
    seed: int
    run_name: Optional[str]
    kernels: Optional[int]
    rolling: Optional[RollingSchema] = None  # rolling, benchmark
    search_space: Optional[FrozenMapping] = None  # optimize
    optimize: Optional[OptimizeSchema] = None
    retrain: Optional[RetrainSchema] = None
    # benchmark: checked by stages.benchmark.benchmark_settings, with messages that say what to give
    models: Any = None
    seeds: Any = None
    output_dir: Optional[str] = None
    metric: Optional[str] = None
    model_overrides: Optional[FrozenMapping] = None
    # Top-level keys a user added (`+vendor.token=...`) that qtrack does not read: logged with the rest (masked).
    extra: FrozenMapping = field(default_factory=lambda: FrozenMapping({}))

    def _fields(self) -> tuple[str, ...]:
        return tuple(item.name for item in fields(self) if item.name != "extra" and (
            item.name not in STAGE_PARTS or getattr(self, item.name) is not None))

    def _extra(self) -> Mapping[str, Any]:
        return self.extra


STAGE_PARTS = ("rolling", "search_space", "optimize", "retrain", "models", "seeds", "output_dir", "metric",
               "model_overrides")

SCHEMAS = {
    "dataset": DatasetSchema,
    "features": FeaturesSchema,
    "backtest": BacktestSchema,
    "mlflow": MlflowSchema,
    "optimize": OptimizeSchema,
    "retrain": RetrainSchema,
    "rolling": RollingSchema,
}

def check(cfg: Mapping) -> Optional[str]:
    """The first value out of its range, as '<key> <problem>' (such as 'backtest.topk must be at least
    1, got 0'), or None."""
    for group, schema in SCHEMAS.items():
        if group in cfg:
            problem = _check_fields(schema, cfg[group], group)
            if problem:
                return problem
    for key, rule in TOP_LEVEL.items():
        problem = rule.problem(cfg.get(key)) if key in cfg else None
        if problem:
            return f"{key} {problem}"
    return _check_joined(cfg)


def _check_fields(schema: type, values: Mapping, prefix: str) -> Optional[str]:
    for item in fields(schema):
        value = values.get(item.name) if values is not None else None
        rule = item.metadata.get("range")
        problem = rule.problem(value) if rule else None
        if problem:
            return f"{prefix}.{item.name} {problem}"
        nested = item.type if is_dataclass(item.type) else None
        if nested is not None and value is not None:
            problem = _check_fields(nested, value, f"{prefix}.{item.name}")
            if problem:
                return problem
    return None


def _check_joined(cfg: Mapping) -> Optional[str]:
    backtest = cfg.get("backtest")
    if backtest is not None and backtest.n_drop > backtest.topk:
        return f"backtest.n_drop must be at most backtest.topk ({backtest.topk}), got {backtest.n_drop}"
    retrain = cfg.get("retrain")
    if retrain is not None and RESERVED_ALIAS.fullmatch(retrain.alias):
        return f"retrain.alias '{retrain.alias}' is reserved by the MLflow registry (latest, v1, v2, ...)"
    if retrain is not None and retrain.get("model_name") is not None:
        problem = model_name_problem(str(retrain.model_name))
        if problem:
            return f"retrain.model_name: {problem}"
    dataset = cfg.get("dataset")
    if dataset is not None and dataset.get("synthetic") is not None:
        for key, rule in SYNTHETIC_RANGES.items():
            problem = rule.problem(dataset.synthetic.get(key))
            if problem:
                return f"dataset.synthetic.{key} {problem}"
    return _check_fast_label(cfg.get("features"))


def _check_fast_label(features: Optional[Mapping]) -> Optional[str]:
    if features is None or features.get("engine") != "fast" or not features.get("label"):
        return None
    from qtrack.features.expressions import UnsupportedExpression, parse

    try:
        parse(features.label)
    except UnsupportedExpression as exc:
        return f"features.label: the fast engine does not compute {exc}; use features.engine=qlib"
    return None
