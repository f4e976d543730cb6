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
- max, min, quantile, rank: pandas over the window's non-NaN values (quantile linear, rank average, pct);
- argmax/argmin: `np.argmax` over the raw window, where NaN counts as the largest value;
- slope, rsquare, resi: Qlib's Cython `rolling.pyx` online sums, started at the series' first day.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

CACHE = True


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_mean(values, first, n):
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
            if nobs > 0:
                result = total / nobs
                if same >= nobs:
                    result = prev
                elif neg == 0 and result < 0:
                    result = 0.0
                elif neg == nobs and result > 0:
                    result = 0.0
                out[s, t] = result
    return out


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_sum(values, first, n):
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        start = first[s]
        if start >= days:
            continue
        nobs = 0
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
            val = values[s, t]
            if not np.isnan(val):
                nobs += 1
                y = val - comp_add
                z = total + y
                comp_add = z - total - y
                total = z
                if val == prev:
                    same += 1
                else:
                    same = 1
                prev = val
            if nobs > 0:
                out[s, t] = prev * nobs if same >= nobs else total
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


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_extreme(values, first, n, largest):
    """Max (or min) of the window's non-NaN values."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        for t in range(first[s], days):
            best = np.nan
            for j in range(max(first[s], t - n + 1), t + 1):
                v = values[s, j]
                if np.isnan(v):
                    continue
                if np.isnan(best) or (v > best if largest else v < best):
                    best = v
            out[s, t] = best
    return out


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_arg_extreme(values, first, n, largest):
    """1-based position of `np.argmax` (or argmin) in the raw window; NaN wins, as in numpy."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        for t in range(first[s], days):
            lo = max(first[s], t - n + 1)
            nobs = 0
            best = 0
            found_nan = False
            for j in range(lo, t + 1):
                v = values[s, j]
                if np.isnan(v):
                    if not found_nan:
                        found_nan = True
                        best = j - lo
                    continue
                nobs += 1
                if not found_nan:
                    w = values[s, lo + best]
                    if v > w if largest else v < w:
                        best = j - lo
            if nobs > 0:
                out[s, t] = best + 1.0
    return out


@njit(cache=CACHE, error_model="numpy")
def _insert(window, count, value):
    pos = count
    while pos > 0 and window[pos - 1] > value:
        window[pos] = window[pos - 1]
        pos -= 1
    window[pos] = value


@njit(cache=CACHE, error_model="numpy")
def _remove(window, count, value):
    pos = np.searchsorted(window[:count], value)
    for j in range(pos, count - 1):
        window[j] = window[j + 1]


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_quantile(values, first, n, q):
    """pandas' linear-interpolation quantile of the window's non-NaN values."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        window = np.empty(n)
        count = 0
        for t in range(first[s], days):
            if t - n >= first[s]:
                old = values[s, t - n]
                if not np.isnan(old):
                    _remove(window, count, old)
                    count -= 1
            val = values[s, t]
            if not np.isnan(val):
                _insert(window, count, val)
                count += 1
            if count == 0:
                continue
            if count == 1:
                out[s, t] = window[0]
                continue
            position = q * (count - 1)
            idx = int(position)
            if position == idx:
                out[s, t] = window[idx]
            else:
                low = window[idx]
                out[s, t] = low + (window[idx + 1] - low) * (position - idx)
    return out


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_rank_pct(values, first, n):
    """pandas' rolling rank(pct=True): average rank of the current value among the window's values."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        window = np.empty(n)
        count = 0
        for t in range(first[s], days):
            if t - n >= first[s]:
                old = values[s, t - n]
                if not np.isnan(old):
                    _remove(window, count, old)
                    count -= 1
            val = values[s, t]
            if np.isnan(val):
                continue
            _insert(window, count, val)
            count += 1
            low = np.searchsorted(window[:count], val, side="left") + 1.0
            high = np.searchsorted(window[:count], val, side="right") * 1.0
            rank = ((high * (high + 1) / 2) - ((low - 1) * low / 2)) / (high - low + 1)
            out[s, t] = rank / count
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
