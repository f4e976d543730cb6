"""What the user sees: one status line per step with its time, and a closing summary table."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from rich.console import Console
from rich.table import Table

log = logging.getLogger("qtrack")
# Bound to the real streams now: library prints are redirected to the run log during steps.
err = Console(file=sys.stderr, highlight=False)
out = Console(file=sys.stdout, highlight=False)


class Observer(Protocol):
    """What long work tells as it goes: steps, progress within a step (an epoch), and notes. It only shows and
    forwards; the work measures its own times (`timed`)."""

    def step(self, name: str, description: str) -> AbstractContextManager[None]: ...

    def progress(self, message: str) -> None: ...

    def epoch(self, number: int, metrics: dict[str, float]) -> None: ...

    def note(self, message: str) -> None: ...


@contextmanager
def timed(observer: Observer, seconds: dict[str, float], name: str, description: str) -> Iterator[None]:
    """`observer.step(name, description)`, with the step's time added to `seconds[name]`."""
    start = time.perf_counter()
    with observer.step(name, description):
        yield
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


class Steps:
    """The console's Observer: a spinner while a step runs and a line with its time when it ends."""

    def __init__(self, console: Console = err, quiet: bool = False, capture: bool = True) -> None:
        self.console = console
        self.quiet = quiet
        # Redirecting stdout is process-wide: steps running in threads leave it to their caller.
        self.capture = capture
        self._status: tuple[str, object] | None = None  # the running step's description and spinner

    @contextmanager
    def step(self, name: str, description: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("start %s: %s", name, description)
        from qtrack.runtime import captured_output

        if self.quiet:
            with captured_output() if self.capture else contextlib.nullcontext():
                yield
        else:
            with self.console.status(f"{description}...") as status, captured_output():
                self._status = (description, status)
                try:
                    yield
                finally:
                    self._status = None
        took = time.perf_counter() - start
        log.info("done %s in %.2fs", name, took)
        if not self.quiet:
            self.console.print(f"[green]✓[/] {description} [dim]{took:.1f}s[/]")

    def progress(self, message: str) -> None:
        """How far the running step has got, on its spinner line and in the run log."""
        log.info(message)
        if self._status is not None:
            description, status = self._status
            status.update(f"{description}: {message}")

    def epoch(self, number: int, metrics: dict[str, float]) -> None:
        self.progress(f"epoch {number}, " + ", ".join(f"{name} {value:.5f}" for name, value in metrics.items()))

    def note(self, message: str) -> None:
        """A warning the user should see, even with --quiet."""
        log.warning(message)
        self.console.print(f"[yellow]![/] {message}")


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table
