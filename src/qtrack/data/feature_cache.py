"""A disk cache of built datasets (features after processors), so unchanged features are never
recomputed.

The key hashes everything the built data depends on: the data fingerprint, the whole DatasetH config
(handler, processors, label, market, time range, fit window, segments) and the Qlib version. Entries are
written to a temporary file and renamed into place, under a per-key lock, so two processes building the
same entry wait for each other instead of corrupting it. An unreadable entry is rebuilt with a warning.
The frames' arrays are memory-mapped on load (qtrack.mapped_pickle), so a hit costs milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtrack.data import mapped_pickle

log = logging.getLogger("qtrack")
FORMAT_VERSION = 2  # 2: a mapped pickle (qtrack.mapped_pickle), no longer a plain one


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


def is_dataset(obj: Any) -> bool:
    return hasattr(obj, "prepare")


class FeatureCache:
    """Entries by key. By default the entries are built datasets; `valid` and `detach` (what is written
    while the caller keeps the original) let other values be cached the same way, in files of their own `suffix`."""

    def __init__(
        self,
        folder: Path,
        enabled: bool = True,
        valid: Callable[[Any], bool] = is_dataset,
        detach: Callable[[Any], Any] | None = None,
        suffix: str = "features",
    ) -> None:
        self.folder = folder
        self.enabled = enabled
        self.valid = valid
        self.detach = detach or _detached
        self.suffix = suffix
        self.stats = CacheStats()
        self.writer: threading.Thread | None = None

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.{self.suffix}"

    def get_or_build(self, key: str, build: Callable[[], Any], on_warning: Callable[[str], None]) -> tuple[Any, str]:
        """The built dataset and how it was obtained: 'hit', 'miss' (built, being stored) or 'off'.

        A new entry is written by a background thread while the caller goes on to fit (LightGBM and the
        disk do not need the same resources); the entry's lock is held until the file is in place, and the
        interpreter waits for the thread before it exits."""
        if not self.enabled:
            self.stats.builds += 1
            return build(), "off"
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path(key)) + ".lock", thread_local=False)
        lock.acquire()
        writing = False
        try:
            dataset = self.read(key, on_warning)
            if dataset is not None:
                self.stats.hits += 1
                return dataset, "hit"
            self.stats.misses += 1
            self.stats.builds += 1
            dataset = build()
            self.writer = threading.Thread(
                target=self._store, args=(key, self.detach(dataset), on_warning, lock), name="feature-cache-writer"
            )
            self.writer.start()
            writing = True
            return dataset, "miss"
        finally:
            if not writing:
                lock.release()

    def wait(self) -> None:
        """Until the entry being written (if any) is in place."""
        if self.writer is not None:
            self.writer.join()

    def read(self, key: str, on_warning: Callable[[str], None]) -> Any:
        """The entry, or None (missing, or unreadable: then it is deleted and a warning given)."""
        path = self.path(key)
        if not path.is_file():
            return None
        start = time.perf_counter()
        try:
            dataset = mapped_pickle.load(path)
            if not self.valid(dataset):
                raise TypeError(f"not a cache entry: {type(dataset).__name__}")
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is rebuilt, never fatal
            self.stats.rebuilt_corrupt += 1
            on_warning(f"feature cache entry {path.name} is unreadable ({type(exc).__name__}); rebuilding it")
            path.unlink(missing_ok=True)
            return None
        log.info("feature cache hit %s (%.2fs)", path.name, time.perf_counter() - start)
        return dataset

    def _store(self, key: str, dataset: Any, on_warning: Callable[[str], None], lock: Any) -> None:
        from qtrack.paths import atomic_file

        try:
            with atomic_file(self.path(key)) as temporary, temporary.open("wb") as out:
                mapped_pickle.dump(dataset, out)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written must not fail the run
            on_warning(f"could not write the feature cache ({exc}); continuing without it")
        finally:
            lock.release()


def _detached(dataset: Any) -> Any:
    """A copy of the dataset's Qlib objects (not of its data) that pickles with the handler's data.

    Qlib drops `_`-prefixed attributes such as the handler's frames unless `config(dump_all=True)`; that is
    set on copies, because the caller keeps using the originals while the copy is written."""
    from qlib.utils.serial import Serializable

    copies: dict[int, Any] = {}

    def detach(obj: Any) -> Any:
        if id(obj) not in copies:
            copy = copies[id(obj)] = object.__new__(type(obj))
            copy.__dict__.update(obj.__dict__)
            for name, value in obj.__dict__.items():
                if isinstance(value, Serializable):
                    copy.__dict__[name] = detach(value)
        return copies[id(obj)]

    copy = detach(dataset)
    copy.config(recursive=True, dump_all=True)
    return copy
