"""Qlib's CatBoost model, with the change qtrack needs: `fit(..., callbacks=[...])` passes extra per-iteration
callbacks to the booster (Optuna pruning); Qlib hands CatBoost's fit kwargs to its constructor too. Training is
otherwise Qlib's own code path."""

from __future__ import annotations

from typing import Any

from qlib.contrib.model.catboost_model import CatBoostModel as QlibCatBoostModel

from qtrack.models.labels import one_label


class CatBoostModel(QlibCatBoostModel):
    def fit(
        self,
        dataset: Any,
        num_boost_round: int = 1000,
        early_stopping_rounds: int = 50,
        verbose_eval: int = 20,
        reweighter: Any = None,
        callbacks: list | None = None,
        **kwargs: Any,
    ) -> None:
        from catboost import CatBoost, Pool
        from catboost.utils import get_gpu_device_count
        from qlib.data.dataset.handler import DataHandlerLP

        if reweighter is not None:
            raise ValueError("qtrack's CatBoostModel does not take a reweighter")
        train, valid = dataset.prepare(["train", "valid"], col_set=["feature", "label"], data_key=DataHandlerLP.DK_L)
        if train.empty or valid.empty:
            raise ValueError("Empty data from dataset, please check your dataset config.")
        pools = [Pool(data=part["feature"], label=one_label(part["label"])) for part in (train, valid)]
        self._params.update(
            iterations=num_boost_round, early_stopping_rounds=early_stopping_rounds, verbose_eval=verbose_eval,
            task_type="GPU" if get_gpu_device_count() > 0 else "CPU",
        )
        self.model = CatBoost(self._params, **kwargs)
        self.model.fit(pools[0], eval_set=pools[1], use_best_model=True, callbacks=callbacks, **kwargs)
