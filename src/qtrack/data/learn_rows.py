"""A segment's learning rows, built when they are asked for instead of kept as a second whole frame.

Qlib's DataHandlerLP keeps `_infer` (the raw frame after the inference processors) and `_learn` (`_infer` after
the learn processors) side by side, each as large as the dataset. Where every learn processor only reads and
writes the label, and works row by row or day by day (DropnaLabel, and CSZScoreNorm, CSRankNorm or Fillna on
the label: Alpha158's and Alpha360's defaults), a day's learning rows depend on that day's inference rows alone.
`LearnOnDemand` then runs the learn processors on the rows a fetch selects by day, so the learning frame of a
segment is Qlib's to the bit (tested) and only the inference frame stays in memory. Any other learn processor,
or a fetch that does not select whole days, takes Qlib's own path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from qlib.data.dataset.handler import DataHandler, DataHandlerLP
from qlib.data.dataset.processor import CSRankNorm, CSZScoreNorm, DropnaLabel, Fillna, get_group_columns
from qlib.data.dataset.utils import fetch_df_by_col

LABEL = "label"
POSITION = ("qtrack_row", "position")  # a row's place among the fetched rows, carried through the processors
DAY_OR_ROW_WISE = (CSZScoreNorm, CSRankNorm, Fillna)


def touches_label_only(processor: Any) -> bool:
    if isinstance(processor, DropnaLabel):
        return processor.fields_group == LABEL
    group = getattr(processor, "fields_group", None)
    return isinstance(processor, DAY_OR_ROW_WISE) and group in (LABEL, [LABEL])


def learns_on_demand(handler: Any) -> bool:
    """Whether `handler` builds its learning rows on demand (any handler: Qlib's own never does)."""
    return isinstance(handler, LearnOnDemand) and handler.learns_on_demand()


@dataclass
class LearnRows:
    """A fetch's learning rows without a copy of their features: `rows` are the inference rows (a view),
    `positions` the ones the learn processors keep, and `labels` their processed labels."""

    rows: pd.DataFrame
    positions: np.ndarray
    labels: pd.DataFrame

    def frame(self) -> pd.DataFrame:
        """Qlib's learning frame of these rows."""
        learned = self.rows.iloc[self.positions]
        with pd.option_context("mode.chained_assignment", None):  # `learned` is a new frame, not a view
            learned[self.labels.columns] = self.labels.to_numpy()
        return learned

    def feature_matrix(self) -> np.ndarray:
        """The inference rows' features as one 2-D array: a view of the frame where its feature columns are
        contiguous in one block (the fast engine's frame, and Qlib's feature group)."""
        columns = np.flatnonzero(self.rows.columns.get_level_values(0) == "feature")
        contiguous = columns.size and np.array_equal(columns, np.arange(columns[0], columns[-1] + 1))
        features = self.rows.iloc[:, columns[0] : columns[-1] + 1] if contiguous else self.rows.iloc[:, columns]
        return features.to_numpy()


class LearnOnDemand(DataHandlerLP):
    """A DataHandlerLP mixin: no `_learn` frame when the learn processors allow it (see the module's doc)."""

    learn_frame_built = False  # a fetch that needed the whole learning frame built it, the way Qlib does

    def learns_on_demand(self) -> bool:
        if self.learn_frame_built:
            return False
        processors = self.learn_processors
        based_on_infer = self.process_type == DataHandlerLP.PTYPE_A or not self.infer_processors
        return bool(processors) and based_on_infer and all(touches_label_only(p) for p in processors)

    def process_data(self, with_fit: bool = False) -> None:
        if not self.learns_on_demand():
            return super().process_data(with_fit)
        learn_processors, self.learn_processors = self.learn_processors, []
        try:
            super().process_data(with_fit)  # `_learn` is `_infer` itself: no copy, never read as such
        finally:
            self.learn_processors = learn_processors

    def fetch(self, selector: Any = slice(None, None), level: Any = "datetime", col_set: Any = DataHandler.CS_ALL,
              data_key: Any = DataHandlerLP.DK_I, squeeze: bool = False, proc_func: Any = None) -> Any:
        if data_key != DataHandlerLP.DK_L or not self.learns_on_demand():
            return super().fetch(selector, level, col_set, data_key, squeeze, proc_func)
        if level != "datetime" or proc_func is not None:  # not whole days: Qlib's whole learning frame
            self.learn_frame_built = True
            self.process_data()
            return super().fetch(selector, level, col_set, data_key, squeeze, proc_func)
        found = self.learn_rows(selector)
        label_only = col_set in (LABEL, [LABEL])
        frame = fetch_df_by_col(found.labels if label_only else found.frame(), col_set)
        if squeeze:
            frame = frame.squeeze()
            if isinstance(selector, (str, pd.Timestamp)):
                frame = frame.reset_index(level=level, drop=True)
        return frame

    def learn_rows(self, selector: Any) -> LearnRows:
        """The learning rows of the days `selector` picks, with the features left in the inference frame."""
        rows = None
        if self.fetch_orig:  # then Qlib's fetch of every day is the frame itself, not a copy
            whole = super().fetch(slice(None, None), "datetime", DataHandler.CS_RAW, DataHandlerLP.DK_I)
            rows = days_view(whole, selector)
        if rows is None:
            rows = super().fetch(selector, "datetime", DataHandler.CS_RAW, DataHandlerLP.DK_I)
        labels = rows.loc[:, get_group_columns(rows, LABEL)].copy()
        labels[POSITION] = np.arange(len(rows))
        for processor in self.learn_processors:
            labels = processor(labels)
        positions = labels.pop(POSITION).to_numpy()
        return LearnRows(rows, positions, labels)


def days_view(frame: pd.DataFrame, selector: Any) -> pd.DataFrame | None:
    """The rows of a span of days as a view of `frame` (sorted by day first), or None for other selectors.
    Qlib's fetch selects through `.loc` with a tuple, which copies the rows: a whole segment, for reading."""
    if isinstance(selector, (tuple, list)) and len(selector) == 2:
        selector = slice(*selector)
    if not isinstance(selector, slice) or selector.step is not None or frame.index.names[0] != "datetime":
        return None
    days = frame.index.get_level_values(0)
    if not days.is_monotonic_increasing:
        return None
    first = 0 if selector.start is None else days.searchsorted(pd.Timestamp(selector.start), "left")
    last = len(days) if selector.stop is None else days.searchsorted(pd.Timestamp(selector.stop), "right")
    return frame.iloc[first:last]
