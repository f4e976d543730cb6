"""Where qtrack keeps data, runs and outputs (resolved once, never relative to a later chdir), and
files that appear whole or not at all."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qtrack.errors import QtrackError

DATA_ROOT_ENV = "QTRACK_DATA_ROOT"
# A dataset or market name: a file name under the data root, never a path.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
CONFIG_DIR_ENV = "QTRACK_CONFIG_DIR"


def data_root() -> Path:
    """The folder holding one Qlib data directory per dataset name."""
    configured = os.environ.get(DATA_ROOT_ENV)
    root = Path(configured) if configured else Path.home() / ".qtrack" / "data"
    return root.expanduser().resolve()


def dataset_dir(name: str) -> Path:
    return data_root() / name


def config_dir() -> Path:
    """The Hydra config folder: env override, then the packaged copy, then the source checkout's."""
    configured = os.environ.get(CONFIG_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return builtin_config_dir()


def builtin_config_dir() -> Path:
    """qtrack's own config folder: the packaged copy, or the source checkout's."""
    packaged = Path(__file__).resolve().parent / "conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "conf"


def tracking_folder(tracking_uri: str) -> Path:
    """The local folder beside the tracking store (for Optuna journals and locks): the SQLite file's
    folder, or ./mlruns for a server or database."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).parent
    return Path.cwd() / "mlruns"


def default_tracking_uri(cwd: Path | None = None) -> str:
    base = (cwd or Path.cwd()).resolve()
    return f"sqlite:///{base / 'mlruns' / 'mlflow.db'}"


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A temporary path in the target's folder; renamed onto `target` when the block ends without error,
    removed otherwise. A reader never sees a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.fchmod(handle, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from the user's group
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it back at once
    os.umask(mask)
    return mask


def check_writable(folder: Path, what: str) -> None:
    """A QtrackError (exit 2) naming `folder` when nothing can be written there, or in the nearest folder
    above it that exists (nothing is created). A probe file, not the mode bits: root ignores those, and
    read-only mounts do not show in them."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    try:
        if existing is None or not existing.is_dir():
            raise NotADirectoryError(20, "not a folder")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".qtrack-probe-"):
            pass
    except OSError as exc:
        raise QtrackError(f"{what} {folder} is not writable ({exc.strerror or exc})") from None
