"""The one label column a booster trains on."""

from __future__ import annotations

from typing import Any


def one_label(label: Any) -> Any:
    values = label.values
    if values.ndim != 2 or values.shape[1] != 1:
        raise ValueError("this model doesn't support multi-label training")
    return values[:, 0]
