"""A Qlib DataLoader that computes the handler's expressions with the fast engine.

It returns the frame QlibDataLoader returns (D.features for each group, columns named, index
(datetime, instrument) sorted, groups side by side), so Qlib's handler, processors and dataset run on it
unchanged. The instruments and their listing spans come from Qlib's own D.instruments.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from qlib.data.dataset.loader import DLWParser

from qtrack.features import panel as panels
from qtrack.features.engine import Evaluator
from qtrack.features.expressions import parse

log = logging.getLogger("qtrack")


class FastDataLoader(DLWParser):
    def __init__(self, config, freq: str = "day", **_ignored) -> None:
        self.freq = freq
        super().__init__(config)

    def load_group_df(self, instruments, exprs, names, start_time=None, end_time=None, gp_name=None):
        raise NotImplementedError("the fast engine computes every group in one pass: use load()")

    def load(self, instruments=None, start_time=None, end_time=None) -> pd.DataFrame:
        from qlib.data import D

        began = time.perf_counter()
        groups = self.fields if self.is_group else {None: self.fields}
        trees = {group: [parse(expr) for expr in exprs] for group, (exprs, _) in groups.items()}
        every = [tree for group_trees in trees.values() for tree in group_trees]
        calendar = pd.DatetimeIndex(D.calendar(freq=self.freq, future=False))
        start = int(calendar.searchsorted(pd.Timestamp(start_time) if start_time else calendar[0]))
        end = int(calendar.searchsorted(pd.Timestamp(end_time) if end_time else calendar[-1], side="right")) - 1
        back = max(tree.window()[0] for tree in every)
        ahead = max(tree.window()[1] for tree in every)
        spans = _instrument_spans(instruments, self.freq)
        names = sorted(spans)
        begin, stop = max(0, start - back), min(len(calendar) - 1, end + ahead)
        fields = set().union(*(tree.fields() for tree in every))
        panel = panels.load(_data_root(self.freq), names, fields, begin, stop, self.freq)

        rows = _output_rows(panel, spans, calendar, start - begin, end - begin)
        day_idx, stock_idx = np.nonzero(rows.T)  # datetime-major, instruments sorted: Qlib's sort_index
        columns = [(group, name) for group, (_, group_names) in groups.items() for name in group_names]
        values = np.empty((day_idx.size, len(columns)), dtype=np.float32, order="F")
        evaluator = Evaluator(panel)
        cells = stock_idx * panel.days + day_idx  # positions in a [stock, day] panel, raveled
        # Expressions that start on the same day share sub-expressions (SUMP, SUMN and SUMD share both
        # sums): computing them together lets a small memo catch every reuse.
        order = sorted(range(len(every)), key=lambda j: (evaluator.origin(every[j], start - begin), j))
        for j in order:
            np.take(evaluator.top(every[j], start - begin).ravel(), cells, out=values[:, j])
        index = pd.MultiIndex.from_arrays(
            [calendar[begin + day_idx], pd.Index(names, dtype=object)[stock_idx]], names=["datetime", "instrument"]
        )
        header = pd.MultiIndex.from_tuples(columns) if self.is_group else pd.Index([c[1] for c in columns])
        frame = pd.DataFrame(values, index=index, columns=header, copy=False)
        log.info("fast features: %d rows x %d columns in %.2fs", *values.shape, time.perf_counter() - began)
        return frame


def _instrument_spans(instruments, freq: str) -> dict[str, list]:
    from qlib.data import D

    if instruments is None:
        instruments = "all"
    if isinstance(instruments, (list, tuple)):
        return {name: None for name in instruments}  # D.features applies no spans to a plain list
    if isinstance(instruments, str):
        instruments = D.instruments(instruments)
    return D.list_instruments(instruments, freq=freq, as_list=False)


def _data_root(freq: str) -> Path:
    from qlib.config import C

    return Path(C.dpm.get_data_uri(freq))


def _output_rows(panel: panels.Panel, spans: dict, calendar: pd.DatetimeIndex, start: int, end: int) -> np.ndarray:
    """[stock, day] True for the rows D.features returns: the stock's stored days within the requested
    range, on days its market file lists it."""
    days = np.arange(panel.days)
    stored = (days >= panel.first[:, None]) & (days <= panel.last[:, None])
    wanted = (days >= start) & (days <= end)
    return stored & wanted & panels.spans_mask(panel, spans, calendar)
