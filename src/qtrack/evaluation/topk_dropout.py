"""TopkDropoutStrategy's daily choice (which held stocks to sell, which to buy) on arrays.

Qlib's `generate_trade_decision` (method_sell=bottom, method_buy=top) makes it with four pandas sorts and an
Index union a day. This makes the same choice with the same sort: pandas' `Series.sort_values` is
`nargsort(values, "quicksort", ascending, "last")`, and that function is called here on the same values, in the
same dtype and order, so tied scores resolve exactly as in Qlib. The union of the held and the new names follows
`Index.union`: sorted, except that an empty side, or two equal sides, leave the other side's order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.core.sorting import nargsort


def choose(scores: pd.Series, held: list[str], topk: int, n_drop: int) -> tuple[list[str], list[str]]:
    """(the held stocks to sell, in holding order; the stocks to buy, best first) for one day's scores."""
    values, names = scores.to_numpy(), scores.index.to_numpy()
    where = {name: i for i, name in enumerate(names)}
    last = _by_score(_lookup(values, where, held), np.asarray(held, dtype=object))
    kept = set(last)
    fresh = np.array([name not in kept for name in names], dtype=bool)
    today = list(_by_score(values[fresh], names[fresh]))[: n_drop + topk - len(last)]
    union = _union(list(last), today)
    comb = list(_by_score(_lookup(values, where, union), np.asarray(union, dtype=object)))
    dropped = set(comb[-n_drop:])  # as Qlib: with n_drop=0, [-0:] is every stock
    sell = [name for name in last if name in dropped]
    return sell, today[: len(sell) + topk - len(last)]


def _lookup(values: np.ndarray, where: dict[str, int], names: list[str]) -> np.ndarray:
    """`scores.reindex(names)`: NaN where a name has no score, in the scores' dtype."""
    found = np.full(len(names), np.nan, dtype=values.dtype)
    for i, name in enumerate(names):
        if name in where:
            found[i] = values[where[name]]
    return found


def _by_score(values: np.ndarray, names: np.ndarray) -> np.ndarray:
    """`Series(values, names).sort_values(ascending=False).index`."""
    return names[nargsort(values, kind="quicksort", ascending=False, na_position="last")]


def _union(last: list[str], today: list[str]) -> list[str]:
    if not today or last == today:
        return last
    if not last:
        return today
    return sorted(set(last) | set(today))
