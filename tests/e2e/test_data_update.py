"""`qtrack data update` on the S&P 500 sample: appended days, a restated symbol rewritten, symbols missing
from the source kept, a dry run that writes nothing, and a second update that changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import cut_sample, needs_sample, run_cli

pytestmark = needs_sample
RESTATED, LEFT_OUT = "AAPL", ("ADP", "AEP")


def env(root: Path) -> dict[str, str]:
    return {"QTRACK_DATA_ROOT": str(root / "data")}


def files(dataset: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dataset)): p.read_bytes() for p in dataset.rglob("*") if p.is_file()
            and p.parent.name != dataset.name}  # calendars, instruments and features, not meta or reports


def meta(root: Path) -> dict:
    return json.loads((root / "data" / "sp500" / "meta.json").read_text())


@pytest.fixture(scope="module")
def updated(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("update")
    first = cut_sample(root / "cut-2015", "2015-12-31")
    assert run_cli(["data", "import", str(first), "--name", "sp500"], cwd=root, env=env(root)).code == 0
    before = files(root / "data" / "sp500")
    source = cut_sample(root / "cut-2016", "2016-12-30")
    for symbol in LEFT_OUT:
        (source / f"{symbol}.csv").unlink()
    prices = pd.read_csv(source / f"{RESTATED}.csv")
    prices.loc[pd.to_datetime(prices["timestamp"]) < "2014-05-08", "adjusted_close"] *= 0.99  # a new dividend
    prices.to_csv(source / f"{RESTATED}.csv", index=False)

    dry = run_cli(["data", "update", str(source), "--name", "sp500", "--dry-run"], cwd=root, env=env(root))
    assert dry.code == 0, dry.stderr
    assert files(root / "data" / "sp500") == before and len(meta(root)["versions"]) == 1
    update = run_cli(["data", "update", str(source), "--name", "sp500"], cwd=root, env=env(root))
    assert update.code == 0, update.stderr
    return root, source, before, dry, update


def test_the_updated_dataset_equals_a_fresh_import_of_the_source_for_every_symbol_it_holds(updated) -> None:
    root, source, before, _, _ = updated
    fresh = run_cli(["data", "import", str(source), "--name", "fresh"], cwd=root, env=env(root))
    assert fresh.code == 0, fresh.stderr
    after, reference = files(root / "data" / "sp500"), files(root / "data" / "fresh")
    in_source = {name: data for name, data in reference.items() if name.startswith("features/")}
    assert {name: after[name] for name in in_source} == in_source  # appended and rewritten symbols, to the bit
    assert after["calendars/day.txt"] == reference["calendars/day.txt"]
    for symbol in LEFT_OUT:  # not in the source: kept exactly as they were
        kept = {name: data for name, data in before.items() if name.startswith(f"features/{symbol.lower()}/")}
        assert kept and all(after[name] == data for name, data in kept.items())


def test_the_summary_names_what_changed_and_why(updated) -> None:
    _, _, _, dry, update = updated
    assert "dry run, nothing written" in dry.stdout
    assert "updated 'sp500': data ends 2015-12-31 -> 2016-12-30" in update.stdout
    rewritten = next(line for line in update.stdout.splitlines() if line.startswith("rewritten"))
    assert RESTATED in rewritten and "history differs from 2009-01-02" in rewritten
    assert all(symbol in update.stdout for symbol in LEFT_OUT)  # "kept as they are (not in the source)"
    assert update.stdout.count("rewritten ") == 1  # the others only got new days


def test_updating_again_from_the_same_files_changes_nothing(updated) -> None:
    root, source, _, _, _ = updated
    versions, state = meta(root)["versions"], files(root / "data" / "sp500")
    again = run_cli(["data", "update", str(source), "--name", "sp500"], cwd=root, env=env(root))
    assert again.code == 0 and "nothing changed" in again.stdout
    assert files(root / "data" / "sp500") == state and meta(root)["versions"] == versions
    assert [v["action"] for v in versions] == ["import", "update"]
    assert versions[1]["rewritten"] == [RESTATED] and versions[1]["fingerprint"] == meta(root)["fingerprint"]
    info = run_cli(["data", "info", "sp500"], cwd=root, env=env(root))
    assert "version 1" in info.stdout and "version 2" in info.stdout


@pytest.mark.parametrize(("source", "name", "message"), [
    ("empty", "sp500", "nothing usable in"),
    ("missing", "sp500", "does not exist"),
    ("cut-2016", "nosuch", "dataset 'nosuch' not found"),
])
def test_bad_updates_are_one_line_and_leave_the_data(updated, source: str, name: str, message: str) -> None:
    root = updated[0]
    (root / "empty").mkdir(exist_ok=True)
    state = files(root / "data" / "sp500")
    result = run_cli(["data", "update", str(root / source), "--name", name], cwd=root, env=env(root))
    assert result.code == 2 and message in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    assert files(root / "data" / "sp500") == state
