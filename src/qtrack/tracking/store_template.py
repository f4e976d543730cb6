"""A new local store from a pristine copy instead of MLflow's migrations.

Creating a SQLite tracking store runs every MLflow migration, about 1.7 s here, on each first command in a new
folder. The schema an MLflow version migrates to is always the same, so the first store made by that version
is kept, without its Default experiment, as a template under the user's cache folder; later new stores are a
copy of it. MLflow then checks the copy's schema version and adds the Default experiment itself, with the
artifact location of the folder the command runs in, exactly as on a fresh store.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from importlib.metadata import version
from pathlib import Path

from qtrack.paths import current_umask

CACHE_ENV = "XDG_CACHE_HOME"


def template_path() -> Path:
    cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache") / "qtrack"
    return cache / f"mlflow-{version('mlflow')}-store.db"


def copy_template(target: Path) -> bool:
    """Write the template to `target` (atomically); False when there is none yet, or `target` appeared."""
    template = template_path()
    if not template.is_file():
        return False
    if not _readable(template):
        forget_template()
        return False
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.fchmod(handle, 0o666 & ~current_umask())  # as MLflow would have created it
    os.close(handle)
    try:
        shutil.copyfile(template, name)
        os.link(name, target)  # never over a store another program made meanwhile, as os.replace would
    except OSError:
        return False
    finally:
        Path(name).unlink(missing_ok=True)
    return True


def save_template(fresh: Path) -> None:
    """Keep a just-migrated store, minus its Default experiment, as the template (best effort: a cache)."""
    template = template_path()
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=template.parent, prefix=".store.", suffix=".tmp")
    except OSError:
        return
    os.close(handle)
    try:
        with sqlite3.connect(fresh) as source, sqlite3.connect(name) as copy:
            source.backup(copy)
            if copy.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0:
                copy.execute("DELETE FROM experiments")
                copy.commit()
                os.replace(name, template)
    except (OSError, sqlite3.Error):
        pass
    finally:
        Path(name).unlink(missing_ok=True)


def _readable(template: Path) -> bool:
    """A SQLite file with MLflow's tables: anything else (a cut copy, another file) is no template."""
    try:
        with sqlite3.connect(f"file:{template}?mode=ro", uri=True) as connection:
            connection.execute("SELECT version_num FROM alembic_version").fetchone()
            connection.execute("SELECT COUNT(*) FROM experiments").fetchone()
        return True
    except sqlite3.Error:
        return False


def forget_template() -> None:
    template_path().unlink(missing_ok=True)
