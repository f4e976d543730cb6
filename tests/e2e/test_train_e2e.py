"""`qtrack train` end to end through the real console script, on a tiny synthetic market."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from helpers import FAST_MODEL, QLIB_REPORT, TINY, WITH_MODEL, WITH_PLOTS, run_cli, tracking_uri
from qtrack.data import qlib_format

pytestmark = pytest.mark.slow  # real trainings on tiny data; `make test-fast` leaves them out

BACKTEST = "1day.excess_return_with_cost."
EXPECTED_METRICS = {
    "IC", "ICIR", "Rank IC", "Rank ICIR",
    f"{BACKTEST}annualized_return", f"{BACKTEST}information_ratio", f"{BACKTEST}max_drawdown",
    "1day.excess_return_without_cost.annualized_return", "1day.excess_return_without_cost.max_drawdown",
    "rmse", "mae", "mape", "directional_accuracy", "time.features_seconds", "time.fit_seconds",
}
EXPECTED_ARTIFACTS = {
    "pred.pkl", "label.pkl", "target.pkl", "params.pkl", "config.yaml", "summary.json",
    "plots/cumulative_return.png", "plots/daily_ic.png", "sig_analysis/ic.pkl",
    "portfolio_analysis/report_normal_1day.pkl", "reports/qlib_report.html",
}
CURVES = {"lightgbm": "l2.valid", "xgboost": "loss.valid", "catboost": "RMSE.valid"}


def train(folder: Path, data_root: Path, *overrides: str, fresh: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    result = run_cli(["train", *overrides], cwd=folder, env={"QTRACK_DATA_ROOT": str(data_root)}, fresh=fresh)
    assert result.code == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri(folder))
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], order_by=["attributes.start_time DESC"]
    )
    return result, client, runs[0]


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def load_pickle(client: MlflowClient, run_id: str, name: str, tmp: Path):
    with open(client.download_artifacts(run_id, name, str(tmp)), "rb") as handle:
        return pickle.load(handle)


@pytest.mark.parametrize("model", ["lightgbm", "catboost", "xgboost", "linear"])
def test_train_logs_a_complete_run(tmp_path, shared_data_root, model):
    result, client, run = train(tmp_path, shared_data_root, f"model={model}", *TINY, QLIB_REPORT, WITH_MODEL,
                                WITH_PLOTS, *FAST_MODEL[model])
    run_id, data = run.info.run_id, run.data

    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith(f"{model}-")
    assert client.get_experiment(run.info.experiment_id).name == "synthetic_alpha158"

    # params: the whole resolved config, flattened
    assert data.params["model.name"] == model
    assert data.params["seed"] == "0"
    assert data.params["dataset.synthetic.symbols"] == "30"
    assert data.params["features.handler"] == "Alpha158"
    assert json.loads(data.params["dataset.segments.train"]) is None

    assert set(data.metrics) >= EXPECTED_METRICS, EXPECTED_METRICS - set(data.metrics)
    assert artifact_paths(client, run_id) >= EXPECTED_ARTIFACTS
    if model in CURVES:
        assert len(client.get_metric_history(run_id, CURVES[model])) > 5

    fingerprint = qlib_format.read_meta(shared_data_root / "synthetic")["fingerprint"]
    assert data.tags["qtrack.data_fingerprint"] == fingerprint
    assert data.tags["qtrack.version"]
    assert data.tags["qtrack.host"]
    assert data.tags["qtrack.command"].startswith(f"qtrack train model={model}")
    from importlib.metadata import version

    for library in ("pyqlib", "mlflow", "lightgbm", "pandas", "numpy"):
        assert data.tags[f"qtrack.lib.{library}"] == version(library)
    check_segment_inputs(client, run, fingerprint, tmp_path)

    # the summary names the run, and the run folder holds the resolved config and the log
    assert run_id in result.stdout
    run_dirs = list((tmp_path / "outputs").glob("*/*"))
    assert len(run_dirs) == 1
    assert {"config.yaml", "run.log", "summary.json"} <= {p.name for p in run_dirs[0].iterdir()}
    assert "Traceback" not in result.stderr
    # the summary is built from what the run logged, not read back: it holds the store's values
    summary = json.loads((run_dirs[0] / "summary.json").read_text())["metrics"]
    assert summary and summary == {key: data.metrics[key] for key in summary}

    check_metrics_against_recomputation(client, run, tmp_path)
    check_flavor_model_matches_predictions(client, run, tmp_path)


def check_segment_inputs(client: MlflowClient, run, fingerprint: str, tmp: Path) -> None:
    """One dataset input per segment, its digest recomputed from the fingerprint, the handler config and the
    segment's span; no profile of the feature frame."""
    from qtrack.tracking.inputs import segment_digest

    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "testing"}
    config = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp))).read_text())
    for context, segment in (("training", "train"), ("validation", "valid"), ("testing", "test")):
        span = run.data.params[f"segments.{segment}"].split(",")
        expected = segment_digest(fingerprint, config["features"], config["dataset"]["market"], tuple(span))
        assert inputs[context].digest == expected
        assert inputs[context].name == f"synthetic/alpha158/{segment}"
        profile = {"start": span[0], "end": span[1], "data_fingerprint": fingerprint}
        assert json.loads(inputs[context].profile) == profile
    assert len({d.digest for d in inputs.values()}) == 3


def check_metrics_against_recomputation(client: MlflowClient, run, tmp: Path) -> None:
    run_id, logged = run.info.run_id, run.data.metrics
    pred = load_pickle(client, run_id, "pred.pkl", tmp)["score"]
    label = load_pickle(client, run_id, "label.pkl", tmp).iloc[:, 0]
    target = load_pickle(client, run_id, "target.pkl", tmp).iloc[:, 0]

    joined = pd.concat([pred, label], axis=1, keys=["p", "y"]).dropna()
    daily_ic = joined.groupby(level="datetime").apply(lambda d: np.corrcoef(d["p"], d["y"])[0, 1])
    assert logged["IC"] == pytest.approx(daily_ic.mean(), abs=1e-6)
    assert logged["ICIR"] == pytest.approx(daily_ic.mean() / daily_ic.std(), abs=1e-5)

    both = pd.concat([pred, target], axis=1, keys=["p", "y"]).dropna()
    err = both["p"].to_numpy() - both["y"].to_numpy()
    assert logged["rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-9)
    assert logged["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-9)
    assert logged["mape"] == pytest.approx(np.abs(err).sum() / np.abs(both["y"]).sum(), rel=1e-9)


def check_flavor_model_matches_predictions(client: MlflowClient, run, tmp: Path) -> None:
    import mlflow
    from mlflow.models import Model

    mlflow.set_tracking_uri(client.tracking_uri)
    uri = run.data.tags["qtrack.model_uri"]
    loaded = mlflow.pyfunc.load_model(uri)
    example = Model.load(uri).load_input_example(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp)))
    scores = np.asarray(loaded.predict(example)).ravel()
    pred = load_pickle(client, run.info.run_id, "pred.pkl", tmp)["score"]
    np.testing.assert_allclose(scores, pred.iloc[: len(scores)].to_numpy(), rtol=1e-5, atol=1e-6)
    missing = example.columns[3]
    with pytest.raises(mlflow.exceptions.MlflowException, match=re.escape(missing)):
        loaded.predict(example.drop(columns=[missing]))  # the signature names the missing feature


@pytest.mark.parametrize("model", ["lightgbm", "linear"])
def test_planted_signal_is_learned_and_absent_signal_is_not(tmp_path, shared_data_root, model):
    fast = (f"model={model}", *FAST_MODEL[model])
    _, _, planted = train(tmp_path / "planted", shared_data_root, *TINY, *fast)
    _, _, absent = train(
        tmp_path / "absent", shared_data_root, "dataset=synthetic_nosignal", *TINY,
        "dataset.synthetic.signal=0.0", *fast,
    )
    assert planted.data.metrics["IC"] > 0.1
    assert planted.data.metrics["Rank IC"] > 0.1
    assert absent.data.params["dataset.synthetic.signal"] == "0.0"
    assert abs(absent.data.metrics["IC"]) < 0.05
    if absent.data.tags.get("qtrack.constant_predictions") == "true":
        # A model that found nothing to learn predicts a constant: its rank correlation is undefined.
        assert np.isnan(absent.data.metrics["Rank IC"])
    else:
        assert abs(absent.data.metrics["Rank IC"]) < 0.05


def test_same_seed_gives_same_metrics(tmp_path, shared_data_root):
    overrides = ("seed=11", *TINY, *FAST_MODEL["lightgbm"])
    _, _, first = train(tmp_path / "a", shared_data_root, *overrides)
    # The second in a new interpreter: another hash seed, nothing imported beforehand.
    _, _, second = train(tmp_path / "b", shared_data_root, *overrides, fresh=True)
    keys = ["IC", "Rank IC", "rmse", f"{BACKTEST}annualized_return"]
    assert {k: first.data.metrics[k] for k in keys} == {k: second.data.metrics[k] for k in keys}
    digests = [{i.dataset.digest for i in run.inputs.dataset_inputs} for run in (first, second)]
    assert digests[0] == digests[1] and len(digests[0]) == 3, "same data and handler: same dataset digests"


def test_run_dir_override_and_experiment_name(tmp_path, shared_data_root):
    _, client, run = train(
        tmp_path, shared_data_root, *TINY, "model=linear", "hydra.run.dir=runs/here",
        "mlflow.experiment_name=demo", "run_name=my-run",
    )
    assert client.get_experiment(run.info.experiment_id).name == "demo"
    assert run.info.run_name == "my-run"
    assert (tmp_path / "runs" / "here" / "config.yaml").is_file()
    assert not (tmp_path / "outputs").exists()


def test_double_ensemble_trains_through_qlibs_model_and_logs_like_the_others(tmp_path, shared_data_root):
    small = ["model=double_ensemble", "model.num_models=2", "model.sub_weights=[1,0.2]", "model.epochs=10",
             "model.num_leaves=16"]
    _, client, run = train(tmp_path, shared_data_root, *small, *TINY, WITH_MODEL)
    assert run.info.status == "FINISHED" and run.data.params["model.class"] == "DEnsembleModel"
    model = load_pickle(client, run.info.run_id, "params.pkl", tmp_path)
    assert type(model).__name__ == "DEnsembleModel" and len(model.ensemble) == 2
    assert len(model.sub_features[1]) < len(model.sub_features[0]), "feature selection dropped features"
    assert run.data.metrics["Rank IC"] > 0.05, "the planted signal is learned"
    check_metrics_against_recomputation(client, run, tmp_path)
    check_flavor_model_matches_predictions(client, run, tmp_path)  # the pyfunc over Qlib's pickle
    registered = run_cli(["register", run.info.run_id, "--name", "ensemble"], cwd=tmp_path)
    assert registered.code == 0 and "registered ensemble version 1" in registered.stdout + registered.stderr
