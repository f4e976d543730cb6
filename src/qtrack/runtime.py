"""Qlib initialisation and taming third-party noise. This is the global state Qlib forces on us."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import signal
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qtrack.errors import Terminated

_NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "matplotlib", "numexpr", "git")
# MLflow's defaults (7 retries, 120 s timeout) hang a CI job for minutes on an unreachable server.
# These apply unless the environment sets them.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
# NumPy asks the kernel for transparent huge pages for every array of 4 MiB or more. On the 2-core VMs measured
# here, the first touch of those pages was slow and erratic: filling a new 607 MB array took 0.11 to 1.6 s with
# them and 0.22 to 0.24 s without, and the fast feature step on 490 stocks 5.9 to 6.2 s against 4.7 s
# (docs/benchmarks.md). Set before NumPy is imported; the environment's own value wins.
PROCESS_DEFAULTS = {"NUMPY_MADVISE_HUGEPAGE": "0"}


def set_process_defaults() -> None:
    """Environment defaults that only take effect before the libraries that read them are imported."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def long_lived_imports() -> Iterator[None]:
    """Import a command's modules with the cyclic garbage collector paused, then keep what they made out of its
    reach (`keep_long_lived`). Imports only add objects that live as long as the process (modules, classes,
    functions), yet each full collection walks all of them: during a warm train's start-up six full
    collections over Qlib's, MLflow's and pandas' objects took 0.34 s, and every later one walked them again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        keep_long_lived()
        if enabled:
            gc.enable()


def keep_long_lived() -> None:
    """Collect the cyclic garbage, then freeze every object left, so that later collections walk only what is
    made after this. Frozen objects are still freed when nothing refers to them; only a cycle among them that
    becomes garbage later stays, so this is called where what exists lives on (imports done, a run open) and
    after a collection, never freezing garbage."""
    gc.collect()
    gc.freeze()


def quiet_third_party() -> None:
    """Keep warnings and chatter from Qlib, MLflow, gym and pandas off the screen."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # it would print the URI
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    for category in (FutureWarning, DeprecationWarning, UserWarning, RuntimeWarning):
        warnings.filterwarnings("ignore", category=category)
    from pandas.errors import SettingWithCopyWarning

    warnings.filterwarnings("ignore", category=SettingWithCopyWarning)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class _LogStream(io.TextIOBase):
    """A text stream that sends each complete line to a logger (and so to the run log)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.info(self.pending.rstrip())
        self.pending = ""


@contextlib.contextmanager
def captured_output(name: str = "qtrack.libraries") -> Iterator[None]:
    """Prints from Qlib, LightGBM and gym go to the run log instead of the terminal."""
    stream = _LogStream(logging.getLogger(name))
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        try:
            yield
        finally:
            stream.flush()


def init_qlib(
    provider_uri: Path, region: str, tracking_uri: str, experiment_name: str, kernels: int | None = None
) -> None:
    quiet_third_party()
    import qlib

    from qtrack import qlib_compat

    qlib_compat.start()
    qlib.init(
        provider_uri=str(provider_uri),
        region=region,
        **({"kernels": kernels} if kernels else {}),
        logging_level=logging.WARNING,
        exp_manager={
            "class": "MLflowExpManager",
            "module_path": "qlib.workflow.expm",
            "kwargs": {"uri": tracking_uri, "default_exp_name": experiment_name},
        },
    )
    _quiet_loggers()


def _quiet_loggers() -> None:
    """Qlib fixes its loggers' levels when they are created (at import); lower them afterwards."""
    for name in list(logging.root.manager.loggerDict):
        if name == "qlib" or name.startswith("qlib."):
            logging.getLogger(name).setLevel(logging.WARNING)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def log_uncommitted_code(client: Any, run_id: str) -> None:
    """What Qlib's recorder does on start, without printing git's help page outside a repository."""
    if git_output(["rev-parse", "--is-inside-work-tree"]) != "true":
        return
    for args, name in ((["diff"], "code_diff.txt"), (["status"], "code_status.txt")):
        text = git_output(args)
        if text:
            client.log_text(run_id, text, name)


def git_output(args: list[str]) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


class _Interrupts:
    """Ctrl-C and SIGTERM arrive as exceptions in the main thread, but never inside a critical section (a
    write to the tracking store or the study): there they wait until the section ends. An interrupted
    SQL write would leave SQLite locked, and the run could then not even be ended KILLED."""

    depth = 0
    pending: type[BaseException] | None = None
    received: int | None = None  # the last signal delivered (Typer turns the interrupt into exit code 130)


def received_signal() -> int | None:
    return _Interrupts.received


def raise_if_interrupted() -> None:
    """Raise the interrupt already received. The handler raises it where the main thread happens to be,
    and there it can be lost: an exception raised inside a finalizer or a garbage-collection callback is
    only printed (as "Exception ignored in ..."), and a sweep would then run every remaining trial. Loops
    that start new work call this first."""
    if _Interrupts.received is not None:
        raise _interrupt_for(_Interrupts.received)()


def _interrupt_for(signum: int) -> type[BaseException]:
    """Terminated for SIGTERM, KeyboardInterrupt for SIGINT."""
    return Terminated if signum == signal.SIGTERM else KeyboardInterrupt


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section that Ctrl-C and SIGTERM do not cut: they are raised when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Interrupts.depth += 1
    try:
        yield
    finally:
        _Interrupts.depth -= 1
        if _Interrupts.depth == 0 and _Interrupts.pending is not None:
            pending, _Interrupts.pending = _Interrupts.pending, None
            raise pending()


def install_signal_handlers() -> None:
    """SIGTERM (cron's timeout, CI's cancel, `kill`) raises Terminated and SIGINT KeyboardInterrupt in the
    main thread, outside critical sections, so every open run ends KILLED and every claimed trial FAIL
    through the same `finally` blocks. A second SIGTERM during that cleanup is ignored (SIGKILL still works)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: Any) -> None:
        kind = _interrupt_for(signum)
        _Interrupts.received = signum
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if _Interrupts.depth > 0:
            _Interrupts.pending = _Interrupts.pending or kind
            return
        raise kind()

    signal.signal(signal.SIGTERM, interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)


def install_shutdown_handlers() -> None:
    """Once a command's work is done, Ctrl-C or SIGTERM during the interpreter's shutdown (atexit callbacks,
    finalizers: torch's and MLflow's take a while) has no run or trial left to end. It stops the process at
    once with one line and 128 + the signal, instead of an exception Python can only print ("Exception
    ignored in atexit callback") on its way to exit 0."""

    def stop(signum: int, frame: Any) -> None:
        what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        os.write(2, f"qtrack: error: {what} while exiting; the command's work was done\n".encode())
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
