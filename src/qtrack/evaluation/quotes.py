"""What the fast backtest reads and charges: Qlib's Exchange quote as dense arrays, the daily signal, and its cost
rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qtrack.features import panel as panels

BUY, SELL = 1, 0  # qlib.backtest.decision.OrderDir


@dataclass
class Quote:
    """Daily quotes of every listed stock: arrays [day, stock], NaN where Qlib's quote has no row."""

    days: pd.DatetimeIndex
    column: dict[str, int]
    close: np.ndarray
    deal: np.ndarray
    factor: np.ndarray
    limit_buy: np.ndarray
    limit_sell: np.ndarray
    adjusted_prices: bool  # Qlib's `trade_w_adj_price`: a factor is missing, so no trade-unit rounding

    def tradable(self, d: int, stock: str, direction: int | None = None) -> bool:
        """Exchange.is_stock_tradable: listed, not suspended, not at the limit (either side when None)."""
        s = self.column.get(stock)
        if s is None or np.isnan(self.close[d, s]):
            return False
        if direction is None:
            return not (self.limit_buy[d, s] or self.limit_sell[d, s])
        return not (self.limit_buy[d, s] if direction == BUY else self.limit_sell[d, s])

    def suspended(self, d: int, stock: str) -> bool:
        s = self.column.get(stock)
        return s is None or np.isnan(self.close[d, s])


def load_quote(start_time, end_time, deal_price: str, limit_threshold) -> tuple[Quote, list[pd.Timestamp]]:
    """The quote over the backtest's trading days, as Qlib's Exchange would load it."""
    from qlib.config import C
    from qlib.data import D

    calendar = D.calendar(freq="day", future=True)
    first = int(calendar.searchsorted(pd.Timestamp(start_time)))
    last = int(calendar.searchsorted(pd.Timestamp(end_time), side="right")) - 1
    spans = D.list_instruments(D.instruments("all"), freq="day", as_list=False)
    names = sorted(spans)
    field = deal_price.lstrip("$")
    fields = {"close", "factor", "change", field}
    root = Path(C.dpm.get_data_uri("day"))
    data = panels.load(root, names, fields, first, last)
    listed = panels.spans_mask(data, spans, calendar)

    def column(name: str) -> np.ndarray:
        values = np.where(listed, data.fields[name], np.nan)
        return values.T.astype(np.float64)  # [day, stock]; float32 widened exactly, as Qlib's quote does

    close = column("close")
    deal = column(field)
    factor = column("factor")
    change = column("change")
    suspended = np.isnan(close)
    if limit_threshold is None:
        limit_threshold = C.limit_threshold
    if limit_threshold is None:
        limit_buy = limit_sell = suspended
    else:
        with np.errstate(invalid="ignore"):
            limit_buy = (change >= limit_threshold) | suspended
            limit_sell = (change <= -limit_threshold) | suspended
    adjusted = bool((np.isnan(factor) & ~np.isnan(close)).any())
    quote = Quote(
        days=pd.DatetimeIndex(calendar[first : last + 1]),
        column={name: i for i, name in enumerate(names)},
        close=close,
        deal=deal,
        factor=factor,
        limit_buy=limit_buy,
        limit_sell=limit_sell,
        adjusted_prices=adjusted,
    )
    return quote, list(calendar)


@dataclass
class Costs:
    open_cost: float
    close_cost: float
    min_cost: float
    trade_unit: float | None

    def round_amount(self, amount, factor, adjusted: bool):
        """Exchange.round_amount_by_trade_unit."""
        if not adjusted and self.trade_unit is not None:
            return (amount * factor + 0.1) // self.trade_unit * self.trade_unit / factor
        return amount

    def buy_amount_by_cash(self, price, cash, cost_ratio):
        """Exchange._get_buy_amount_by_cash_limit."""
        amount = 0.0
        if cash >= self.min_cost:
            critical_price = self.min_cost / cost_ratio + self.min_cost
            amount = cash / (1 + cost_ratio) / price if cash >= critical_price else (cash - self.min_cost) / price
        return amount


def daily_scores(pred: pd.Series | pd.DataFrame) -> dict:
    """Each day's scores by instrument, as the strategy's signal gives them: the day's rows grouped by
    instrument, last non-NaN value, instruments sorted (Qlib's resam_ts_data(..., method="last"))."""
    scores = pred.iloc[:, 0] if isinstance(pred, pd.DataFrame) else pred
    if scores.index.names[0] != "datetime":
        scores = scores.swaplevel()
    grouped = scores.groupby(level=["datetime", "instrument"]).last()  # sorted by day, then instrument
    days = grouped.index.get_level_values("datetime")
    instruments = grouped.index.get_level_values("instrument")
    values = grouped.to_numpy()
    bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True])
    return {
        days[a]: pd.Series(values[a:b], index=pd.Index(instruments[a:b], name="instrument"), name=grouped.name)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    }
