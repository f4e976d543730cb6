"""Every use of Qlib's private API, in one place.

qtrack changes a few Qlib steps for speed or correctness by overriding private hooks and calling private
helpers. They are named here only: the mixins below turn each private hook into a public method that
qtrack's subclasses override, and `start()` checks, once per process, that the installed pyqlib still has
every one of them, then applies the backtest's ordering fix. A Qlib release that renames a hook then fails
at start-up with one line, instead of silently running Qlib's unpatched code.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from qtrack.errors import QtrackError

TESTED_PYQLIB = "0.9.7"
NOT_STOCKS = ("cash", "now_account_value", "cash_delay")
log = logging.getLogger(__name__)

# (module, class, private attribute) that qtrack relies on.
PRIVATE_HOOKS = (
    ("qlib.data.dataset", "DatasetH", "_prepare_seg"),
    ("qlib.data.dataset.handler", "DataHandlerLP", "_is_proc_readonly"),
    ("qlib.contrib.model.gbdt", "LGBModel", "_prepare_data"),
    ("qlib.workflow.record_temp", "PortAnaRecord", "_generate"),
    ("qlib.backtest.report", "PortfolioMetrics", "_cal_benchmark"),
    ("qlib.workflow.record_temp", "", "normal_backtest"),
)


@functools.cache
def start() -> None:
    """Check the installed Qlib and apply the ordering fix; the first call does it, later calls nothing."""
    import qlib

    missing = missing_hooks()
    if missing:
        raise QtrackError(f"pyqlib {qlib.__version__} lacks {', '.join(missing)}, which qtrack relies on: "
                          f"install pyqlib=={TESTED_PYQLIB}")
    if qlib.__version__ != TESTED_PYQLIB:
        log.warning("pyqlib %s is installed; qtrack is tested with %s", qlib.__version__, TESTED_PYQLIB)
    _list_held_stocks_in_buying_order()


def missing_hooks(hooks: tuple[tuple[str, str, str], ...] = PRIVATE_HOOKS) -> list[str]:
    """The private names of `hooks` that the installed Qlib does not have, as module.Class.name."""
    import importlib

    missing = []
    for module_name, class_name, attribute in hooks:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            owner = None
        owner = getattr(owner, class_name, None) if class_name else owner
        if owner is None or not hasattr(owner, attribute):
            missing.append(".".join(part for part in (module_name, class_name, attribute) if part))
    return missing


def _list_held_stocks_in_buying_order() -> None:
    """`Position.get_stock_list` builds its list from a set, so its order follows Python's string hashing, which
    changes from process to process. TopkDropoutStrategy sorts the held stocks by score from that order, and tree
    models give tied scores often, so the same predictions gave different trades, costs and returns in two runs
    (seen here: annualised excess return -0.139, -0.079 and -0.157 from one pred.pkl). Both backtest engines list
    the held stocks in the order they were bought instead, which makes every backtest reproducible."""
    from qlib.backtest.position import Position

    Position.get_stock_list = held_stocks


def held_stocks(position: Any) -> list[str]:
    return [key for key in position.position if key not in NOT_STOCKS]


def benchmark_returns(codes: Any, start: Any, end: Any) -> Any:
    """The daily returns of a benchmark (one code, or codes equal-weighted), by Qlib's own function."""
    from qlib.backtest.report import PortfolioMetrics

    return PortfolioMetrics._cal_benchmark({"benchmark": codes, "start_time": start, "end_time": end}, "day")


class SegmentHook:
    """A DatasetH mixin: Qlib's segment preparation is the public `prepare_segment`."""

    def _prepare_seg(self, slc: Any, **kwargs: Any) -> Any:
        return self.prepare_segment(slc, **kwargs)

    def prepare_segment(self, slc: Any, **kwargs: Any) -> Any:
        return super()._prepare_seg(slc, **kwargs)


class ProcessorCopyHook:
    """A handler mixin: whether Qlib must copy the frame before its processors is `processors_are_readonly`."""

    @classmethod
    def _is_proc_readonly(cls, proc_l: list) -> bool:
        return cls.processors_are_readonly(proc_l)

    @classmethod
    def processors_are_readonly(cls, proc_l: list) -> bool:
        return super()._is_proc_readonly(proc_l)


class SetsHook:
    """An LGBModel mixin: Qlib's training and validation sets come from the public `prepare_sets`."""

    def _prepare_data(self, dataset: Any, reweighter: Any = None) -> list:
        return self.prepare_sets(dataset, reweighter)

    def prepare_sets(self, dataset: Any, reweighter: Any = None) -> list:
        return super()._prepare_data(dataset, reweighter)


class BacktestHook:
    """A PortAnaRecord mixin: the record's call to `qlib.backtest.backtest` goes to the public `run_backtest`.
    Qlib's record calls the module global `normal_backtest`, so it is swapped while the record generates."""

    def _generate(self, **kwargs: Any) -> Any:
        from qlib.workflow import record_temp

        qlib_backtest = record_temp.normal_backtest
        record_temp.normal_backtest = functools.partial(self.run_backtest, qlib_backtest)
        try:
            return super()._generate(**kwargs)
        finally:
            record_temp.normal_backtest = qlib_backtest

    def run_backtest(self, qlib_backtest: Any, **kwargs: Any) -> Any:
        return qlib_backtest(**kwargs)
