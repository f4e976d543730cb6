"""Typed schemas for the fixed config groups; OmegaConf checks types and rejects unknown keys.

`model` has no schema: its hyperparameters differ per model and are checked against the model's own
defaults instead (config._validate_model).
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from qtrack.synthetic import SyntheticSpec


@dataclass
class SplitSchema:
    train: float = 0.6
    valid: float = 0.2
    test: float = 0.2


@dataclass
class SegmentsSchema:
    train: Optional[list[str]] = None
    valid: Optional[list[str]] = None
    test: Optional[list[str]] = None


@dataclass
class DatasetSchema:
    name: str = "synthetic"
    market: str = "all"
    benchmark: Optional[str] = None
    region: str = "us"
    segments: SegmentsSchema = field(default_factory=SegmentsSchema)
    split: SplitSchema = field(default_factory=SplitSchema)
    cache: bool = True
    synthetic: Optional[SyntheticSpec] = None


@dataclass
class FeaturesSchema:
    name: str = "alpha158"
    handler: str = "Alpha158"
    module_path: str = "qtrack.qlib_handler"
    label: Optional[str] = None
    label_horizon: int = 2
    infer_processors: list[Any] = field(default_factory=list)
    learn_processors: list[Any] = field(default_factory=list)


@dataclass
class BacktestSchema:
    strategy: str = "TopkDropoutStrategy"
    topk: int = 50
    n_drop: int = 5
    account: float = 1e8
    deal_price: str = "close"
    open_cost: float = 0.0005
    close_cost: float = 0.0015
    min_cost: float = 5.0
    limit_threshold: Optional[float] = None


@dataclass
class MlflowSchema:
    tracking_uri: Optional[str] = None
    experiment_name: Optional[str] = None
    log_model: bool = True
    plots: bool = True


@dataclass
class OptimizeSchema:
    metric: str = "ICIR"
    direction: Optional[str] = None
    trials: int = 20
    max_trials: Optional[int] = None
    timeout: Optional[float] = None
    study_name: Optional[str] = None
    storage: Optional[str] = None
    n_jobs: int = 1
    mlflow: bool = True
    sampler: str = "tpe"
    startup_trials: int = 5
    pruner: str = "median"
    warmup_steps: int = 10


@dataclass
class RetrainSchema:
    model_name: Optional[str] = None
    alias: str = "champion"
    train_days: int = 750
    valid_days: int = 250
    holdout_days: int = 120
    metric: str = "Rank IC"
    min_improvement: float = 0.0
    summary: Optional[str] = None


SCHEMAS = {
    "dataset": DatasetSchema,
    "features": FeaturesSchema,
    "backtest": BacktestSchema,
    "mlflow": MlflowSchema,
    "optimize": OptimizeSchema,
    "retrain": RetrainSchema,
}
