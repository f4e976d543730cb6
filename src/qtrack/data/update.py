"""`qtrack data update`: new days and symbols from a vendor's files, into an existing dataset.

Each symbol of the source is compared with the stored one on the days they share (as stored: float32):
- equal: the source's later days are appended;
- different (a vendor's adjusted prices change the past at every dividend or split), or the source starts
  earlier: the symbol is rewritten whole from the source, and the summary says why;
- new: added (to `all`; the dataset's other markets keep their members).
Symbols missing from the source are kept as they are. Nothing changed means nothing is written, so updating
twice from the same files leaves the fingerprint as it was. Otherwise the dataset is written as a new version
(qlib_format.write_dataset: atomic, a killed update leaves the previous version in place), and the version
is recorded in meta.json's `versions`, which `qtrack data info` lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from qtrack import paths
from qtrack.data import importer, qlib_format
from qtrack.errors import QtrackError

REPORT_FILE = "import_report.json"


@dataclass
class UpdatePlan:
    appended: dict[str, int] = field(default_factory=dict)  # symbol -> days appended
    added: list[str] = field(default_factory=list)
    rewritten: dict[str, str] = field(default_factory=dict)  # symbol -> why
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # in the dataset, not in the source
    skipped: dict[str, str] = field(default_factory=dict)  # the source's symbols that failed validation
    dropped: dict[str, str] = field(default_factory=dict)  # rewritten symbol -> the stored days it loses
    end_before: str = ""
    end_after: str = ""
    fingerprint: str = ""  # after the update (the same as before when nothing changed)

    @property
    def changed(self) -> bool:
        return bool(self.appended or self.added or self.rewritten)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def update_dataset(source: Path, name: str, column_map: dict[str, str], dry_run: bool = False,
                   allow_dropping: bool = False, on_wait: Callable[[], None] | None = None) -> UpdatePlan:
    """Plan (and unless `dry_run`, write) the update. A rewrite that would lose stored days is refused
    unless `allow_dropping`. Another import or update of the dataset is waited for (`on_wait` says so)."""
    if not source.exists():
        raise QtrackError(f"source {source} does not exist")
    target = paths.dataset_dir(name)
    with qlib_format.writer_lock(target, on_wait):
        return _update_locked(source, name, target, column_map, dry_run, allow_dropping)


def _update_locked(source: Path, name: str, target: Path, column_map: dict[str, str], dry_run: bool,
                   allow_dropping: bool) -> UpdatePlan:
    from qtrack.data import synthetic, versions

    if not qlib_format.is_dataset(target):
        raise QtrackError(f"dataset '{name}' not found under {paths.data_root()} (import it first: qtrack data "
                          f"import SOURCE --name {name})")
    if qlib_format.read_meta(target).get("kind") == synthetic.KIND:
        raise QtrackError(f"dataset '{name}' is a synthetic market: real prices can't be mixed into it (import "
                          "them under another name: qtrack data import SOURCE --name NAME)")
    stored = versions.lease(target)
    try:
        result = importer.read_source(source, column_map)
    except importer.SkipSymbol as reason:
        raise QtrackError(f"nothing usable in {source}: {reason}; name columns with --map SRC=FIELD") from None
    if not result.frames:
        reasons = "; ".join(f"{s}: {r}" for s, r in list(result.skipped.items())[:3])
        raise QtrackError(f"nothing usable in {source} ({reasons or 'no CSV files'})")
    old = read_frames(stored)
    plan, frames = _plan(old, result.frames)
    plan.skipped = dict(sorted(result.skipped.items()))
    plan.end_before = qlib_format.read_calendar(stored)[-1].strftime("%Y-%m-%d")
    plan.end_after = max(frame.index.max() for frame in frames.values()).strftime("%Y-%m-%d")
    plan.fingerprint = qlib_format.fingerprint_of(stored)
    if plan.dropped and not allow_dropping and not dry_run:
        symbol, days = next(iter(plan.dropped.items()))
        more = f" (and {len(plan.dropped) - 1} more symbols)" if len(plan.dropped) > 1 else ""
        raise QtrackError(f"the update would drop stored days: {symbol} loses {days}{more}; nothing was written "
                          "(see them all with --dry-run; --allow-dropping-days accepts the loss)")
    if plan.changed and not dry_run:
        plan.fingerprint = _write(stored, target, frames, plan, source)
    return plan


def read_frames(root: Path) -> dict[str, pd.DataFrame]:
    """Every stored symbol as a frame of its fields (float32) over the calendar days of its span."""
    calendar = qlib_format.read_calendar(root)
    frames = {}
    for symbol in qlib_format.read_instruments(root, "all")["symbol"]:
        folder = root / "features" / str(symbol).lower()
        columns, start = {}, None
        for binary in sorted(folder.glob("*.day.bin")):
            raw = np.fromfile(binary, dtype="<f4")
            start = int(raw[0])
            columns[binary.name.split(".")[0]] = raw[1:]
        if start is None:
            continue
        length = len(next(iter(columns.values())))
        frames[str(symbol)] = pd.DataFrame(columns, index=calendar[start:start + length])
    return frames


def _plan(old: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame]) -> tuple[UpdatePlan, dict[str, pd.DataFrame]]:
    plan, frames = UpdatePlan(), dict(old)
    plan.kept = sorted(set(old) - set(new))
    for symbol, incoming in sorted(new.items()):
        incoming = incoming.sort_index()
        if symbol not in old:
            plan.added.append(symbol)
            frames[symbol] = incoming
            continue
        stored = old[symbol]
        why = _difference(stored, incoming)
        if why:
            plan.rewritten[symbol] = why
            frames[symbol] = incoming
            lost = dropped_days(stored, incoming)
            if lost:
                plan.dropped[symbol] = lost
            continue
        later = incoming[incoming.index > stored.index[-1]]
        if later.empty:
            plan.unchanged.append(symbol)
        else:
            plan.appended[symbol] = len(later)
            frames[symbol] = pd.concat([stored.astype(np.float64), later[stored.columns]])
    return plan, frames


def dropped_days(stored: pd.DataFrame, incoming: pd.DataFrame) -> str:
    """The stored days (with any value) a rewrite from `incoming` loses, as 'N days, FIRST to LAST' runs,
    or ''."""
    held = stored.index[stored.notna().any(axis=1).to_numpy()]
    lost = held[(held < incoming.index[0]) | (held > incoming.index[-1])]
    if lost.empty:
        return ""
    spans = [held[held < incoming.index[0]], held[held > incoming.index[-1]]]
    return "; ".join(f"{len(span)} days, {span[0].date()} to {span[-1].date()}" for span in spans if len(span))


def _difference(stored: pd.DataFrame, incoming: pd.DataFrame) -> str | None:
    """Why the source's history differs from the stored one on their shared days, or None."""
    if incoming.index[0] < stored.index[0]:
        return f"the source starts earlier ({incoming.index[0].date()}, stored from {stored.index[0].date()})"
    missing = sorted(set(stored.columns) - set(incoming.columns))
    if missing:
        return f"the source lacks {', '.join(missing)}"
    shared = stored.index[(stored.index >= incoming.index[0]) & (stored.index <= incoming.index[-1])]
    if shared.empty:
        return None
    before = stored.loc[shared]
    after = incoming.reindex(shared)[stored.columns].astype(np.float32)
    differs = ~((before.to_numpy() == after.to_numpy()) | (np.isnan(before.to_numpy()) & np.isnan(after.to_numpy())))
    if not differs.any():
        return None
    row, col = (int(i[0]) for i in np.nonzero(differs))
    day, name = shared[row], stored.columns[col]
    dropped = (f"; the source starts {incoming.index[0].date()}, so stored days before it are dropped"
               if incoming.index[0] > stored.index[0] else "")
    return (f"its history differs from {day.date()} ({name} {before.iat[row, col]:.6g} -> {after.iat[row, col]:.6g}, "
            f"as after a dividend or split in adjusted prices){dropped}")


def _write(stored: Path, target: Path, frames: dict[str, pd.DataFrame], plan: UpdatePlan, source: Path) -> str:
    meta = qlib_format.read_meta(stored)
    meta.pop("fingerprint", None)
    history = meta.get("versions") or [_first_version(stored, meta)]
    entry = {"version": len(history) + 1, "at": datetime.now(UTC).isoformat(timespec="seconds"),
             "action": "update", "source": str(source.resolve()), "end": plan.end_after,
             "appended": len(plan.appended), "added": len(plan.added), "rewritten": sorted(plan.rewritten)}
    meta["versions"] = [*history, entry]
    markets = {path.stem: qlib_format.read_instruments(stored, path.stem)["symbol"].astype(str).tolist()
               for path in (stored / "instruments").glob("*.txt") if path.stem != "all"}
    extra = {}
    report = stored / REPORT_FILE
    if report.is_file():
        extra[REPORT_FILE] = report.read_text()
    extra["update_report.json"] = lambda fingerprint: json.dumps({**plan.as_dict(), "fingerprint": fingerprint},
                                                                 indent=2, default=str)
    return qlib_format.write_dataset(target, frames, meta, markets=markets, extra_files=extra)


def _first_version(root: Path, meta: dict) -> dict:
    """The version a dataset written before versions were recorded starts from."""
    calendar = qlib_format.read_calendar(root)
    return {"version": 1, "action": meta.get("kind", "import"), "source": meta.get("source", ""),
            "end": calendar[-1].strftime("%Y-%m-%d"), "fingerprint": qlib_format.fingerprint_of(root)}
