from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from qtrack.config.store_uri import mask_uri
from qtrack.evaluation import metrics
from qtrack.tracking import params as tracking
from qtrack.tracking.store import check_tracking_uri


def test_regression_metrics_match_hand_computation():
    index = pd.MultiIndex.from_product([pd.date_range("2020-01-01", periods=2), ["A", "B"]],
                                       names=["datetime", "instrument"])
    pred = pd.Series([0.5, -1.0, 2.0, 0.0], index=index)
    label = pd.Series([1.0, -2.0, -1.0, 0.0], index=index)
    got = metrics.regression_metrics(pred, label)
    errors = np.array([-0.5, 1.0, 3.0, 0.0])
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)))
    assert got["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert got["mape"] == pytest.approx(4.5 / 4.0)
    assert got["directional_accuracy"] == pytest.approx(2 / 3)  # the zero label is ignored


def test_mape_is_not_blown_up_by_near_zero_labels():
    index = pd.MultiIndex.from_product([pd.date_range("2020-01-01", periods=1), list("ABCD")],
                                       names=["datetime", "instrument"])
    label = pd.Series([1e-12, 1.0, -1.0, 2.0], index=index)
    got = metrics.regression_metrics(label * 0 + 0.1, label)
    assert got["mape"] < 2.0


def test_flatten_makes_dotted_keys_and_json_values():
    flat = tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": "x"})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "d": "null", "e": "x"}


def test_params_beyond_one_batch_and_long_values_are_logged_visibly(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    check_tracking_uri(uri)
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("limits"))
    params = {f"p{i:03d}": str(i) for i in range(250)}
    params["long"] = "x" * 3000
    truncated = tracking.log_params(client, run.info.run_id, params)
    logged = client.get_run(run.info.run_id).data.params
    assert truncated == ["long"]
    assert len(logged) == 251
    assert logged["p249"] == "249"
    assert len(logged["long"]) == tracking.PARAM_VALUE_LIMIT
    assert logged["long"].endswith("[truncated 3000 chars; see config.yaml]")


def test_credentials_are_masked():
    assert mask_uri("http://alice:s3cret@host:5000/x") == "http://alice:***@host:5000/x"
    assert mask_uri("postgresql://u:p@127.0.0.1/db") == "postgresql://u:***@127.0.0.1/db"
    assert mask_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


@pytest.mark.parametrize(("message", "described"), [
    ('connection to server at "127.0.0.1", port 56403 failed: Connection refused', "cannot be reached"),
    ("could not connect to postgresql://postgres@127.0.0.1:40113/optuna: Connection refused", "cannot be reached"),
    ("port 403 failed: Connection refused", "cannot be reached"),
    ("API request to endpoint /api/2.0/mlflow/experiments/search failed with error code 403 != 200",
     "refused the credentials"),
    ("Response: 401 Unauthorized", "refused the credentials"),
    ("PERMISSION_DENIED: no access", "refused the credentials"),
])
def test_a_port_with_401_or_403_in_it_is_not_a_refused_password(message, described):
    """A random port such as 56403 once made an unreachable PostgreSQL read as refused credentials."""
    from qtrack.tracking.store import _describe

    assert _describe(RuntimeError(message)).startswith(described)
