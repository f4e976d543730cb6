"""Compiled rolling kernels over a stocks x days panel, one stock per thread.

Every kernel takes `values[s, t]` (float64), the first day `first[s]` of each stock's series and the
window `n`, and writes NaN before `first[s]`. A window never reaches before `first[s]`: that is where
Qlib's series for the stock starts (the later of its data's first day and the expression's load start),
and pandas' `min_periods=1` windows are shorter there.

The arithmetic copies the code Qlib's numbers come from, step for step, so results are bit-identical
rather than merely close:
- mean, sum, var: pandas 2.x `roll_mean` / `roll_sum` / `roll_var` (Kahan-compensated online updates, a
  separate compensation for removals, and the count of consecutive equal values that makes a constant
  window exactly its value, or exactly zero variance);
- max, min, quantile, rank, argmax, argmin: in window_kernels.py;
- slope, rsquare, resi: Qlib's Cython `rolling.pyx` online sums, started at the series' first day.

Because those online sums depend on every day since the series' start, they cannot be restarted at a
later day without changing the last bits. So the stateful kernels (mean, sum, var, regression) can save
their running state after a `checkpoint` day and resume from a saved state (a `Carry`): that is how the
feature cache extends its frame with new days and still equals a full rebuild bit for bit. A state row
starts with a flag (1.0: saved); a stock without a saved state starts at its first day as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

CACHE = True
TOTAL_STATE = 8  # flag, nobs, neg, total, comp_add, comp_remove, same, prev
VAR_STATE = 8  # flag, nobs, mean, ssqdm, comp_add, comp_remove, same, prev
REGRESSION_STATE = 9  # flag, head, na_count, i_sum, x_sum, x2_sum, y_sum, y2_sum, xy_sum, then the ring


@dataclass
class Carry:
    """Resume at panel day `resume_at` from `state_in` (stocks whose flag is set); save the state after
    panel day `checkpoint` into `state_out`. -1 turns either off."""

    resume_at: int = -1
    state_in: np.ndarray | None = None
    checkpoint: int = -1
    state_out: np.ndarray | None = field(default=None, repr=False)


def _carried(carry: Carry | None, stocks: int, width: int) -> tuple[int, np.ndarray, int, np.ndarray]:
    """The kernel's resume day, input states, checkpoint and (fresh) output states; `carry.state_out` is
    set to the latter, which the kernel fills."""
    carry = carry or Carry()
    state_in = carry.state_in if carry.state_in is not None and carry.resume_at >= 0 else np.zeros((stocks, width))
    if state_in.shape != (stocks, width):
        raise ValueError(f"a saved kernel state of shape {state_in.shape}, expected {(stocks, width)}")
    carry.state_out = np.zeros((stocks, width))
    return carry.resume_at, np.ascontiguousarray(state_in, dtype=np.float64), carry.checkpoint, carry.state_out


def roll_mean(values, first, n, carry: Carry | None = None):
    return _roll_total(values, first, n, True, *_carried(carry, values.shape[0], TOTAL_STATE))


def roll_sum(values, first, n, carry: Carry | None = None):
    return _roll_total(values, first, n, False, *_carried(carry, values.shape[0], TOTAL_STATE))


def roll_var(values, first, n, carry: Carry | None = None):
    return _roll_var(values, first, n, *_carried(carry, values.shape[0], VAR_STATE))


def roll_regression(values, first, n, kind, carry: Carry | None = None):
    return _roll_regression(values, first, n, kind, *_carried(carry, values.shape[0], REGRESSION_STATE + n))


@njit(cache=CACHE)
def _resumes(s, start, resume_at, state_in):
    return resume_at >= 0 and state_in[s, 0] == 1.0 and start < resume_at


@njit(parallel=True, cache=CACHE, error_model="numpy")
def _roll_total(values, first, n, mean, resume_at, state_in, checkpoint, state_out):
    """pandas' roll_mean (mean=True) or roll_sum: Kahan sums, one compensation for additions and one for
    removals; a window of equal values is exactly that value (times the count, for a sum)."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        start = first[s]
        if start >= days:
            continue
        nobs = 0
        neg = 0
        total = 0.0
        comp_add = 0.0
        comp_remove = 0.0
        same = 0
        prev = values[s, start]
        begin = start
        if _resumes(s, start, resume_at, state_in):
            nobs, neg, total = int(state_in[s, 1]), int(state_in[s, 2]), state_in[s, 3]
            comp_add, comp_remove, same, prev = state_in[s, 4], state_in[s, 5], int(state_in[s, 6]), state_in[s, 7]
            begin = resume_at
        for t in range(begin, days):
            if t - n >= start:
                old = values[s, t - n]
                if not np.isnan(old):
                    nobs -= 1
                    y = -old - comp_remove
                    z = total + y
                    comp_remove = z - total - y
                    total = z
                    if np.signbit(old):
                        neg -= 1
            val = values[s, t]
            if not np.isnan(val):
                nobs += 1
                y = val - comp_add
                z = total + y
                comp_add = z - total - y
                total = z
                if np.signbit(val):
                    neg += 1
                if val == prev:
                    same += 1
                else:
                    same = 1
                prev = val
            if t == checkpoint:
                state_out[s, 0], state_out[s, 1], state_out[s, 2], state_out[s, 3] = 1.0, nobs, neg, total
                state_out[s, 4], state_out[s, 5], state_out[s, 6], state_out[s, 7] = comp_add, comp_remove, same, prev
            if nobs == 0:
                continue
            if not mean:
                out[s, t] = prev * nobs if same >= nobs else total
                continue
            result = total / nobs
            if same >= nobs:
                result = prev
            elif (neg == 0 and result < 0) or (neg == nobs and result > 0):
                result = 0.0  # pandas: a window of one sign keeps its sign
            out[s, t] = result
    return out


@njit(parallel=True, cache=CACHE, error_model="numpy")
def _roll_var(values, first, n, resume_at, state_in, checkpoint, state_out):
    """Sample variance (ddof 1); NaN below two observations."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        start = first[s]
        if start >= days:
            continue
        nobs = 0.0
        mean = 0.0
        ssqdm = 0.0
        comp_add = 0.0
        comp_remove = 0.0
        same = 0
        prev = values[s, start]
        begin = start
        if _resumes(s, start, resume_at, state_in):
            nobs, mean, ssqdm = state_in[s, 1], state_in[s, 2], state_in[s, 3]
            comp_add, comp_remove, same, prev = state_in[s, 4], state_in[s, 5], int(state_in[s, 6]), state_in[s, 7]
            begin = resume_at
        for t in range(begin, days):
            if t - n >= start:
                old = values[s, t - n]
                if not np.isnan(old):
                    nobs -= 1
                    if nobs:
                        prev_mean = mean - comp_remove
                        y = old - comp_remove
                        z = y - mean
                        comp_remove = z + mean - y
                        mean = mean - z / nobs
                        ssqdm = ssqdm - (old - prev_mean) * (old - mean)
                    else:
                        mean = 0.0
                        ssqdm = 0.0
            val = values[s, t]
            if not np.isnan(val):
                nobs += 1
                if val == prev:
                    same += 1
                else:
                    same = 1
                prev = val
                prev_mean = mean - comp_add
                y = val - comp_add
                z = y - mean
                comp_add = z + mean - y
                mean = mean + z / nobs
                ssqdm = ssqdm + (val - prev_mean) * (val - mean)
            if t == checkpoint:
                state_out[s, 0], state_out[s, 1], state_out[s, 2], state_out[s, 3] = 1.0, nobs, mean, ssqdm
                state_out[s, 4], state_out[s, 5], state_out[s, 6], state_out[s, 7] = comp_add, comp_remove, same, prev
            if nobs > 1:
                out[s, t] = 0.0 if same >= nobs else ssqdm / (nobs - 1.0)
    return out


SLOPE, RSQUARE, RESI = 0, 1, 2


@njit(parallel=True, cache=CACHE, error_model="numpy")
def _roll_regression(values, first, n, kind, resume_at, state_in, checkpoint, state_out):
    """Qlib's Cython rolling slope / rsquare / resi against the day index 1..n."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    ring_at = REGRESSION_STATE
    for s in prange(stocks):
        ring = np.full(n, np.nan)
        head = 0
        na_count = n
        i_sum = 0.0
        x_sum = 0.0
        x2_sum = 0.0
        y_sum = 0.0
        y2_sum = 0.0
        xy_sum = 0.0
        begin = first[s]
        if _resumes(s, first[s], resume_at, state_in):
            head, na_count, i_sum, x_sum = int(state_in[s, 1]), int(state_in[s, 2]), state_in[s, 3], state_in[s, 4]
            x2_sum, y_sum, y2_sum, xy_sum = state_in[s, 5], state_in[s, 6], state_in[s, 7], state_in[s, 8]
            ring[:] = state_in[s, ring_at : ring_at + n]
            begin = resume_at
        for t in range(begin, days):
            val = values[s, t]
            xy_sum = xy_sum - y_sum
            x2_sum = x2_sum + i_sum - 2 * x_sum
            x_sum = x_sum - i_sum
            front = ring[head]
            if not np.isnan(front):
                i_sum -= 1
                y_sum -= front
                y2_sum -= front * front
            else:
                na_count -= 1
            ring[head] = val
            head = (head + 1) % n
            if np.isnan(val):
                na_count += 1
            else:
                i_sum += 1
                x_sum += n
                x2_sum += n * n
                y_sum += val
                y2_sum += val * val
                xy_sum += n * val
            if t == checkpoint:
                state_out[s, 0], state_out[s, 1], state_out[s, 2], state_out[s, 3] = 1.0, head, na_count, i_sum
                state_out[s, 4], state_out[s, 5], state_out[s, 6], state_out[s, 7] = x_sum, x2_sum, y_sum, y2_sum
                state_out[s, 8] = xy_sum
                state_out[s, ring_at : ring_at + n] = ring
            count = n - na_count
            if kind == SLOPE:
                out[s, t] = (count * xy_sum - x_sum * y_sum) / (count * x2_sum - x_sum * x_sum)
            elif kind == RESI:
                slope = (count * xy_sum - x_sum * y_sum) / (count * x2_sum - x_sum * x_sum)
                x_mean = x_sum / count
                y_mean = y_sum / count
                out[s, t] = val - (slope * n + (y_mean - slope * x_mean))
            else:
                r = (count * xy_sum - x_sum * y_sum) / np.sqrt(
                    (count * x2_sum - x_sum * x_sum) * (count * y2_sum - y_sum * y_sum)
                )
                out[s, t] = r * r
    return out


@njit(parallel=True, cache=CACHE, error_model="numpy")
def shift(values, first, last, n):
    """`Series.shift(n)` within each stock's series [first, last]; n < 0 looks ahead."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan, dtype=values.dtype)
    for s in prange(stocks):
        for t in range(first[s], min(last[s] + 1, days)):
            j = t - n
            if first[s] <= j <= last[s]:
                out[s, t] = values[s, j]
    return out


@njit(parallel=True, cache=CACHE)
def gather(flat, cells, out):
    """`numpy.take(flat, cells, out=out)` on every core: the output rows are datetime-major, the panel stock-major,
    so each read is a cache miss, and one core spent 1 s of a 5 s Alpha158 build on 500 stocks here."""
    for r in prange(cells.size):
        out[r] = flat[cells[r]]


@njit(parallel=True, cache=CACHE)
def gather_at(flat, cells, positions, out):
    """`out[positions] = flat[cells]`, cast as `gather` casts: the rows of some of the frame's stocks."""
    for i in prange(cells.size):
        out[positions[i]] = flat[cells[i]]
