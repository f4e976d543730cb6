"""`--from-qrun`: a qrun workflow as qtrack overrides, every key honoured or named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from qtrack.config import compose, parse_overrides
from qtrack.config.qrun import translate
from qtrack.config.qrun_benchmark import benchmark_overrides
from qtrack.config.values import override_value
from qtrack.errors import QtrackError

QLIB_WORKFLOW = Path(__file__).resolve().parents[1] / "fixtures" / "workflow_config_lightgbm_Alpha158.yaml"


@pytest.fixture
def qlib_workflow() -> dict:
    return yaml.safe_load(QLIB_WORKFLOW.read_text())


def test_qlibs_lightgbm_workflow_is_honoured_whole(qlib_workflow: dict) -> None:
    translation = translate(qlib_workflow)
    assert translation.problems == []
    cfg = compose("train", translation.overrides).cfg
    kwargs = qlib_workflow["task"]["model"]["kwargs"]
    hyper = {k: v for k, v in cfg.model.items() if k not in ("name", "class", "module_path", "seed_key", "fit_keys",
                                                             "flavor") and v is not None}
    assert hyper == kwargs  # exactly the workflow's hyperparameters, num_threads included; no qtrack extras
    assert cfg.model.seed_key is None
    assert (cfg.dataset.market, cfg.dataset.benchmark, cfg.dataset.region) == ("csi300", "SH000300", "cn")
    assert list(cfg.dataset.segments.test) == ["2017-01-01", "2020-08-01"]
    assert (cfg.backtest.topk, cfg.backtest.n_drop, cfg.backtest.limit_threshold) == (50, 5, 0.095)
    assert cfg.mlflow.experiment_name == "workflow"  # where qrun itself logs a workflow without a name


def test_a_custom_label_sets_the_label_horizon(qlib_workflow: dict) -> None:
    handler = qlib_workflow["task"]["dataset"]["kwargs"]["handler"]["kwargs"]
    handler["label"] = [["Ref($close, -5) / Ref($close, -1) - 1"], ["LABEL0"]]
    cfg = compose("train", translate(qlib_workflow).overrides).cfg
    assert (cfg.features.label, cfg.features.label_horizon) == ("Ref($close, -5) / Ref($close, -1) - 1", 5)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("task", "model"), {"class": "LinearModel", "module_path": "qlib.contrib.model.linear"}, "task.model"),
        (("task", "dataset", "class"), "TSDatasetH", "task.dataset.class"),
        (("qlib_init", "redis_port"), 6379, "qlib_init.redis_port"),
        (("port_analysis_config", "backtest", "start_time"), "2018-01-01", "backtest.start_time"),
        (("port_analysis_config", "backtest", "exchange_kwargs", "trade_unit"), 1, "exchange_kwargs.trade_unit"),
        (("data_handler_config", "fit_end_time"), "2013-12-31", "kwargs.fit_end_time"),
    ],
)
def test_each_key_qtrack_cant_honour_is_named(path: tuple, value, named: str) -> None:
    problems = translate(_reload_with(path, value)).problems
    assert any(named in problem for problem in problems), problems


def _reload_with(path: tuple, value) -> dict:
    """The workflow with one key set; yaml.safe_load shares anchored mappings, so a change to an anchor
    (data_handler_config, port_analysis_config) reaches every place that uses it."""
    raw = yaml.safe_load(QLIB_WORKFLOW.read_text())
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize("text", ["2008-01-01", "~/.qlib/qlib_data/cn_data", "a b", 'quote " and \\ slash\\',
                                  "12", "true", "null", "sqlite:////tmp/x.db", "Ref($close, -2) / Ref($close, -1) - 1"])
def test_every_value_reads_back_exactly(text: str) -> None:
    for value in (text, [text, text], {"k": text}):
        assert parse_overrides([f"key={override_value(value)}"])["key"] == value


def test_a_benchmark_takes_workflows_that_share_one_dataset(qlib_workflow: dict, tmp_path: Path) -> None:
    xgboost = copy.deepcopy(qlib_workflow)
    xgboost["task"]["model"] = {"class": "XGBModel", "module_path": "qlib.contrib.model.xgboost",
                                "kwargs": {"eta": 0.1}}
    paths = [tmp_path / "lgb.yaml", tmp_path / "xgb.yaml"]
    paths[0].write_text(yaml.safe_dump(qlib_workflow))
    paths[1].write_text(yaml.safe_dump(xgboost))
    cfg = compose("benchmark", benchmark_overrides(paths)).cfg
    assert (list(cfg.models), cfg.seeds) == (["lightgbm", "xgboost"], 1)
    assert "model.eta=0.1" in list(cfg.model_overrides.xgboost)

    xgboost["task"]["dataset"]["kwargs"]["handler"]["kwargs"]["instruments"] = "csi500"
    paths[1].write_text(yaml.safe_dump(xgboost))
    with pytest.raises(QtrackError, match="differ in dataset.market"):
        benchmark_overrides(paths)
    with pytest.raises(QtrackError, match="two workflows run lightgbm"):
        benchmark_overrides([paths[0], paths[0]])


QLIB_GRU_WORKFLOW = QLIB_WORKFLOW.parent / "workflow_config_gru_Alpha360.yaml"  # as Qlib ships it


def test_qlibs_gru_workflow_reads_as_qrun_reads_it() -> None:
    """Qlib's `lr: 1e-3` is a float to qrun (ruamel, YAML 1.2) and a string to PyYAML (YAML 1.1)."""
    from qtrack.config.qrun import read_workflow

    assert yaml.safe_load(QLIB_GRU_WORKFLOW.read_text())["task"]["model"]["kwargs"]["lr"] == "1e-3"
    translation = translate(read_workflow(QLIB_GRU_WORKFLOW))
    assert translation.problems == []
    cfg = compose("train", translation.overrides).cfg
    assert cfg.model.name == "gru" and cfg.model.lr == 0.001 and cfg.model.device == "auto"  # GPU: 0
    assert cfg.features.name == "alpha360" and "GPU" not in cfg.model


def test_a_tsdataseth_workflow_sets_the_models_step_len() -> None:
    from qtrack.config.qrun import read_workflow

    workflow = read_workflow(QLIB_GRU_WORKFLOW)
    workflow["task"]["model"]["module_path"] = "qlib.contrib.model.pytorch_gru_ts"
    workflow["task"]["dataset"].update({"class": "TSDatasetH"})
    workflow["task"]["dataset"]["kwargs"]["step_len"] = 20
    translation = translate(workflow)
    assert translation.problems == [] and "model.step_len=20" in translation.overrides
    assert compose("train", translation.overrides).cfg.model.name == "gru_ts"
    workflow["task"]["model"] = {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": {}}
    assert translate(workflow).problems == [
        "task.dataset.class (TSDatasetH: qtrack reads it for gru_ts and lstm_ts, not lightgbm)"]
