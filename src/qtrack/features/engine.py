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
from typing import Any

import numpy as np

from qtrack.features import kernels, window_kernels
from qtrack.features.expressions import ELEMENTWISE, PAIRWISE, Node, UnsupportedExpression
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


class Evaluator:
    def __init__(self, panel: Panel, memo_panels: int = MEMO_PANELS) -> None:
        self.panel = panel
        self.memo = Memo(memo_panels * len(panel.instruments) * panel.days * 8)

    def origin(self, node: Node, start: int) -> int:
        """The panel day Qlib starts loading a whole expression from: `start` less its look-back."""
        back, _ = node.window()
        return max(0, start + self.panel.offset - back) - self.panel.offset

    def top(self, node: Node, start: int) -> np.ndarray:
        """Float32 [stock, day] values of a whole expression whose first output day is panel day `start`."""
        origin = self.origin(node, start)
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
        return self._rolling(op, raw, self.first(origin), node.length, args, self._prepped(args[0], origin, raw))

    def _float64(self, node: Node, origin: int) -> np.ndarray:
        def convert():
            values = self.eval(node, origin)
            if np.isscalar(values):
                raise UnsupportedExpression(f"a rolling window over a constant ({node.key()})")
            return np.ascontiguousarray(values, dtype=np.float64)

        return self._memoised("float64:", node, origin, convert)

    def _prepped(self, node: Node, origin: int, raw: np.ndarray) -> np.ndarray:
        return self._memoised("prepped:", node, origin, lambda: _prepped(raw))

    def _rolling(self, op: str, raw: np.ndarray, first: np.ndarray, n: int, args: tuple, x: np.ndarray) -> np.ndarray:
        if op in ("Slope", "Resi"):  # Qlib's Cython code takes the raw values, inf included
            kind = kernels.SLOPE if op == "Slope" else kernels.RESI
            return kernels.roll_regression(raw, first, n, kind)
        if op == "Rsquare":
            result = kernels.roll_regression(raw, first, n, kernels.RSQUARE)
            result[_flat(x, first, n)] = np.nan
            return result
        if op == "Mean":
            return kernels.roll_mean(x, first, n)
        if op == "Sum":
            return kernels.roll_sum(x, first, n)
        if op == "Var":
            return kernels.roll_var(x, first, n)
        if op == "Std":
            return _std(x, first, n)
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
        first, n = self.first(origin), node.length
        # pandas aligns the pair first: each side is NaN where the other is NaN (or inf: 0 * inf is NaN).
        x = _prepped(np.asarray(left + 0 * right, dtype=np.float64))
        y = _prepped(np.asarray(right + 0 * left, dtype=np.float64))
        mean_xy = kernels.roll_mean(x * y, first, n)
        mean_x = kernels.roll_mean(x, first, n)
        mean_y = kernels.roll_mean(y, first, n)
        count = kernels.roll_sum((~np.isnan(x + y)).astype(np.float64), first, n)
        count[np.isnan(count)] = 0.0  # pandas' roll_sum with min_periods=0 gives 0 for an empty window
        numerator = (mean_xy - mean_x * mean_y) * (count / (count - 1))
        result = numerator / (kernels.roll_var(x, first, n) * kernels.roll_var(y, first, n)) ** 0.5
        flat = _flat(_prepped(np.asarray(left, dtype=np.float64)), first, n)
        flat |= _flat(_prepped(np.asarray(right, dtype=np.float64)), first, n)
        result[flat] = np.nan
        return result


def _prepped(values: np.ndarray) -> np.ndarray:
    """What pandas' rolling windows compute on: float64 with inf turned into NaN (`_prep_values`)."""
    infinite = np.isinf(values)
    if infinite.any():
        values = np.where(infinite, np.nan, values)
    return np.ascontiguousarray(values, dtype=np.float64)


def _std(x: np.ndarray, first: np.ndarray, n: int) -> np.ndarray:
    variance = kernels.roll_var(x, first, n)
    result = np.sqrt(variance)
    result[variance < 0] = 0.0  # pandas' zsqrt
    return result


def _flat(x: np.ndarray, first: np.ndarray, n: int) -> np.ndarray:
    """np.isclose(rolling std, 0, atol=2e-05), as Qlib masks Rsquare and Corr."""
    return np.abs(_std(x, first, n)) <= FLAT_STD
