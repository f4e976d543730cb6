"""One fix to Qlib's backtest, applied to both backtest engines.

`Position.get_stock_list` builds its list from a set, so its order follows Python's string hashing, which
changes from process to process. TopkDropoutStrategy sorts the held stocks by score from that order, and
tree models give tied scores often, so the same predictions gave different trades, costs and returns in
two runs (seen here: annualised excess return -0.139, -0.079 and -0.157 from one pred.pkl). The held stocks
are listed in the order they were bought instead, which makes every backtest reproducible.
"""

from __future__ import annotations

NOT_STOCKS = ("cash", "now_account_value", "cash_delay")


def _stock_list(self) -> list[str]:
    return [key for key in self.position if key not in NOT_STOCKS]


def apply() -> None:
    from qlib.backtest.position import Position

    Position.get_stock_list = _stock_list
