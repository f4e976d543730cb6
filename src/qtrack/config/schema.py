"""Types and ranges of every config group. The YAML files under conf/ hold the values; these schemas
say what a value may be. OmegaConf checks the types and rejects unknown keys; `check` checks the ranges,
choices and the rules that join two keys, so a value that makes no sense is refused before any work.

`model` has no dataclass schema: its hyperparameters differ per model. They keep the type of the
model's own default (compose._validate_model) and the ranges in MODEL_RANGES.
"""

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import MISSING

from qtrack.config.names import ALIAS, RESERVED_ALIAS, model_name_problem
from qtrack.config.synthetic import SyntheticSpec
from qtrack.paths import SAFE_NAME

NAME_HINT = "a name, not a path (letters, digits, '.', '_' and '-')"


@dataclass(frozen=True)
class Range:
    """Bounds and choices of one value; None (where the type allows it) always passes."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    choices: Optional[tuple] = None
    pattern: Optional[str] = None  # the whole value must match
    hint: str = "something else"  # what the value must be when the pattern does not match

    def problem(self, value: Any) -> Optional[str]:
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            names = [str(choice) for choice in self.choices]
            allowed = " or ".join(names) if len(names) <= 2 else f"one of {', '.join(names)}"
            return f"must be {allowed}, got {value!r}"
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            return f"must be {self.hint}, got {value!r}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return f"must be a finite number, got {value!r}"
            for bound, holds, words in ((self.ge, operator.ge, "at least"), (self.gt, operator.gt, "above"),
                                        (self.le, operator.le, "at most"), (self.lt, operator.lt, "below")):
                if bound is not None and not holds(value, bound):
                    return f"must be {words} {bound:g}, got {value!r}"
        return None


def ranged(default: Any = MISSING, **bounds: Any) -> Any:
    """A schema field with its range; MISSING means the group's YAML file gives the value."""
    return field(default=default, metadata={"range": Range(**bounds)})


POSITIVE_SHARE = {"gt": 0.0}
COST = {"ge": 0.0, "lt": 1.0}


@dataclass
class SplitSchema:
    train: float = ranged(**POSITIVE_SHARE)
    valid: float = ranged(**POSITIVE_SHARE)
    test: float = ranged(**POSITIVE_SHARE)


@dataclass
class SegmentsSchema:
    train: Optional[list[str]] = None
    valid: Optional[list[str]] = None
    test: Optional[list[str]] = None


@dataclass
class DatasetSchema:
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


@dataclass
class FeaturesSchema:
    name: str = MISSING
    handler: str = MISSING
    module_path: str = MISSING
    # fast: qtrack's compiled engine (qtrack.features), bit-identical to Qlib's; qlib: Qlib's own.
    engine: str = ranged(choices=("fast", "qlib"))
    label: Optional[str] = None
    label_horizon: int = ranged(ge=1)
    infer_processors: list[Any] = field(default_factory=list)
    learn_processors: list[Any] = field(default_factory=list)


@dataclass
class BacktestSchema:
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


@dataclass
class MlflowSchema:
    tracking_uri: Optional[str] = None
    experiment_name: Optional[str] = None
    log_model: bool = MISSING
    plots: bool = MISSING
    qlib_report: bool = MISSING


@dataclass
class OptimizeSchema:
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


@dataclass
class RetrainSchema:
    model_name: Optional[str] = None
    alias: str = ranged(pattern=ALIAS.pattern, hint="an alias such as champion")  # not reserved: see check()
    train_days: int = ranged(ge=5)
    valid_days: int = ranged(ge=5)
    holdout_days: int = ranged(ge=5)
    metric: str = ranged(choices=("IC", "ICIR", "Rank IC", "Rank ICIR"))
    min_improvement: float = ranged()
    feature_anchor_days: int = ranged(ge=0)
    summary: Optional[str] = None


@dataclass
class RollingSchema:
    enabled: bool = MISSING
    step: int = ranged(ge=5)
    train_window: str = ranged(pattern=r"expanding|[1-9][0-9]*", hint="expanding or a number of trading days")
    valid_days: int = ranged(ge=5)
    first_test_day: Optional[str] = None
    compare_static: bool = MISSING


SCHEMAS = {
    "dataset": DatasetSchema,
    "features": FeaturesSchema,
    "backtest": BacktestSchema,
    "mlflow": MlflowSchema,
    "optimize": OptimizeSchema,
    "retrain": RetrainSchema,
    "rolling": RollingSchema,
}

TOP_LEVEL = {"seed": Range(ge=0), "kernels": Range(ge=1)}

SYNTHETIC_RANGES = {
    "symbols": Range(ge=2), "days": Range(ge=30), "signal": Range(gt=-1.0, lt=1.0), "noise": Range(ge=0.0),
    "seed": Range(ge=0), "holiday_rate": Range(ge=0.0, lt=0.5), "missing_rate": Range(ge=0.0, lt=0.5),
    "late_listing_share": Range(ge=0.0, le=1.0),
}

# Hyperparameter ranges by name, for every model that has the key; MODEL_RANGES_BY_MODEL refines them.
MODEL_RANGES = {
    "learning_rate": Range(gt=0.0), "eta": Range(gt=0.0),
    "num_boost_round": Range(ge=1), "early_stopping_rounds": Range(ge=1),
    "num_leaves": Range(ge=2), "max_depth": Range(ge=-1),
    "subsample": Range(gt=0.0, le=1.0), "colsample_bytree": Range(gt=0.0, le=1.0),
    "lambda_l1": Range(ge=0.0), "lambda_l2": Range(ge=0.0), "min_data_in_leaf": Range(ge=0),
    "alpha": Range(ge=0.0), "clip": Range(gt=0.0),
    # Qlib's PyTorch models (model=mlp, gru, lstm, alstm, transformer, tcn)
    "device": Range(pattern=r"auto|cpu|cuda(:\d+)?", hint="auto, cpu, cuda or cuda:N"),
    "lr": Range(gt=0.0), "n_epochs": Range(ge=1), "max_steps": Range(ge=1),
    "early_stop": Range(ge=1), "early_stop_rounds": Range(ge=1), "eval_steps": Range(ge=1),
    "batch_size": Range(ge=1), "hidden_size": Range(ge=1), "num_layers": Range(ge=1), "d_feat": Range(ge=1),
    "d_model": Range(ge=1), "nhead": Range(ge=1), "n_chans": Range(ge=1), "kernel_size": Range(ge=1),
    "dropout": Range(ge=0.0, lt=1.0), "weight_decay": Range(ge=0.0), "reg": Range(ge=0.0),
    "optimizer": Range(choices=("adam", "gd")), "rnn_type": Range(choices=("GRU", "LSTM")),
    "scheduler": Range(choices=("default", "none")), "step_len": Range(ge=2), "n_jobs": Range(ge=0),
}
MODEL_RANGES_BY_MODEL = {
    "catboost": {"max_depth": Range(ge=1, le=16), "num_leaves": Range(ge=1, le=65536)},
    "xgboost": {"max_depth": Range(ge=0)},
    # qtrack's torch threads (LightGBM's own num_threads keeps LightGBM's meaning: 0 is OpenMP's default)
    **{name: {"num_threads": Range(ge=1)} for name in ("mlp", "gru", "lstm", "alstm", "transformer", "tcn", "gru_ts",
                                                        "lstm_ts")},
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


def model_range_problem(model_name: str, key: str, value: Any) -> Optional[str]:
    rule = MODEL_RANGES_BY_MODEL.get(model_name, {}).get(key) or MODEL_RANGES.get(key)
    return rule.problem(value) if rule else None
