"""The fast feature engine gives Qlib's own frame: same index, columns, NaN and inf positions, values.

Each of the 158 + 360 features (and the label) is checked on a tiny hand-made market holding the cases
that break rolling code, and the whole frame on the synthetic market and on the S&P sample. Values are
compared at rtol 1e-5 (the issue's bar); the engine is in fact bit-identical, and `test_bit_identical`
holds it to that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import needs_sample

LABEL = (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])
DAYS = 170


def _walk(rng: np.random.Generator, days: int, start: float = 50.0) -> np.ndarray:
    return start * np.exp(np.cumsum(rng.normal(0, 0.02, days)))


def _frame(rng: np.random.Generator, calendar: pd.DatetimeIndex, close: np.ndarray, volume=None) -> pd.DataFrame:
    spread = np.abs(rng.normal(0, 0.01, close.size)) * close
    frame = pd.DataFrame(
        {
            "open": close * (1 + rng.normal(0, 0.005, close.size)),
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(1_000, 100_000, close.size).astype(float) if volume is None else volume,
        },
        index=calendar,
    )
    frame["vwap"] = (frame.high + frame.low + frame.close) / 3
    frame["factor"] = 1.0
    return frame


def _edge_market(target: Path) -> None:
    """One stock per case, each case named as Qlib handles it."""
    from qtrack.data.qlib_format import write_dataset

    rng = np.random.default_rng(7)
    calendar = pd.bdate_range("2020-01-01", periods=DAYS)
    frames = {"NORMAL": _frame(rng, calendar, _walk(rng, DAYS))}
    # Suspended days: missing rows are NaN in the .bin; rolling windows skip them (min_periods=1), and
    # a comparison with NaN is False, so CNTP/CNTN count a suspended day as "not up".
    frames["SUSPENDED"] = _frame(rng, calendar, _walk(rng, DAYS)).drop(calendar[[40, 41, 42, 43, 90, 120]])
    # A late listing: its series starts at day 100, so every window is shorter there.
    frames["LATE"] = _frame(rng, calendar[100:], _walk(rng, DAYS - 100))
    # Delisted at day 80, and a stock with only three days: windows shorter than N throughout.
    frames["DELISTED"] = _frame(rng, calendar[:80], _walk(rng, 80))
    frames["BRIEF"] = _frame(rng, calendar[60:63], _walk(rng, 3))
    # Constant windows: Std is 0 (pandas tracks runs of equal values), Corr and Rsquare divide by zero
    # and Qlib masks them to NaN where the rolling std is within 2e-05 of zero; Slope is 0/0.
    flat = _walk(rng, DAYS)
    flat[30:115] = 42.0
    flat_frame = _frame(rng, calendar, flat)
    flat_frame.loc[calendar[30:115], ["open", "high", "low", "vwap"]] = 42.0
    flat_frame.loc[calendar[30:115], "volume"] = 5_000.0
    frames["FLAT"] = flat_frame
    # Zero volume: Log($volume+1) is 0, $volume/Ref($volume,1) is inf or NaN (0/0), VMA divides by 1e-12.
    volume = rng.integers(1_000, 100_000, DAYS).astype(float)
    volume[[10, 11, 50]] = 0.0
    volume[70:95] = 0.0
    frames["NOVOLUME"] = _frame(rng, calendar, _walk(rng, DAYS), volume)
    write_dataset(target, frames, {"source": "edge cases"})
    # A listing span narrower than the stored data: D.features keeps only the listed days.
    instruments = target / "instruments" / "all.txt"
    lines = instruments.read_text().splitlines()
    lines = [f"NORMAL\t{calendar[20].date()}\t{calendar[150].date()}" if line.startswith("NORMAL") else line
             for line in lines]
    instruments.write_text("\n".join(lines) + "\n")


def _frames(root: Path, handler: str, start=None, end=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    from qlib.contrib.data.loader import Alpha158DL, Alpha360DL
    from qlib.data.dataset.loader import QlibDataLoader

    from qtrack.features.loader import FastDataLoader
    from qtrack.runtime import init_qlib

    init_qlib(root, "us", f"sqlite:///{root.parent}/mlflow.db", "features", kernels=1)
    loader = Alpha158DL if handler == "alpha158" else Alpha360DL
    config = {"feature": loader.get_feature_config(), "label": LABEL}
    fast = FastDataLoader(config).load("all", start, end)
    qlib = QlibDataLoader(config).load("all", start, end)
    return fast, qlib


@pytest.fixture(scope="module")
def edge_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edge") / "data" / "edge"
    root.parent.mkdir(parents=True)
    _edge_market(root)
    return root


def _edge_frames(root: Path, handler: str):
    """Frames from day 70 (the load starts earlier, by each expression's own look-back) and whole."""
    calendar = pd.bdate_range("2020-01-01", periods=DAYS)
    return handler, _frames(root, handler, calendar[70], calendar[-1]), _frames(root, handler)


@pytest.fixture(scope="module")
def alpha158(edge_root: Path):
    return _edge_frames(edge_root, "alpha158")


@pytest.fixture(scope="module")
def alpha360(edge_root: Path):
    return _edge_frames(edge_root, "alpha360")


@pytest.fixture(params=["alpha158", "alpha360"])
def edge_frames(request: pytest.FixtureRequest):
    return request.getfixturevalue(request.param)


def _assert_same(fast: pd.DataFrame, qlib: pd.DataFrame, rtol: float = 1e-5) -> None:
    assert fast.index.equals(qlib.index)
    assert list(fast.columns) == list(qlib.columns)
    assert (fast.dtypes == np.float32).all() and (qlib.dtypes == np.float32).all()
    a, b = fast.to_numpy(), qlib.to_numpy()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b))
    np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b))
    finite = np.isfinite(b)
    np.testing.assert_allclose(a[finite], b[finite], rtol=rtol, atol=0)


def _names(handler: str) -> list[str]:
    from qlib.contrib.data.loader import Alpha158DL, Alpha360DL

    loader = Alpha158DL if handler == "alpha158" else Alpha360DL
    return loader.get_feature_config()[1] + ["LABEL0"]


def test_the_edge_market_holds_every_case(edge_frames) -> None:
    handler, _, (fast, qlib) = edge_frames
    instruments = set(qlib.index.get_level_values("instrument"))
    assert instruments == {"NORMAL", "SUSPENDED", "LATE", "DELISTED", "BRIEF", "FLAT", "NOVOLUME"}
    if handler == "alpha158":
        flat = qlib.xs("FLAT", level="instrument")[("feature", "RSQR20")]
        assert flat.isna().sum() > 40, "constant windows must reach Qlib's NaN mask"
        novol = qlib.xs("NOVOLUME", level="instrument")[("feature", "CORD5")]
        assert novol.isna().sum() > 10
    normal = qlib.xs("NORMAL", level="instrument").index
    assert normal.min() == pd.bdate_range("2020-01-01", periods=DAYS)[20]  # the listing span, not the data


@pytest.mark.parametrize("column", range(159))
def test_alpha158_feature_matches_qlib(alpha158, column: int) -> None:
    _, (fast_part, qlib_part), (fast_all, qlib_all) = alpha158
    _check_column(fast_part, qlib_part, column)
    _check_column(fast_all, qlib_all, column)


@pytest.mark.parametrize("column", range(361))
def test_alpha360_feature_matches_qlib(alpha360, column: int) -> None:
    _, (fast_part, qlib_part), (fast_all, qlib_all) = alpha360
    _check_column(fast_part, qlib_part, column)
    _check_column(fast_all, qlib_all, column)


def _check_column(fast: pd.DataFrame, qlib: pd.DataFrame, column: int) -> None:
    assert fast.index.equals(qlib.index)
    assert fast.columns[column] == qlib.columns[column]
    _assert_same(fast.iloc[:, [column]], qlib.iloc[:, [column]])


def test_bit_identical(edge_frames) -> None:
    _, (fast_part, qlib_part), (fast_all, qlib_all) = edge_frames
    for fast, qlib in ((fast_part, qlib_part), (fast_all, qlib_all)):
        a, b = fast.to_numpy(), qlib.to_numpy()
        assert np.array_equal(a, b, equal_nan=True)


def test_stocks_whose_data_ends_early_are_computed_over_their_own_days(alpha158, edge_root) -> None:
    """DELISTED (80 days) and BRIEF (to day 62) are computed on a panel of their own days, not the market's 170:
    the frame is the one-panel path's (a build that saves kernel states keeps one panel) and Qlib's, bit for bit."""
    from qlib.contrib.data.loader import Alpha158DL

    from qtrack.features import panel as panels
    from qtrack.features.compute import compute
    from qtrack.features.loader import FastDataLoader

    _, _, (grouped, qlib) = alpha158  # loaded and Qlib initialised on the edge market by the fixture
    request = FastDataLoader({"feature": Alpha158DL.get_feature_config(), "label": LABEL}).request("all", None)
    end = len(request.calendar) - 1
    whole = panels.load(request.root, sorted(request.spans), request.fields, 0, end)
    groups = panels.end_groups(whole, np.ones(len(whole.instruments), dtype=bool))
    assert [sorted(whole.instruments[s] for s in members) for members, _ in groups][0] == ["BRIEF", "DELISTED"]
    one_panel = compute(request, end, checkpoint=end - 10).frame
    assert one_panel.index.equals(grouped.index)
    assert np.array_equal(one_panel.to_numpy(), grouped.to_numpy(), equal_nan=True)
    assert np.array_equal(grouped.to_numpy(), qlib.to_numpy(), equal_nan=True)


def test_gather_at_writes_the_rows_it_is_given() -> None:
    from qtrack.features import kernels

    rng = np.random.default_rng(3)
    flat = rng.normal(size=5_000) * 10.0 ** rng.integers(-40, 40, 5_000)
    flat[rng.random(5_000) < 0.1] = np.nan
    cells = rng.choice(5_000, 1_200, replace=False)
    positions = np.sort(rng.choice(3_000, 1_200, replace=False))
    ours = np.zeros(3_000, dtype=np.float32)
    kernels.gather_at(flat, cells, positions, ours)
    theirs = np.zeros(3_000, dtype=np.float32)
    with np.errstate(over="ignore"):
        theirs[positions] = flat[cells].astype(np.float32)
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


@pytest.mark.slow
def test_synthetic_market_matches_qlib(tmp_path: Path) -> None:
    from qtrack.data.synthetic import SyntheticSpec, ensure

    root = tmp_path / "data" / "synthetic"
    ensure(root, SyntheticSpec(symbols=30, days=300, missing_rate=0.01))  # late listings and gaps included
    fast, qlib = _frames(root, "alpha158", "2018-03-01", None)
    _assert_same(fast, qlib)
    assert np.array_equal(fast.to_numpy(), qlib.to_numpy(), equal_nan=True)


@pytest.mark.slow
@needs_sample
def test_sp500_sample_matches_qlib(sp500_root: Path) -> None:
    for handler, start in (("alpha158", "2016-06-01"), ("alpha360", "2016-10-03")):
        fast, qlib = _frames(sp500_root / "sp500", handler, start, "2016-12-30")
        _assert_same(fast, qlib)
        assert np.array_equal(fast.to_numpy(), qlib.to_numpy(), equal_nan=True)
