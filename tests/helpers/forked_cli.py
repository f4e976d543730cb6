"""The real console scripts' entry points, each call in a new process forked from a server that has already
imported the heavy third-party libraries (Python's own multiprocessing forkserver).

A tiny train spends about 3 s importing NumPy, pandas, SciPy, MLflow's SQL store, Qlib and LightGBM; the
end-to-end tests run the CLI several hundred times. The child is a fresh process with the test's working
folder, environment and arguments, its own pid, stdout and stderr; it runs the same function the console
script runs, then the interpreter's exit steps (non-daemon threads joined, atexit callbacks), and exits
with its code. Only third-party packages are preloaded, so each child still imports every qtrack module
itself, as a user's process does. Two things a fork cannot give are left to `run_cli(..., fresh=True)`:
a new hash seed per process (tests comparing two runs use it), and an interpreter's own start-up.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import traceback
from importlib.metadata import entry_points
from pathlib import Path

PRELOAD = [
    "numpy", "pandas", "scipy.stats", "sqlalchemy.orm", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.tracking", "qlib", "qlib.data", "qlib.backtest", "qlib.workflow", "qlib.contrib.model.gbdt",
    "lightgbm", "numba", "hydra", "hydra.compose", "typer", "rich.console", "rich.progress", "pydantic",
    "filelock", "ruamel.yaml", "optuna",
    # what the tests that turn them on import: Qlib's report page, the PNG plots, MLflow's model flavours
    "plotly.figure_factory", "matplotlib.pyplot", "skops.io", "mlflow.pyfunc",
    # last: freezes what the server imported, as the CLI freezes what it imports (runtime.long_lived_imports);
    # each child's collections then walk only its own objects
    "helpers.frozen_preload",
]

@functools.cache
def _forkserver() -> multiprocessing.context.ForkServerContext:
    """Python's forkserver, preloading PRELOAD when this test process first starts it."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _entry(program: str):
    (script,) = entry_points(group="console_scripts", name=program)
    return script.load()


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(program: str, args: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [str(Path(sys.executable).parent / program), *args]
    code = 0
    try:
        _entry(program)()
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        threading._shutdown()  # noqa: SLF001 - the interpreter's own exit steps, in its order
        atexit._run_exitfuncs()  # noqa: SLF001
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run_forked(program: str, args: list[str], cwd: Path, env: dict[str, str],
               timeout: float) -> tuple[int, str, str]:
    """Run `program args` in a forked child: (exit code, stdout, stderr), or subprocess.TimeoutExpired."""
    with tempfile.TemporaryDirectory(prefix="cli-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        out.write_text("")  # the child opens them without creating them
        err.write_text("")
        process = _forkserver().Process(target=_child, args=(program, args, str(cwd), env, str(out), str(err)))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired([program, *args], timeout)
        return process.exitcode, out.read_text(errors="replace"), err.read_text(errors="replace")
