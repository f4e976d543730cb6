"""Data preparation, once per process: data on disk, Qlib initialised, segments resolved, the dataset
built (or loaded from the feature cache) and the benchmark's returns computed. Every stage calls it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qtrack.config.schema import Settings
from qtrack.console import Observer, timed
from qtrack.data import qlib_format
from qtrack.data.dataset import (
    DataSource,
    dataset_config,
    ensure_data,
    kernels,
    load_or_build_dataset,
    pipeline_bytes,
    resolve_segments,
)
from qtrack.data.segments import Segments
from qtrack.runtime import init_qlib


@dataclass
class PreparedData:
    """A dataset built once and shared by every run of a stage."""

    source: DataSource
    segments: Segments
    dataset: Any  # qlib.data.dataset.DatasetH
    benchmark: Any  # the benchmark's daily returns over the test segment (benchmark_returns)
    cache_status: str = "off"  # feature cache: hit, miss or off
    cache: Any = None  # the FeatureCache, whose counters prove the dataset was built once
    binned: Any = None  # the BinnedCache of LightGBM's constructed sets (None when the cache is off)
    pipeline: bytes = b""  # the dataset without data, with fitted processors (dataset.pipeline_bytes)
    data_end: str = ""  # the data's last day: a retrain is due once the data goes beyond it
    seconds: dict[str, float] = field(default_factory=dict)  # how long preparing the data and features took

    def release_frames(self) -> None:
        """Drop the dataset's frames, for a stage that reads them no more: its last run then logs (and forks its
        report worker) without the features in memory. The dataset cannot be read again."""
        from qtrack import qlib_compat

        qlib_compat.drop_frames(self.dataset.handler)


def prepare(cfg: Settings, observer: Observer) -> PreparedData:
    """Data on disk, Qlib initialised, segments resolved and the dataset built: once per process."""
    seconds: dict[str, float] = {}
    with timed(observer, seconds, "data", f"preparing dataset '{cfg.dataset.name}'"):
        source = ensure_data(cfg.dataset)
        segs, notices = resolve_segments(cfg, source)
        config = dataset_config(cfg, segs)  # a bad dataset.features_from fails here, with the segments
        init_qlib(source.path, cfg.dataset.region, cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name, kernels(cfg))
        benchmark = cached_benchmark_returns(cfg, source, segs, observer.note)
    for notice in notices:
        observer.note(notice)
    with timed(observer, seconds, "features", f"{cfg.features.name} features"):
        dataset, cache_status, cache, binned = load_or_build_dataset(cfg, source, config, observer.note)
    return PreparedData(
        source=source, segments=segs, dataset=dataset, benchmark=benchmark, cache_status=cache_status, cache=cache,
        binned=binned, pipeline=pipeline_bytes(dataset),
        data_end=qlib_format.read_calendar(source.path)[-1].strftime("%Y-%m-%d"), seconds=seconds,
    )


def benchmark_codes(cfg: Settings, source: DataSource) -> Any:
    """The benchmark instrument, or (none given) every symbol of the market, equal-weighted."""
    if cfg.dataset.benchmark is not None:
        return cfg.dataset.benchmark
    return qlib_format.read_instruments(source.path, cfg.dataset.market)["symbol"].tolist()


def cached_benchmark_returns(cfg: Settings, source: DataSource, segs: Segments, on_warning) -> Any:
    """`benchmark_returns` of the configured benchmark, kept beside the feature cache (under its switch) by the
    data's fingerprint, the codes and the test segment: Qlib reads every code's close for them, 1 to 1.4 s of a
    warm train on 490 symbols here."""
    from qtrack.data.feature_cache import FeatureCache, cache_key
    from qtrack.data.store import cache_dir

    codes = benchmark_codes(cfg, source)
    cache = FeatureCache(
        cache_dir(source.name), enabled=bool(cfg.dataset.cache), valid=_is_returns, detach=_itself, suffix="benchmark"
    )
    key = cache_key(source.fingerprint, {"benchmark_returns": codes, "test": segs.as_dict()["test"]})
    returns, _ = cache.get_or_build(key, lambda: benchmark_returns(codes, segs), on_warning)
    return returns


def _is_returns(value: Any) -> bool:
    import pandas as pd

    return isinstance(value, pd.Series)


def _itself(value: Any) -> Any:
    return value


def benchmark_returns(codes: Any, segs: Segments) -> Any:
    """The benchmark's (one code, or the equal-weighted codes) daily returns over the test segment, by
    Qlib's own function. Given codes, a backtest computes them twice (1.9 s each for 500 symbols)."""
    from qtrack import qlib_compat

    start, end = segs.as_dict()["test"]
    return qlib_compat.benchmark_returns(codes, start, end)
