"""The epoch hooks on Qlib's own PyTorch models (qtrack.models.deep), on a real Qlib DatasetH over a small frame:
the step metrics, the best epoch's weights, the pruner, the device choice, determinism and pickling."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch", reason="the deep models need PyTorch: pip install 'qtrack[torch]'")

from qtrack import config, qlib_compat  # noqa: E402
from qtrack.errors import QtrackError  # noqa: E402
from qtrack.models import torch_runtime  # noqa: E402
from qtrack.models.deep import deep_class  # noqa: E402
from qtrack.models.pruning import BoostingPruning  # noqa: E402

GRU_SMALL = {"d_feat": 6, "hidden_size": 4, "num_layers": 1, "batch_size": 300, "seed": 1, "GPU": -1}
MLP_SMALL = {"max_steps": 30, "eval_steps": 10, "batch_size": 256, "seed": 1, "GPU": -1,
             "pt_model_kwargs": {"input_dim": 360, "layers": (8,)}}


@pytest.fixture(scope="module")
def dataset():
    """60 stocks x 60 days of 360 features (Alpha360's shape) with a label that depends on six of them."""
    from qlib.data.dataset import DatasetH
    from qlib.data.dataset.handler import DataHandlerLP
    from qlib.data.dataset.loader import StaticDataLoader

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2020-01-01", periods=60)
    index = pd.MultiIndex.from_product([days, [f"S{i:02d}" for i in range(60)]], names=["datetime", "instrument"])
    features = rng.normal(size=(len(index), 360)).astype("float32")
    label = features[:, :6].sum(axis=1) * 0.3 + rng.normal(size=len(index))
    columns = pd.MultiIndex.from_tuples([*(("feature", f"F{i}") for i in range(360)), ("label", "LABEL0")])
    frame = pd.DataFrame(np.column_stack([features, label]), index=index, columns=columns)
    handler = DataHandlerLP(data_loader=StaticDataLoader(frame))
    return DatasetH(handler, segments={"train": (days[0], days[39]), "valid": (days[40], days[49]),
                                       "test": (days[50], days[59])})


def fit(name: str, dataset, kwargs: dict, callbacks: list | None = None):
    model = deep_class(name)(**kwargs)
    model.fit(dataset, epoch_callbacks=callbacks or [])
    return model


def test_each_epoch_reaches_the_callbacks_while_the_model_trains(dataset) -> None:
    seen, results = [], {}
    model = deep_class("GRU")(n_epochs=3, **GRU_SMALL)
    model.fit(dataset, evals_result=results, epoch_callbacks=[lambda epoch, metrics: seen.append((epoch, metrics))])
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    for _, metrics in seen:
        assert set(metrics) == {"loss.train", "loss.valid", "metric.train", "metric.valid"}
        assert metrics["metric.valid"] == pytest.approx(-metrics["loss.valid"])  # GRU's metric "": minus the loss
    assert results["valid"] == pytest.approx([metrics["metric.valid"] for _, metrics in seen])  # Qlib's own lists
    assert "test_epoch" not in model.__dict__


def test_the_model_that_predicts_holds_the_best_epochs_weights(dataset) -> None:
    snapshots, scores = {}, {}
    model = deep_class("GRU")(n_epochs=6, lr=0.05, **GRU_SMALL)

    def keep(epoch: int, metrics: dict) -> None:
        snapshots[epoch] = copy.deepcopy(model.network.state_dict())
        scores[epoch] = metrics["metric.valid"]

    model.fit(dataset, epoch_callbacks=[keep])
    assert model.best_epoch == max(scores, key=lambda epoch: (scores[epoch], -epoch))  # the first best
    for name, weights in model.network.state_dict().items():
        assert torch.equal(weights, snapshots[model.best_epoch][name]), name


def test_an_mlps_epochs_are_its_evaluation_points(dataset) -> None:
    seen = []
    model = fit("DNNModelPytorch", dataset, MLP_SMALL, [lambda epoch, metrics: seen.append((epoch, metrics))])
    assert [epoch for epoch, _ in seen] == [10, 20, 30]
    assert all({"loss.train", "loss.valid", "metric.valid"} <= set(metrics) for _, metrics in seen)
    losses = {epoch: metrics["loss.valid"] for epoch, metrics in seen}
    assert model.best_epoch == model.best_step == min(losses, key=lambda epoch: (losses[epoch], epoch))


def test_an_mlp_has_qlibs_learning_rate_schedule_on_torch_2_13(dataset) -> None:
    """pyqlib 0.9.7 compares version strings and passes torch 2.13 the removed `verbose` argument."""
    model = deep_class("DNNModelPytorch")(**MLP_SMALL)
    scheduler = model.scheduler
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (scheduler.mode, scheduler.factor, scheduler.patience, scheduler.threshold) == ("min", 0.5, 10, 0.0001)
    assert scheduler.min_lrs == [0.00001] and scheduler.optimizer is model.train_optimizer
    assert deep_class("DNNModelPytorch")(scheduler="none", **MLP_SMALL).scheduler is None


def test_a_pruned_trial_stops_within_one_epoch(dataset) -> None:
    import optuna

    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.ThresholdPruner(upper=0.5))
    trial = study.ask()
    pruning = BoostingPruning(trial, {"name": "gru"}, maximize=False)
    seen = []
    spec = type("Spec", (), {"flavor": "pytorch"})()
    with pytest.raises(optuna.TrialPruned, match="pruned at iteration 0"):
        fit("GRU", dataset, {**GRU_SMALL, "n_epochs": 5},
            [lambda epoch, metrics: seen.append((epoch, metrics)), *pruning.fit_kwargs(spec)["epoch_callbacks"]])
    assert [epoch for epoch, _ in seen] == [0]  # logged, then stopped before a second epoch
    assert study.trials[0].intermediate_values == {0: seen[0][1]["loss.valid"]}  # above 0.5: pruned


def test_the_same_seed_gives_the_same_predictions_on_a_cpu(dataset) -> None:
    first = fit("GRU", dataset, {**GRU_SMALL, "n_epochs": 2}).predict(dataset, "test")
    second = fit("GRU", dataset, {**GRU_SMALL, "n_epochs": 2}).predict(dataset, "test")
    other = fit("GRU", dataset, {**GRU_SMALL, "n_epochs": 2, "seed": 2}).predict(dataset, "test")
    pd.testing.assert_series_equal(first, second)
    assert not np.allclose(first.to_numpy(), other.to_numpy())


def test_a_fitted_model_pickles_as_qtracks_class_and_predicts_the_same(dataset) -> None:
    model = fit("GRU", dataset, {**GRU_SMALL, "n_epochs": 1})
    loaded = pickle.loads(pickle.dumps(model))
    assert type(loaded).__module__ == "qtrack.models.deep" and type(loaded).__name__ == "GRU"
    pd.testing.assert_series_equal(loaded.predict(dataset, "test"), model.predict(dataset, "test"))


def test_qlibs_recorder_calls_reach_the_fit_of_their_own_thread_only() -> None:
    import qlib.contrib.model.pytorch_nn as qlib_module
    from qlib.workflow import R

    deep_class("DNNModelPytorch")
    assert qlib_module.R.qlib_recorder is R  # outside a fit, Qlib's recorder as before

    class Sink:
        def __init__(self) -> None:
            self.logged: list = []

        def log_metrics(self, step=None, **metrics) -> None:
            self.logged.append((step, metrics))

    mine, elsewhere = Sink(), []
    with qlib_compat.recording_to(mine):
        qlib_module.R.log_metrics(step=3, val_loss=0.5)
        thread = threading.Thread(target=lambda: elsewhere.append(qlib_compat._SINKS.__dict__.get("sink")))
        thread.start()
        thread.join()
    assert mine.logged == [(3, {"val_loss": 0.5})] and elsewhere == [None]


def test_the_device_choice() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU-only answers do not apply")
    assert torch_runtime.qlib_gpu("cpu") == -1
    assert torch_runtime.qlib_gpu("auto") == -1  # no GPU: the CPU
    for device in ("cuda", "cuda:1"):
        with pytest.raises(QtrackError, match=f"model.device={device}, but PyTorch .* sees no GPU"):
            torch_runtime.qlib_gpu(device)
    with pytest.raises(QtrackError, match="model.device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        config.compose("train", ["model=gru", "model.device=gpu"])
    with pytest.raises(QtrackError, match="model.num_threads must be at least 1"):
        config.compose("train", ["model=gru", "model.num_threads=0"])


def test_a_deep_model_without_pytorch_is_one_line_and_exit_2(tmp_path) -> None:
    code = ("import sys; sys.modules['torch'] = None; sys.argv = ['qtrack', 'train', 'model=gru']; "
            "from qtrack.cli import entry; entry()")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "model=gru needs PyTorch, which is not installed: pip install 'qtrack[torch]'" in lines[0]


def test_num_threads_is_qtracks_for_a_network_and_lightgbms_own_for_lightgbm() -> None:
    from qtrack.models.specs import model_spec

    lightgbm = model_spec(config.to_container(config.compose("train", ["+model.num_threads=3"]).cfg.model), 0)
    assert lightgbm.init_kwargs["num_threads"] == 3
    gru = model_spec(config.to_container(config.compose("train", ["model=gru", "model.num_threads=3"]).cfg.model), 0)
    assert "num_threads" not in gru.init_kwargs and "device" not in gru.init_kwargs and gru.num_threads == 3
