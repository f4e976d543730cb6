"""Evaluate Qlib expressions on a panel with Qlib's numbers.

Element-wise operators run numpy on the whole panel with the dtypes Qlib's pandas series have: fields are
float32, so `($close-$open)/$open` stays float32, a comparison is boolean, and anything that went through a
rolling window is float64 (pandas rolls in float64). Every top-level expression is cast to float32 at the
end, as Qlib's ExpressionProvider does.

Each top-level expression is computed from its own start day, `start - back` (back = how far it reads into
the past), exactly where Qlib loads it from: the online sums of Slope/Rsquare/Resi and the Kahan sums of
pandas' rolling mean start there, so starting anywhere else would change the last bits.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from qtrack.features import kernels, window_kernels
from qtrack.features.expressions import ELEMENTWISE, PAIRWISE, Node, NotExtendable, UnsupportedExpression
from qtrack.features.panel import Panel

# Sub-expression results kept for reuse, in float64 panels: enough for what the expressions that start on
# one day share (they are computed together), little enough to keep the step's memory low.
MEMO_PANELS = 24
# Qlib masks Rsquare and Corr where a window's standard deviation is within this of zero (ops.py).
FLAT_STD = 2e-05


class Memo:
    """Sub-expression results by (expression, start day), least recently used first out past a byte budget.
    Alpha158 repeats sub-expressions across its features (SUMP, SUMN and SUMD share both their sums)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.items: OrderedDict[tuple[str, int], Any] = OrderedDict()

    def get(self, key: tuple[str, int]):
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: tuple[str, int], value) -> None:
        self.items[key] = value
        self.used += getattr(value, "nbytes", 0)
        while self.used > self.budget and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.used -= getattr(old, "nbytes", 0)


STATEFUL = ("Mean", "Sum", "Std", "Var", "Slope", "Rsquare", "Resi", "Corr")


@dataclass
class Extension:
    """How an evaluation continues a saved one. Stateful kernels resume at panel day `resume_at` from
    `states` (by state key: kernel call and the absolute day its expression starts at) and save their
    states after panel day `checkpoint` into `saved`. -1 turns either off."""

    resume_at: int = -1
    states: dict[tuple[str, int], Any] = field(default_factory=dict)
    checkpoint: int = -1
    saved: dict[tuple[str, int], Any] = field(default_factory=dict)


def check_extendable(node: Node, below_window: bool = False) -> None:
    """NotExtendable unless every stateful operator sits under element-wise operators only and reads no
    future day: then its values from the resume day on depend only on its saved state and the days its
    window still holds."""
    if node.op in STATEFUL and (below_window or node.window()[1] > 0):
        raise NotExtendable(f"{node.key()} (a running sum under a window, or over a future day)")
    windowed = below_window or node.op not in (*ELEMENTWISE, *PAIRWISE)
    for child in node.children:
        check_extendable(child, windowed)


class Evaluator:
    def __init__(self, panel: Panel, memo_panels: int = MEMO_PANELS, extension: Extension | None = None) -> None:
        self.panel = panel
        self.memo = Memo(memo_panels * len(panel.instruments) * panel.days * 8)
        self.extension = extension or Extension()
        self.anchors: dict[int, int] = {}  # panel origin -> absolute day its expressions start at in a full build

    def origin(self, node: Node, start: int) -> int:
        """The panel day Qlib starts loading a whole expression from: `start` less its look-back."""
        back, _ = node.window()
        return max(0, start + self.panel.offset - back) - self.panel.offset

    def top(self, node: Node, start: int, anchor: int | None = None) -> np.ndarray:
        """Float32 [stock, day] values of a whole expression whose first output day is panel day `start`.

        Resuming (`anchor` given: the absolute day the expression starts at in the full build), the
        expression is read from one day before its look-back, so that the values a window removes on the
        resume day are there too."""
        origin = self.origin(node, start) if anchor is None else max(0, start - node.window()[0] - 1)
        self.anchors[origin] = origin + self.panel.offset if anchor is None else anchor
        with np.errstate(all="ignore"):
            values = self.eval(node, origin)
        return np.asarray(values, dtype=np.float32)

    def first(self, origin: int) -> np.ndarray:
        return np.maximum(self.panel.first, origin)

    def eval(self, node: Node, origin: int):
        return self._memoised("", node, origin, lambda: self._compute(node, origin))

    def _memoised(self, kind: str, node: Node, origin: int, compute):
        """`compute()` once per (kind, expression, start day); a node that reads no history starts anywhere."""
        key = (kind + node.key(), origin if node.window()[0] else 0)
        value = self.memo.get(key)
        if value is None:
            value = compute()
            self.memo.put(key, value)
        return value

    def _compute(self, node: Node, origin: int):
        op, args = node.op, node.args
        if op == "Feature":
            return self.panel.fields[args[0]]
        if op == "Const":
            return args[0]
        if op in ELEMENTWISE:
            return getattr(np, ELEMENTWISE[op])(self.eval(args[0], origin))
        if op in PAIRWISE:
            return getattr(np, PAIRWISE[op])(self.eval(args[0], origin), self.eval(args[1], origin))
        if op == "Ref":
            values = np.ascontiguousarray(self.eval(args[0], origin))
            return kernels.shift(values, self.first(origin), self.panel.last, int(args[1]))
        if op == "Corr":
            return self._corr(node, origin)
        raw = self._float64(args[0], origin)
        return self._rolling(node, origin, raw, self._prepped(args[0], origin, raw))

    def _float64(self, node: Node, origin: int) -> np.ndarray:
        def convert():
            values = self.eval(node, origin)
            if np.isscalar(values):
                raise UnsupportedExpression(f"a rolling window over a constant ({node.key()})")
            return np.ascontiguousarray(values, dtype=np.float64)

        return self._memoised("float64:", node, origin, convert)

    def _prepped(self, node: Node, origin: int, raw: np.ndarray) -> np.ndarray:
        return self._memoised("prepped:", node, origin, lambda: _prepped(raw))

    def _kernel(self, tag: str, node: Node, origin: int, kernel, *args) -> np.ndarray:
        """A stateful kernel's call, resumed from and saved to the extension's states."""
        ext = self.extension
        key = (f"{tag}:{node.key()}", self.anchors[origin])
        if ext.resume_at >= 0 and key not in ext.states:
            raise NotExtendable(f"no saved state for {key[0]}")
        carry = kernels.Carry(ext.resume_at, ext.states.get(key), ext.checkpoint)
        result = kernel(*args, self.first(origin), node.length, carry=carry)
        if ext.checkpoint >= 0:
            ext.saved[key] = carry.state_out
        return result

    def _regression(self, tag: str, node: Node, origin: int, raw: np.ndarray, kind: int) -> np.ndarray:
        return self._kernel(tag, node, origin, partial(kernels.roll_regression, kind=kind), raw)

    def _std(self, tag: str, node: Node, origin: int, x: np.ndarray) -> np.ndarray:
        return _std_of(self._kernel(tag, node, origin, kernels.roll_var, x))

    def _flat(self, tag: str, node: Node, origin: int, x: np.ndarray) -> np.ndarray:
        """np.isclose(rolling std, 0, atol=2e-05), as Qlib masks Rsquare and Corr."""
        return np.abs(self._std(tag, node, origin, x)) <= FLAT_STD

    def _rolling(self, node: Node, origin: int, raw: np.ndarray, x: np.ndarray) -> np.ndarray:
        op, args, first, n = node.op, node.args, self.first(origin), node.length
        if op in ("Slope", "Resi"):  # Qlib's Cython code takes the raw values, inf included
            return self._regression("regression", node, origin, raw, kernels.SLOPE if op == "Slope" else kernels.RESI)
        if op == "Rsquare":
            result = self._regression("regression", node, origin, raw, kernels.RSQUARE)
            result[self._flat("flat", node, origin, x)] = np.nan
            return result
        if op == "Mean":
            return self._kernel("mean", node, origin, kernels.roll_mean, x)
        if op == "Sum":
            return self._kernel("sum", node, origin, kernels.roll_sum, x)
        if op == "Var":
            return self._kernel("var", node, origin, kernels.roll_var, x)
        if op == "Std":
            return self._std("var", node, origin, x)
        if op in ("Max", "Min"):
            return window_kernels.roll_extreme(x, first, n, op == "Max")
        if op in ("IdxMax", "IdxMin"):
            return window_kernels.roll_arg_extreme(x, first, n, op == "IdxMax")
        if op == "Quantile":
            return window_kernels.roll_quantile(x, first, n, float(args[2]))
        if op == "Rank":
            return window_kernels.roll_rank_pct(x, first, n)
        raise UnsupportedExpression(f"operator {op}")

    def _corr(self, node: Node, origin: int) -> np.ndarray:
        """pandas' rolling corr of two series, then Qlib's mask of flat windows."""
        left_node, right_node, _ = node.args
        left, right = self.eval(left_node, origin), self.eval(right_node, origin)
        # pandas aligns the pair first: each side is NaN where the other is NaN (or inf: 0 * inf is NaN).
        x = _prepped(np.asarray(left + 0 * right, dtype=np.float64))
        y = _prepped(np.asarray(right + 0 * left, dtype=np.float64))
        mean_xy = self._kernel("mean_xy", node, origin, kernels.roll_mean, x * y)
        mean_x = self._kernel("mean_x", node, origin, kernels.roll_mean, x)
        mean_y = self._kernel("mean_y", node, origin, kernels.roll_mean, y)
        count = self._kernel("count", node, origin, kernels.roll_sum, (~np.isnan(x + y)).astype(np.float64))
        count[np.isnan(count)] = 0.0  # pandas' roll_sum with min_periods=0 gives 0 for an empty window
        numerator = (mean_xy - mean_x * mean_y) * (count / (count - 1))
        variance_x = self._kernel("var_x", node, origin, kernels.roll_var, x)
        variance_y = self._kernel("var_y", node, origin, kernels.roll_var, y)
        result = numerator / (variance_x * variance_y) ** 0.5
        flat = self._flat("flat_left", node, origin, _prepped(np.asarray(left, dtype=np.float64)))
        flat |= self._flat("flat_right", node, origin, _prepped(np.asarray(right, dtype=np.float64)))
        result[flat] = np.nan
        return result


def _prepped(values: np.ndarray) -> np.ndarray:
    """What pandas' rolling windows compute on: float64 with inf turned into NaN (`_prep_values`)."""
    infinite = np.isinf(values)
    if infinite.any():
        values = np.where(infinite, np.nan, values)
    return np.ascontiguousarray(values, dtype=np.float64)


def _std_of(variance: np.ndarray) -> np.ndarray:
    result = np.sqrt(variance)
    result[variance < 0] = 0.0  # pandas' zsqrt
    return result
