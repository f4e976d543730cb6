"""Compose conf/<stage>.yaml with command-line overrides, validate it, and fill derived values.

Hydra's compose API is used (not @hydra.main) so that Typer owns the command line. Compose mode has
no output folder or HydraConfig, so `hydra.run.dir=...` is taken out here and handled by outputs.py.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtrack import paths
from qtrack.config.store_uri import resolve_tracking_uri
from qtrack.config.values import to_container
from qtrack.errors import QtrackError

if TYPE_CHECKING:  # the schemas import OmegaConf: not on `qtrack --help`'s path
    from qtrack.config.schema import Settings

RUN_DIR_OVERRIDE = "hydra.run.dir="
_HYDRA_LOCK = threading.Lock()


def config_groups(config_dir: Path | None = None) -> dict[str, list[str]]:
    """Each config group and its options, read from the folder (cheap: no Hydra import)."""
    root = config_dir or paths.config_dir()
    groups = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        groups[folder.name] = sorted(p.stem for p in folder.glob("*.yaml"))
    return groups


@dataclass
class Composed:
    cfg: Settings
    run_dir: str | None


def compose(stage: str, overrides: list[str]) -> Composed:
    """The validated config for `stage` with `overrides` applied, or a QtrackError in one line."""
    run_dir, overrides = _take_run_dir(overrides)
    _check_group_choices(overrides)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    with _HYDRA_LOCK:  # Hydra's compose state is a process-wide singleton
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(paths.config_dir()), version_base="1.3"):
                cfg = hydra_compose(config_name=stage, overrides=overrides)
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            raise QtrackError(f"bad override: {_one_line(exc)}") from None
        finally:
            GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    _validate(cfg)
    _fill_derived(cfg)
    return Composed(cfg=_settings(cfg), run_dir=run_dir)


def _settings(cfg: Any) -> Settings:
    """The validated config (OmegaConf's) as frozen, typed settings."""
    from omegaconf import OmegaConf

    from qtrack.config.schema import Settings
    from qtrack.config.settings import build

    return build(Settings, OmegaConf.to_container(cfg, resolve=True))


def _take_run_dir(overrides: list[str]) -> tuple[str | None, list[str]]:
    run_dir, rest = None, []
    for item in overrides:
        if item.startswith(RUN_DIR_OVERRIDE):
            run_dir = item[len(RUN_DIR_OVERRIDE) :]
        elif item.startswith("hydra."):
            raise QtrackError(f"unsupported override '{item}': only hydra.run.dir can be set")
        else:
            rest.append(item)
    return run_dir, rest


def _check_group_choices(overrides: list[str]) -> None:
    groups = config_groups()
    for item in overrides:
        match = re.fullmatch(r"[+~]?([\w/]+)=(.*)", item)
        if not match or match.group(1) not in groups:
            continue
        group, choice = match.groups()
        if choice not in groups[group]:
            valid = ", ".join(groups[group])
            raise QtrackError(f"unknown {group} '{choice}': choose one of {valid}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.split("\n    full_key:")[0].split("\nfull_key:")[0]
    return re.sub(r"\s+", " ", text)


def _validate(cfg: Any) -> None:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from qtrack.config import schema as schemas
    from qtrack.config.settings import validation_schema

    for group, schema in schemas.SCHEMAS.items():
        if group not in cfg:
            continue
        try:
            cfg[group] = OmegaConf.merge(OmegaConf.structured(validation_schema(schema)), cfg[group])
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", "") or ""
            where = f"{group}.{key}" if key else group
            raise QtrackError(f"invalid {where}: {_one_line(exc)}") from None
    if "model" in cfg:
        _validate_model(cfg.model)
    for key in ("seed",):
        if key in cfg and not isinstance(cfg[key], int):
            raise QtrackError(f"invalid {key}: expected an integer, got {cfg[key]!r}")
    if cfg.get("kernels") is not None and not isinstance(cfg.kernels, int):
        raise QtrackError(f"invalid kernels: expected a positive integer or null, got {cfg.kernels!r}")
    problem = schemas.check(cfg)
    if problem:
        raise QtrackError(problem)


def _validate_model(model: Any) -> None:
    """Hyperparameters keep the type of the model's own default (an int is fine for a float) and stay
    within the ranges of config.schema.MODEL_RANGES."""
    from omegaconf import OmegaConf

    from qtrack.config.ranges import model_range_problem

    defaults_file = paths.config_dir() / "model" / f"{model.name}.yaml"
    defaults = OmegaConf.to_container(OmegaConf.load(defaults_file)) if defaults_file.is_file() else {}
    defaults.pop("defaults", None)  # Hydra's defaults list (the features a network reads)
    if model.get("flavor") == "pytorch" and importlib.util.find_spec("torch") is None:
        raise QtrackError(f"model={model.name} needs PyTorch, which is not installed: pip install 'qtrack[torch]' "
                          "(docs/deep_models.md says which build)")
    for key, default in defaults.items():
        value = model.get(key)
        if default is None or value is None or key in ("fit_keys",):
            continue
        if not _same_kind(default, value):
            raise QtrackError(
                f"invalid model.{key}: expected {type(default).__name__}, got {value!r}"
            )
    for key, value in model.items():
        problem = model_range_problem(model.name, str(key), value)
        if problem:
            raise QtrackError(f"model.{key} {problem}")


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _fill_derived(cfg: Any) -> None:
    if "mlflow" not in cfg:
        return
    cfg.mlflow.tracking_uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    if cfg.dataset.get("provider_uri"):  # logged and reused by predict from any folder: never relative
        cfg.dataset.provider_uri = str(Path(str(cfg.dataset.provider_uri)).expanduser().absolute())
    if cfg.dataset.get("provider_uri") and cfg.dataset.name.startswith("synthetic"):
        cfg.dataset.name = _directory_dataset_name(str(cfg.dataset.provider_uri))
        cfg.dataset.synthetic = None
    if not cfg.mlflow.experiment_name:
        cfg.mlflow.experiment_name = f"{cfg.dataset.name}_{cfg.features.name}"


def _directory_dataset_name(provider_uri: str) -> str:
    """A dataset name for a directory given without one: its folder name (cn_data), made safe."""
    base = Path(provider_uri).expanduser().name
    return base if paths.SAFE_NAME.fullmatch(base) else "qlib_data"


def variant(cfg: Settings, *, model: str | None = None, values: dict[str, Any] | None = None,
            overrides: list[str] | None = None, allowed: tuple[str, ...] = ("model.",),
            drop: tuple[str, ...] = ()) -> Settings:
    """A validated copy of a composed config: top-level keys in `drop` removed, the `model` group swapped
    for another option, then `values` (dotted key -> value) and `overrides` (Hydra's syntax) applied as a
    patch. The patch may touch only keys under `allowed`; anything else is a QtrackError, so a variant
    can never log one config while it runs on another's data."""
    from omegaconf import OmegaConf

    derived = OmegaConf.create(to_container(cfg))
    for key in drop:
        derived.pop(key, None)
    if model is not None:
        derived.model = _group_option("model", model)
    patch = dict(values or {})
    patch.update(parse_overrides(overrides or []))
    for key, value in patch.items():
        if not any(key == prefix.rstrip(".") or key.startswith(prefix) for prefix in allowed):
            raise QtrackError(f"'{key}' can't be changed here: only {', '.join(p + '*' for p in allowed)} may")
        OmegaConf.update(derived, key, value, merge=False, force_add=True)
    _validate(derived)
    return _settings(derived)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Hydra override strings (`model.x=1`, `+model.y=[1,2]`) as dotted key -> value, parsed by Hydra."""
    if not overrides:
        return {}
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise QtrackError(f"bad override: {_one_line(exc)}") from None
    found = {}
    for item in parsed:
        if item.is_delete():
            raise QtrackError(f"bad override '{item.input_line}': deleting keys is not supported here")
        found[item.key_or_group] = item.value()
    return found


def _group_option(group: str, option: str) -> Any:
    from omegaconf import OmegaConf

    path = paths.config_dir() / group / f"{option}.yaml"
    if not path.is_file():
        valid = ", ".join(config_groups()[group])
        raise QtrackError(f"unknown {group} '{option}': choose one of {valid}")
    loaded = OmegaConf.load(path)
    loaded.pop("defaults", None)
    return loaded
