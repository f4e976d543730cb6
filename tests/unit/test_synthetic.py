from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qtrack.data import qlib_format, synthetic

SMALL = synthetic.SyntheticSpec(symbols=12, days=120, seed=5)


def test_same_spec_gives_identical_frames():
    first, second = synthetic.generate(SMALL), synthetic.generate(SMALL)
    assert first.keys() == second.keys()
    for symbol in first:
        pd.testing.assert_frame_equal(first[symbol], second[symbol])


def test_another_seed_gives_another_market():
    other = synthetic.generate(synthetic.SyntheticSpec(symbols=12, days=120, seed=6))
    assert not np.allclose(synthetic.generate(SMALL)["SYN000"]["close"], other["SYN000"]["close"])


def test_market_looks_like_real_data():
    spec = synthetic.SyntheticSpec(symbols=60, days=400, seed=1)
    frames = synthetic.generate(spec)
    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))))
    starts = {frame.index[0] for frame in frames.values()}
    assert len(calendar) == 400
    assert len(starts) > 1, "listings are staggered"
    assert any(len(f) < (calendar >= f.index[0]).sum() for f in frames.values()), "some days are missing"
    for frame in frames.values():
        assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
        assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
        assert (frame["volume"] > 0).all()


@pytest.mark.parametrize("signal", [0.0, 0.3])
def test_planted_signal_matches_its_documented_ic(signal):
    """corr(KMID on day t, return from close t+1 to t+2) across symbols equals signal/sqrt(1+noise^2)."""
    spec = synthetic.SyntheticSpec(symbols=300, days=400, signal=signal, seed=2, missing_rate=0.0)
    frames = synthetic.generate(spec)
    close = pd.DataFrame({s: f["close"] for s, f in frames.items()})
    kmid = pd.DataFrame({s: (f["close"] - f["open"]) / f["open"] for s, f in frames.items()})
    label = close.shift(-2) / close.shift(-1) - 1
    daily = kmid.corrwith(label, axis=1).dropna()
    assert daily.mean() == pytest.approx(spec.theoretical_ic, abs=0.02)


def test_written_market_reads_back_through_qlib(tmp_path):
    import qlib
    from qlib.data import D

    target = tmp_path / "syn"
    assert synthetic.ensure(target, SMALL) is True
    assert synthetic.ensure(target, SMALL) is False, "an unchanged spec is not rewritten"
    qlib.init(provider_uri=str(target), region="us", kernels=1)
    frames = synthetic.generate(SMALL)
    read = D.features(["SYN003", "SYN007"], ["$close", "$volume", "$factor"], freq="day")
    for symbol in ("SYN003", "SYN007"):
        got = read.loc[symbol].dropna()
        want = frames[symbol]
        np.testing.assert_array_equal(got.index, want.index)
        np.testing.assert_allclose(got["$close"], want["close"].astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(got["$volume"], want["volume"].astype(np.float32), rtol=1e-6)
        assert (got["$factor"] == 1.0).all()


def test_changed_spec_rebuilds_and_changes_the_fingerprint(tmp_path):
    target = tmp_path / "syn"
    synthetic.ensure(target, SMALL)
    before = qlib_format.fingerprint_of(target)
    assert synthetic.ensure(target, synthetic.SyntheticSpec(symbols=12, days=120, seed=9)) is True
    assert qlib_format.fingerprint_of(target) != before
    assert qlib_format.fingerprint_of(target) == qlib_format.compute_fingerprint(target)
    assert len(list((tmp_path / qlib_format.STORE_DIR).iterdir())) == 1, "the old version is removed"


def test_failed_write_leaves_the_previous_version_intact(tmp_path):
    target = tmp_path / "syn"
    synthetic.ensure(target, SMALL)
    before = qlib_format.fingerprint_of(target)
    frames = synthetic.generate(synthetic.SyntheticSpec(symbols=12, days=120, seed=3))
    frames["SYN011"]["close"] = "not a price"  # fails part-way through writing
    with pytest.raises(ValueError):
        qlib_format.write_dataset(target, frames, {"kind": "test"})
    assert qlib_format.compute_fingerprint(target) == before
    assert [p.name for p in (tmp_path / qlib_format.STORE_DIR).iterdir()] == [target.resolve().name]
