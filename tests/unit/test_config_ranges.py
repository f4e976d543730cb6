"""Values that make no sense are refused when the config is composed, in one line, before any work."""

from __future__ import annotations

import pytest

from qtrack import config
from qtrack.config import schema
from qtrack.errors import QtrackError


@pytest.mark.parametrize(
    ("stage", "override", "expected"),
    [
        ("train", "backtest.topk=0", "backtest.topk must be at least 1, got 0"),
        ("train", "backtest.n_drop=99", "backtest.n_drop must be at most backtest.topk (50), got 99"),
        ("train", "backtest.n_drop=-1", "backtest.n_drop must be at least 0"),
        ("train", "backtest.open_cost=-0.1", "backtest.open_cost must be at least 0"),
        ("train", "backtest.close_cost=1.5", "backtest.close_cost must be below 1"),
        ("train", "backtest.min_cost=-5", "backtest.min_cost must be at least 0"),
        ("train", "backtest.account=0", "backtest.account must be above 0"),
        ("train", "backtest.deal_price=mid", "backtest.deal_price must be one of close"),
        ("train", "backtest.limit_threshold=1.5", "backtest.limit_threshold must be below 1"),
        ("train", "backtest.engine=numpy", "backtest.engine must be fast or qlib"),
        ("train", "features.engine=polars", "features.engine must be fast or qlib"),
        ("train", "features.label='EMA($close,5)/$close-1'",
         "features.label: the fast engine does not compute operator EMA; use features.engine=qlib"),
        ("train", "model.learning_rate=-1", "model.learning_rate must be above 0, got -1"),
        ("train", "model.num_boost_round=0", "model.num_boost_round must be at least 1"),
        ("train", "model.subsample=1.5", "model.subsample must be at most 1"),
        ("train", "model.lambda_l2=-1", "model.lambda_l2 must be at least 0"),
        ("train", "model.num_leaves=1", "model.num_leaves must be at least 2"),
        ("train", "model=catboost model.max_depth=17", "model.max_depth must be at most 16"),
        ("train", "model=xgboost model.eta=0", "model.eta must be above 0"),
        ("train", "model=linear model.alpha=-1", "model.alpha must be at least 0"),
        ("train", "model=linear model.clip=0", "model.clip must be above 0"),
        ("train", "seed=-5", "seed must be at least 0, got -5"),
        ("train", "kernels=0", "kernels must be at least 1"),
        ("train", "dataset.name=synthetic/../../../escaped", "dataset.name must be a name, not a path"),
        ("train", "dataset.name=.hidden", "dataset.name must be a name, not a path"),
        ("train", "dataset.market=../all", "dataset.market must be a name, not a path"),
        ("train", "dataset.region=eu", "dataset.region must be us or cn"),
        ("train", "dataset.split.valid=0", "dataset.split.valid must be above 0"),
        ("train", "dataset.synthetic.symbols=1", "dataset.synthetic.symbols must be at least 2"),
        ("train", "dataset.synthetic.signal=1.0", "dataset.synthetic.signal must be below 1"),
        ("train", "features.label_horizon=0", "features.label_horizon must be at least 1"),
        ("optimize", "optimize.trials=-1", "optimize.trials must be at least 0"),
        ("optimize", "optimize.max_trials=0", "optimize.max_trials must be at least 1"),
        ("optimize", "optimize.n_jobs=0", "optimize.n_jobs must be at least 1"),
        ("optimize", "optimize.timeout=0", "optimize.timeout must be above 0"),
        ("optimize", "optimize.direction=up", "optimize.direction must be maximize or minimize"),
        ("optimize", "optimize.pruner=hyperband", "optimize.pruner must be median or none"),
        ("optimize", "optimize.warmup_steps=-1", "optimize.warmup_steps must be at least 0"),
        ("retrain", "retrain.train_days=4", "retrain.train_days must be at least 5"),
        ("retrain", "retrain.metric=sharpe", "retrain.metric must be one of IC, ICIR, Rank IC, Rank ICIR"),
        ("retrain", "retrain.alias=latest", "retrain.alias 'latest' is reserved"),
        ("retrain", "retrain.alias=v3", "retrain.alias 'v3' is reserved"),
        ("retrain", "retrain.alias=a/b", "retrain.alias must be an alias"),
    ],
)
def test_out_of_range_values_are_refused_when_composing(workspace, stage, override, expected):
    with pytest.raises(QtrackError) as caught:
        config.compose(stage, override.split())
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [["backtest.topk=1", "backtest.n_drop=1"], ["backtest.n_drop=0"], ["backtest.limit_threshold=0.095"],
     ["model.max_depth=-1"], ["model=xgboost", "model.max_depth=0"], ["seed=0"], ["retrain.alias=challenger"],
     ["dataset.name=my-data.v2_1"], ["features.engine=qlib", "features.label='EMA($close,5)/$close-1'"],
     ["features.label='Ref($close,-3)/Ref($close,-1)-1'"]],
)
def test_values_on_the_edges_are_accepted(workspace, overrides):
    stage = "retrain" if any(o.startswith("retrain.") for o in overrides) else "train"
    assert config.compose(stage, overrides).cfg is not None


def test_the_yaml_holds_the_values_and_the_schema_only_types_and_ranges():
    """Defaults live once: a schema field the YAML must fill has no value of its own."""
    from dataclasses import fields

    from omegaconf import MISSING

    for group in ("backtest", "optimize", "retrain"):
        for item in fields(schema.SCHEMAS[group]):
            assert item.default in (MISSING, None), f"{group}.{item.name} has a default in the schema"


def test_a_variant_may_change_only_what_it_is_allowed_to(workspace):
    cfg = config.compose("benchmark", []).cfg
    child = config.variant(cfg, model="linear", values={"seed": 4}, overrides=["model.alpha=2.0"],
                           allowed=("model.", "seed"), drop=("models", "seeds", "metric", "model_overrides"))
    assert (child.model.name, child.model.alpha, child.seed) == ("linear", 2.0, 4)
    assert "models" not in child and child.dataset == cfg.dataset
    with pytest.raises(QtrackError, match="'dataset.name' can't be changed here"):
        config.variant(cfg, overrides=["dataset.name=synthetic_nosignal"])
    with pytest.raises(QtrackError, match="model.alpha must be at least 0"):
        config.variant(cfg, model="linear", overrides=["model.alpha=-1"])
