"""Qlib's PyTorch models, tracked while they train.

Each class here is Qlib's own model class (same networks, training loop, early stopping and predictions) with
one addition: `fit(..., epoch_callbacks=[...])` calls each callback after every epoch (after every evaluation
point for DNNModelPytorch, whose epochs are `eval_steps` optimiser steps) with that epoch's train and
validation loss and validation metric. qtrack's callbacks stream the curves to MLflow and report to Optuna's
pruner. The epoch is read from what Qlib's loop already exposes: the `evals_result` dict it fills, its
`test_epoch` results and its calls to Qlib's recorder `R` (which qlib_compat routes to this fit).
"""

from __future__ import annotations

import functools
import importlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtrack import qlib_compat

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class DeepModel:
    module: str  # Qlib's module
    qlib_class: str
    net: str  # the attribute that holds the network (what the MLflow model saves)

    @property
    def time_series(self) -> bool:
        """Reads Qlib's TSDatasetH: each sample is step_len days x d_feat features, built by a sampler."""
        return self.module.endswith("_ts")


# qtrack's class name -> Qlib's model
DEEP_MODELS = {
    "DNNModelPytorch": DeepModel("qlib.contrib.model.pytorch_nn", "DNNModelPytorch", "dnn_model"),
    "GRU": DeepModel("qlib.contrib.model.pytorch_gru", "GRU", "gru_model"),
    "LSTM": DeepModel("qlib.contrib.model.pytorch_lstm", "LSTM", "lstm_model"),
    "ALSTM": DeepModel("qlib.contrib.model.pytorch_alstm", "ALSTM", "ALSTM_model"),
    "TransformerModel": DeepModel("qlib.contrib.model.pytorch_transformer", "TransformerModel", "model"),
    "TCN": DeepModel("qlib.contrib.model.pytorch_tcn", "TCN", "tcn_model"),
    "GRUTimeSeries": DeepModel("qlib.contrib.model.pytorch_gru_ts", "GRU", "GRU_model"),
    "LSTMTimeSeries": DeepModel("qlib.contrib.model.pytorch_lstm_ts", "LSTM", "LSTM_model"),
}


class _ObservedList(list):
    def __init__(self, on_append: Callable[[float], None]) -> None:
        super().__init__()
        self.on_append = on_append

    def append(self, value: Any) -> None:
        super().append(value)
        self.on_append(float(value))


class _ObservedResults(dict):
    """Qlib's `evals_result`: the loop assigns fresh lists, then appends the validation score once an epoch."""

    def __init__(self, on_valid: Callable[[float], None]) -> None:
        super().__init__()
        self.on_valid = on_valid

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, _ObservedList(self.on_valid) if key == "valid" else value)


class EpochEvents:
    """One fit's epochs: builds each epoch's metrics from Qlib's loop and hands them to the callbacks."""

    def __init__(self, callbacks: list[EpochCallback], higher_is_better: bool) -> None:
        self.callbacks = callbacks
        self.higher_is_better = higher_is_better
        self.results = _ObservedResults(self.valid_appended)
        self.evaluations: list[tuple[float, float]] = []  # test_epoch's (loss, score), train then valid
        self.qlib_logged: dict[str, float] = {}
        self.qlib_step: int | None = None
        self.epochs = 0
        self.best: tuple[int, float] | None = None

    def log_metrics(self, step: int | None = None, **metrics: Any) -> None:
        """What the model logs through Qlib's `R` (routed here by qlib_compat)."""
        self.qlib_step = step
        self.qlib_logged.update({name: float(value) for name, value in metrics.items()})

    def valid_appended(self, value: float) -> None:
        if self.evaluations:  # the GRU family: test_epoch on train, then on valid
            (train_loss, train_score), (valid_loss, valid_score) = self.evaluations[-2:]
            step = self.epochs
            metrics = {"loss.train": train_loss, "loss.valid": valid_loss,
                       "metric.train": train_score, "metric.valid": valid_score}
            objective = valid_score
        else:  # DNNModelPytorch: the mean train loss since the last evaluation, the valid loss, R's metric
            step = int(self.qlib_step or self.epochs)
            metrics = {"loss.train": float(self.results["train"][-1]), "loss.valid": value}
            if "val_metric" in self.qlib_logged:
                metrics["metric.valid"] = self.qlib_logged["val_metric"]
            objective = value
        self._keep_best(step, objective)
        self.epochs += 1
        for callback in self.callbacks:
            callback(step, metrics)

    def _keep_best(self, step: int, objective: float) -> None:
        """Qlib's rule: the first epoch strictly better than every earlier one."""
        better = self.best is None or (objective > self.best[1] if self.higher_is_better else objective < self.best[1])
        if better:
            self.best = (step, objective)

    @property
    def best_epoch(self) -> int | None:
        return None if self.best is None else self.best[0]


class EpochTracked:
    """A mixin before a Qlib PyTorch model class: epoch callbacks, and Qlib's checkpoint in a temporary file."""

    net_attribute = ""

    def fit(self, dataset: Any, evals_result: dict | None = None, save_path: str | None = None,
            epoch_callbacks: list[EpochCallback] | None = None, **kwargs: Any) -> None:
        events = EpochEvents(list(epoch_callbacks or []), higher_is_better=hasattr(self, "test_epoch"))
        with tempfile.TemporaryDirectory() as tmp, qlib_compat.recording_to(events), _evaluations(self, events):
            # Qlib's own default is a temporary file it never deletes.
            path = save_path or str(Path(tmp) / "best_epoch.pt")
            super().fit(dataset, evals_result=events.results, save_path=path, **kwargs)
        self.best_epoch = events.best_epoch
        if evals_result is not None:
            evals_result.update({key: list(values) for key, values in events.results.items()})

    @property
    def network(self) -> Any:
        return getattr(self, self.net_attribute)


class _evaluations:
    """Records each `test_epoch` result on the events while Qlib's loop runs, then restores the method."""

    def __init__(self, model: Any, events: EpochEvents) -> None:
        self.model, self.events = model, events

    def __enter__(self) -> None:
        if not hasattr(self.model, "test_epoch"):
            return
        qlib_test_epoch = self.model.test_epoch

        def test_epoch(*args: Any, **kwargs: Any) -> Any:
            loss, score = qlib_test_epoch(*args, **kwargs)
            self.events.evaluations.append((float(loss), float(score)))
            return loss, score

        self.model.test_epoch = test_epoch  # an instance attribute: the class and other models are untouched

    def __exit__(self, *exc: Any) -> None:
        self.model.__dict__.pop("test_epoch", None)  # the fitted model pickles without it


class DefaultScheduler:
    """A mixin before DNNModelPytorch: its default learning-rate schedule on PyTorch 2.10 and later.

    pyqlib 0.9.7 picks its ReduceLROnPlateau arguments by comparing version strings ("2.13.0" <= "2.6.0" is
    true), so with torch 2.13 it passes `verbose`, which torch removed, and the model cannot be built (qrun
    fails the same way). The schedule here is Qlib's own for torch after 2.6, argument for argument.
    `scheduler: none` (or null) trains without one, as Qlib's `scheduler=None` does."""

    def __init__(self, *args: Any, scheduler: Any = "default", **kwargs: Any) -> None:
        super().__init__(*args, scheduler=None, **kwargs)
        if scheduler == "default":
            import torch

            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.train_optimizer, mode="min", factor=0.5, patience=10, threshold=0.0001, threshold_mode="rel",
                cooldown=0, min_lr=0.00001, eps=1e-08)
        elif scheduler not in (None, "none"):
            self.scheduler = scheduler(optimizer=self.train_optimizer)


class AnySegment:
    """A mixin before a TSDatasetH model (GRU or LSTM over step_len days): `predict(dataset, segment)` for any
    segment. Qlib's predicts the test segment only; this is its code with the segment as a parameter."""

    def predict(self, dataset: Any, segment: Any = "test") -> Any:
        import numpy as np
        import pandas as pd
        import torch
        from qlib.data.dataset.handler import DataHandlerLP
        from torch.utils.data import DataLoader

        if not self.fitted:
            raise ValueError("model is not fitted yet!")
        sampler = dataset.prepare(segment, col_set=["feature", "label"], data_key=DataHandlerLP.DK_I)
        sampler.config(fillna_type="ffill+bfill")
        self.network.eval()
        predictions = []
        for batch in DataLoader(sampler, batch_size=self.batch_size, num_workers=self.n_jobs):
            with torch.no_grad():
                predictions.append(self.network(batch[:, :, 0:-1].to(self.device).float()).detach().cpu().numpy())
        return pd.Series(np.concatenate(predictions) if predictions else np.array([]), index=sampler.get_index())


@functools.cache
def deep_class(name: str) -> type:
    """qtrack's class over one of Qlib's models, importable (and so picklable) as qtrack.models.deep.<name>."""
    info = DEEP_MODELS[name]
    module = importlib.import_module(info.module)
    qlib_compat.route_model_recorder(module)
    mixins: tuple[type, ...] = (EpochTracked,)
    if name == "DNNModelPytorch":
        mixins = (EpochTracked, DefaultScheduler)
    elif info.time_series:
        mixins = (EpochTracked, AnySegment)
    return type(name, (*mixins, getattr(module, info.qlib_class)),
                {"__module__": __name__, "__qualname__": name, "net_attribute": info.net})


def __getattr__(name: str) -> Any:
    if name in DEEP_MODELS:
        return deep_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def input_problem(model_name: str, class_name: str, hyper: dict, n_features: int,
                  time_series_data: bool) -> str | None:
    """Why the network cannot read these features, in one line; None when it can. Qlib's networks reshape each
    row into d_feat features x days (the RNNs, Transformer, TCN), read step_len days of d_feat features from a
    TSDatasetH (gru_ts, lstm_ts) or read input_dim columns (the MLP); a mismatch fails deep inside torch."""
    d_feat = hyper.get("d_feat")
    time_series = DEEP_MODELS[class_name].time_series
    if time_series != time_series_data:
        return (f"model={model_name} reads " + ("step_len days of features from Qlib's TSDatasetH" if time_series
                else "one row a day") + ", and this dataset is " + ("a TSDatasetH" if time_series_data else
                "one row a day") + ": train it on its own, not beside models that read the other shape")
    if time_series and d_feat and int(d_feat) != n_features:
        return (f"model={model_name} reads d_feat={d_feat} features a day, but the features have {n_features} "
                f"columns: set model.d_feat={n_features}")
    if d_feat and n_features % int(d_feat):
        return (f"model={model_name} reads rows of d_feat={d_feat} features a day, but the features "
                f"have {n_features} columns: use features=alpha360 (6 x 60 days)")
    input_dim = (hyper.get("pt_model_kwargs") or {}).get("input_dim")
    if input_dim and int(input_dim) != n_features:
        return (f"model.pt_model_kwargs.input_dim={input_dim}, but the features have {n_features} columns: "
                f"set model.pt_model_kwargs.input_dim={n_features}")
    return None


IC_LOSS_MIN_STOCKS = 50  # qlib.contrib.meta.data_selection.utils.ICLoss: skip_size


def ic_loss_problem(model_name: str, most_stocks_a_day: int) -> str | None:
    """DNNModelPytorch scores each evaluation by Qlib's ICLoss, which skips days with fewer than 50 stocks; with
    every day skipped, Qlib calls a debugger that is not installed (ModuleNotFoundError: ipdb)."""
    if most_stocks_a_day >= IC_LOSS_MIN_STOCKS:
        return None
    return (f"model={model_name} scores validation by Qlib's daily IC over at least {IC_LOSS_MIN_STOCKS} stocks, and "
            f"the valid segment has at most {most_stocks_a_day} a day: use a larger universe")
