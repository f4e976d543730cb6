"""A new SQLite store copied from the template is the store MLflow's migrations make: the same schema, the
Default experiment at the command's own folder, the next experiment numbered 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from qtrack.tracking import store_template
from qtrack.tracking.store import ensure_sqlite_store


def schema(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return sorted(row[0] for row in connection.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(store_template.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_store_from_the_template_is_the_migrated_store(tmp_path: Path, cache: Path, monkeypatch) -> None:
    migrated, copied = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    ensure_sqlite_store(f"sqlite:///{migrated}")
    assert store_template.template_path().is_file(), "the first store of this MLflow version is kept"
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    ensure_sqlite_store(f"sqlite:///{copied}")
    assert schema(copied) == schema(migrated)
    client = MlflowClient(f"sqlite:///{copied}")
    default = client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location == str(tmp_path / "b" / "mlruns" / "0")
    assert client.create_experiment("next") == "1"


def test_a_template_mlflow_refuses_is_dropped_and_the_store_migrated(tmp_path: Path, cache: Path) -> None:
    store_template.template_path().parent.mkdir(parents=True)
    store_template.template_path().write_bytes(b"not a database")
    target = tmp_path / "c" / "mlflow.db"
    ensure_sqlite_store(f"sqlite:///{target}")
    assert MlflowClient(f"sqlite:///{target}").get_experiment("0").name == "Default"
    assert schema(store_template.template_path()) == schema(target), "the bad template was replaced"


def test_the_template_never_lands_on_a_store_another_program_made(tmp_path: Path, cache: Path) -> None:
    ensure_sqlite_store(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")  # makes the template
    theirs = tmp_path / "theirs.db"
    theirs.write_bytes(b"made by another program while qtrack copied")
    assert not store_template.copy_template(theirs)
    assert theirs.read_bytes() == b"made by another program while qtrack copied"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
