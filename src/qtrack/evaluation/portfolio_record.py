"""Qlib's PortAnaRecord with the backtest run by qtrack's fast loop where that loop applies.

The record's own code (risk analysis, indicator analysis, artifacts, metrics) is Qlib's; only the call to
`qlib.backtest.backtest` inside it is routed to `fast_backtest.backtest` for the configs it reproduces.
"""

from __future__ import annotations

from typing import Any

from qlib.workflow.record_temp import PortAnaRecord

from qtrack.evaluation import fast_backtest
from qtrack.qlib_compat import BacktestHook


class FastPortAnaRecord(BacktestHook, PortAnaRecord):
    def run_backtest(self, qlib_backtest: Any, *, executor: Any, strategy: Any, **rest: Any) -> Any:
        if fast_backtest.supports(executor, strategy, rest.get("exchange_kwargs", {})):
            return fast_backtest.backtest(executor=executor, strategy=strategy, **rest)
        return qlib_backtest(executor=executor, strategy=strategy, **rest)
