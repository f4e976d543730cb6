"""Qlib's binary daily layout, written atomically, and the data fingerprint.

Layout: calendars/day.txt, instruments/<market>.txt (SYMBOL<TAB>first<TAB>last) and
features/<symbol lower>/<field>.day.bin, each a little-endian float32 array whose first value is the
calendar index of the first day and whose rest is one value per calendar day (NaN when missing).

A dataset name under the data root is a symlink to a versioned folder in `.store/`, so replacing a
dataset is a single atomic rename and an interrupted write leaves the previous version in place. A
version that a running process reads stays until it is done (versions.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from qtrack.data import versions

META_FILE = "meta.json"
STORE_DIR = versions.STORE_DIR
FIELDS = ("open", "high", "low", "close", "volume", "vwap", "factor")


@contextmanager
def writer_lock(target: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Held by whatever writes dataset `target` (import, update, synth, the generated market) from before it
    reads the stored version until the new one is in place: two writers never interleave, so an update that
    overlaps another works on the other's result instead of losing its days. `on_wait` runs when another
    writer holds the lock (the caller then waits for it)."""
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def write_dataset(
    target: Path,
    frames: dict[str, pd.DataFrame],
    meta: dict,
    markets: dict[str, list[str]] | None = None,
    extra_files: dict[str, str | Callable[[str], str]] | None = None,
) -> str:
    """Write per-symbol frames (date index, field columns) as a Qlib dataset at `target`. An extra file's
    text may be a function of the new fingerprint.

    Returns the data fingerprint, which is also stored in meta.json.
    """
    store = target.parent / STORE_DIR
    store.mkdir(parents=True, exist_ok=True)
    versions.clean(target.parent)
    staging = store / f"{target.name}.{uuid.uuid4().hex[:12]}"
    marker = versions.mark_writing(staging)
    try:
        _write_tree(staging, frames, markets or {})
        fingerprint = compute_fingerprint(staging)
        meta = {**meta, "fingerprint": fingerprint}
        for entry in meta.get("versions", []):
            entry.setdefault("fingerprint", fingerprint)  # the version this write makes
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text(fingerprint) if callable(text) else text)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        marker.unlink(missing_ok=True)
    return fingerprint


def _write_tree(root: Path, frames: dict[str, pd.DataFrame], markets: dict[str, list[str]]) -> None:
    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))))
    position = pd.Series(np.arange(len(calendar)), index=calendar)
    (root / "calendars").mkdir(parents=True)
    (root / "calendars" / "day.txt").write_text("\n".join(calendar.strftime("%Y-%m-%d")) + "\n")

    spans: dict[str, tuple[str, str]] = {}
    for symbol, frame in frames.items():
        frame = frame.sort_index()
        first, last = int(position[frame.index[0]]), int(position[frame.index[-1]])
        full_index = calendar[first : last + 1]
        aligned = frame.reindex(full_index)
        folder = root / "features" / symbol.lower()
        folder.mkdir(parents=True)
        for field in aligned.columns:
            values = aligned[field].to_numpy(dtype=np.float32)
            np.concatenate([[np.float32(first)], values]).astype("<f4").tofile(folder / f"{field}.day.bin")
        spans[symbol] = (full_index[0].strftime("%Y-%m-%d"), full_index[-1].strftime("%Y-%m-%d"))

    (root / "instruments").mkdir()
    for market, symbols in {"all": sorted(frames), **markets}.items():
        lines = [f"{s.upper()}\t{spans[s][0]}\t{spans[s][1]}" for s in symbols if s in spans]
        (root / "instruments" / f"{market}.txt").write_text("\n".join(lines) + "\n")


def _swap_into_place(staging: Path, target: Path) -> None:
    previous = target.resolve() if target.is_symlink() else None
    if target.exists() and not target.is_symlink():
        # A plain folder (made by hand or by another tool): move it aside, then link.
        aside = target.parent / STORE_DIR / f"{target.name}.replaced.{uuid.uuid4().hex[:8]}"
        target.rename(aside)
        previous = aside
    link_tmp = target.parent / f".{target.name}.link.{uuid.uuid4().hex[:8]}"
    link_tmp.symlink_to(Path(STORE_DIR) / staging.name)
    os.replace(link_tmp, target)
    if previous is not None and previous != staging.resolve():
        versions.remove_if_unused(previous)  # kept while a running process still reads it


def compute_fingerprint(root: Path) -> str:
    """A content hash of the calendar, instruments and feature files (not meta.json)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != META_FILE):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_meta(root: Path) -> dict:
    path = root / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def fingerprint_of(root: Path) -> str:
    """The stored fingerprint, or a fresh one for a Qlib folder qtrack did not write."""
    return read_meta(root).get("fingerprint") or compute_fingerprint(root)


def read_calendar(root: Path) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.read_csv(root / "calendars" / "day.txt", header=None)[0])


def read_instruments(root: Path, market: str) -> pd.DataFrame:
    return pd.read_csv(
        root / "instruments" / f"{market}.txt", sep="\t", header=None, names=["symbol", "start", "end"]
    )


def active_span(root: Path, market: str, share: float = 0.5) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last calendar day on which at least `share` of the most symbols ever listed trade."""
    calendar = read_calendar(root)
    spans = read_instruments(root, market)
    starts = calendar.searchsorted(pd.DatetimeIndex(spans["start"]))
    ends = calendar.searchsorted(pd.DatetimeIndex(spans["end"]), side="right")
    listed = np.zeros(len(calendar) + 1, dtype=int)
    np.add.at(listed, starts, 1)
    np.add.at(listed, ends, -1)
    listed = np.cumsum(listed)[:-1]
    active = np.flatnonzero(listed >= share * listed.max())
    return calendar[active[0]], calendar[active[-1]]


def is_dataset(root: Path) -> bool:
    return (root / "calendars" / "day.txt").is_file() and (root / "instruments").is_dir()
