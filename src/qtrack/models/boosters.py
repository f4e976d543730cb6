"""Qlib's LightGBM model, with the changes qtrack needs (CatBoost's: qtrack.models.catboost_model).

- `fit(..., callbacks=[...])` passes extra per-iteration callbacks to the booster (Optuna pruning).
  Qlib hard-codes LightGBM's callback list.
- LightGBM's curves stay on the model (`evals_result`) instead of going to Qlib's global recorder `R`,
  so several models can be fitted at once in threads; qtrack logs the curves to the right run.
- LightGBM's `fit(..., binned_cache=...)` takes its constructed training and validation sets from a
  `qtrack.binned_cache.BinnedCache` (the same sets, loaded instead of rebuilt).
- LightGBM's sets read the segment's rows from the handler's frame a batch at a time (qtrack.models.lgb_rows),
  so no copy of the training rows is made. Qlib's own preparation copies the feature columns into a new frame,
  whose values LightGBM then copies again; at the fit's start that held both copies at once.

Training is otherwise Qlib's own code path: the same data preparation, parameters and predictions.
"""

from __future__ import annotations

from typing import Any

from qlib.contrib.model.gbdt import LGBModel as QlibLGBModel

from qtrack.models.labels import one_label
from qtrack.qlib_compat import SetsHook


class LGBModel(SetsHook, QlibLGBModel):
    takes_binned_cache = True

    def fit(
        self,
        dataset: Any,
        num_boost_round: int | None = None,
        early_stopping_rounds: int | None = None,
        verbose_eval: int = 20,
        evals_result: dict | None = None,
        reweighter: Any = None,
        callbacks: list | None = None,
        binned_cache: Any = None,
        **kwargs: Any,
    ) -> None:
        import lightgbm as lgb

        self.evals_result = {} if evals_result is None else evals_result
        if binned_cache is not None and reweighter is None:
            prepared = binned_cache.datasets(self.params, lambda: self.prepare_sets(dataset))
        else:
            prepared = self.prepare_sets(dataset, reweighter)
        parts, names = zip(*prepared, strict=True)
        stopping = self.early_stopping_rounds if early_stopping_rounds is None else early_stopping_rounds
        self.model = lgb.train(
            self.params,
            parts[0],
            num_boost_round=self.num_boost_round if num_boost_round is None else num_boost_round,
            valid_sets=parts,
            valid_names=names,
            callbacks=[
                lgb.early_stopping(stopping),
                lgb.log_evaluation(period=verbose_eval),
                lgb.record_evaluation(self.evals_result),
                *(callbacks or []),
            ],
            **kwargs,
        )


    def prepare_sets(self, dataset: Any, reweighter: Any = None) -> list:
        import lightgbm as lgb

        from qtrack.models.lgb_rows import SelectedRows, StreamedDataset

        if reweighter is not None:
            return super().prepare_sets(dataset, reweighter)
        prepared = []
        for key in ("train", "valid"):
            if key in dataset.segments:
                features, label = segment_rows(dataset, key)
                if not len(label):
                    raise ValueError("Empty data from dataset, please check your dataset config.")
                make = StreamedDataset if isinstance(features, SelectedRows) else lgb.Dataset
                prepared.append((make(features, label=label), key))
        return prepared


def segment_rows(dataset: Any, key: str) -> tuple[Any, Any]:
    """A segment's features and label for LightGBM: the rows streamed from the handler's frame where it learns on
    demand (qtrack.data.learn_rows), else one C-ordered copy of the learning frame's feature columns."""
    import numpy as np
    from qlib.data.dataset.handler import DataHandlerLP

    from qtrack.data.learn_rows import learns_on_demand
    from qtrack.models.lgb_rows import SelectedRows

    if learns_on_demand(dataset.handler) and not getattr(dataset, "fetch_kwargs", None):
        found = dataset.handler.learn_rows(dataset.segments[key])
        return SelectedRows(found.feature_matrix(), found.positions), one_label(found.labels)
    frame = dataset.prepare(key, col_set=["feature", "label"], data_key=DataHandlerLP.DK_L)
    columns = np.flatnonzero(frame.columns.get_level_values(0) == "feature")
    features = np.empty((len(frame), columns.size), dtype=np.result_type(*frame.dtypes.iloc[columns]))
    for j, column in enumerate(columns):  # a column of a frame is a view: one copy in all
        features[:, j] = frame.iloc[:, column].to_numpy()
    return features, one_label(frame["label"])


def __getattr__(name: str) -> Any:
    """CatBoostModel moved to qtrack.models.catboost_model, so that a LightGBM run never imports CatBoost (0.3 s);
    models pickled before still name it here."""
    if name == "CatBoostModel":
        from qtrack.models.catboost_model import CatBoostModel

        return CatBoostModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
