"""An interrupt that reached qtrack's handler stops the next piece of work even when the exception the handler
raised was lost (raised inside a finalizer, where Python only prints it)."""

from __future__ import annotations

import gc
import signal
import sys

import pytest

from qtrack import runtime
from qtrack.errors import Terminated


@pytest.fixture
def handlers():
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runtime.install_signal_handlers()
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)
    runtime._Interrupts.received = None
    runtime._Interrupts.pending = None


class RaisesInFinalizer:
    def __del__(self) -> None:
        signal.raise_signal(self.number)


@pytest.mark.parametrize(("number", "kind"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_an_interrupt_lost_in_a_finalizer_is_raised_before_the_next_work(handlers, monkeypatch, number, kind) -> None:
    runtime.raise_if_interrupted()  # nothing received yet: nothing raised
    lost = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: lost.append(unraisable.exc_type))
    victim = RaisesInFinalizer()
    victim.number = number
    del victim  # the handler's exception is raised inside __del__, where Python only reports it
    gc.collect()
    assert lost == [kind]
    assert runtime.received_signal() == number
    with pytest.raises(kind):
        runtime.raise_if_interrupted()


@pytest.mark.parametrize(("number", "code", "what"), [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                      (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_shutdown_is_one_line_and_its_exit_code(tmp_path, number, code, what) -> None:
    """What the console scripts do after the command (cli.app.finish): an atexit callback that takes a while,
    like torch's, receives the signal. It once printed "Exception ignored in atexit callback" and exited 0."""
    import subprocess
    import sys

    script = ("import atexit, os, time; from qtrack.cli.app import finish; "
              f"atexit.register(lambda: (os.kill(os.getpid(), {int(number)}), time.sleep(5))); finish(0)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == code
    assert done.stderr.splitlines() == [f"qtrack: error: {what} while exiting; the command's work was done"]


def test_the_console_scripts_exit_after_threads_callbacks_and_output_but_skip_the_teardown(tmp_path) -> None:
    """cli.app.finish ends the process without the interpreter's module teardown (1.2-1.3 s of a train), and still
    does what the interpreter's exit does first: a non-daemon thread (the feature cache's writer) finishes its
    file, atexit callbacks run (logging's flush among them), buffered output is written, and the code is kept."""
    import subprocess
    import sys

    written, logged = tmp_path / "entry", tmp_path / "run.log"
    script = (
        "import atexit, logging, sys, threading, time\n"
        "from qtrack.cli.app import finish\n"
        f"handler = logging.FileHandler({str(logged)!r}, delay=True)\n"
        "logging.getLogger('t').addHandler(handler)\n"
        "def write():\n"
        "    time.sleep(0.5)\n"
        f"    open({str(written)!r}, 'w').write('whole')\n"
        "threading.Thread(target=write).start()\n"
        "atexit.register(lambda: print('atexit ran', end=''))\n"
        "logging.getLogger('t').warning('the last line')\n"
        "sys.stdout.write('buffered, ')\n"
        "finish(3)\n"
        "print('never')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, atexit ran"
    assert written.read_text() == "whole"
    assert logged.read_text() == "the last line\n"


@pytest.mark.parametrize(("environment", "expected"), [(None, False), ("1", True)])
def test_the_cli_turns_numpys_huge_pages_off_unless_the_environment_says(environment, expected) -> None:
    """NumPy reads NUMPY_MADVISE_HUGEPAGE once, at import: the CLI sets its default before anything imports NumPy
    (first touches of huge pages were slow and erratic here, runtime.PROCESS_DEFAULTS), and a user's own value wins."""
    import os
    import subprocess

    script = (
        "import sys\n"
        "from qtrack.cli.app import main\n"
        "assert 'numpy' not in sys.modules\n"
        "main(['--version'])\n"
        "import numpy\n"
        "print(numpy._core.multiarray._get_madvise_hugepage())\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "NUMPY_MADVISE_HUGEPAGE"}
    if environment is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = environment
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(expected)
