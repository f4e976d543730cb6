"""Qlib's PortAnaRecord and SigAnaRecord with qtrack's fast backtest and IC analysis (`backtest.engine=fast`).

The records' own code (risk analysis, indicator analysis, artifacts, metrics) is Qlib's; only the call to
`qlib.backtest.backtest` inside PortAnaRecord is routed to `fast_backtest.backtest` for the configs it
reproduces, and the call to `calc_ic` inside SigAnaRecord to `ic_analysis.calc_ic`.
"""

from __future__ import annotations

from typing import Any

from qlib.workflow.record_temp import PortAnaRecord, SigAnaRecord

from qtrack.evaluation import fast_backtest, ic_analysis
from qtrack.qlib_compat import BacktestHook, SignalAnalysisHook


class FastPortAnaRecord(BacktestHook, PortAnaRecord):
    def run_backtest(self, qlib_backtest: Any, *, executor: Any, strategy: Any, **rest: Any) -> Any:
        if fast_backtest.supports(executor, strategy, rest.get("exchange_kwargs", {})):
            return fast_backtest.backtest(executor=executor, strategy=strategy, **rest)
        return qlib_backtest(executor=executor, strategy=strategy, **rest)


class FastSigAnaRecord(SignalAnalysisHook, SigAnaRecord):
    def calc_ic(self, qlib_calc_ic: Any, pred: Any, label: Any) -> Any:
        return ic_analysis.calc_ic(pred, label)
