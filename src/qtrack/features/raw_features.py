"""The raw-feature cache the fast loader serves from while a dataset is built.

Qlib builds the handler (and calls its loader) deep inside `init_instance_by_config`, so the cache cannot
be passed down as an argument without entering the dataset config, and with it the pickled pipeline that
`predict` rebuilds features from. A context variable scopes it to the one build instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ACTIVE: ContextVar[Any] = ContextVar("qtrack_raw_features", default=None)


def active() -> Any:
    """The cache serving this build's raw features, or None (compute them)."""
    return _ACTIVE.get()


@contextmanager
def using(cache: Any) -> Iterator[None]:
    token = _ACTIVE.set(cache)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
