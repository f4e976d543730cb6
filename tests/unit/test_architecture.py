"""The shape of the package, checked from the code: import-linter's contracts ([tool.importlinter] in
pyproject.toml), private Qlib names only in qlib_compat, modules under 300 lines, defaults in one place."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qtrack import paths, qlib_compat

SOURCE = Path(__file__).resolve().parents[2] / "src" / "qtrack"
# Qlib's private hooks and helpers that qtrack overrides or calls.
QLIB_PRIVATE = re.compile(r"\b_(prepare_seg|is_proc_readonly|prepare_data|generate|cal_benchmark)\b|normal_backtest")


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def test_the_import_contracts_hold() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], capture_output=True,
                          text=True, check=False, cwd=SOURCE.parents[1], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_qlibs_private_names_appear_only_in_qlib_compat() -> None:
    users = [path.relative_to(SOURCE) for path in _modules()
             if path.name != "qlib_compat.py" and QLIB_PRIVATE.search(path.read_text())]
    assert users == []


def test_no_module_is_over_300_lines() -> None:
    long = {str(path.relative_to(SOURCE)): n for path in _modules() if (n := len(path.read_text().splitlines())) > 300}
    assert long == {}


def test_the_installed_qlib_has_every_hook_and_a_missing_one_is_named() -> None:
    assert qlib_compat.missing_hooks() == []
    made_up = (("qlib.data.dataset", "DatasetH", "_no_such_hook"), ("qlib.no_such_module", "", "thing"))
    assert qlib_compat.missing_hooks(made_up) == ["qlib.data.dataset.DatasetH._no_such_hook",
                                                  "qlib.no_such_module.thing"]


def test_start_lists_held_stocks_in_buying_order() -> None:
    from qlib.backtest.position import Position

    qlib_compat.start()
    position = Position(cash=1e6)
    bought = [f"S{n:02d}" for n in (7, 3, 11, 0, 9, 5, 1, 10, 2, 8, 4, 6)]  # a set's order matches this 1 in 12!
    for code in bought:
        position.position[code] = {"amount": 1.0, "price": 1.0, "weight": 0.0, "count_day": 1}
    assert position.get_stock_list() == bought


def test_the_synthetic_markets_defaults_are_the_config_files(monkeypatch: pytest.MonkeyPatch) -> None:
    from qtrack import config
    from qtrack.data.synthetic import SyntheticSpec

    written = yaml.safe_load((paths.builtin_config_dir() / "dataset" / "synthetic.yaml").read_text())["synthetic"]
    assert SyntheticSpec().to_dict() == written
    monkeypatch.delenv(paths.CONFIG_DIR_ENV, raising=False)
    assert dict(config.compose("train", []).cfg.dataset.synthetic) == written


@pytest.mark.parametrize(("stage", "enabled", "compare_static"), [("rolling", True, True), ("benchmark", False, False)])
def test_walk_forward_settings_have_one_home(stage: str, enabled: bool, compare_static: bool) -> None:
    from qtrack import config

    shared = yaml.safe_load((paths.builtin_config_dir() / "walk_forward" / "default.yaml").read_text())
    rolling = dict(config.compose(stage, []).cfg.rolling)
    assert rolling == {**shared, "enabled": enabled, "compare_static": compare_static}
