"""The feature cache through the real CLI: hit, miss, invalidation, corruption, concurrency."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, needs_sample, run_cli, tracking_uri
from qtrack.data import mapped_pickle

pytestmark = pytest.mark.slow  # real trainings on tiny data; `make test-fast` leaves them out

FAST = [*TINY, "model.num_boost_round=30"]
EXCESS = "1day.excess_return_with_cost.annualized_return"
SAME = ("IC", "Rank IC", "rmse", EXCESS)


def train(folder: Path, *overrides: str):
    result = run_cli(["train", *FAST, *overrides], cwd=folder)
    assert result.code == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(folder))
    run = client.search_runs([e.experiment_id for e in client.search_experiments()],
                             order_by=["attributes.start_time DESC"])[0]
    return result, run


def cache_files(folder: Path, pattern: str, name: str = "synthetic") -> list[Path]:
    return sorted((folder / "data" / ".cache" / name).glob(pattern))


def entries(folder: Path, name: str = "synthetic") -> list[Path]:
    """The built datasets' entries (not the raw features' `raw-*` ones)."""
    return [p for p in cache_files(folder, "*.features", name) if not p.name.startswith("raw-")]


def test_hit_miss_invalidation_and_corruption(workspace):
    _, cold = train(workspace)
    assert cold.data.tags["qtrack.feature_cache"] == "miss"
    assert len(entries(workspace)) == 1

    _, warm = train(workspace)
    assert warm.data.tags["qtrack.feature_cache"] == "hit"
    assert {k: warm.data.metrics[k] for k in SAME} == {k: cold.data.metrics[k] for k in SAME}

    _, other_data = train(workspace, "dataset.synthetic.seed=1")
    assert other_data.data.tags["qtrack.feature_cache"] == "miss"
    assert other_data.data.tags["qtrack.data_fingerprint"] != cold.data.tags["qtrack.data_fingerprint"]

    _, other_segments = train(workspace, "dataset.split.train=0.5")  # the same raw features, other processor fits
    assert other_segments.data.tags["qtrack.feature_cache"] == "reused"
    assert len(entries(workspace)) == 3

    oldest = min(entries(workspace), key=lambda path: path.stat().st_mtime)
    oldest.write_bytes(b"not a pickle")  # the entry of the first run's inputs
    result, rebuilt = train(workspace, "dataset.synthetic.seed=0")
    assert rebuilt.data.tags["qtrack.feature_cache"] == "reused"  # its raw features are still cached
    assert "unreadable" in result.stderr
    assert {k: rebuilt.data.metrics[k] for k in SAME} == {k: cold.data.metrics[k] for k in SAME}

    _, off = train(workspace, "dataset.cache=false")
    assert off.data.tags["qtrack.feature_cache"] == "off"
    assert "time.features_seconds" in off.data.metrics
    assert off.data.metrics[EXCESS] == cold.data.metrics[EXCESS]  # Qlib's benchmark returns, computed again

    # The benchmark's daily returns (1-1.4 s of Qlib's for 490 codes) are cached too, and a run uses the cached
    # ones: rewritten to gain 1% more every day, the next run's excess return loses about a year of it.
    benchmark = min(cache_files(workspace, "*.benchmark"), key=lambda path: path.stat().st_mtime)  # the cold run's
    returns = mapped_pickle.load(benchmark)
    assert returns.index.is_monotonic_increasing and returns.notna().all()
    with benchmark.open("wb") as out:
        mapped_pickle.dump(returns + 0.01, out)
    _, shifted = train(workspace)
    assert cold.data.metrics[EXCESS] - shifted.data.metrics[EXCESS] == pytest.approx(0.01 * 252, rel=0.1)


def binned_entries(folder: Path) -> list[Path]:
    return [p for p in cache_files(folder, "*.lgb-*") if p.is_dir()]


def test_binned_lightgbm_sets_give_the_same_booster(workspace):
    def booster(run) -> str:
        client = MlflowClient(tracking_uri(workspace))
        with open(client.download_artifacts(run.info.run_id, "params.pkl", str(workspace)), "rb") as handle:
            return pickle.load(handle).model.model_to_string()

    _, cold = train(workspace)  # binned from the features, then stored
    assert len(binned_entries(workspace)) == 1
    _, off = train(workspace, "dataset.cache=false")  # Qlib's own preparation, nothing cached
    _, warm = train(workspace)  # loaded from LightGBM's binary files
    assert warm.data.tags["qtrack.feature_cache"] == "hit"
    assert booster(cold) == booster(off) == booster(warm)


def small_sets(seed: int = 0) -> list:
    import lightgbm as lgb
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(2000, 6)), rng.normal(size=2000)
    return [(lgb.Dataset(x[:1500], label=y[:1500]), "train"), (lgb.Dataset(x[1500:], label=y[1500:]), "valid")]


def test_binned_cache_key_and_corrupt_entry(tmp_path):
    import lightgbm as lgb

    from qtrack.data.binned_cache import BinnedCache

    warnings: list[str] = []
    cache = BinnedCache(tmp_path, "features", warnings.append)
    params = {"objective": "mse", "verbosity": -1, "seed": 1, "learning_rate": 0.2, "num_leaves": 31}
    assert cache.entry(params) == cache.entry({**params, "learning_rate": 0.05, "num_leaves": 7, "subsample": 0.5})
    for shaping in ({"seed": 2}, {"max_bin": 63}, {"min_data_in_leaf": 50}):
        assert cache.entry({**params, **shaping}) != cache.entry(params)

    def fit(parts) -> str:
        return lgb.train(params, parts[0][0], num_boost_round=20, valid_sets=[p for p, _ in parts]).model_to_string()

    built = cache.datasets(params, small_sets)
    assert fit(built) == fit(small_sets())
    (cache.entry(params) / "train.bin").write_bytes(b"truncated")
    rebuilt = cache.datasets(params, small_sets)
    assert len(warnings) == 1 and "unreadable" in warnings[0]
    loaded = cache.datasets(params, lambda: pytest.fail("a stored entry must be loaded, not rebuilt"))
    assert fit(rebuilt) == fit(loaded) == fit(small_sets())
    assert len(warnings) == 1


def test_two_processes_building_the_same_entry(workspace):
    qtrack = Path(sys.executable).parent / "qtrack"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["QTRACK_DATA_ROOT"] = str(workspace / "data")
    processes = [
        subprocess.Popen([str(qtrack), "train", "-q", *FAST, f"run_name=worker-{i}"], cwd=workspace, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    client = MlflowClient(tracking_uri(workspace))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags["qtrack.feature_cache"] for r in runs) == ["hit", "miss"]
    assert runs[0].data.metrics["IC"] == runs[1].data.metrics["IC"]
    assert len(entries(workspace)) == 1


@needs_sample
def test_train_on_the_imported_sample(tmp_path, sp500_root):
    result = run_cli(["train", "dataset.name=sp500", "model.num_boost_round=50"], cwd=tmp_path,
                     env={"QTRACK_DATA_ROOT": str(sp500_root)})
    assert result.code == 0, result.stderr[-3000:]
    assert "automatic segments cover 2009-01-02..2016-12-30" in " ".join(result.stderr.split())
    client = MlflowClient(tracking_uri(tmp_path))
    run = client.search_runs([client.get_experiment_by_name("sp500_alpha158").experiment_id])[0]
    train_start, _ = run.data.params["segments.train"].split(",")
    _, test_end = run.data.params["segments.test"].split(",")
    assert train_start == "2009-01-02"
    assert "2016-12-01" < test_end < "2016-12-30"
    assert {"IC", "Rank IC", "1day.excess_return_with_cost.annualized_return"} <= set(run.data.metrics)


def test_mapped_pickle_round_trip_private_writes_and_damage(tmp_path):
    import numpy as np
    import pandas as pd

    from qtrack.data import mapped_pickle

    index = pd.MultiIndex.from_product([pd.date_range("2020-01-01", periods=400), range(50)],
                                       names=["datetime", "instrument"])
    frame = pd.DataFrame(np.random.default_rng(0).random((len(index), 6), dtype=np.float32), index=index)
    path = tmp_path / "entry"
    with path.open("wb") as out:
        mapped_pickle.dump({"data": frame, "infer": frame, "label": "LABEL0"}, out)
    loaded = mapped_pickle.load(path)
    pd.testing.assert_frame_equal(loaded["data"], frame, check_exact=True)
    assert loaded["infer"] is loaded["data"] and loaded["label"] == "LABEL0"
    assert path.stat().st_size < frame.memory_usage().sum() + 2**16, "the arrays are stored once"

    loaded["data"].iloc[0, 0] = -1.0  # a loaded array is writable, and the write stays in this process
    assert mapped_pickle.load(path)["data"].iloc[0, 0] == frame.iloc[0, 0]

    whole = path.read_bytes()
    for damaged in (whole[:-1], b"not a pickle", b""):
        path.write_bytes(damaged)
        with pytest.raises(mapped_pickle.UnreadableEntry):
            mapped_pickle.load(path)


def test_mapped_pickle_keeps_a_frames_row_slice_out_of_the_stream(tmp_path):
    """A handler's frame is often the first days of a larger one (a strided view). It is written as its base and
    its geometry, not copied into the pickle stream, and it loads as the same frame, as a view again."""
    import json

    import numpy as np
    import pandas as pd

    from qtrack.data import mapped_pickle

    index = pd.MultiIndex.from_product([pd.date_range("2020-01-01", periods=300), range(40)],
                                       names=["datetime", "instrument"])
    values = np.asfortranarray(np.random.default_rng(1).random((len(index), 8), dtype=np.float32))
    whole = pd.DataFrame(values, index=index, copy=False)  # F order, as the fast engine's frame
    first_days = whole.iloc[: 200 * 40]
    block = first_days._mgr.blocks[0].values
    assert not (block.flags.c_contiguous or block.flags.f_contiguous), "the case: a strided view"
    path = tmp_path / "entry"
    with path.open("wb") as out:
        mapped_pickle.dump(first_days, out)
    loaded = mapped_pickle.load(path)
    pd.testing.assert_frame_equal(loaded, first_days, check_exact=True)
    with path.open("rb") as handle:
        handle.seek(8)
        length = int.from_bytes(handle.read(8), "little")
        stream_bytes = json.loads(handle.read(length))["parts"][0][1]
    assert stream_bytes < 2**16 < block.nbytes, "the values went out of band, not into the stream"
    assert path.stat().st_size < whole.memory_usage().sum() + 2**16
