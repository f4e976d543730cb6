"""Shared fixtures: every test gets its own data root, tracking store and working folder; the tiny
markets and the imported S&P sample that several modules read are built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import helpers` from tests/unit and tests/e2e

from helpers import SAMPLE, run_cli, shared_root  # noqa: E402

# The longest modules first (measured with --durations): xdist hands whole modules to the two workers in
# collection order, so a long module collected last keeps one worker busy while the other waits.
LONGEST_FIRST = ("test_remote_tracking", "test_optimize", "test_deep_qrun_parity", "test_retrain", "test_train_e2e",
                 "test_faults", "test_store_precedence", "test_dashboard", "test_qlib_native", "test_feature_cache",
                 "test_deep_stages", "test_retrain_faults", "test_data_update")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/e2e run the real CLI: marked e2e (their slow ones are also marked slow)."""
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.e2e)
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).stem, len(rank)))  # stable: the rest keep order


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated cwd, data root and tracking store (the default sqlite:///<cwd>/mlruns/mlflow.db)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QTRACK_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def shared_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root reused across end-to-end tests (and workers) so each tiny market and its features
    are built once. Tests that check what is built use their own root."""
    return shared_root(tmp_path_factory)


@pytest.fixture(scope="session")
def sp500_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding the S&P 500 sample imported as `sp500` through the real CLI."""
    if not SAMPLE.is_dir():
        pytest.skip(f"the S&P 500 sample is not at {SAMPLE}")
    root = tmp_path_factory.mktemp("sp500")
    result = run_cli(
        ["data", "import", str(SAMPLE), "--name", "sp500", "--market", f"sp50={SAMPLE / 'constituents.csv'}"],
        cwd=root, env={"QTRACK_DATA_ROOT": str(root / "data")},
    )
    assert result.code == 0, result.stderr
    return root / "data"


@pytest.fixture
def figure(request: pytest.FixtureRequest):
    """Record a measured figure (seconds to exit, runs left RUNNING, leaks found); the session's
    summary prints them all, so a run of the suite shows every limit as a number."""

    def record(name: str, value: float | int | str, limit: str = "") -> None:
        request.node.user_properties.append(("figure", (name, value, limit)))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures = [value for reports in terminalreporter.stats.values() for report in reports
               if getattr(report, "when", "") == "call" for key, value in getattr(report, "user_properties", [])
               if key == "figure"]
    if not figures:
        return
    terminalreporter.section("figures")
    for name, value, limit in sorted(figures, key=lambda f: f[0]):
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        terminalreporter.write_line(f"{name}: {shown}" + (f"  (limit {limit})" if limit else ""))
