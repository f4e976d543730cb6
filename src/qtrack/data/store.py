"""The datasets under the data root: import, synthesise, list and describe them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from qtrack import paths
from qtrack.data import importer, qlib_format, synthetic
from qtrack.errors import QtrackError
from qtrack.paths import SAFE_NAME

REPORT_FILE = "import_report.json"
CACHE_DIR = ".cache"


def import_dataset(
    source: Path, name: str, column_map: dict[str, str], market_files: dict[str, Path],
    on_wait: Callable[[], None] | None = None,
) -> dict:
    """Import `source` as dataset `name`, atomically, after any other writer of it. Returns the import report."""
    if not source.exists():
        raise QtrackError(f"source {source} does not exist")
    check_name(name)
    for market in market_files:
        _check_market_name(market)
    try:
        result = importer.read_source(source, column_map)
    except importer.SkipSymbol as reason:
        raise QtrackError(f"nothing usable in {source}: {reason}; name columns with --map SRC=FIELD") from None
    try:
        markets = {market: importer.read_market_file(path) for market, path in market_files.items()}
    except importer.SkipSymbol as reason:
        raise QtrackError(str(reason)) from None
    except OSError as exc:
        raise QtrackError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if not result.frames:
        reasons = "; ".join(f"{s}: {r}" for s, r in list(result.skipped.items())[:3])
        raise QtrackError(f"nothing usable in {source} ({reasons or 'no CSV files'})")
    report = result.report(source)
    report["markets"] = {m: sorted(set(symbols) & set(result.frames)) for m, symbols in markets.items()}
    meta = {"kind": "imported", "source": str(source.resolve()),
            "versions": [{"version": 1, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                          "action": "import", "source": str(source.resolve()), "end": report["calendar"][1]}]}
    target = paths.dataset_dir(name)
    with qlib_format.writer_lock(target, on_wait):
        qlib_format.write_dataset(
            target, result.frames, meta, markets=report["markets"],
            extra_files={REPORT_FILE: json.dumps(report, indent=2)},
        )
    return report


def _check_market_name(market: str) -> None:
    if market == "all":
        raise QtrackError("invalid --market name 'all': it is reserved for every imported symbol")
    if not SAFE_NAME.fullmatch(market):
        raise QtrackError(f"invalid --market name '{market}': use letters, digits, '.', '-' and '_'")


def synthesise(name: str, spec: synthetic.SyntheticSpec) -> Path:
    check_name(name)
    target = paths.dataset_dir(name)
    frames = synthetic.generate(spec)
    with qlib_format.writer_lock(target):
        qlib_format.write_dataset(
            target, frames,
            {"kind": synthetic.KIND, "origin": "cli", "params": spec.to_dict(), "theoretical_ic": spec.theoretical_ic},
        )
    return target


def check_name(name: str) -> None:
    if not SAFE_NAME.fullmatch(name or ""):
        raise QtrackError(f"invalid dataset name '{name}': use letters, digits, '.', '-' and '_'")


def list_datasets() -> list[dict]:
    root = paths.data_root()
    if not root.is_dir():
        return []
    rows = []
    for path in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if qlib_format.is_dataset(path):
            calendar = qlib_format.read_calendar(path)
            rows.append({
                "name": path.name,
                "kind": qlib_format.read_meta(path).get("kind", "qlib"),
                "symbols": len(qlib_format.read_instruments(path, "all")),
                "start": str(calendar[0].date()),
                "end": str(calendar[-1].date()),
            })
    return rows


def dataset_info(name: str) -> dict:
    path = paths.dataset_dir(name)
    if not qlib_format.is_dataset(path):
        raise QtrackError(f"dataset '{name}' not found under {paths.data_root()}")
    calendar = qlib_format.read_calendar(path)
    report_file = path / REPORT_FILE
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    return {
        "name": name,
        "path": str(path.resolve()),
        "kind": qlib_format.read_meta(path).get("kind", "qlib"),
        "fingerprint": qlib_format.fingerprint_of(path),
        "calendar": [str(calendar[0].date()), str(calendar[-1].date()), len(calendar)],
        "symbols": len(qlib_format.read_instruments(path, "all")),
        "markets": sorted(p.stem for p in (path / "instruments").glob("*.txt")),
        "missing_share": missing_share(path),
        "skipped": report.get("skipped", {}),
        "warnings": report.get("warnings", {}),
        "vwap": report.get("vwap"),
        "dialects": report.get("dialects", {}),
        "renamed": report.get("symbols", {}),
        "feature_cache_bytes": cache_size(name),
        "versions": qlib_format.read_meta(path).get("versions", []),
    }


def missing_share(path: Path) -> dict[str, float]:
    """Per field, the share of NaN values within each symbol's listed span."""
    totals: dict[str, list[int]] = {}
    for symbol_dir in (path / "features").iterdir():
        for binary in symbol_dir.glob("*.day.bin"):
            values = np.fromfile(binary, dtype="<f4")[1:]
            counts = totals.setdefault(binary.name.split(".")[0], [0, 0])
            counts[0] += int(np.isnan(values).sum())
            counts[1] += len(values)
    return {f: round(nan / max(n, 1), 5) for f, (nan, n) in sorted(totals.items())}


def cache_dir(name: str) -> Path:
    return paths.data_root() / CACHE_DIR / name


def cache_size(name: str) -> int:
    folder = cache_dir(name)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
