"""A disk cache of built datasets (features after processors), so unchanged features are never
recomputed.

The key hashes everything the built data depends on: the data fingerprint, the whole DatasetH config
(handler, processors, label, market, time range, fit window, segments) and the Qlib version. Entries are
written to a temporary file and renamed into place, under a per-key lock, so two processes building the
same entry wait for each other instead of corrupting it. An unreadable entry is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("qtrack")
FORMAT_VERSION = 1


@dataclass
class CacheStats:
    """What this process did with the cache; optimize and benchmark report it."""

    hits: int = 0
    misses: int = 0
    builds: int = 0
    rebuilt_corrupt: int = 0


def cache_key(fingerprint: str, dataset_config: dict) -> str:
    import qlib

    payload = {
        "format": FORMAT_VERSION,
        "data": fingerprint,
        "dataset": dataset_config,
        "qlib": qlib.__version__,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class FeatureCache:
    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder = folder
        self.enabled = enabled
        self.stats = CacheStats()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pkl"

    def get_or_build(self, key: str, build: Callable[[], Any], on_warning: Callable[[str], None]) -> tuple[Any, str]:
        """The built dataset and how it was obtained: 'hit', 'miss' (built and stored) or 'off'."""
        if not self.enabled:
            self.stats.builds += 1
            return build(), "off"
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path(key)) + ".lock"):
            dataset = self._load(key, on_warning)
            if dataset is not None:
                self.stats.hits += 1
                return dataset, "hit"
            self.stats.misses += 1
            self.stats.builds += 1
            dataset = build()
            self._store(key, dataset, on_warning)
            return dataset, "miss"

    def _load(self, key: str, on_warning: Callable[[str], None]) -> Any:
        path = self.path(key)
        if not path.is_file():
            return None
        start = time.perf_counter()
        try:
            with path.open("rb") as handle:
                dataset = pickle.load(handle)
            if not hasattr(dataset, "prepare"):
                raise TypeError(f"not a dataset: {type(dataset).__name__}")
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is rebuilt, never fatal
            self.stats.rebuilt_corrupt += 1
            on_warning(f"feature cache entry {path.name} is unreadable ({type(exc).__name__}); rebuilding it")
            path.unlink(missing_ok=True)
            return None
        log.info("feature cache hit %s (%.2fs)", path.name, time.perf_counter() - start)
        return dataset

    def _store(self, key: str, dataset: Any, on_warning: Callable[[str], None]) -> None:
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                _dump_dataset(dataset, out)
            os.replace(temporary, self.path(key))
        except (OSError, pickle.PicklingError, TypeError) as exc:
            Path(temporary).unlink(missing_ok=True)
            on_warning(f"could not write the feature cache ({exc}); continuing without it")


def _dump_dataset(dataset: Any, out) -> None:
    """Pickle a DatasetH with its handler's data (Qlib drops `_`-prefixed attributes by default)."""
    dataset.config(recursive=True, dump_all=True)
    try:
        pickle.dump(dataset, out, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        dataset.config(recursive=True, dump_all=False)
