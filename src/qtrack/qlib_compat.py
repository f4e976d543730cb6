"""Every use of Qlib's private API, in one place.

qtrack changes a few Qlib steps for speed or correctness by overriding private hooks and calling private
helpers. They are named here only: the mixins below turn each private hook into a public method that
qtrack's subclasses override. Each hook is checked where it is taken (a qtrack class over a Qlib class
without it, or a call to a missing helper), so a Qlib release that renames one fails with one line instead
of silently running Qlib's unpatched code. `start()` runs once per process, where Qlib is initialised.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from typing import Any

from qtrack.errors import QtrackError

TESTED_PYQLIB = "0.9.7"
NOT_STOCKS = ("cash", "now_account_value", "cash_delay")
log = logging.getLogger(__name__)

@functools.cache
def start() -> None:
    """Once per process, where Qlib is initialised: load Qlib's models one module at a time, warn when the
    installed Qlib is not the tested one, and list held stocks in buying order. Each private hook is checked
    where a qtrack class takes it (`_require`), so a renamed one fails with one line before any work."""
    import qlib

    _models_one_module_at_a_time()
    if qlib.__version__ != TESTED_PYQLIB:
        log.warning("pyqlib %s is installed; qtrack is tested with %s", qlib.__version__, TESTED_PYQLIB)
    _list_held_stocks_in_buying_order()


def _models_one_module_at_a_time() -> None:
    """`import qlib.contrib.model.gbdt` runs the package's __init__, which imports every model Qlib ships:
    CatBoost (0.3 s a process) and, where PyTorch is installed, about ten PyTorch models. The package is
    registered without running it; a name asked of the package itself (`qlib.contrib.model.LGBModel`) runs it
    then, so nothing Qlib's package offers is lost."""
    import importlib.util
    import sys

    name = "qlib.contrib.model"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    package = importlib.util.module_from_spec(spec)

    def run_init(attribute: str) -> Any:
        del package.__dict__["__getattr__"]
        spec.loader.exec_module(package)
        return getattr(package, attribute)

    package.__getattr__ = run_init
    sys.modules[name] = package
    import qlib.contrib

    qlib.contrib.model = package


def _require(owner: Any, attribute: str) -> None:
    """A QtrackError naming the private part of Qlib that qtrack relies on and the installed Qlib lacks."""
    if not hasattr(owner, attribute):
        import qlib

        where = getattr(owner, "__name__", str(owner))
        raise QtrackError(f"pyqlib {qlib.__version__} lacks {where}.{attribute}, which qtrack relies on: "
                          f"install pyqlib=={TESTED_PYQLIB}")


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


def drop_frames(handler: Any) -> None:
    """A DataHandlerLP without its raw, inference and learning frames (its private attributes): nothing reads it
    again, and the memory goes back."""
    for frame in ("_data", "_infer", "_learn"):
        if hasattr(handler, frame):
            setattr(handler, frame, None)


def benchmark_returns(codes: Any, start: Any, end: Any) -> Any:
    """The daily returns of a benchmark (one code, or codes equal-weighted), by Qlib's own function."""
    from qlib.backtest.report import PortfolioMetrics

    _require(PortfolioMetrics, "_cal_benchmark")
    return PortfolioMetrics._cal_benchmark({"benchmark": codes, "start_time": start, "end_time": end}, "day")


class _Hook:
    """A mixin over a private hook of the Qlib class that follows it in a subclass's bases."""

    private = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        qlib_bases = cls.__mro__[cls.__mro__.index(_Hook) + 1 : -1]  # after the mixins, before object
        if cls.private and qlib_bases:
            _require(qlib_bases[0], cls.private)


class SegmentHook(_Hook):
    """A DatasetH mixin: Qlib's segment preparation is the public `prepare_segment`."""

    private = "_prepare_seg"

    def _prepare_seg(self, slc: Any, **kwargs: Any) -> Any:
        return self.prepare_segment(slc, **kwargs)

    def prepare_segment(self, slc: Any, **kwargs: Any) -> Any:
        return super()._prepare_seg(slc, **kwargs)


class ProcessorCopyHook(_Hook):
    """A handler mixin: whether Qlib must copy the frame before its processors is `processors_are_readonly`."""

    private = "_is_proc_readonly"

    @classmethod
    def _is_proc_readonly(cls, proc_l: list) -> bool:
        return cls.processors_are_readonly(proc_l)

    @classmethod
    def processors_are_readonly(cls, proc_l: list) -> bool:
        return super()._is_proc_readonly(proc_l)


class SetsHook(_Hook):
    """An LGBModel mixin: Qlib's training and validation sets come from the public `prepare_sets`."""

    private = "_prepare_data"

    def _prepare_data(self, dataset: Any, reweighter: Any = None) -> list:
        return self.prepare_sets(dataset, reweighter)

    def prepare_sets(self, dataset: Any, reweighter: Any = None) -> list:
        return super()._prepare_data(dataset, reweighter)


class _RecordGlobalHook(_Hook):
    """A record mixin: the record's call to a module global of `qlib.workflow.record_temp` (`swapped`) goes to
    the public method `routed_to`, with Qlib's function as its first argument. Qlib's record calls the global,
    so it is swapped while the record generates (records generate under one lock: evaluation.records)."""

    private = "_generate"
    swapped = ""
    routed_to = ""

    def _generate(self, **kwargs: Any) -> Any:
        from qlib.workflow import record_temp

        _require(record_temp, self.swapped)
        qlib_function = getattr(record_temp, self.swapped)
        setattr(record_temp, self.swapped, functools.partial(getattr(self, self.routed_to), qlib_function))
        try:
            return super()._generate(**kwargs)
        finally:
            setattr(record_temp, self.swapped, qlib_function)


class BacktestHook(_RecordGlobalHook):
    """A PortAnaRecord mixin: the record's call to `qlib.backtest.backtest` goes to `run_backtest`."""

    swapped, routed_to = "normal_backtest", "run_backtest"

    def run_backtest(self, qlib_backtest: Any, **kwargs: Any) -> Any:
        return qlib_backtest(**kwargs)


class SignalAnalysisHook(_RecordGlobalHook):
    """A SigAnaRecord mixin: the record's call to `calc_ic` (daily IC and Rank IC) goes to `calc_ic`."""

    swapped, routed_to = "calc_ic", "calc_ic"

    def calc_ic(self, qlib_calc_ic: Any, pred: Any, label: Any) -> Any:
        return qlib_calc_ic(pred, label)


class _RoutedRecorder:
    """Stands in for Qlib's global recorder `R` inside one Qlib model module. Qlib's PyTorch models log their
    curves through `R` (DNNModelPytorch every step; GRU once, after fit), which needs Qlib's active experiment
    and is one recorder per process. Within `recording_to(sink)` this thread's calls go to the sink instead;
    outside it, to Qlib's `R` unchanged."""

    def __init__(self, qlib_recorder: Any) -> None:
        self.qlib_recorder = qlib_recorder

    def get_recorder(self, *args: Any, **kwargs: Any) -> Any:
        sink = getattr(_SINKS, "sink", None)
        return sink if sink is not None else self.qlib_recorder.get_recorder(*args, **kwargs)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> Any:
        sink = getattr(_SINKS, "sink", None)
        if sink is not None:
            return sink.log_metrics(step=step, **kwargs)
        return self.qlib_recorder.log_metrics(step=step, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.qlib_recorder, name)


_SINKS = threading.local()


def route_model_recorder(module: Any) -> None:
    """Send a Qlib model module's `R` calls to `recording_to`'s sink (once per module; a module without `R` logs
    nothing through it)."""
    if hasattr(module, "R") and not isinstance(module.R, _RoutedRecorder):
        module.R = _RoutedRecorder(module.R)


@contextlib.contextmanager
def recording_to(sink: Any) -> Any:
    """Within this block, this thread's Qlib models log to `sink` (an object with `log_metrics(step, **metrics)`)."""
    previous = getattr(_SINKS, "sink", None)
    _SINKS.sink = sink
    try:
        yield sink
    finally:
        _SINKS.sink = previous
