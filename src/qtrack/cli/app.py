"""The `qtrack` command line. Thin: it parses, calls a stage and turns errors into exit codes.

Heavy libraries (Qlib, MLflow, Hydra) are imported inside the commands so `--help` stays fast.
Commands live by concern: stages.py (train, benchmark, optimize, retrain), registry.py (register,
predict, models), store.py (gc, ui), dashboard.py, data.py (data ...).
"""

from __future__ import annotations

import sys

import typer

from qtrack import __version__
from qtrack.errors import QtrackError

INTERRUPTED, TERMINATED = 130, 143
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Train, sweep and compare Qlib models, with every run tracked in MLflow.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qtrack {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool | None = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train, sweep and compare Qlib models, with every run tracked in MLflow."""


def _add_commands() -> None:
    from qtrack.cli import dashboard, data, registry, stages, store

    stages.add_to(app)
    registry.add_to(app)
    store.add_to(app)
    dashboard.add_to(app)
    app.add_typer(data.app, name="data")
    app.add_typer(registry.models_app, name="models")


_add_commands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    from typer.exceptions import Abort, Exit, TyperException  # TyperException: the base of Click's errors

    from qtrack.runtime import install_signal_handlers, set_process_defaults

    set_process_defaults()
    install_signal_handlers()
    try:
        # Without standalone mode Click returns (not raises) the code of a typer.Exit; Typer itself turns
        # KeyboardInterrupt (so Terminated too) into code 130.
        code = app(args=argv, prog_name="qtrack", standalone_mode=False)
        if code == INTERRUPTED:
            return _interrupted()
    except QtrackError as exc:
        _fail(str(exc))
        return exc.exit_code
    except Exit as exc:
        return exc.exit_code
    except TyperException as exc:
        exc.show()  # Click's own usage line and message
        return exc.exit_code
    except Abort:
        _fail("aborted")
        return INTERRUPTED
    except KeyboardInterrupt:  # Terminated included
        return _interrupted()
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, details in the log
        _fail(f"{type(exc).__name__}: {exc} (the run folder's run.log has the traceback)")
        return 1
    return code if isinstance(code, int) else 0


def _interrupted() -> int:
    """Ctrl-C exits 130 and SIGTERM 143 (128 + the signal), as a shell reports them."""
    import signal

    from qtrack.runtime import received_signal

    if received_signal() == signal.SIGTERM:
        _fail("terminated (SIGTERM): the runs it had open were ended KILLED")
        return TERMINATED
    _fail("interrupted: the runs it had open were ended KILLED")
    return INTERRUPTED


def _fail(message: str) -> None:
    from qtrack.config.redact import text

    sys.stderr.write(f"qtrack: error: {text(' '.join(message.split()))}\n")


def entry() -> None:
    """The `qtrack` console script."""
    finish(main())


def run_optimization() -> None:
    """The `run_optimization` console script: `qtrack optimize` under its own name."""
    finish(main(["optimize", *sys.argv[1:]]))


def finish(code: int) -> None:
    """Exit with `code` after the exit steps that keep work and output (non-daemon threads joined, such as the
    feature cache's writer; atexit callbacks, logging's flush included; stdout and stderr flushed), without the
    interpreter then tearing every module down: 1.2-1.3 s of each train here, after its work was done. A signal
    from here on ends the process in one line (runtime.install_shutdown_handlers)."""
    import atexit
    import contextlib
    import os
    import threading

    from qtrack.runtime import install_shutdown_handlers

    install_shutdown_handlers()
    threading._shutdown()  # noqa: SLF001 - what the interpreter runs first at exit, in its order
    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing to keep
            stream.flush()
    os._exit(code)
