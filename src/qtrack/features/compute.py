"""The fast engine's computing of a load (qtrack.features.loader's Request): every expression over a panel of
the stored days, whole (`compute`) or from a resume day with the kernels' saved states (`plan_tail`,
`compute_tail`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qtrack.features import kernels
from qtrack.features import panel as panels
from qtrack.features.engine import Evaluator, Extension, check_extendable
from qtrack.features.expressions import Node
from qtrack.features.loader import Request

log = logging.getLogger("qtrack")


@dataclass
class Computed:
    """A computed frame, and (when asked for) the kernels' states after the checkpoint day."""

    frame: pd.DataFrame
    states: dict
    names: list[str]


def compute(request: Request, end: int, checkpoint: int = -1, names: list[str] | None = None) -> Computed:
    """Every expression over calendar days request.start..end; stateful kernels' states are saved after
    calendar day `checkpoint` (-1: not saved)."""
    began = time.perf_counter()
    names = sorted(request.spans) if names is None else names
    begin, stop = max(0, request.start - request.back), min(len(request.calendar) - 1, end + request.ahead)
    panel = panels.load(request.root, names, request.fields, begin, stop, request.freq)
    extension = Extension(checkpoint=checkpoint - begin if checkpoint >= 0 else -1)
    rows = _output_rows(panel, request.spans, request.calendar, request.start - begin, end - begin)
    # Saved states must reach the checkpoint for every stock; without them, stocks whose data ends early are
    # computed over their own days only (real data: delistings, and files stored to an earlier day).
    parts = [(panel, None)] if checkpoint >= 0 else _parts_by_end(panel, rows)
    values, days, stocks = _evaluate(parts, request.trees, rows, lambda tree: (request.start - begin, None), extension)
    frame = request.frame(values, begin + days, names, stocks)
    log.info("fast features: %d rows x %d columns in %.2fs", *values.shape, time.perf_counter() - began)
    return Computed(frame, extension.saved, names)


@dataclass
class Tail:
    """The rows of calendar days `resume`.. (to the data's end) for `names`, planned before they are
    computed, so that their number is known: `rows` [stock, panel day] selects them."""

    panel: panels.Panel
    rows: np.ndarray
    resume: int
    names: list[str]

    @property
    def size(self) -> int:
        return int(self.rows.sum())


def plan_tail(request: Request, resume: int, names: list[str]) -> Tail:
    for tree in request.trees:
        check_extendable(tree)
    end = len(request.calendar) - 1
    begin = max(0, resume - request.back - 1)
    panel = panels.load(request.root, names, request.fields, begin, end, request.freq)
    return Tail(panel, _output_rows(panel, request.spans, request.calendar, resume - begin, end - begin), resume, names)


def compute_tail(request: Request, tail: Tail, states: dict, checkpoint: int, out: np.ndarray | None = None):
    """The tail's float32 values [row, expression] (into `out` if given), its rows' calendar days and stock
    positions, and the kernels' states after calendar day `checkpoint`. The stateful kernels resume from
    `states`, saved after calendar day tail.resume - 1 by the build being extended."""
    begin = tail.panel.offset
    extension = Extension(resume_at=tail.resume - begin, states=states, checkpoint=checkpoint - begin)
    values, days, stocks = _evaluate(
        [(tail.panel, None)], request.trees, tail.rows, lambda tree: (tail.resume - begin, request.anchor(tree)),
        extension, out,
    )
    # No new day (the same calendar, other files): the checkpoint is still the day before the resume.
    return values, begin + days, stocks, extension.saved if checkpoint >= tail.resume else states


Part = tuple[panels.Panel, "np.ndarray | None"]  # a panel of some stocks, and their positions in the whole (None: all)


def _parts_by_end(panel: panels.Panel, rows: np.ndarray) -> list[Part]:
    groups = panels.end_groups(panel, rows.any(axis=1))
    if len(groups) == 1 and groups[0][0].size == len(panel.instruments) and groups[0][1] == panel.days:
        return [(panel, None)]
    return [(panels.narrowed(panel, members, days), members) for members, days in groups]


def _evaluate(parts: list[Part], trees: list[Node], rows: np.ndarray, where, extension: Extension,
              out=None) -> tuple[np.ndarray, ...]:
    """float32 values [row, expression] of the rows selected by `rows` [stock, day], datetime-major
    (Qlib's sort_index), into `out` if given. `where(tree)` gives (start, anchor) for Evaluator.top."""
    day_idx, stock_idx = np.nonzero(rows.T)
    values = np.empty((day_idx.size, len(trees)), dtype=np.float32, order="F") if out is None else out
    # Expressions that start on the same day share sub-expressions (SUMP, SUMN and SUMD share both
    # sums): computing them together lets a small memo catch every reuse.
    placed = [where(tree) for tree in trees]
    order = sorted(range(len(trees)), key=lambda j: (placed[j][0] - trees[j].window()[0], j))
    for panel, members in parts:
        evaluator = Evaluator(panel, extension=extension)  # one at a time: each holds its memo
        if members is None:
            positions, cells = None, stock_idx * panel.days + day_idx  # positions in the panel, raveled
        else:
            positions = np.flatnonzero(np.isin(stock_idx, members))
            cells = np.searchsorted(members, stock_idx[positions]) * panel.days + day_idx[positions]
        for j in order:
            start, anchor = placed[j]
            column = evaluator.top(trees[j], start, anchor).ravel()
            if positions is None:
                kernels.gather(column, cells, values[:, j])
            else:
                kernels.gather_at(column, cells, positions, values[:, j])
        del evaluator
    return values, day_idx, stock_idx


def _output_rows(panel: panels.Panel, spans: dict, calendar: pd.DatetimeIndex, start: int, end: int) -> np.ndarray:
    """[stock, day] True for the rows D.features returns: the stock's stored days within the requested
    range, on days its market file lists it."""
    days = np.arange(panel.days)
    stored = (days >= panel.first[:, None]) & (days <= panel.last[:, None])
    wanted = (days >= start) & (days <= end)
    return stored & wanted & panels.spans_mask(panel, spans, calendar)


__all__ = ["compute", "compute_tail", "plan_tail"]
