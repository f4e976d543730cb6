"""An existing Qlib data directory (`dataset.provider_uri`), read in place and never written.

Its fingerprint comes from the calendar, the instrument files and the feature files' names, sizes and
modification times: hashing the contents of a full `cn_data` (tens of thousands of files) on every run would
cost more than the cache saves, and any tool that rewrites a file changes its size or time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from qtrack.errors import QtrackError

FINGERPRINTED = ("calendars", "instruments", "features")


def checked_root(provider_uri: str) -> Path:
    """The directory, or a QtrackError naming what is missing."""
    root = Path(provider_uri).expanduser()
    if not root.is_dir():
        raise QtrackError(f"dataset.provider_uri: no directory at {root}")
    root = root.resolve()
    for needed in ("calendars/day.txt", "instruments"):
        if not (root / needed).exists():
            raise QtrackError(f"dataset.provider_uri: {root} is not a Qlib data directory ({needed} is missing)")
    return root


def stat_fingerprint(root: Path) -> str:
    """A hash of every calendar, instrument and feature file's relative path, size and mtime."""
    digest = hashlib.blake2b(digest_size=16)
    for folder in FINGERPRINTED:
        for relative, size, mtime in sorted(_walk(root / folder, folder)):
            digest.update(f"{relative}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def _walk(folder: Path, relative: str):
    if not folder.is_dir():
        return
    with os.scandir(folder) as entries:
        for entry in entries:
            name = f"{relative}/{entry.name}"
            if entry.is_dir(follow_symlinks=True):
                yield from _walk(Path(entry.path), name)
            elif entry.is_file(follow_symlinks=True):
                stat = entry.stat(follow_symlinks=True)
                yield name, stat.st_size, stat.st_mtime_ns
