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
    assert "4 kept, 0 broken" in done.stdout


def test_qlibs_private_names_appear_only_in_qlib_compat() -> None:
    users = [path.relative_to(SOURCE) for path in _modules()
             if path.name != "qlib_compat.py" and QLIB_PRIVATE.search(path.read_text())]
    assert users == []


def test_no_module_is_over_300_lines() -> None:
    long = {str(path.relative_to(SOURCE)): n for path in _modules() if (n := len(path.read_text().splitlines())) > 300}
    assert long == {}


def test_the_installed_qlib_has_every_hook_and_a_missing_one_is_named() -> None:
    from qlib.backtest.report import PortfolioMetrics
    from qlib.workflow import record_temp

    from qtrack.data import qlib_dataset, qlib_handler  # noqa: F401 - importing a hooked class checks its hook
    from qtrack.errors import QtrackError
    from qtrack.evaluation import portfolio_record  # noqa: F401
    from qtrack.models import boosters  # noqa: F401

    qlib_compat._require(PortfolioMetrics, "_cal_benchmark")
    qlib_compat._require(record_temp, "normal_backtest")
    with pytest.raises(QtrackError, match=r"lacks qlib.workflow.record_temp._no_such_hook, which qtrack relies on"):
        qlib_compat._require(record_temp, "_no_such_hook")


def test_a_qtrack_class_over_a_qlib_without_the_hook_is_refused_in_one_line() -> None:
    from qtrack.errors import QtrackError

    class OldQlibDataset:  # a Qlib release without DatasetH._prepare_seg
        pass

    with pytest.raises(QtrackError, match=r"lacks OldQlibDataset._prepare_seg, which qtrack relies on"):
        type("DatasetH", (qlib_compat.SegmentHook, OldQlibDataset), {})


def test_qlibs_models_load_one_module_at_a_time() -> None:
    """After start(), LightGBM's module loads without CatBoost; the package's own names still resolve."""
    script = ("import sys; from qtrack import qlib_compat; qlib_compat.start()\n"
              "import qlib.contrib.model.gbdt\n"
              "assert 'catboost' not in sys.modules and 'qlib.contrib.model.catboost_model' not in sys.modules\n"
              "import qlib.contrib.model as package\n"
              "assert package.LGBModel is qlib.contrib.model.gbdt.LGBModel and 'catboost' in sys.modules\n"
              "print('ok')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


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


def test_models_pickled_before_the_catboost_move_still_load() -> None:
    import pickle

    from qtrack.models.catboost_model import CatBoostModel

    assert pickle.loads(b"cqtrack.models.boosters\nCatBoostModel\n.") is CatBoostModel  # as a 0.x pickle names it
