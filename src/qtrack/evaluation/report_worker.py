"""Qlib's report page drawn in a second process, beside the run rather than after it.

Drawing the page is the longest part of logging a run: importing `qlib.contrib.report` (statsmodels, plotly and
its figure factory) and Qlib's groupby-applies over the test segment, about 2 s of a 3.3 s logging step on the
50-stock S&P sample. The worker is a fork of the run's process, made once the records exist: it shares what the
run has imported, imports the rest and draws the page while the run uploads everything else. Not earlier: a
worker forked when the fit ended, importing while the run predicted, slowed LightGBM's OpenMP threads more than
it saved (504 symbols: validation and records 1.5 s longer). The page is the one `qlib_reports` draws in the
run's own process, from the same objects (a test compares the two); where the worker cannot give it (no fork on
this system, less than 2 GiB of memory available, a failure), the run draws it itself.

The worker writes `qlib_report.html` into a folder of its own and exits 0; the run waits for it, then logs the
file. The inputs need no passing: they are in the fork's memory.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtrack.evaluation import qlib_reports

STDERR = "worker.err"
# The worker needs about 250 MiB of its own on the S&P sample, more with a longer test segment; on a machine with
# less than this to spare, a second process is not worth the risk of swapping or of the OOM killer.
MIN_AVAILABLE = 2 << 30


class ReportWorker:
    """The run's side: `start()` once the records exist, `page()` when the page is to be logged, `close()`
    always. `load` reads the page's inputs (a recorder's `load_object`)."""

    def __init__(self, load: Callable[[str], Any], title: str, min_available: int = MIN_AVAILABLE) -> None:
        self.load, self.title, self.min_available = load, title, min_available
        self.folder = Path(tempfile.mkdtemp(prefix="qtrack-report-"))
        self.pid: int | None = None
        self.code: int | None = None

    def start(self) -> None:
        if self.pid is not None or not hasattr(os, "fork"):
            return
        available = _available_memory()
        if available < self.min_available:  # the run draws the page itself, in memory it has already used
            (self.folder / STDERR).write_text(f"not started: {available >> 20} MiB of memory available")
            return
        # Frozen, the run's objects are outside the worker's garbage collections, which would otherwise write
        # to every one of them and so copy the run's whole heap into the worker.
        gc.freeze()
        try:
            with warnings.catch_warnings():  # Python 3.12 warns of forking beside threads: the worker never
                warnings.simplefilter("ignore", DeprecationWarning)  # calls into LightGBM's or numba's threads
                pid = os.fork()
        except OSError as exc:
            gc.unfreeze()
            (self.folder / STDERR).write_text(f"the worker did not start: {exc}")
            return
        if pid == 0:  # the worker: it never returns into the run's code
            os._exit(_serve(self.load, self.title, self.folder))
        gc.unfreeze()
        self.pid = pid

    def page(self, timeout: float = 600) -> Path | None:
        """The drawn page, or None (with the worker's error in `error()`) when the worker could not draw it. A
        worker still drawing after `timeout` seconds gives none: a fork made beside threads can deadlock, and the
        run must not wait on it forever."""
        if self.pid is None or self._wait(timeout) != 0:
            return None
        path = self.folder / qlib_reports.REPORT_NAME
        return path if path.is_file() else None

    def error(self) -> str:
        path = self.folder / STDERR
        text = path.read_text(errors="replace").strip() if path.is_file() else ""
        return text.splitlines()[-1] if text else f"exit code {self.code}"

    def close(self) -> None:
        if self.pid is not None and self.code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._wait(None)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _wait(self, timeout: float | None) -> int | None:
        """The worker's exit code once it has ended, or None when it is still running after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.code is None and self.pid is not None:
            pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:  # type: ignore[operator]
                return None
            else:
                time.sleep(0.01)
        return self.code


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _serve(load: Callable[[str], Any], title: str, folder: Path) -> int:
    """The worker's life: quiet, below the run's priority, its own signals; one page, then exit."""
    try:
        errors = os.open(folder / STDERR, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(errors, 2)
        os.setsid()  # a Ctrl-C in the terminal reaches the run, which ends the worker itself
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.nice(19)
        import logging

        logging.disable(logging.CRITICAL)  # the run's log handlers are the run's, not the worker's
        written = qlib_reports.draw_report(load, title, folder / f".{qlib_reports.REPORT_NAME}.tmp")
        os.replace(written, folder / qlib_reports.REPORT_NAME)
        return 0
    except BaseException:  # noqa: BLE001 - whatever happens, the worker ends here, with its reason on stderr
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode(errors="replace"))
        return 1
