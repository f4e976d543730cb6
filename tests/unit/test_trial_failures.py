"""A trial that fails before its run opens (sampling its parameters, deriving its config) still gets its
FAILED child run with the error, as every other failed trial does."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
from mlflow.tracking import MlflowClient

from qtrack import config
from qtrack.stages.optimize.objective import Objective
from qtrack.stages.optimize.settings import settings_from
from qtrack.tracking.runs import client_for, experiment_id_for


def test_a_trial_that_fails_while_sampling_has_its_failed_child_run(workspace):
    cfg = config.compose("optimize", ["model=linear"]).cfg
    settings = settings_from(cfg)
    client = client_for(cfg.mlflow.tracking_uri)
    experiment = experiment_id_for(client, cfg.mlflow.experiment_name)
    parent = client.create_run(experiment, run_name="optimize-parent").info.run_id
    specs = [SimpleNamespace(name="alpha", type="categorical", choices=(0.1, 1.0))]
    study = optuna.create_study(direction="maximize")
    earlier = study.ask()  # the study sampled alpha as a float before
    earlier.suggest_float("alpha", 0.0, 1.0)
    study.tell(earlier, 0.1)
    objective = Objective(settings, cfg, specs, [], SimpleNamespace(source=SimpleNamespace(fingerprint="f")),
                          lambda: parent)
    study.optimize(objective, n_trials=1, catch=(Exception,))
    failed = study.get_trials()[-1]
    assert failed.state.name == "FAIL"
    run = MlflowClient(cfg.mlflow.tracking_uri).get_run(failed.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlflow.parentRunId"] == parent
    assert "distribution" in run.data.tags["qtrack.error"] and run.data.tags["optuna.trial_number"] == "1"
