"""Compiled kernels over the values inside each window: max/min, their positions, quantile and rank.

Same conventions as kernels.py (values[s, t] float64, windows clipped at first[s], NaN before it).
- max, min, quantile, rank: pandas over the window's non-NaN values (quantile linear, rank average, pct);
- argmax/argmin: `np.argmax` over the raw window, where NaN counts as the largest (and smallest) value.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

CACHE = True


@njit(cache=CACHE, error_model="numpy")
def _better(v, w, largest):
    return v > w if largest else v < w


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_extreme(values, first, n, largest):
    """Max (or min) of the window's non-NaN values. The best position is kept and the window rescanned
    only when it leaves, so a step costs O(1) on average."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        best = -1
        for t in range(first[s], days):
            lo = max(first[s], t - n + 1)
            if best < lo:
                best = -1
                for j in range(lo, t):
                    v = values[s, j]
                    if not np.isnan(v) and (best < 0 or _better(v, values[s, best], largest)):
                        best = j
            v = values[s, t]
            if not np.isnan(v) and (best < 0 or _better(v, values[s, best], largest)):
                best = t
            if best >= 0:
                out[s, t] = values[s, best]
    return out


@njit(parallel=True, cache=CACHE, error_model="numpy")
def roll_arg_extreme(values, first, n, largest):
    """1-based position of `np.argmax` (or argmin) in the raw window: the first NaN if there is one (numpy
    treats NaN as the largest and the smallest), else the first best value; NaN without any observation."""
    stocks, days = values.shape
    out = np.full((stocks, days), np.nan)
    for s in prange(stocks):
        best = -1  # first best non-NaN position in the window
        nan_at = -1  # first NaN position in the window
        nobs = 0
        for t in range(first[s], days):
            lo = max(first[s], t - n + 1)
            if t - n >= first[s] and not np.isnan(values[s, t - n]):
                nobs -= 1
            if (best >= 0 and best < lo) or (nan_at >= 0 and nan_at < lo):
                best = -1
                nan_at = -1
                for j in range(lo, t):
                    v = values[s, j]
                    if np.isnan(v):
                        if nan_at < 0:
                            nan_at = j
                    elif best < 0 or _better(v, values[s, best], largest):
                        best = j
            v = values[s, t]
            if np.isnan(v):
                if nan_at < 0:
                    nan_at = t
            else:
                nobs += 1
                if best < 0 or _better(v, values[s, best], largest):
                    best = t
            if nobs > 0:
                out[s, t] = (nan_at if nan_at >= 0 else best) - lo + 1.0
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


def roll_quantile(values, first, n, q):
    """pandas' linear-interpolation quantile of the window's non-NaN values."""
    return _roll_sorted(values, first, n, q, False)


def roll_rank_pct(values, first, n):
    """pandas' rolling rank(pct=True): average rank of the current value among the window's values."""
    return _roll_sorted(values, first, n, 0.0, True)


@njit(parallel=True, cache=CACHE, error_model="numpy")
def _roll_sorted(values, first, n, q, rank):
    """The window's non-NaN values kept sorted as it slides; each day's quantile `q`, or its rank."""
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
            if rank:
                if not np.isnan(val):
                    out[s, t] = _rank_pct(window[:count], val)
            elif count > 0:
                out[s, t] = _quantile(window[:count], q)
    return out


@njit(cache=CACHE, error_model="numpy")
def _quantile(ordered, q):
    count = ordered.size
    if count == 1:
        return ordered[0]
    position = q * (count - 1)
    idx = int(position)
    if position == idx:
        return ordered[idx]
    low = ordered[idx]
    return low + (ordered[idx + 1] - low) * (position - idx)


@njit(cache=CACHE, error_model="numpy")
def _rank_pct(ordered, val):
    low = np.searchsorted(ordered, val, side="left") + 1.0
    high = np.searchsorted(ordered, val, side="right") * 1.0
    return ((high * (high + 1) / 2) - ((low - 1) * low / 2)) / (high - low + 1) / ordered.size
