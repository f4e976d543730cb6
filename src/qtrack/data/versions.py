"""Dataset versions under `<data root>/.store/`, and the leases that keep a version alive while it is read.

A dataset name is a symlink to one version folder. A process that reads a dataset takes a shared lease on
the version it resolved (an flock on `.store/<version>.lease`, released when the process ends, even by
SIGKILL) and reads that folder, not the name: an import that switches the name meanwhile never pulls the
data from under it. A version that no name points at is removed once no process holds a lease on it: right
after the switch, at the next import, or by `clean`. A staging folder left by a killed import (its writer's
pid gone) is removed at the next import.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

STORE_DIR = ".store"
_WRITING = ".writing"  # `.store/<staging>.writing` holds the pid of the import writing <staging>
_LEASES: dict[Path, int] = {}  # version folder -> the open lease file this process holds


def lease(dataset: Path) -> Path:
    """The version folder `dataset` points at, leased to this process for as long as it runs."""
    version = dataset.resolve()
    if version.parent.name != STORE_DIR or version in _LEASES:
        return version
    handle = os.open(_lease_file(version), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(handle, fcntl.LOCK_SH)
    _LEASES[version] = handle
    return version


def mark_writing(staging: Path) -> Path:
    marker = staging.parent / f"{staging.name}{_WRITING}"
    marker.write_text(str(os.getpid()))
    return marker


def remove_if_unused(version: Path) -> bool:
    """Remove a version no process holds a lease on; True when it was removed."""
    lease_path = _lease_file(version)
    handle = os.open(lease_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        shutil.rmtree(version, ignore_errors=True)
        lease_path.unlink(missing_ok=True)
        return True
    finally:
        os.close(handle)


def clean(data_root: Path) -> list[str]:
    """Remove every version no name points at and no process reads, and every staging folder whose
    import died. Returns the names of the folders removed."""
    store = data_root / STORE_DIR
    if not store.is_dir():
        return []
    in_use = {link.resolve() for link in data_root.iterdir() if link.is_symlink()}
    removed = []
    for folder in sorted(p for p in store.iterdir() if p.is_dir()):
        if folder.resolve() in in_use or _being_written(folder):
            continue
        if remove_if_unused(folder):
            removed.append(folder.name)
    for marker in store.glob(f"*{_WRITING}"):
        if not (store / marker.name.removesuffix(_WRITING)).exists():
            marker.unlink(missing_ok=True)
    return removed


def _being_written(folder: Path) -> bool:
    marker = folder.parent / f"{folder.name}{_WRITING}"
    if not marker.is_file():
        return False
    try:
        os.kill(int(marker.read_text().strip()), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _lease_file(version: Path) -> Path:
    return version.parent / f"{version.name}.lease"
