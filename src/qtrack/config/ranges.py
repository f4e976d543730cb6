"""The ranges and choices a config value may take: each schema field's (config.schema, through `ranged`), the
top-level keys', the synthetic market's, and every model hyperparameter's by name."""

import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass(frozen=True)
class Range:
    """Bounds and choices of one value; None (where the type allows it) always passes."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    pattern: str | None = None  # the whole value must match
    hint: str = "something else"  # what the value must be when the pattern does not match

    def problem(self, value: Any) -> str | None:
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


def model_range_problem(model_name: str, key: str, value: Any) -> str | None:
    rule = MODEL_RANGES_BY_MODEL.get(model_name, {}).get(key) or MODEL_RANGES.get(key)
    return rule.problem(value) if rule else None
