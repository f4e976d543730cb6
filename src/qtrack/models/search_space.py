"""Search spaces from config (conf/search_space/<model>.yaml): validated, sampled, turned into overrides."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qtrack.config import model_hyperparameters, override_value
from qtrack.config.ranges import model_range_problem
from qtrack.errors import QtrackError

TYPES = ("float", "int", "categorical")
_KEYS = {"type", "low", "high", "log", "step", "choices"}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None


def parse(raw: dict, model_cfg: dict) -> list[ParamSpec]:
    """Every entry checked, with a one-line error naming the entry; keys must be model hyperparameters."""
    if not raw:
        raise QtrackError(f"the search space for model {model_cfg['name']} is empty")
    known = model_hyperparameters(model_cfg)
    specs = []
    for name, entry in raw.items():
        where = f"search_space.{name}"
        if name not in known:
            raise QtrackError(
                f"{where}: model {model_cfg['name']} has no hyperparameter '{name}' "
                f"(add it first, for example +model.{name}=VALUE)"
            )
        spec = _parse_entry(name, entry, where)
        _check_range(spec, model_cfg["name"], where)
        default = known[name]
        if spec.type == "float" and isinstance(default, int) and not isinstance(default, bool):
            raise QtrackError(f"{where}: model.{name} is an integer, so its type must be int, not float")
        specs.append(spec)
    return specs


def _check_range(spec: ParamSpec, model: str, where: str) -> None:
    """Every value the entry can sample lies within the hyperparameter's range (config.schema)."""
    values = spec.choices if spec.type == "categorical" else (spec.low, spec.high)
    for value in values:
        problem = model_range_problem(model, spec.name, value)
        if problem:
            raise QtrackError(f"{where} can sample {value!r}, but model.{spec.name} {problem}")


def _parse_entry(name: str, entry: Any, where: str) -> ParamSpec:
    if not isinstance(entry, dict):
        raise QtrackError(f"{where}: expected a mapping with type, low, high or choices, got {entry!r}")
    unknown = set(entry) - _KEYS
    if unknown:
        raise QtrackError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    kind = entry.get("type")
    if kind not in TYPES:
        raise QtrackError(f"{where}.type: expected one of {', '.join(TYPES)}, got {kind!r}")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise QtrackError(f"{where}.choices: a categorical parameter needs a non-empty list of choices")
        return ParamSpec(name=name, type=kind, choices=tuple(choices))
    low, high, log, step = entry.get("low"), entry.get("high"), bool(entry.get("log", False)), entry.get("step")
    number = int if kind == "int" else (int, float)
    for key, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(value):
            raise QtrackError(f"{where}.{key}: expected a finite {kind}, got {value!r}")
    if low >= high:
        raise QtrackError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise QtrackError(f"{where}: a log scale needs low > 0, got {low}")
    if log and step is not None:
        raise QtrackError(f"{where}: step and log cannot be combined")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number) or not step > 0):
        raise QtrackError(f"{where}.step: expected a positive {kind} step, got {step!r}")
    return ParamSpec(name=name, type=kind, low=low, high=high, log=log, step=step)


def suggest(trial: Any, specs: list[ParamSpec]) -> dict[str, Any]:
    params = {}
    for spec in specs:
        if spec.type == "categorical":
            params[spec.name] = trial.suggest_categorical(spec.name, list(spec.choices))
        elif spec.type == "int":
            params[spec.name] = trial.suggest_int(spec.name, spec.low, spec.high, step=spec.step or 1, log=spec.log)
        else:
            params[spec.name] = trial.suggest_float(spec.name, spec.low, spec.high, step=spec.step, log=spec.log)
    return params


def distribution(spec: ParamSpec) -> Any:
    """The Optuna distribution `suggest` samples the entry from."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if spec.type == "categorical":
        return CategoricalDistribution(list(spec.choices))
    if spec.type == "int":
        return IntDistribution(int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))
    return FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)


def as_overrides(params: dict[str, Any]) -> list[str]:
    """`model.<name>=<value>` overrides that Hydra parses back to exactly the same values."""
    return [f"model.{name}={override_value(value)}" for name, value in params.items()]
