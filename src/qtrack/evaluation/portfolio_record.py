"""Qlib's PortAnaRecord with the backtest run by qtrack's fast loop where that loop applies.

The record's own code (risk analysis, indicator analysis, artifacts, metrics) is Qlib's; only the call to
`qlib.backtest.backtest` inside it is routed to `fast_backtest.backtest` for the configs it reproduces.
"""

from __future__ import annotations

from qlib.workflow import record_temp
from qlib.workflow.record_temp import PortAnaRecord

from qtrack.evaluation import fast_backtest


class FastPortAnaRecord(PortAnaRecord):
    def _generate(self, **kwargs):
        qlib_backtest = record_temp.normal_backtest

        def backtest(*, executor, strategy, **rest):
            if fast_backtest.supports(executor, strategy, rest.get("exchange_kwargs", {})):
                return fast_backtest.backtest(executor=executor, strategy=strategy, **rest)
            return qlib_backtest(executor=executor, strategy=strategy, **rest)

        record_temp.normal_backtest = backtest  # the module global Qlib's _generate calls
        try:
            return super()._generate(**kwargs)
        finally:
            record_temp.normal_backtest = qlib_backtest
