"""`qtrack predict` on data that changed under the model says so: a regenerated market that ends before the
model's data end is a warning, another fingerprint a note; the same data says nothing."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from helpers import TINY, WITH_MODEL, run_cli, tracking_uri
from qtrack.data import synthetic

SMALL = [*TINY, "model=linear", "mlflow.plots=false", WITH_MODEL]


def test_predict_names_data_that_changed_under_the_model(tmp_path: Path) -> None:
    env = {"QTRACK_DATA_ROOT": str(tmp_path / "data")}
    trained = run_cli(["train", *SMALL, "-q"], cwd=tmp_path, env=env)
    assert trained.code == 0, trained.stderr[-2000:]
    client = MlflowClient(tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic_alpha158").experiment_id])
    assert run_cli(["register", run.info.run_id, "--name", "drift", "--alias", "champion"], cwd=tmp_path,
                   env=env).code == 0
    predict = ["predict", "--model", "drift@champion", "--latest", "--output", "tomorrow.csv"]

    same = run_cli(predict, cwd=tmp_path, env=env)
    assert same.code == 0 and "warning" not in same.stderr and "note" not in same.stderr, same.stderr

    synthetic.ensure(tmp_path / "data" / "synthetic", synthetic.SyntheticSpec(symbols=30, days=250, signal=0.3))
    regenerated = run_cli(predict, cwd=tmp_path, env=env)
    assert regenerated.code == 0, regenerated.stderr
    data_end = run.data.tags["qtrack.data_end"]
    assert "warning: the data ends" in regenerated.stderr and f"before the model's data end {data_end}" in \
        " ".join(regenerated.stderr.split())

    synthetic.ensure(tmp_path / "data" / "synthetic", synthetic.SyntheticSpec(symbols=30, days=300, signal=0.2))
    other = run_cli(predict, cwd=tmp_path, env=env)
    assert other.code == 0 and "note: the data is not the data the model trained on" in " ".join(other.stderr.split())
