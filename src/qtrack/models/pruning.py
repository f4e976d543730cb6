"""Optuna pruning while a model trains: report the validation loss each iteration (a booster) or epoch (a
PyTorch model), and stop poor trials.

The loss is reported with the sign of the study's direction (negated when the study maximises, say,
ICIR), because Optuna compares intermediate values in the objective's direction. Optuna's own
integration callbacks refuse a loss in a maximising study, so these small callbacks replace them.
"""

from __future__ import annotations

from typing import Any

from qtrack.runtime import critical


class BoostingPruning:
    """Handed to the core: extra fit() callbacks for LightGBM, XGBoost and CatBoost, and a check after fit."""

    def __init__(self, trial: Any, model_cfg: dict, maximize: bool) -> None:
        import optuna

        self.stopped = (optuna.TrialPruned,)
        self.trial, self.model_cfg = trial, model_cfg
        self.sign = -1.0 if maximize else 1.0
        self.pruned_at: int | None = None

    def fit_kwargs(self, spec: Any) -> dict:
        if spec.flavor == "lightgbm":
            metric = {"mse": "l2", "binary": "binary_logloss"}.get(self.model_cfg.get("loss"), "l2")
            return {"callbacks": [self._lightgbm_callback(metric)]}
        if spec.flavor == "xgboost":
            return {"callbacks": [self._xgboost_callback(self.model_cfg.get("eval_metric") or "rmse")]}
        if spec.flavor == "catboost":
            return {"callbacks": [_CatBoostCallback(self, self.model_cfg.get("loss") or "RMSE")]}
        if spec.flavor == "pytorch":
            return {"epoch_callbacks": [self._epoch_callback]}
        return {}

    def after_fit(self) -> None:
        import optuna

        if self.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at iteration {self.pruned_at}")

    def step(self, iteration: int, loss: float) -> bool:
        """Report one iteration's validation loss; True when the trial should stop."""
        with critical():  # a write to the study's storage
            self.trial.report(self.sign * float(loss), iteration)
        if self.trial.should_prune():
            self.pruned_at = iteration
            return True
        return False

    def _epoch_callback(self, epoch: int, metrics: dict[str, float]) -> None:
        """A PyTorch model's epoch: its validation loss; a pruned trial stops before the next epoch."""
        if self.step(epoch, metrics["loss.valid"]):
            self.after_fit()

    def _lightgbm_callback(self, metric: str) -> Any:
        def callback(env: Any) -> None:
            for valid_name, name, value, _ in env.evaluation_result_list:
                if valid_name == "valid" and name == metric and self.step(env.iteration, value):
                    self.after_fit()  # raises TrialPruned out of lightgbm.train

        return callback

    def _xgboost_callback(self, metric: str) -> Any:
        from xgboost.callback import TrainingCallback

        pruning = self

        class Callback(TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
                values = evals_log.get("valid", {}).get(metric)
                return bool(values) and pruning.step(epoch, values[-1])

        return Callback()


class _CatBoostCallback:
    def __init__(self, pruning: BoostingPruning, metric: str) -> None:
        self.pruning, self.metric = pruning, metric

    def after_iteration(self, info: Any) -> bool:
        values = info.metrics.get("validation", {}).get(self.metric)
        return not (values and self.pruning.step(info.iteration, values[-1]))  # False stops CatBoost
