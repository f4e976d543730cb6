"""Qlib's report page drawn in a second process, beside the run rather than after it.

Drawing the page is the longest part of logging a run: importing `qlib.contrib.report` (statsmodels, plotly and
its figure factory, about 1 s) and Qlib's groupby-applies over the test segment (about 1 s on 490 symbols). The
worker is a fork of the run's process, made as the records step begins where the run's frames come from the
feature cache (else once they are released, at the logging step: stages.evaluate says why): it shares what the
run has imported and imports the rest while the run predicts, analyses and backtests, which keeps one core only.
It then waits for the records; the run writes the page's inputs to the worker's folder once they exist
(`draw`), and the worker draws the page while the run logs everything else. Not earlier: a worker forked at the
fit's end, importing while the run predicted the validation set, slowed LightGBM's OpenMP threads more than it
saved (504 symbols: validation and records 1.5 s longer), and one importing during the fit slowed it by more than
its imports (490 symbols: 1.0-1.4 s). The page is the one `qlib_reports` draws in the run's own process, from the same
objects (a test compares the two); where the worker cannot give it (no fork on this system, less than 2 GiB of
memory available, a failure), the run draws it itself.

The worker writes `qlib_report.html` into its folder and exits 0; the run waits for it, then logs the file. A
worker whose run ends before its records (a failure, an interrupt) is killed by `close`, and one whose run
process dies reads the end of its pipe and exits.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
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
INPUTS_FILE = "inputs.pkl"
# The worker needs about 250 MiB of its own on the S&P sample, more with a longer test segment; on a machine with
# less than this to spare, a second process is not worth the risk of swapping or of the OOM killer.
MIN_AVAILABLE = 2 << 30


class ReportWorker:
    """The run's side: `start()` (once; again is nothing), `draw(load, title)` once the records exist (`load`
    reads them: a recorder's `load_object`), `page()` when the page is to be logged, `close()` always."""

    def __init__(self, min_available: int = MIN_AVAILABLE) -> None:
        self.min_available = min_available
        self.folder = Path(tempfile.mkdtemp(prefix="qtrack-report-"))
        self.pid: int | None = None
        self.code: int | None = None
        self._ready: int | None = None  # the pipe's end the run writes one byte to once the inputs are written

    def start(self) -> None:
        if self.pid is not None or not hasattr(os, "fork"):
            return
        available = _available_memory()
        if available < self.min_available:  # the run draws the page itself, in memory it has already used
            (self.folder / STDERR).write_text(f"not started: {available >> 20} MiB of memory available")
            return
        waiting, ready = os.pipe()
        try:
            with warnings.catch_warnings():  # Python 3.12 warns of forking beside threads: the worker never
                warnings.simplefilter("ignore", DeprecationWarning)  # calls into LightGBM's or numba's threads
                pid = os.fork()
        except OSError as exc:
            os.close(waiting), os.close(ready)
            (self.folder / STDERR).write_text(f"the worker did not start: {exc}")
            return
        if pid == 0:  # the worker: it never returns into the run's code
            # Frozen before anything else runs, the run's objects are outside the worker's garbage collections,
            # which would otherwise write to every one of them and so copy the run's whole heap into the worker. In
            # the worker, not the run: the run would have to thaw them again, undoing its own freeze
            # (runtime.keep_long_lived).
            gc.freeze()
            os.close(ready)
            os._exit(_serve(self.folder, waiting))
        os.close(waiting)
        self.pid, self._ready = pid, ready

    def draw(self, load: Callable[[str], Any], title: str) -> None:
        """Hand the worker the page's inputs: written to its folder (the run never waits on the pipe for a
        worker still importing), then one byte on the pipe."""
        if self._ready is None:
            return
        inputs = {name: load(name) for name in qlib_reports.INPUTS}
        written = self.folder / f".{INPUTS_FILE}.tmp"
        with written.open("wb") as out:
            pickle.dump((title, inputs), out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(written, self.folder / INPUTS_FILE)
        with contextlib.suppress(OSError):  # the worker has ended already: page() says why
            os.write(self._ready, b"1")
        self._close_pipe()

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
        self._close_pipe()
        if self.pid is not None and self.code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._wait(None)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _close_pipe(self) -> None:
        if self._ready is not None:
            os.close(self._ready)
            self._ready = None

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


def _serve(folder: Path, waiting: int) -> int:
    """The worker's life: quiet, below the run's priority, its own signals; Qlib's report imported, then one page
    once the run has written its inputs, then exit."""
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
        qlib_reports.import_graphs()
        if not os.read(waiting, 1):  # the run's process is gone, or it ended without records
            shutil.rmtree(folder, ignore_errors=True)
            return 0
        with (folder / INPUTS_FILE).open("rb") as source:
            title, inputs = pickle.load(source)
        written = qlib_reports.draw_report(inputs.__getitem__, title, folder / f".{qlib_reports.REPORT_NAME}.tmp")
        os.replace(written, folder / qlib_reports.REPORT_NAME)
        return 0
    except BaseException:  # noqa: BLE001 - whatever happens, the worker ends here, with its reason on stderr
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode(errors="replace"))
        return 1
