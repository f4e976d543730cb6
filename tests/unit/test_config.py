from __future__ import annotations

import pytest

from qtrack import config
from qtrack.errors import QtrackError
from qtrack.models import search_space
from qtrack.models import specs as models


def all_group_choices() -> list[tuple[str, str]]:
    return [(group, option) for group, options in config.config_groups().items() for option in options
            if group not in ("search_space", "walk_forward")]  # optimize's; rolling's and benchmark's


@pytest.mark.parametrize(("group", "option"), all_group_choices())
def test_every_config_option_composes(workspace, group, option):
    cfg = config.compose("train", [f"{group}={option}"]).cfg
    assert cfg[group] is not None
    assert cfg.mlflow.tracking_uri == f"sqlite:///{workspace / 'mlruns' / 'mlflow.db'}"
    assert cfg.mlflow.experiment_name == f"{cfg.dataset.name}_{cfg.features.name}"


@pytest.mark.parametrize("model", config.config_groups()["search_space"])
def test_every_search_space_follows_its_model_and_parses(workspace, model):
    cfg = config.compose("optimize", [f"model={model}"]).cfg
    specs = search_space.parse(config.to_container(cfg.search_space), config.to_container(cfg.model))
    assert {spec.name for spec in specs} == set(cfg.search_space)
    assert all(spec.name in cfg.model for spec in specs)


def test_search_space_overrides_round_trip_through_hydra(workspace):
    params = {"learning_rate": 0.012345678901234567, "num_leaves": 37, "lambda_l1": 1e-05}
    cfg = config.compose("train", search_space.as_overrides(params)).cfg
    assert {name: cfg.model[name] for name in params} == params
    for value in ("postgresql://u:p@h:5432/db", "it's", "a b", "true", "1e-5", "back\\slash", "end\\", "a\\'b"):
        assert config.compose("train", [f"run_name={config.override_value(value)}"]).cfg.run_name == value


@pytest.mark.parametrize("name", config.config_groups()["model"])
def test_every_model_option_builds(workspace, name):
    cfg = config.compose("train", [f"model={name}", "seed=7"]).cfg
    spec = models.model_spec(config.to_container(cfg.model), 7)
    model = models.build_model(spec)
    assert type(model).__name__ == cfg.model["class"]
    if cfg.model.seed_key:
        assert spec.init_kwargs[cfg.model.seed_key] == 7


def test_overrides_reach_the_config(workspace):
    cfg = config.compose(
        "train",
        [
            "model=catboost",
            "model.learning_rate=0.05",
            "seed=3",
            "dataset.segments.test=[2019-07-01,2019-12-31]",
            "mlflow.experiment_name=demo",
        ],
    ).cfg
    assert cfg.model.name == "catboost"
    assert cfg.model.learning_rate == 0.05
    assert cfg.seed == 3
    assert list(cfg.dataset.segments.test) == ["2019-07-01", "2019-12-31"]
    assert cfg.mlflow.experiment_name == "demo"


def test_fit_keys_go_to_fit_and_the_rest_to_the_constructor(workspace):
    cfg = config.compose("train", ["model=xgboost", "model.num_boost_round=12"]).cfg
    spec = models.model_spec(config.to_container(cfg.model), 0)
    assert spec.fit_kwargs["num_boost_round"] == 12
    assert "num_boost_round" not in spec.init_kwargs
    assert spec.init_kwargs["eta"] == cfg.model.eta


def test_an_explicit_tracking_uri_beats_the_environment_which_beats_the_default(workspace, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert config.compose("train", ["mlflow.tracking_uri=sqlite:///x.db"]).cfg.mlflow.tracking_uri == "sqlite:///x.db"
    assert config.compose("train", []).cfg.mlflow.tracking_uri == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert config.compose("train", []).cfg.mlflow.tracking_uri == f"sqlite:///{workspace}/mlruns/mlflow.db"


def test_run_dir_override_is_taken_out(workspace):
    composed = config.compose("train", ["hydra.run.dir=outputs/custom"])
    assert composed.run_dir == "outputs/custom"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=nope", "unknown model 'nope': choose one of alstm, catboost, double_ensemble, gru, gru_ts, lightgbm, "
                       "linear, lstm, lstm_ts, mlp, tcn, transformer, xgboost"),
        ("dataset.nope=1", "Could not override 'dataset.nope'"),
        ("model.learning_rate=fast", "invalid model.learning_rate: expected float"),
        ("backtest.topk=many", "invalid backtest.topk"),
        ("seed=abc", "invalid seed"),
        ("hydra.job.name=x", "only hydra.run.dir can be set"),
    ],
)
def test_bad_overrides_name_the_problem(workspace, override, expected):
    with pytest.raises(QtrackError) as caught:
        config.compose("train", [override])
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_runs_log_qlibs_report_by_default_and_sweep_trials_do_not():
    assert config.compose("train", []).cfg.mlflow.qlib_report is True
    assert config.compose("benchmark", []).cfg.mlflow.qlib_report is True
    assert config.compose("optimize", []).cfg.mlflow.qlib_report is False


@pytest.mark.parametrize("stage", ["train", "optimize", "retrain", "rolling", "benchmark"])
def test_composed_settings_are_typed_frozen_and_round_trip(workspace, stage):
    import dataclasses

    from qtrack.config.schema import BacktestSchema, DatasetSchema, Settings
    from qtrack.config.settings import ModelSettings, build

    cfg = config.compose(stage, ["dataset.segments.test=[2019-07-01,2019-12-31]"]).cfg
    assert isinstance(cfg, Settings) and isinstance(cfg.dataset, DatasetSchema)
    assert isinstance(cfg.backtest, BacktestSchema) and isinstance(cfg.model, ModelSettings)
    assert cfg.dataset.segments.test == ("2019-07-01", "2019-12-31")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.backtest.topk = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.learning_rate = 1.0
    with pytest.raises(TypeError):
        cfg.model._values["learning_rate"] = 1.0
    assert build(Settings, config.to_container(cfg)) == cfg
    assert (stage in ("optimize", "retrain", "rolling")) == (stage in cfg)


def test_keys_a_user_adds_are_kept_for_the_run_to_log(workspace):
    cfg = config.compose("train", ["+vendor.token=abc", "+note=x"]).cfg
    assert config.to_container(cfg)["vendor"] == {"token": "abc"} and cfg["note"] == "x"
    assert config.variant(cfg, values={"seed": 2}, allowed=("seed",))["vendor"]["token"] == "abc"
    assert "token: '***'" in config.to_yaml(cfg)
