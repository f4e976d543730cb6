"""The config: Hydra groups composed with command-line overrides (compose.py), checked against typed
schemas with ranges (schema.py), and turned into containers, YAML and override strings (values.py)."""

from qtrack.config.compose import Composed, compose, config_groups, parse_overrides, variant
from qtrack.config.values import (
    MODEL_RESERVED_KEYS,
    expand_switches,
    model_hyperparameters,
    override_value,
    to_container,
    to_yaml,
    train_overrides,
)

__all__ = [
    "MODEL_RESERVED_KEYS",
    "Composed",
    "compose",
    "config_groups",
    "expand_switches",
    "model_hyperparameters",
    "override_value",
    "parse_overrides",
    "to_container",
    "to_yaml",
    "train_overrides",
    "variant",
]
