"""Every secret-key word and every secret environment variable is masked, in every form qtrack writes."""

from __future__ import annotations

import pytest

from qtrack.config import redact

SECRET = "s3cr3t-value-42"
KEYS = ["password", "db.passwd", "db.pwd", "db.pass", "db.passphrase", "vendor.token", "vendor.secret",
        "vendor.key", "vendor.api_key", "vendor.api-key", "vendor.apikey", "vendor.private_key",
        "aws.access_key", "svc.credentials", "svc.credential", "svc.auth", "http.authorization"]
ENV = ["MLFLOW_TRACKING_PASSWORD", "DB_PASS", "PGPASSWORD", "VENDOR_APIKEY", "VENDOR_API_KEY", "GITHUB_TOKEN",
       "AWS_SECRET_ACCESS_KEY", "DB_PASSPHRASE", "SERVICE_CREDENTIALS", "PRIVATE_KEY"]
NOT_SECRET = ["seed_key", "model.seed_key", "model.num_leaves", "fit_keys", "bypass", "passenger", "monkey"]


@pytest.mark.parametrize("key", KEYS)
def test_secret_keys_are_masked_in_config_trees_and_overrides(key):
    head, _, last = key.rpartition(".")
    tree = {head: {last: SECRET}} if head else {last: SECRET}
    assert SECRET not in repr(redact.tree(tree))
    for arg in (f"{key}={SECRET}", f"+{key}={SECRET}", f"++{key}={SECRET}"):
        masked = redact.argv([arg])[0]
        assert SECRET not in masked and masked.endswith(f"={redact.MASK}")


@pytest.mark.parametrize("key", NOT_SECRET)
def test_other_keys_are_left_alone(key):
    assert not redact.is_secret_key(key)
    assert redact.argv([f"{key}=31"]) == [f"{key}=31"]


@pytest.mark.parametrize("name", ENV)
def test_values_of_secret_environment_variables_are_masked_anywhere_in_text(monkeypatch, name):
    monkeypatch.setenv(name, SECRET)
    assert redact.text(f"failed with {SECRET} in it") == f"failed with {redact.MASK} in it"
    assert SECRET not in repr(redact.tree({"run_name": f"x{SECRET}x"}))
    assert SECRET not in redact.argv([f"run_name={SECRET}"])[0]


def test_passwords_inside_uris_are_masked():
    assert redact.text("postgresql://bob:hunter22@db:5432/x") == "postgresql://bob:***@db:5432/x"


def test_the_best_command_and_the_trials_table_of_a_sweep_are_masked():
    from types import SimpleNamespace

    from qtrack.stages.optimize.report import _masked_cell, best_command

    trial = SimpleNamespace(user_attrs={"train_overrides": [f"+vendor.apikey={SECRET}", "model.num_leaves=31"]})
    command = best_command(trial)
    assert SECRET not in command and f"+vendor.apikey={redact.MASK}" in command and "model.num_leaves=31" in command
    assert SECRET not in repr(_masked_cell([f"+db.passphrase={SECRET}"]))
