"""The synthetic market's parameters. Their defaults are conf/dataset/synthetic.yaml's `synthetic:` block,
read from qtrack's own config folder, so they live in one place; the model is in qtrack.data.synthetic."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from qtrack import paths
from qtrack.config.settings import SettingsGroup


@functools.cache
def _defaults() -> dict[str, Any]:
    import yaml

    text = (paths.builtin_config_dir() / "dataset" / "synthetic.yaml").read_text()
    return yaml.safe_load(text)["synthetic"]


def _default(key: str) -> Any:
    return field(default_factory=lambda: _defaults()[key])


@dataclass(frozen=True)
class SyntheticSpec(SettingsGroup):
    """The market's parameters; also the schema that validates the `dataset.synthetic` config."""

    symbols: int = _default("symbols")
    days: int = _default("days")
    start: str = _default("start")
    signal: float = _default("signal")
    noise: float = _default("noise")
    seed: int = _default("seed")
    holiday_rate: float = _default("holiday_rate")
    missing_rate: float = _default("missing_rate")
    late_listing_share: float = _default("late_listing_share")

    @property
    def theoretical_ic(self) -> float:
        return self.signal / math.sqrt(1.0 + self.noise**2)

    def to_dict(self) -> dict:
        return asdict(self)
