"""Qlib's daily TopkDropoutStrategy backtest, order by order, without Qlib's per-call overhead.

Qlib's `backtest()` spends its time in machinery, not arithmetic: every price is a pandas/IndexData slice,
every day deep-copies the position twice, and the signal is re-sliced from the whole prediction frame.
This loop keeps the arithmetic and the objects and drops the machinery:
- prices come from a dense [day, stock] quote read straight from the `.bin` files (float32 values widened to
  float64, as Qlib's quote holds them), so a lookup is an array index;
- the strategy's decisions are Qlib's `TopkDropoutStrategy.generate_trade_decision` rules, step for step; the
  daily choice is made on arrays with pandas' own sort function (evaluation.topk_dropout), so ties resolve as
  in Qlib;
- deals follow `Exchange.deal_order` / `_calc_trade_info_by_order` (costs, min_cost, cash limits, trade-unit
  rounding, suspension and limit checks), and land in Qlib's own `Position`, `Order`, `PortfolioMetrics`
  and `Indicator` objects, so the artifacts are the same objects with the same numbers.
Only what qtrack configures is supported (`supports()` says when Qlib's own path must run instead).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qtrack.evaluation import topk_dropout
from qtrack.evaluation.quotes import SELL, Costs, Quote, daily_scores, load_quote

STRATEGY = "TopkDropoutStrategy"
EXECUTOR = "SimulatorExecutor"
# TopkDropoutStrategy's defaults (qlib.contrib.strategy.signal_strategy), which qtrack does not change.
RISK_DEGREE = 0.95
HOLD_THRESH = 1
STRATEGY_KEYS = {"signal", "topk", "n_drop"}
EXCHANGE_KEYS = {"freq", "limit_threshold", "deal_price", "open_cost", "close_cost", "min_cost"}


def supports(executor: dict, strategy: dict, exchange_kwargs: dict) -> bool:
    """True when the config is the daily TopkDropout backtest this loop reproduces."""
    kwargs = executor.get("kwargs", {})
    return (
        executor.get("class") == EXECUTOR
        and kwargs.get("time_per_step") == "day"
        and set(kwargs) <= {"time_per_step", "generate_portfolio_metrics"}
        and strategy.get("class") == STRATEGY
        and set(strategy.get("kwargs", {})) <= STRATEGY_KEYS
        and set(exchange_kwargs) <= EXCHANGE_KEYS
        and exchange_kwargs.get("freq", "day") == "day"
        and isinstance(exchange_kwargs.get("deal_price", "close"), str)
    )


class Simulation:
    """One backtest: Qlib's account objects, driven by the strategy's and the exchange's rules."""

    def __init__(self, quote: Quote, calendar: list, costs: Costs, account: float, benchmark) -> None:
        from qlib.backtest.account import AccumulatedInfo
        from qlib.backtest.position import Position
        from qlib.backtest.report import Indicator, PortfolioMetrics

        self.quote, self.calendar, self.costs = quote, calendar, costs
        self.position = Position(cash=account, position_dict={})
        self.init_cash = account
        self.accumulated = AccumulatedInfo()
        self.metrics = PortfolioMetrics(freq="day", benchmark_config={"benchmark": benchmark})
        self.bench = self.metrics.bench
        self.bench_daily: dict | None = None
        self.indicator = Indicator()
        self.history: dict = {}

    # -- the exchange ---------------------------------------------------------------------------------
    def deal_price(self, d: int, stock: str):
        s = self.quote.column[stock]
        price = self.quote.deal[d, s]
        if np.isnan(price) or price <= 1e-08:
            price = self.quote.close[d, s]  # Exchange.get_deal_price falls back to the close
        return price

    def trade(self, d: int, order, cash: float, holding) -> tuple[float, float, float]:
        """Exchange._calc_trade_info_by_order against a position with `cash` and `holding` shares."""
        from qlib.backtest.decision import Order

        costs, quote = self.costs, self.quote
        price = self.deal_price(d, order.stock_id)
        order.factor = quote.factor[d, quote.column[order.stock_id]]
        order.deal_amount = order.amount
        if order.direction == Order.SELL:
            cost_ratio = costs.close_cost + 0.0
            current = holding if holding is not None else 0
            if not _isclose(order.deal_amount, current):
                order.deal_amount = costs.round_amount(min(current, order.deal_amount), order.factor,
                                                       quote.adjusted_prices)
            if cash + order.deal_amount * price < max(order.deal_amount * price * cost_ratio, costs.min_cost):
                order.deal_amount = 0
        else:
            cost_ratio = costs.open_cost + 0.0
            value = order.deal_amount * price
            if cash < max(value * cost_ratio, costs.min_cost):
                order.deal_amount = 0
            elif cash < value + max(value * cost_ratio, costs.min_cost):
                most = costs.buy_amount_by_cash(price, cash, cost_ratio)
                order.deal_amount = costs.round_amount(min(most, order.deal_amount), order.factor,
                                                       quote.adjusted_prices)
            else:
                order.deal_amount = costs.round_amount(order.deal_amount, order.factor, quote.adjusted_prices)
        value = order.deal_amount * price
        cost = max(value * cost_ratio, costs.min_cost)
        if value <= 1e-5:
            cost = 0
        return value, cost, price

    # -- one day ----------------------------------------------------------------------------------------
    def decide(self, d: int, when: tuple, scores, topk: int, n_drop: int) -> list:
        """TopkDropoutStrategy.generate_trade_decision (method_sell=bottom, method_buy=top)."""
        from qlib.backtest.decision import Order

        if scores is None:
            return []
        stocks = self.stock_list()
        cash = copy_cash = self.position.get_cash()  # the strategy's tally, and its copy of the position's
        sell_list, buy = topk_dropout.choose(scores, stocks, topk, n_drop)
        sell = set(sell_list)
        sells, buys = [], []
        for code in stocks:
            if not self.quote.tradable(d, code) or code not in sell:
                continue
            if self.position.position[code].get("count_day", 0) < HOLD_THRESH:
                continue
            if not self.quote.tradable(d, code, SELL):  # Exchange.check_order
                continue
            amount = self.position.position[code]["amount"]
            order = Order(stock_id=code, amount=amount, start_time=when[0], end_time=when[1], direction=Order.SELL)
            sells.append(order)
            value, cost, _ = self.trade(d, order, copy_cash, amount)
            if value > 1e-5:
                copy_cash += value - cost  # Position._sell_stock on the strategy's deep copy
            cash += value - cost
        per_stock = cash * RISK_DEGREE / len(buy) if len(buy) > 0 else 0
        for code in buy:
            if not self.quote.tradable(d, code):
                continue
            price = self.deal_price(d, code)
            amount = per_stock / price
            factor = self.quote.factor[d, self.quote.column[code]]
            amount = self.costs.round_amount(amount, factor, self.quote.adjusted_prices)
            buys.append(Order(stock_id=code, amount=amount, start_time=when[0], end_time=when[1],
                              direction=Order.BUY))
        return sells + buys

    def execute(self, d: int, orders: list) -> list:
        """SimulatorExecutor: each order against the account, in order (serial trading)."""
        from qlib.backtest.decision import Order

        done = []
        for order in orders:
            if not self.quote.tradable(d, order.stock_id, order.direction):
                order.deal_amount = 0.0
                done.append((order, 0.0, 0.0, np.nan))
                continue
            holding = self.position.position.get(order.stock_id, {}).get("amount")
            value, cost, price = self.trade(d, order, self.position.get_cash(), holding)
            if value > 1e-5:
                if order.direction == Order.SELL:
                    self.account_for(order, value, cost, price)
                    self.position.update_order(order, value, cost, price)
                else:
                    self.position.update_order(order, value, cost, price)
                    self.account_for(order, value, cost, price)
            done.append((order, value, cost, price))
        return done

    def account_for(self, order, value: float, cost: float, price) -> None:
        """Account._update_state_from_order."""
        from qlib.backtest.decision import Order

        self.accumulated.add_turnover(value)
        self.accumulated.add_cost(cost)
        amount = value / price
        held_at = self.position.get_stock_price(order.stock_id)
        profit = value - held_at * amount if order.direction == Order.SELL else held_at * amount - value
        self.accumulated.add_return_value(profit)

    def close_day(self, d: int, when: tuple, trades: list) -> None:
        """Account.update_bar_end: prices, portfolio metrics, the day's position and indicators."""
        quote = self.quote
        for code in self.stock_list():
            if quote.suspended(d, code):
                continue
            self.position.update_stock_price(stock_id=code, price=quote.close[d, quote.column[code]])
        self.position.add_count_all(bar="day")
        day = when[0]
        self.record_metrics(when)
        self.position.position["now_account_value"] = self.position.calculate_value()
        self.position.update_weight_all()
        self.history[day] = _copy_position(self.position)
        self.indicator.reset()
        self.indicator.update_order_indicators(trades)
        self.indicator.cal_trade_indicators(day, "day", {})
        self.indicator.record(day)

    def record_metrics(self, when: tuple) -> None:
        """Account.update_portfolio_metrics."""
        metrics = self.metrics
        if metrics.is_empty():
            last_value, last_cost, last_turnover = self.init_cash, 0, 0
        else:
            last_value = metrics.get_latest_account_value()
            last_cost = metrics.get_latest_total_cost()
            last_turnover = metrics.get_latest_total_turnover()
        value = self.position.calculate_value()
        stock_value = self.position.calculate_stock_value()
        earning = value - last_value
        cost = self.accumulated.get_cost - last_cost
        turnover = self.accumulated.get_turnover - last_turnover
        metrics.update_portfolio_metrics_record(
            trade_start_time=when[0],
            trade_end_time=when[1],
            account_value=value,
            cash=self.position.position["cash"],
            return_rate=(earning + cost) / last_value,
            total_turnover=self.accumulated.get_turnover,
            turnover_rate=turnover / last_value,
            total_cost=self.accumulated.get_cost,
            cost_rate=cost / last_value,
            stock_value=stock_value,
            bench_value=self.bench_value(when),
        )

    def bench_value(self, when: tuple):
        """PortfolioMetrics._sample_benchmark: (x + 1).prod() - 1 over the step, 0.0 without data. A day
        with one value is (x + 1) - 1 in the series' dtype, computed for all days at once."""
        if self.bench is None:
            return None
        if self.bench_daily is None:
            unique = self.bench.index.is_unique and isinstance(self.bench.index, pd.DatetimeIndex)
            daily = ((self.bench + 1) - 1).to_numpy()  # numpy scalars keep the series' dtype
            self.bench_daily = dict(zip(self.bench.index, daily, strict=True)) if unique else {}
        if when[0] in self.bench_daily:
            return self.bench_daily[when[0]]
        window = self.bench.loc[when[0] : when[1]]
        return 0.0 if window.empty else (window + 1).prod() - 1

    def stock_list(self) -> list[str]:
        return self.position.get_stock_list()  # in buying order (qlib_compat.start)


def _copy_position(position):
    """A deep copy of a Position (a dict of per-stock dicts of numbers), without copy.deepcopy's walk."""
    copy = object.__new__(type(position))
    copy.__dict__ = dict(position.__dict__)
    copy.position = {key: dict(value) if isinstance(value, dict) else value for key, value in position.position.items()}
    return copy


def backtest(*, executor: dict, strategy: dict, start_time, end_time, account: float, benchmark,
             exchange_kwargs: dict, **_ignored) -> tuple[dict, dict]:
    """`qlib.backtest.backtest`'s results for the configs `supports()` accepts:
    ({"1day": (report, positions)}, {"1day": (indicators, indicator)})."""
    from qlib.config import C
    from qlib.utils.time import epsilon_change

    kwargs = strategy["kwargs"]
    deal_price = exchange_kwargs.get("deal_price") or C.deal_price
    deal_price = deal_price if deal_price.startswith("$") else f"${deal_price}"
    quote, calendar = load_quote(start_time, end_time, deal_price, exchange_kwargs.get("limit_threshold"))
    costs = Costs(
        open_cost=exchange_kwargs.get("open_cost", 0.0015),
        close_cost=exchange_kwargs.get("close_cost", 0.0025),
        min_cost=exchange_kwargs.get("min_cost", 5.0),
        trade_unit=C.trade_unit,
    )
    simulation = Simulation(quote, calendar, costs, account, benchmark)
    signal = daily_scores(kwargs["signal"])
    topk, n_drop = int(kwargs["topk"]), int(kwargs["n_drop"])
    offset = calendar.index(quote.days[0])
    for d, day in enumerate(quote.days):
        when = (day, epsilon_change(calendar[offset + d + 1]))
        orders = simulation.decide(d, when, signal.get(calendar[offset + d - 1]), topk, n_drop)
        trades = simulation.execute(d, orders)
        simulation.close_day(d, when, trades)
    report = simulation.metrics.generate_portfolio_metrics_dataframe()
    indicators = simulation.indicator.generate_trade_indicators_dataframe()
    return {"1day": (report, simulation.history)}, {"1day": (indicators, simulation.indicator)}


def _isclose(a, b) -> bool:
    """np.isclose(a, b) for two finite scalars (atol 1e-8, rtol 1e-5), without numpy's per-call cost."""
    return abs(a - b) <= 1e-08 + 1e-05 * abs(b)
