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


def _fingerprint(root: Path, name: str) -> str:
    return json.loads((root / "data" / name / "meta.json").read_text())["fingerprint"]


def test_two_updates_and_an_import_started_together_end_as_one_import_of_the_newest_source(tmp_path) -> None:
    """While one writer holds the dataset, the others wait (and say so) instead of writing over it; then they
    run one at a time, in whatever order, and the result is the newest source, whole."""
    import subprocess
    import time

    from helpers import cli_command, cli_env
    from qtrack.data import qlib_format

    base, middle, newest = (cut_sample(tmp_path / f"cut-{day}", day)
                            for day in ("2015-12-31", "2016-06-30", "2016-12-30"))
    assert run_cli(["data", "import", str(base), "--name", "sp500"], cwd=tmp_path, env=env(tmp_path)).code == 0
    state = files(tmp_path / "data" / "sp500")
    commands = [["data", "update", str(middle), "--name", "sp500"], ["data", "update", str(newest), "--name", "sp500"],
                ["data", "import", str(newest), "--name", "sp500"]]
    logs = [tmp_path / f"writer-{number}.err" for number in range(len(commands))]
    with qlib_format.writer_lock(tmp_path / "data" / "sp500"):  # another writer is busy
        writers = [subprocess.Popen(cli_command(args), cwd=tmp_path, env=cli_env(env(tmp_path)),
                                    stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True)
                   for args, log in zip(commands, logs, strict=True)]
        deadline = time.monotonic() + 120
        while not all("waiting for another import or update of 'sp500'" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(w.poll() is None for w in writers), [
                log.read_text() for log in logs]
            time.sleep(0.2)
        assert files(tmp_path / "data" / "sp500") == state, "nothing is written while another writer works"
    for writer, log in zip(writers, logs, strict=True):
        assert writer.wait(timeout=300) == 0, log.read_text()
    assert run_cli(["data", "import", str(newest), "--name", "fresh"], cwd=tmp_path, env=env(tmp_path)).code == 0
    assert _fingerprint(tmp_path, "sp500") == _fingerprint(tmp_path, "fresh"), "no day or symbol lost"
    versions = meta(tmp_path)["versions"]
    assert [v["version"] for v in versions] == list(range(1, len(versions) + 1))
    assert versions[-1]["fingerprint"] == _fingerprint(tmp_path, "sp500")
    assert versions[-1]["end"] == "2016-12-30"
    info = run_cli(["data", "info", "sp500"], cwd=tmp_path, env=env(tmp_path))
    assert f"version {len(versions)}" in info.stdout and _fingerprint(tmp_path, "sp500")[:12] in info.stdout


@pytest.fixture
def imported_2016(tmp_path: Path) -> Path:
    source = cut_sample(tmp_path / "cut-2016", "2016-12-30")
    assert run_cli(["data", "import", str(source), "--name", "sp500"], cwd=tmp_path, env=env(tmp_path)).code == 0
    return tmp_path


def test_a_rewrite_that_would_drop_stored_days_names_them_and_is_refused(imported_2016: Path) -> None:
    root = imported_2016
    source = root / "restated"
    source.mkdir()
    prices = pd.read_csv(root / "cut-2016" / f"{RESTATED}.csv")
    prices = prices[pd.to_datetime(prices["timestamp"]) <= "2014-12-31"]
    prices["adjusted_close"] *= 0.98  # restated, and the file ends two years early
    prices.to_csv(source / f"{RESTATED}.csv", index=False)
    state = files(root / "data" / "sp500")
    lost = "504 days, 2015-01-02 to 2016-12-30"

    dry = run_cli(["data", "update", str(source), "--name", "sp500", "--dry-run"], cwd=root, env=env(root))
    assert dry.code == 0 and f"drops stored days {RESTATED}: {lost}" in dry.stdout, dry.stdout
    refused = run_cli(["data", "update", str(source), "--name", "sp500"], cwd=root, env=env(root))
    assert refused.code == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr
    assert f"{RESTATED} loses {lost}" in refused.stderr and "--allow-dropping-days" in refused.stderr
    assert files(root / "data" / "sp500") == state
    accepted = run_cli(["data", "update", str(source), "--name", "sp500", "--allow-dropping-days"], cwd=root,
                       env=env(root))
    assert accepted.code == 0 and lost in accepted.stdout, accepted.stderr
    report = json.loads((root / "data" / "sp500" / "update_report.json").read_text())
    assert report["fingerprint"] == meta(root)["fingerprint"] != meta(root)["versions"][0]["fingerprint"]
    assert report["dropped"] == {RESTATED: lost}


@pytest.mark.parametrize("origin", ["data synth", "generated by train"])
def test_real_prices_are_never_mixed_into_a_synthetic_market(tmp_path: Path, origin: str) -> None:
    from qtrack.data import synthetic

    if origin == "data synth":
        made = run_cli(["data", "synth", "--name", "synthetic", "--symbols", "5", "--days", "60"], cwd=tmp_path,
                       env=env(tmp_path))
        assert made.code == 0, made.stderr
    else:  # the market `train` generates on first use, and reuses while its spec is unchanged
        synthetic.ensure(tmp_path / "data" / "synthetic", synthetic.SyntheticSpec(symbols=5, days=60))
    state = files(tmp_path / "data" / "synthetic")
    source = cut_sample(tmp_path / "cut", "2010-12-31")
    result = run_cli(["data", "update", str(source), "--name", "synthetic"], cwd=tmp_path, env=env(tmp_path))
    assert result.code == 2 and "is a synthetic market" in result.stderr, result.stderr
    assert files(tmp_path / "data" / "synthetic") == state
