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
