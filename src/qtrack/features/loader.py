"""A Qlib DataLoader that computes the handler's expressions with the fast engine.

It returns the frame QlibDataLoader returns (D.features for each group, columns named, index
(datetime, instrument) sorted, groups side by side), so Qlib's handler, processors and dataset run on it
unchanged. The instruments and their listing spans come from Qlib's own D.instruments.

Inside `raw_features.using(cache)` the loader serves its frame from the raw-feature cache, which keeps it
(with the kernels' running states) to the data's last day and extends it when the data grows. The computing
is qtrack.features.compute's: this module, which cached datasets' pickles name, imports no numba, so a run
whose features come from the cache does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from qlib.data.dataset.loader import DLWParser

from qtrack.features import raw_features
from qtrack.features.expressions import Node, parse


@dataclass
class Request:
    """What one load computes: the expressions and the calendar days and instruments they cover."""

    trees: list[Node]
    columns: list[tuple]
    grouped: bool
    calendar: pd.DatetimeIndex
    start: int  # calendar index of the first output day
    spans: dict[str, list]
    root: Path
    freq: str

    @property
    def back(self) -> int:
        return max(tree.window()[0] for tree in self.trees)

    @property
    def ahead(self) -> int:
        return max(tree.window()[1] for tree in self.trees)

    @property
    def fields(self) -> set[str]:
        return set().union(*(tree.fields() for tree in self.trees))

    def anchor(self, tree: Node) -> int:
        """The calendar day a full build starts this expression at (Qlib's load start)."""
        return max(0, self.start - tree.window()[0])

    def frame(self, values: np.ndarray, days: np.ndarray, names: list[str], stocks: np.ndarray) -> pd.DataFrame:
        index = pd.MultiIndex.from_arrays(
            [self.calendar[days], pd.Index(names, dtype=object)[stocks]], names=["datetime", "instrument"]
        )
        header = pd.MultiIndex.from_tuples(self.columns) if self.grouped else pd.Index([c[1] for c in self.columns])
        return pd.DataFrame(values, index=index, columns=header, copy=False)


class FastDataLoader(DLWParser):
    def __init__(self, config, freq: str = "day", **_ignored) -> None:
        self.freq = freq
        super().__init__(config)

    def load_group_df(self, instruments, exprs, names, start_time=None, end_time=None, gp_name=None):
        raise NotImplementedError("the fast engine computes every group in one pass: use load()")

    def load(self, instruments=None, start_time=None, end_time=None) -> pd.DataFrame:
        cache = raw_features.active()
        if cache is not None:
            return cache.frame(self, instruments, start_time, end_time)
        from qtrack.features.compute import compute  # numba: imported only when features are computed

        request = self.request(instruments, start_time)
        end = int(request.calendar.searchsorted(pd.Timestamp(end_time) if end_time else request.calendar[-1], "right"))
        return compute(request, end - 1).frame

    def request(self, instruments, start_time) -> Request:
        from qlib.data import D

        groups = self.fields if self.is_group else {None: self.fields}
        calendar = pd.DatetimeIndex(D.calendar(freq=self.freq, future=False))
        return Request(
            trees=[parse(expr) for exprs, _ in groups.values() for expr in exprs],
            columns=[(group, name) for group, (_, names) in groups.items() for name in names],
            grouped=self.is_group,
            calendar=calendar,
            start=int(calendar.searchsorted(pd.Timestamp(start_time) if start_time else calendar[0])),
            spans=_instrument_spans(instruments, self.freq),
            root=_data_root(self.freq),
            freq=self.freq,
        )


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


__all__ = ["FastDataLoader", "Request"]
