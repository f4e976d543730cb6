"""Data preparation: make sure the data exists, resolve segments, build Qlib's DatasetH once."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtrack import paths
from qtrack.config.schema import DatasetSchema, Settings
from qtrack.data import external, qlib_format, segments, synthetic, versions
from qtrack.errors import QtrackError

SYNTHETIC_PREFIX = "synthetic"


@dataclass
class DataSource:
    name: str
    path: Path
    fingerprint: str


def ensure_data(dataset_cfg: DatasetSchema) -> DataSource:
    """The dataset folder, generating the synthetic market on first use. QtrackError if missing.
    With `provider_uri`, an existing Qlib directory read in place (nothing is leased or written there)."""
    name = dataset_cfg.name
    if dataset_cfg.get("provider_uri"):
        root = external.checked_root(str(dataset_cfg.provider_uri))
        return DataSource(name=name, path=root, fingerprint=external.stat_fingerprint(root))
    target = paths.dataset_dir(name)
    if name.startswith(SYNTHETIC_PREFIX) and dataset_cfg.get("synthetic") is not None:
        spec = synthetic.SyntheticSpec(**dict(dataset_cfg.synthetic))
        try:
            synthetic.ensure(target, spec)
        except ValueError as exc:
            raise QtrackError(f"invalid dataset.synthetic: {exc}") from None
    if not qlib_format.is_dataset(target):
        raise QtrackError(
            f"dataset '{name}' not found under {paths.data_root()} "
            "(import one with `qtrack data import SOURCE --name NAME`, or use dataset.name=synthetic)"
        )
    version = versions.lease(target)  # read this version to the end, whatever an import does meanwhile
    return DataSource(name=name, path=version, fingerprint=qlib_format.fingerprint_of(version))


def market_calendar(source: DataSource, market: str):
    instruments_file = source.path / "instruments" / f"{market}.txt"
    if not instruments_file.is_file():
        available = sorted(p.stem for p in (source.path / "instruments").glob("*.txt"))
        raise QtrackError(f"market '{market}' not in dataset '{source.name}' (available: {', '.join(available)})")
    return qlib_format.read_calendar(source.path)


def resolve_segments(cfg: Settings, source: DataSource) -> tuple[segments.Segments, list[str]]:
    """Given segments are checked against the whole calendar; automatic ones cover only the span where
    at least half of the symbols trade (one long-lived file must not stretch the test segment)."""
    calendar = market_calendar(source, cfg.dataset.market)
    configured = dict(cfg.dataset.segments)
    notices: list[str] = []
    if all(value is None for value in configured.values()):
        first, last = qlib_format.active_span(source.path, cfg.dataset.market)
        if (first, last) != (calendar[0], calendar[-1]):
            notices.append(
                f"automatic segments cover {first.date()}..{last.date()}, where at least half of the "
                f"symbols trade (the data runs {calendar[0].date()}..{calendar[-1].date()})"
            )
        calendar = calendar[(calendar >= first) & (calendar <= last)]
    segs, more = segments.resolve(calendar, configured, dict(cfg.dataset.split), int(cfg.features.label_horizon))
    return segs, notices + more


def features_from(cfg: Settings, segs: segments.Segments) -> str:
    """The handler's start: dataset.features_from, or the train segment's start."""
    import pandas as pd

    train_start = segs.as_dict()["train"][0]
    given = cfg.dataset.features_from
    if given is None:
        return train_start
    try:
        start = pd.Timestamp(str(given))
    except ValueError:
        raise QtrackError(f"dataset.features_from: not a date: {given}") from None
    if start > pd.Timestamp(train_start):
        raise QtrackError(f"dataset.features_from {start.date()} is after the train segment's start {train_start}")
    return start.strftime("%Y-%m-%d")


def dataset_config(cfg: Settings, segs: segments.Segments) -> dict:
    """Qlib's DatasetH config. Learnable processors are fitted on the train segment only."""
    from qtrack.config import to_container

    features = to_container(cfg.features)
    spans = segs.as_dict()
    handler_kwargs = {
        "instruments": cfg.dataset.market,
        "start_time": features_from(cfg, segs),
        "end_time": spans["test"][1],
        "fit_start_time": spans["train"][0],
        "fit_end_time": spans["train"][1],
        "infer_processors": features["infer_processors"],
        "learn_processors": features["learn_processors"],
        "engine": features["engine"],
    }
    if features.get("label"):
        handler_kwargs["label"] = ([features["label"]], ["LABEL0"])
    kwargs = {
        "handler": {"class": features["handler"], "module_path": features["module_path"], "kwargs": handler_kwargs},
        "segments": {name: list(span) for name, span in spans.items()},
    }
    step_len = cfg.model.get("step_len")
    if step_len:  # a model that reads step_len days a sample (gru_ts, lstm_ts): Qlib's TSDatasetH
        return {"class": "TSDatasetH", "module_path": "qlib.data.dataset", "kwargs": {**kwargs, "step_len": step_len}}
    return {"class": "DatasetH", "module_path": "qtrack.data.qlib_dataset", "kwargs": kwargs}


def build_dataset(config: dict):
    from qlib.utils import init_instance_by_config

    return init_instance_by_config(config)


# What the feature step did, by what the built-dataset cache and then the raw-feature cache did.
CACHE_STATUS = {"hit": "reused", "extended": "extended", "miss": "miss", None: "miss"}


def load_or_build_dataset(cfg: Settings, source: DataSource, config: dict, on_warning) -> tuple[Any, str, Any, Any]:
    """The built dataset, the cache status, the cache (for its counters) and the cache of LightGBM's
    binned sets beside its entry (None when the cache is off).

    Status: 'hit' (the built dataset was cached), 'reused' (its raw features were: processors ran),
    'extended' (the raw features of an earlier data version were extended to this one), 'miss' (built)
    or 'off'."""
    from qtrack.data.binned_cache import BinnedCache
    from qtrack.data.feature_cache import FeatureCache, cache_key
    from qtrack.data.raw_cache import RawFeatureCache
    from qtrack.data.store import cache_dir
    from qtrack.features import raw_features

    cache = FeatureCache(cache_dir(source.name), enabled=bool(cfg.dataset.cache))
    raw = RawFeatureCache(cache.folder, source.fingerprint, on_warning) if cache.enabled else None

    def build() -> Any:
        with raw_features.using(raw):  # None (cache off): the loader computes the features
            return build_dataset(config)

    key = cache_key(source.fingerprint, config)
    dataset, status = cache.get_or_build(key, build, on_warning)
    if raw is not None and status == "miss":
        status = CACHE_STATUS[raw.status]
    return dataset, status, cache, BinnedCache(cache.folder, key, on_warning) if cache.enabled else None


def pipeline_bytes(dataset: Any) -> bytes:
    """The dataset definition with its fitted processors and without data: what `predict` rebuilds
    features with (Qlib's own mechanism: pickle with dump_all=False, then setup_data(IT_LS))."""
    dataset.config(recursive=True, dump_all=False)
    return pickle.dumps(dataset, protocol=pickle.HIGHEST_PROTOCOL)


def kernels(cfg: Settings) -> int | None:
    """Feature workers; None keeps Qlib's default (cores - 2, at least 1), as `qrun` does."""
    return int(cfg.kernels) if cfg.kernels else None
