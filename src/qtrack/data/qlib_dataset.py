"""Qlib's DatasetH, fetching a segment's rows before its columns.

Qlib's handler selects the columns of the whole frame first (a copy of every row of every segment) and
only then the segment's rows. On a 500-symbol, 14-year dataset, preparing the test segment with all
columns took 7.86 s that way and 0.29 s rows first; the training and validation sets 2.14 s and 0.97 s.
The frames are equal (values, index, columns, dtypes). Everything else (handler, processors, segments,
pickling) is Qlib's.
"""

from __future__ import annotations

from typing import Any

from qlib.data.dataset import DatasetH as QlibDatasetH
from qlib.data.dataset.handler import DataHandler, DataHandlerLP
from qlib.data.dataset.utils import fetch_df_by_col

from qtrack.data.learn_rows import learns_on_demand
from qtrack.qlib_compat import SegmentHook


class DatasetH(SegmentHook, QlibDatasetH):
    def prepare_segment(self, slc: Any, **kwargs: Any) -> Any:
        col_set = kwargs.pop("col_set", DataHandler.CS_ALL)
        # Learning rows built on demand (qtrack.data.learn_rows) are built for the columns asked for.
        on_demand = kwargs.get("data_key") == DataHandlerLP.DK_L and learns_on_demand(self.handler)
        if kwargs.get("proc_func") is not None or kwargs.get("squeeze") or on_demand:
            return super().prepare_segment(slc, col_set=col_set, **kwargs)
        rows = super().prepare_segment(slc, col_set=DataHandler.CS_RAW, **kwargs)
        return fetch_df_by_col(rows, col_set)


def is_time_series(dataset: Any) -> bool:
    """A TSDatasetH: its segments are samplers of step_len days, not frames."""
    from qlib.data.dataset import TSDatasetH

    return isinstance(dataset, TSDatasetH)


def frames(dataset: Any, segments: Any, **kwargs: Any) -> Any:
    """`dataset.prepare` as frames, for a TSDatasetH too, whose `prepare` returns samplers (Qlib's SignalRecord
    reads a TSDatasetH's labels the same way)."""
    from qlib.data.dataset import DatasetH as PlainDatasetH
    from qlib.utils.mod import class_casting

    if is_time_series(dataset):
        with class_casting(dataset, PlainDatasetH):
            return dataset.prepare(segments, **kwargs)
    return dataset.prepare(segments, **kwargs)


def feature_rows(dataset: Any, days: Any, count: int) -> Any:
    """The first `count` model inputs on `days`: feature rows (a frame), or for a TSDatasetH the samples a network
    reads (an array of count x step_len x features, with Qlib's ffill+bfill)."""
    import numpy as np

    if not is_time_series(dataset):
        return dataset.prepare(days, col_set="feature", data_key=DataHandlerLP.DK_I).head(count)
    sampler = dataset.prepare(days, col_set="feature", data_key=DataHandlerLP.DK_I)
    sampler.config(fillna_type="ffill+bfill")
    return np.stack([sampler[index] for index in range(min(count, len(sampler)))]).astype("float32")


def with_segments(dataset: Any, handler: Any, segments: dict) -> Any:
    """A dataset of the same kind as `dataset` (a DatasetH, or a TSDatasetH of its step_len) over `handler` and
    `segments`: a walk-forward window's view of the shared handler."""
    from qlib.data.dataset import TSDatasetH

    if is_time_series(dataset):
        return TSDatasetH(handler=handler, segments=segments, step_len=dataset.step_len)
    return DatasetH(handler=handler, segments=segments)
