"""Typed, frozen settings: what `compose()` returns once the config is validated.

Each group is an instance of its schema dataclass (config.schema), frozen, with sequences as tuples and free-form
parts (a model's hyperparameters, a search space) as read-only mappings. A group also reads as a mapping of its
fields, so generic code (logging every param, the YAML written beside a run) walks it as it walked the config.
`to_container` turns settings back into plain dicts and lists, for Qlib and for MLflow.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any


class SettingsGroup(Mapping):
    """A frozen settings dataclass read as a mapping of its fields (`dict(settings.rolling)`, `settings.get(...)`),
    then of its `_extra()` keys. The top level leaves out the stage parts a stage does not have
    (`"optimize" in settings`) and adds the keys a user added."""

    def __getitem__(self, key: str) -> Any:
        if key in self._fields():
            return getattr(self, key)
        return self._extra()[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._fields()
        yield from self._extra()

    def __len__(self) -> int:
        return len(self._fields()) + len(self._extra())

    def _fields(self) -> tuple[str, ...]:
        return tuple(item.name for item in dataclasses.fields(self))  # type: ignore[arg-type]

    def _extra(self) -> Mapping[str, Any]:
        return {}


class FrozenMapping(Mapping):
    """A read-only mapping whose values are frozen too (tuples, FrozenMappings); its keys also read as
    attributes (`settings.model.learning_rate`)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", types.MappingProxyType({str(k): freeze(v) for k, v in values.items()}))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to '{key}': settings are frozen")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self._values)!r})"


class ModelSettings(FrozenMapping):
    """A model option (conf/model/*.yaml): its name, Qlib class and module, MLflow flavour, and hyperparameters,
    which differ per model."""

    @property
    def name(self) -> str:
        return self._values["name"]

    @property
    def class_name(self) -> str:
        return self._values["class"]

    @property
    def flavor(self) -> str | None:
        return self._values.get("flavor")


def freeze(value: Any) -> Any:
    """Plain data made immutable: dicts as FrozenMappings, lists as tuples."""
    if isinstance(value, (SettingsGroup, FrozenMapping)):
        return value
    if isinstance(value, Mapping):
        return FrozenMapping(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def to_container(value: Any) -> Any:
    """Settings (or any part of them) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {key: to_container(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_container(item) for item in value]
    return value


def build(cls: type, data: Mapping[str, Any]) -> Any:
    """An instance of the frozen settings dataclass `cls` from validated plain data (missing optional fields: None).
    A class with an `extra` field keeps there the keys it has no field for."""
    hints = _hints(cls)
    given = {item.name: _build_value(hints[item.name], data.get(item.name)) for item in dataclasses.fields(cls)
             if item.name != "extra" and (item.name in data or not _has_default(item))}
    if "extra" in hints:
        given["extra"] = FrozenMapping({key: value for key, value in data.items() if key not in hints})
    return cls(**given)


def _build_value(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    target = _dataclass_in(kind)
    if target is not None:
        return build(target, value)
    if kind is ModelSettings or ModelSettings in typing.get_args(kind):
        return ModelSettings(value)
    return freeze(value)


def _dataclass_in(kind: Any) -> type | None:
    """The dataclass `kind` is, or holds as Optional[...]."""
    if dataclasses.is_dataclass(kind):
        return kind
    found = [arg for arg in typing.get_args(kind) if dataclasses.is_dataclass(arg)]
    return found[0] if found else None


def _has_default(item: dataclasses.Field) -> bool:
    return item.default is not dataclasses.MISSING or item.default_factory is not dataclasses.MISSING


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def validation_schema(cls: type) -> type:
    """`cls` as a dataclass OmegaConf can merge into: not frozen (OmegaConf marks a frozen one read-only, and a
    merge then fails), nested dataclasses likewise, tuples as lists."""
    hints = _hints(cls)
    fields = [(item.name, _validation_type(hints[item.name]), _field_copy(item)) for item in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields)


def _validation_type(kind: Any) -> Any:
    if dataclasses.is_dataclass(kind):
        return validation_schema(kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        return list[args[0]] if args else list[Any]
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = next(arg for arg in args if arg is not type(None))
        return typing.Optional[_validation_type(inner)]  # noqa: UP045 - OmegaConf reads typing.Optional
    return kind


def _field_copy(item: dataclasses.Field) -> dataclasses.Field:
    factory = item.default_factory
    if factory is not dataclasses.MISSING:
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            factory = validation_schema(factory)  # a nested group's defaults, as the twin OmegaConf expects
        return dataclasses.field(default_factory=factory, metadata=item.metadata)
    return dataclasses.field(default=item.default, metadata=item.metadata)
