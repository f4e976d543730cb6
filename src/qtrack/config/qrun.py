"""A `qrun` workflow YAML as qtrack overrides (`qtrack train --from-qrun`).

Qlib's benchmark workflows (examples/benchmarks/*/workflow_config_*_Alpha158.yaml) hold `qlib_init`, a
`task` with a model, a DatasetH over Alpha158 or Alpha360 and the Signal, SigAna and PortAna records, and a
`port_analysis_config` for TopkDropoutStrategy. Each key qtrack honours becomes one override; every other
key is named as a problem, so nothing is dropped silently. The model gets exactly the workflow's
hyperparameters: qtrack's own defaults that the workflow leaves out are set to null (not passed, so Qlib's
defaults apply), and no seed is planted.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtrack.config.qrun_model import day, model_defaults, plain, set_value, translate_model
from qtrack.errors import QtrackError

QLIB_HANDLERS = {"Alpha158": "alpha158", "Alpha360": "alpha360"}
HANDLER_MODULE = "qlib.contrib.data.handler"
RECORD_MODULE = "qlib.workflow.record_temp"
STRATEGY_MODULES = ("qlib.contrib.strategy", "qlib.contrib.strategy.signal_strategy")
SIGNAL_PLACEHOLDERS = ("<PRED>", ["<MODEL>", "<DATASET>"], ("<MODEL>", "<DATASET>"))
EXCHANGE_KEYS = ("limit_threshold", "deal_price", "open_cost", "close_cost", "min_cost")
QRUN_EXPERIMENT = "workflow"
SEGMENT_NAMES = ("train", "valid", "test")
LABEL_LOOKAHEAD = re.compile(r"Ref\(\s*\$\w+\s*,\s*-(\d+)\s*\)")


@dataclass
class Translation:
    """The workflow as overrides: `model` is qtrack's model option, `model_overrides` its model.* keys and
    `shared` everything else (data, features, backtest, tracking). `problems` names each key qtrack can't honour."""

    model: str = ""
    model_overrides: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def overrides(self) -> list[str]:
        return [*self.shared, f"model={self.model}", *self.model_overrides]


def read_workflow(path: Path) -> dict:
    """The parsed YAML (anchors resolved), or a QtrackError in one line. Parsed as qrun parses it (ruamel, YAML 1.2):
    PyYAML (YAML 1.1) reads Qlib's `lr: 1e-3` as the string '1e-3'."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not path.is_file():
        raise QtrackError(f"--from-qrun: no file at {path}")
    try:
        workflow = YAML(typ="safe", pure=True).load(path.read_text())
    except (YAMLError, UnicodeDecodeError) as exc:
        raise QtrackError(f"--from-qrun: {path.name} is not valid YAML ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(workflow, dict) or not isinstance(workflow.get("task"), dict):
        raise QtrackError(f"--from-qrun: {path.name} is not a qrun workflow (no `task:` mapping)")
    return workflow


def translate(workflow: dict) -> Translation:
    out = Translation()
    _qlib_init(workflow.get("qlib_init") or {}, out)
    if "sys" in workflow:
        out.problems.append("sys (custom module paths)")
    # qrun logs to `experiment_name`, else to "workflow" (Qlib's exp_manager default_exp_name is not used)
    out.shared.append(set_value("mlflow.experiment_name", str(workflow.get("experiment_name") or QRUN_EXPERIMENT)))
    task = workflow["task"]
    _unknown(task, ("model", "dataset", "record"), "task", out)
    translate_model(task.get("model") or {}, out)  # first: a TSDatasetH is read for a time-series model only
    segments = _dataset(task.get("dataset") or {}, out)
    _records(task.get("record") or [], segments, out)
    return out


def _qlib_init(init: dict, out: Translation) -> None:
    _unknown(init, ("provider_uri", "region", "exp_manager", "kernels"), "qlib_init", out)
    uri = init.get("provider_uri")
    if isinstance(uri, dict):
        uri = uri.get("day") if set(uri) == {"day"} else None
        if uri is None:
            out.problems.append("qlib_init.provider_uri (only daily data)")
    if uri:
        out.shared.append(set_value("dataset.provider_uri", str(uri)))
    if init.get("region"):
        out.shared.append(set_value("dataset.region", str(init["region"])))
    if init.get("kernels"):
        out.shared.append(set_value("kernels", init["kernels"]))
    manager = init.get("exp_manager")
    if manager:
        if manager.get("class") != "MLflowExpManager":
            out.problems.append(f"qlib_init.exp_manager.class ({manager.get('class')})")
        kwargs = manager.get("kwargs") or {}
        _unknown(kwargs, ("uri", "default_exp_name"), "qlib_init.exp_manager.kwargs", out)
        if kwargs.get("uri"):
            out.shared.append(set_value("mlflow.tracking_uri", str(kwargs["uri"])))


def _dataset(dataset: dict, out: Translation) -> dict[str, list[str]]:
    kind = (dataset.get("class"), dataset.get("module_path", "qlib.data.dataset"))
    if kind not in (("DatasetH", "qlib.data.dataset"), ("TSDatasetH", "qlib.data.dataset")):
        out.problems.append(f"task.dataset.class ({dataset.get('class')}: only DatasetH and TSDatasetH)")
    kwargs = dataset.get("kwargs") or {}
    _unknown(kwargs, ("handler", "segments", "step_len"), "task.dataset.kwargs", out)
    if kind[0] == "TSDatasetH":  # the model's samples are step_len days (gru_ts, lstm_ts)
        if out.model and "step_len" not in model_defaults(out.model):
            out.problems.append(f"task.dataset.class (TSDatasetH: qtrack reads it for gru_ts and lstm_ts, not "
                                f"{out.model})")
        else:
            out.model_overrides.append(set_value("model.step_len", int(kwargs.get("step_len", 30))))
    segments = {}
    for name in SEGMENT_NAMES:
        span = (kwargs.get("segments") or {}).get(name)
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            out.problems.append(f"task.dataset.kwargs.segments.{name} (a [start, end] pair is needed)")
            continue
        segments[name] = [day(when) for when in span]
        out.shared.append(set_value(f"dataset.segments.{name}", segments[name]))
    _handler(kwargs.get("handler") or {}, segments, out)
    return segments


def _handler(handler: dict, segments: dict[str, list[str]], out: Translation) -> None:
    where = "task.dataset.kwargs.handler"
    name = QLIB_HANDLERS.get(handler.get("class"))
    if name is None or handler.get("module_path", HANDLER_MODULE) != HANDLER_MODULE:
        out.problems.append(f"{where}.class ({handler.get('class')}: only Qlib's Alpha158 and Alpha360)")
        return
    out.shared.append(f"features={name}")
    kwargs = handler.get("kwargs") or {}
    _unknown(kwargs, ("start_time", "end_time", "fit_start_time", "fit_end_time", "instruments", "infer_processors",
                      "learn_processors", "label", "freq", "filter_pipe", "inst_processors"), f"{where}.kwargs", out)
    for key, default in (("freq", "day"), ("filter_pipe", None), ("inst_processors", None)):
        if kwargs.get(key, default) not in (default, [] if default is None else default):
            out.problems.append(f"{where}.kwargs.{key}")
    market = kwargs.get("instruments")
    if not isinstance(market, str):
        out.problems.append(f"{where}.kwargs.instruments (a market name is needed, got {market!r})")
    else:
        out.shared.append(set_value("dataset.market", market))
    if segments.keys() == set(SEGMENT_NAMES):
        derived = {"start_time": segments["train"][0], "end_time": segments["test"][1],
                   "fit_start_time": segments["train"][0], "fit_end_time": segments["train"][1]}
        for key, expected in derived.items():
            if key in kwargs and day(kwargs[key]) != expected:
                out.problems.append(f"{where}.kwargs.{key} ({day(kwargs[key])}: qtrack uses {expected}, from the "
                                    "segments)")
    for key in ("infer_processors", "learn_processors"):
        value = kwargs[key] if key in kwargs else _qlib_default(handler["class"], key)
        out.shared.append(set_value(f"features.{key}", plain(value)))
    if "label" in kwargs:
        _label(kwargs["label"], f"{where}.kwargs.label", out)


def _qlib_default(handler_class: str, key: str) -> Any:
    """The Qlib handler's own default for a keyword the workflow leaves out."""
    import importlib

    handler = getattr(importlib.import_module(HANDLER_MODULE), handler_class)
    return inspect.signature(handler.__init__).parameters[key].default


def _label(label: Any, where: str, out: Translation) -> None:
    expressions = label[0] if isinstance(label, (list, tuple)) and label and isinstance(label[0], list) else label
    if not isinstance(expressions, (list, tuple)) or len(expressions) != 1 or not isinstance(expressions[0], str):
        out.problems.append(f"{where} (one label expression is needed)")
        return
    horizons = [int(n) for n in LABEL_LOOKAHEAD.findall(expressions[0])]
    if not horizons:
        out.problems.append(f"{where} (its look-ahead, Ref($field, -N), can't be read)")
        return
    out.shared += [set_value("features.label", expressions[0]), set_value("features.label_horizon", max(horizons))]


def _records(records: list, segments: dict[str, list[str]], out: Translation) -> None:
    for index, record in enumerate(records):
        where = f"task.record[{index}]"
        if not isinstance(record, dict) or record.get("module_path", RECORD_MODULE) != RECORD_MODULE:
            out.problems.append(f"{where} (only Qlib's SignalRecord, SigAnaRecord and PortAnaRecord)")
            continue
        kind, kwargs = record.get("class"), record.get("kwargs") or {}
        if kind == "SignalRecord":
            _unknown(kwargs, ("model", "dataset"), f"{where}.kwargs", out)
        elif kind == "SigAnaRecord":
            _unknown(kwargs, ("ana_long_short", "ann_scaler"), f"{where}.kwargs", out)
            if kwargs.get("ana_long_short", False) or kwargs.get("ann_scaler", 252) != 252:
                out.problems.append(f"{where}.kwargs (qtrack's SigAnaRecord: ana_long_short False, ann_scaler 252)")
        elif kind == "PortAnaRecord":
            _unknown(kwargs, ("config",), f"{where}.kwargs", out)
            _port_analysis(kwargs.get("config") or {}, segments, f"{where}.kwargs.config", out)
        else:
            out.problems.append(f"{where}.class ({kind})")


def _port_analysis(config: dict, segments: dict[str, list[str]], where: str, out: Translation) -> None:
    _unknown(config, ("strategy", "backtest", "executor"), where, out)
    if "executor" in config:
        out.problems.append(f"{where}.executor (qtrack runs Qlib's default daily SimulatorExecutor)")
    strategy = config.get("strategy") or {}
    if strategy.get("class") != "TopkDropoutStrategy" or strategy.get("module_path") not in STRATEGY_MODULES:
        out.problems.append(f"{where}.strategy.class ({strategy.get('class')}: only TopkDropoutStrategy)")
    kwargs = dict(strategy.get("kwargs") or {})
    _unknown(kwargs, ("signal", "model", "dataset", "topk", "n_drop"), f"{where}.strategy.kwargs", out)
    signal = kwargs.get("signal", [kwargs.get("model"), kwargs.get("dataset")])
    if signal not in SIGNAL_PLACEHOLDERS:
        out.problems.append(f"{where}.strategy.kwargs.signal (only the run's own <PRED>)")
    out.shared += [set_value(f"backtest.{k}", kwargs[k]) for k in ("topk", "n_drop") if k in kwargs]
    backtest = config.get("backtest") or {}
    _unknown(backtest, ("start_time", "end_time", "account", "benchmark", "exchange_kwargs", "freq"),
             f"{where}.backtest", out)
    if backtest.get("freq", "day") != "day":
        out.problems.append(f"{where}.backtest.freq (only day)")
    for key, index in (("start_time", 0), ("end_time", 1)):
        if key in backtest and "test" in segments and day(backtest[key]) != segments["test"][index]:
            out.problems.append(f"{where}.backtest.{key} ({day(backtest[key])}: qtrack backtests the test segment)")
    if "account" in backtest:
        out.shared.append(set_value("backtest.account", float(backtest["account"])))
    benchmark = backtest.get("benchmark")
    if benchmark is not None and not isinstance(benchmark, str):
        out.problems.append(f"{where}.backtest.benchmark (one instrument code is needed)")
    elif benchmark:
        out.shared.append(set_value("dataset.benchmark", benchmark))
    exchange = backtest.get("exchange_kwargs") or {}
    _unknown(exchange, (*EXCHANGE_KEYS, "freq"), f"{where}.backtest.exchange_kwargs", out)
    if exchange.get("freq", "day") != "day":
        out.problems.append(f"{where}.backtest.exchange_kwargs.freq (only day)")
    out.shared += [set_value(f"backtest.{k}", exchange[k]) for k in EXCHANGE_KEYS if k in exchange]


def _unknown(mapping: dict, known: tuple[str, ...], where: str, out: Translation) -> None:
    if not isinstance(mapping, dict):
        out.problems.append(f"{where} (a mapping is needed)")
        return
    out.problems += [f"{where}.{key}" for key in mapping if key not in known]


def honoured(path: Path) -> Translation:
    """The workflow at `path` translated, or a QtrackError naming every key qtrack can't honour."""
    translation = translate(read_workflow(path))
    if translation.problems:
        raise QtrackError(f"--from-qrun: qtrack can't honour these keys of {path.name}: "
                          f"{', '.join(translation.problems)}")
    return translation
