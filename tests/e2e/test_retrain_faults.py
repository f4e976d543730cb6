"""A scheduled retrain is all or nothing: an interrupt at any step of the promotion leaves either the old
champion, with no version claiming 'promoted', or the new champion; and the next retrain does the right thing.
A champion that can't be scored, and names the registry's readers can't take, are found before any training."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, WITH_MODEL, run_cli, tracking_uri
from qtrack.data import synthetic
from qtrack.errors import Terminated

pytestmark = pytest.mark.slow

RETRAIN = [*TINY, WITH_MODEL, "model=linear", "mlflow.plots=false", "retrain.train_days=150", "retrain.valid_days=40",
           "retrain.holdout_days=40", "retrain.model_name=faults", "retrain.min_improvement=-100"]
DECISION = "qtrack.retrain.decision"


def set_days(root: Path, days: int) -> None:
    """The market with `days` days: each step of the test is a new day of data, so a retrain is due."""
    synthetic.ensure(root / "data" / "synthetic", synthetic.SyntheticSpec(symbols=30, days=days, signal=0.3))


def versions(client: MlflowClient) -> dict[str, dict]:
    return {str(v.version): v.tags for v in client.search_model_versions("name = 'faults'")}


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias("faults", "champion").version)


@pytest.fixture
def retrain_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from qtrack.stages.retrain import run_retrain

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QTRACK_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(tmp_path))  # restored afterwards; the stage sets it
    days = [300]
    set_days(tmp_path, days[0])

    def retrain(*extra: str, new_day: bool = False):
        if new_day:
            days[0] += 5
            set_days(tmp_path, days[0])
        days_overrides = [f"dataset.synthetic.days={days[0]}"]
        return run_retrain([*RETRAIN, *days_overrides, *extra], quiet=True)

    return retrain, MlflowClient(tracking_uri(tmp_path))


@pytest.mark.parametrize(("boundary", "moved"), [
    ("after register", False), ("before the alias move", False), ("after the alias move", True),
    ("after the decision", True)])
def test_an_interrupt_at_every_step_of_a_promotion(retrain_here, monkeypatch, boundary, moved):
    from qtrack.stages import retrain as stage

    retrain, client = retrain_here
    assert retrain().decision == "promoted"
    old = champion(client)

    name, before = {"after register": ("register_challenger", False), "before the alias move": ("move_alias", True),
                    "after the alias move": ("move_alias", False),
                    "after the decision": ("write_decision", False)}[boundary]
    original = getattr(stage, name)

    def interrupted(*args, **kwargs):
        if not before:
            original(*args, **kwargs)
        raise Terminated()  # as the SIGTERM handler raises it

    monkeypatch.setattr(stage, name, interrupted)
    with pytest.raises(Terminated):
        retrain(new_day=True)
    monkeypatch.setattr(stage, name, original)

    tags = versions(client)
    newest = max(tags, key=int)
    assert newest != old, "the challenger was registered"
    if moved:
        assert champion(client) == newest
    else:
        assert champion(client) == old and tags[newest].get(DECISION) is None, "no half promotion"
    assert all(tag.get(DECISION) != "promoted" or version in (old, champion(client)) for version, tag in tags.items())

    following = retrain()  # the next scheduled run, on the same data
    if moved:
        assert following.decision == "skipped" and f"version {newest} (the champion)" in following.reason
    else:
        assert following.decision == "promoted", "the cut promotion is made again, not skipped"
        assert champion(client) == following.challenger_version != old
        assert versions(client)[following.challenger_version][DECISION] == "promoted"


def test_a_champion_whose_run_was_purged_is_replaced_with_the_reason(retrain_here):
    import subprocess
    import sys

    retrain, client = retrain_here
    first = retrain()
    client.delete_run(first.challenger_run_id)  # what someone's `mlflow gc` does to a champion's run
    purged = subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", client.tracking_uri,
                             "--run-ids", first.challenger_run_id], capture_output=True, text=True, check=False)
    assert purged.returncode == 0, purged.stderr[-2000:]
    second = retrain("retrain.min_improvement=100", new_day=True)  # nothing beats by 100: only the reason promotes
    assert second.decision == "promoted"
    assert second.reason.startswith(f"the champion (version {first.challenger_version}) can't be scored")
    assert champion(client) == second.challenger_version


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "it's"], "model name 'it's' can't be registered"),
    (["--name", "a/b"], "model name 'a/b' can't be registered"),
    (["--name", ""], "model name '' can't be registered"),
    (["--name", "x y", "--alias", "my champ"], "alias 'my champ' is not an alias"),
    (["--name", "fine", "--alias", "v3"], "alias 'v3' is reserved"),
])
def test_register_refuses_names_and_aliases_before_creating_anything(tmp_path, args, message):
    result = run_cli(["register", "0" * 32, *args], cwd=tmp_path)
    assert result.code == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlruns").exists(), "checked before the store is even opened"


def test_a_retrain_model_name_the_registry_cant_take_fails_before_training(tmp_path):
    result = run_cli(["retrain", *RETRAIN, "retrain.model_name=a/b"], cwd=tmp_path,
                     env={"QTRACK_DATA_ROOT": str(tmp_path / "data")})
    assert result.code == 2 and "retrain.model_name: model name 'a/b' can't be registered" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlruns").exists()


def test_readers_survive_a_model_name_with_a_quote_that_another_tool_registered(tmp_path):
    from qtrack.dashboard import sources

    client = MlflowClient(tracking_uri(tmp_path))
    client.create_registered_model("it's")
    client.create_model_version("it's", source=(tmp_path / "model").as_uri())
    listed = run_cli(["models", "list"], cwd=tmp_path)
    assert listed.code == 0, listed.stderr
    assert "it's" in listed.stdout
    (model,) = sources.registry(tracking_uri(tmp_path))
    assert model["name"] == "it's" and [v["version"] for v in model["versions"]] == ["1"]
