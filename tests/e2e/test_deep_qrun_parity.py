"""Qlib's PyTorch workflows, as Qlib ships them, through qrun and through `qtrack train --from-qrun`: on a CPU
with a fixed seed, IC, Rank IC and every backtest figure must be qrun's (issue 31). GRU and MLP on Alpha360,
on a Qlib directory the test writes (330 days), with fewer epochs and smaller networks.
60 stocks, as DNNModelPytorch's validation IC needs 50 a day."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import run_cli, tracking_uri
from helpers.qlib_directory import qrun_workflow, write_qlib_directory

pytest.importorskip("torch", reason="the deep models need PyTorch: pip install 'qtrack[torch]'")
pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Qlib's benchmark kwargs (examples/benchmarks/GRU and MLP, Alpha360), smaller, with a seed as the issue asks.
GRU = {"class": "GRU", "module_path": "qlib.contrib.model.pytorch_gru",
       "kwargs": {"d_feat": 6, "hidden_size": 16, "num_layers": 1, "dropout": 0.0, "n_epochs": 3, "lr": 1e-3,
                  "early_stop": 20, "batch_size": 400, "metric": "loss", "loss": "mse", "GPU": 0, "seed": 7}}
MLP = {"class": "DNNModelPytorch", "module_path": "qlib.contrib.model.pytorch_nn",
       "kwargs": {"loss": "mse", "lr": 0.002, "optimizer": "adam", "max_steps": 40, "eval_steps": 10,
                  "batch_size": 512, "GPU": 0, "seed": 7, "pt_model_kwargs": {"input_dim": 360},
                  # qrun cannot build Qlib's default schedule on torch 2.13 (models/deep.py: DefaultScheduler)
                  "scheduler": None}}
COMPARED = ("IC", "ICIR", "Rank IC", "Rank ICIR")


def workflow(data: Path, uri: str, model: dict) -> dict:
    """Qlib's Alpha360 benchmark workflow (examples/benchmarks/GRU/workflow_config_gru_Alpha360.yaml)."""
    return qrun_workflow(FIXTURES / "workflow_config_gru_Alpha360.yaml", data, uri, model)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    from mlflow.tracking import MlflowClient

    # 60 stocks: DNNModelPytorch's validation IC (Qlib's ICLoss) skips days with fewer than 50
    qlib_dir = write_qlib_directory(tmp_path_factory.mktemp("qlib") / "qlib_tiny", stocks=60)
    work = tmp_path_factory.mktemp("deep-from-qrun")
    uri = tracking_uri(work)
    # One thread, as the same seed needs on a CPU, in both tools (torch's default reads OMP_NUM_THREADS).
    env = {"QTRACK_DATA_ROOT": str(work / "data"), "OMP_NUM_THREADS": "1"}
    found = {}
    for name, model in (("gru", GRU), ("mlp", MLP)):
        path = work / f"workflow_config_{name}_Alpha360.yaml"
        base = workflow(qlib_dir, uri, model)
        base["experiment_name"] = f"qrun_{name}"
        path.write_text(yaml.safe_dump(base, sort_keys=False))
        qrun = run_cli([str(path)], cwd=work, env=env, program="qrun")
        assert qrun.code == 0, qrun.stderr[-3000:]
        qtrack = run_cli(["train", "--from-qrun", str(path), f"mlflow.experiment_name=qtrack_{name}", "-q"],
                         cwd=work, env=env)
        assert qtrack.code == 0, qtrack.stderr[-3000:]
        client = MlflowClient(uri)
        found[name] = [client.search_runs([client.get_experiment_by_name(f"{tool}_{name}").experiment_id])[0]
                       for tool in ("qrun", "qtrack")]
    return uri, found


@pytest.mark.parametrize("model", ["gru", "mlp"])
def test_from_qrun_gives_qruns_ic_and_backtest_for_a_pytorch_model(runs, model: str) -> None:
    _, found = runs
    theirs, ours = found[model]
    backtest = sorted(k for k in theirs.data.metrics if k.startswith("1day."))
    assert "1day.excess_return_with_cost.annualized_return" in backtest
    for key in (*COMPARED, *backtest):
        assert abs(ours.data.metrics[key] - theirs.data.metrics[key]) <= 1e-6, (key, ours.data.metrics[key],
                                                                                 theirs.data.metrics[key])
    assert ours.data.tags["qtrack.device"] == "cpu"
    assert ours.data.params["model.device"] == "auto"  # the workflow's GPU: 0
