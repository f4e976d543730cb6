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
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

CACHE = True


def roll_mean(values, first, n):
    return _roll_total(values, first, n, True)


def roll_sum(values, first, n):
    return _roll_total(values, first, n, False)


@njit(parallel=True, cache=CACHE, error_model="numpy")
def _roll_total(values, first, n, mean):
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
        for t in range(start, days):
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
def roll_var(values, first, n):
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
        for t in range(start, days):
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
            if nobs > 1:
                out[s, t] = 0.0 if same >= nobs else ssqdm / (nobs - 1.0)
    return out


SLOPE, RSQUARE, RESI = 0, 1, 2


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_regression(values, first, n, kind):
    """Qlib's Cython rolling slope / rsquare / resi against the day index 1..n."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
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
        for t in range(first[s], days):
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
