"""Raw features (the handler's expressions, before any processor) cached apart from segments, and
extended instead of rebuilt when the data grows.

A day's features depend only on its symbol's history, so an entry holds every instrument's rows from the
handler's start to the data's last day, keyed by the expressions, the instruments, the start and the
data version. Processors and their fits run on top, per run, as Qlib's do; a run slices the frame to its
own end.

After `data update` the newest entry of the same features is extended:
- symbols whose stored values and listing up to the entry's checkpoint are unchanged keep their rows up
  to it; their new rows are computed from the day after, with the running sums resumed from the states
  the entry saved (qtrack.features.kernels), so every value equals a full rebuild to the bit;
- rewritten and new symbols are computed whole;
- the checkpoint is the last day no later data can change: the data's end less the label's horizon.
Anything else (another calendar, another start, an expression that cannot resume) rebuilds the entry.

The engine (qtrack.features.compute) is imported only where features are computed: a run served by the
built-dataset cache never imports numba (0.2 s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qtrack.data.feature_cache import FeatureCache
from qtrack.features.expressions import NotExtendable

if TYPE_CHECKING:
    from qtrack.features.compute import Tail
    from qtrack.features.loader import Request

log = logging.getLogger("qtrack")
FORMAT_VERSION = 2  # 2: the regression kernels' state lost an unused slot
KEEP = 2  # entries kept per feature set: the newest data version and the one before (a leased run may read it)


@dataclass
class RawEntry:
    frame: pd.DataFrame  # request.start .. the data's last day, every instrument
    states: dict  # the stateful kernels' states after `checkpoint`, rows in `names` order
    names: list[str]
    checkpoint: int  # calendar index; -1 when the data is too short to save states
    calendar: np.ndarray  # datetime64[ns], the data's calendar when the entry was built
    start: int
    digests: dict[str, str]  # per instrument: its stored values and listing up to `checkpoint`


def is_entry(obj: Any) -> bool:
    return isinstance(obj, RawEntry)


class RawFeatureCache:
    """Serves FastDataLoader.load inside `raw_features.using(cache)`; `status` says what the last
    load did: 'hit', 'extended' or 'miss'."""

    def __init__(self, folder: Path, fingerprint: str, on_warning) -> None:
        self.store = FeatureCache(folder, valid=is_entry, detach=lambda entry: entry)
        self.fingerprint = fingerprint
        self.on_warning = on_warning
        self.status: str | None = None  # None: no load went through the cache (Qlib's engine)

    def frame(self, loader: Any, instruments: Any, start_time: Any, end_time: Any) -> pd.DataFrame:
        request = loader.request(instruments, start_time)
        family = feature_key(loader, instruments, request)
        key = f"raw-{family}-{self.fingerprint[:16]}"

        def build() -> RawEntry:
            entry = self._extended(family, key, request)
            self.status = "miss" if entry is None else "extended"
            return build_entry(request) if entry is None else entry

        entry, how = self.store.get_or_build(key, build, self.on_warning)
        if how == "hit":
            self.status = "hit"
        else:
            self._prune(family)
        end = pd.Timestamp(end_time) if end_time is not None else request.calendar[-1]
        return entry.frame.loc[:end]

    def _extended(self, family: str, key: str, request: Request) -> RawEntry | None:
        """The newest other entry of these features extended to this data, or None (none to extend)."""
        others = [path for path in self.store.folder.glob(f"raw-{family}-*.features") if path.stem != key]
        newest = max(others, key=lambda path: path.stat().st_mtime, default=None)
        previous = self.store.read(newest.stem, self.on_warning) if newest is not None else None
        if previous is None:
            return None
        try:
            return extend(previous, request)
        except NotExtendable as reason:
            log.info("raw features not extended (%s): building them whole", reason)
            return None

    def _prune(self, family: str) -> None:
        entries = sorted(self.store.folder.glob(f"raw-{family}-*.features"), key=lambda p: p.stat().st_mtime)
        for path in entries[:-KEEP]:
            path.unlink(missing_ok=True)


def feature_key(loader: Any, instruments: Any, request: Request) -> str:
    import qlib

    payload = {
        "format": FORMAT_VERSION,
        "fields": loader.fields,
        "instruments": instruments,
        "start": str(request.calendar[request.start].date()) if request.start < len(request.calendar) else None,
        "freq": request.freq,
        "qlib": qlib.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def checkpoint_of(request: Request) -> int:
    day = len(request.calendar) - 1 - request.ahead
    return day if day >= request.start else -1


def build_entry(request: Request) -> RawEntry:
    from qtrack.features.compute import compute

    checkpoint = checkpoint_of(request)
    computed = compute(request, len(request.calendar) - 1, checkpoint=checkpoint)
    digests = prefix_digests(request, computed.names, [checkpoint])[0] if checkpoint >= 0 else {}
    return RawEntry(
        computed.frame, computed.states, computed.names, checkpoint, request.calendar.values, request.start, digests
    )


def extend(previous: RawEntry, request: Request) -> RawEntry:
    """The previous entry carried to the request's data (NotExtendable when it cannot be)."""
    from qtrack.features.compute import plan_tail

    began = time.perf_counter()
    _check_compatible(previous, request)
    old_checkpoint, checkpoint = previous.checkpoint, checkpoint_of(request)
    kept = _prefix(previous.frame, request.calendar[old_checkpoint])
    warming = _in_background(_touch, kept)  # the entry is mapped: read its pages in while the new rows are computed
    names = sorted(request.spans)
    digests, new_digests = prefix_digests(request, names, [old_checkpoint, checkpoint])
    unchanged = [name for name in names if previous.digests.get(name) == digests[name]]
    changed = [name for name in names if previous.digests.get(name) != digests[name]]
    if not unchanged:
        raise NotExtendable("every symbol changed")
    tail = plan_tail(request, old_checkpoint + 1, unchanged)
    states = _rows(previous.states, previous.names, unchanged)
    if changed or len(unchanged) < len(previous.names):
        frame, states = _rebuilt_in_part(previous, kept, request, tail, states, changed, checkpoint)
    else:
        frame, states = _appended(kept, request, tail, states, checkpoint)
    warming.join()
    log.info(
        "raw features extended: %d symbols from %s, %d computed whole, in %.2fs",
        len(unchanged), request.calendar[old_checkpoint + 1].date(), len(changed), time.perf_counter() - began,
    )
    return RawEntry(frame, states, names, checkpoint, request.calendar.values, request.start, new_digests)


def _appended(kept: pd.DataFrame, request: Request, tail: Tail, states: dict, checkpoint: int):
    """Every symbol unchanged: the kept rows are copied (in a thread) into the new frame's array while the
    new rows are computed into the rest of it."""
    from qtrack.features.compute import compute_tail

    values = np.empty((len(kept) + tail.size, kept.shape[1]), dtype=np.float32, order="F")
    copying = _in_background(np.copyto, values[: len(kept)], kept.to_numpy())
    _, days, stocks, saved = compute_tail(request, tail, states, checkpoint, out=values[len(kept) :])
    copying.join()
    index = _appended_index(kept.index, request, days, stocks, tail.names)
    return pd.DataFrame(values, index=index, columns=kept.columns, copy=False), saved


def _rebuilt_in_part(previous, kept, request, tail, states, changed, checkpoint):
    """Some symbols rewritten, added or dropped: their rows are computed whole, and the frame sorted."""
    from qtrack.features.compute import compute, compute_tail

    values, days, stocks, saved = compute_tail(request, tail, states, checkpoint)
    whole = compute(request, len(request.calendar) - 1, checkpoint=checkpoint, names=changed) if changed else None
    if len(tail.names) < len(previous.names):
        kept = kept[kept.index.get_level_values("instrument").isin(tail.names)]
    parts = [kept, request.frame(values, days, tail.names, stocks), *([whole.frame] if whole else [])]
    frame = pd.concat(parts, copy=False).sort_index()
    pieces = [(tail.names, saved), *([(whole.names, whole.states)] if whole else [])]
    return frame, _merge_states(pieces, sorted(request.spans))


def _appended_index(kept: pd.MultiIndex, request: Request, days, stocks, names: list[str]) -> pd.MultiIndex:
    """The kept rows' index followed by the new rows', built from codes (the levels may hold unused values)."""
    dates = request.calendar[request.start :]
    instruments = pd.Index(sorted(set(kept.levels[1]) | set(names)), dtype=object)
    date_codes = [dates.get_indexer(kept.levels[0])[kept.codes[0]], days - request.start]
    instrument_codes = [instruments.get_indexer(kept.levels[1])[kept.codes[1]], instruments.get_indexer(names)[stocks]]
    return pd.MultiIndex(
        levels=[dates, instruments], codes=[np.concatenate(date_codes), np.concatenate(instrument_codes)],
        names=["datetime", "instrument"], verify_integrity=False,
    )


def _prefix(frame: pd.DataFrame, last_day: pd.Timestamp) -> pd.DataFrame:
    """The rows up to `last_day` (a view: the frame is sorted by datetime first)."""
    return frame.iloc[: frame.index.get_level_values("datetime").searchsorted(last_day, side="right")]


def _touch(frame: pd.DataFrame) -> None:
    np.add.reduce(frame.to_numpy(), axis=None)


def _in_background(target, *args) -> threading.Thread:
    """numpy releases the GIL while it copies or reduces, so this runs beside the caller's work."""
    thread = threading.Thread(target=target, args=args, name="raw-features")
    thread.start()
    return thread


def _check_compatible(previous: RawEntry, request: Request) -> None:
    old = previous.calendar
    calendar = request.calendar.values
    if previous.start != request.start or len(calendar) < len(old) or not np.array_equal(calendar[: len(old)], old):
        raise NotExtendable("the calendar or the start changed")
    if previous.checkpoint < 0 or checkpoint_of(request) < previous.checkpoint:
        raise NotExtendable("no saved states")


def _rows(states: dict, names: list[str], wanted: list[str]) -> dict:
    position = {name: i for i, name in enumerate(names)}
    rows = np.array([position[name] for name in wanted], dtype=np.int64)
    return {key: state[rows] for key, state in states.items()}


def _merge_states(parts: list[tuple[list[str], dict]], names: list[str]) -> dict:
    """The states of parts computed for some of `names` each, as rows in `names` order."""
    position = {name: i for i, name in enumerate(names)}
    merged: dict = {}
    for part_names, states in parts:
        rows = np.array([position[name] for name in part_names], dtype=np.int64)
        for key, state in states.items():
            if key not in merged:
                merged[key] = np.zeros((len(names), state.shape[1]))
            merged[key][rows] = state
    return merged


def prefix_digests(request: Request, names: list[str], last_days: list[int]) -> list[dict[str, str]]:
    """For each of `last_days`, per instrument, a digest of its stored values of the expressions' fields and
    of its listing spans up to that calendar day: equal digests mean equal features up to that day."""
    fields = sorted(request.fields)
    digests: list[dict[str, str]] = [{} for _ in last_days]
    for name in names:
        hashes = [hashlib.blake2b(digest_size=16) for _ in last_days]
        folder = os.path.join(request.root, "features", name.lower())
        for field in fields:
            path = os.path.join(folder, f"{field}.{request.freq}.bin")
            raw = np.fromfile(path, dtype="<f4") if os.path.isfile(path) else np.empty(0, dtype="<f4")
            first = int(raw[0]) if raw.size > 1 else None
            for digest, last_day in zip(hashes, last_days, strict=True):
                digest.update(field.encode())
                if first is not None and first <= last_day:
                    digest.update(raw[: 2 + last_day - first].tobytes())  # the header and days first..last_day
        for digest, last_day in zip(hashes, last_days, strict=True):
            last_date = request.calendar[last_day]
            for begin, end in request.spans.get(name) or []:
                if pd.Timestamp(begin) <= last_date:
                    digest.update(f"{pd.Timestamp(begin).date()}..{min(pd.Timestamp(end), last_date).date()}".encode())
        for found, digest in zip(digests, hashes, strict=True):
            found[name] = digest.hexdigest()
    return digests
