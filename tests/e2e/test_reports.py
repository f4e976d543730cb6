"""Qlib's own report graphs: plotly's pin keeps `qlib.contrib.report` importable, and every train run
logs the four graphs, drawn from its own records, as one self-contained page under reports/."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import QLIB_REPORT, TINY, plotly_values, run_cli, tracking_uri

pytestmark = pytest.mark.slow


def test_qlibs_report_module_imports_with_the_pinned_plotly():
    import plotly
    from qlib.contrib.report import analysis_model, analysis_position  # fails on plotly 7 (create_distplot)

    assert int(plotly.__version__.split(".")[0]) < 7
    assert callable(analysis_position.report_graph) and callable(analysis_model.model_performance_graph)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("reports")
    result = run_cli(["train", *TINY, QLIB_REPORT, "model.num_boost_round=30"], cwd=folder,
                     env={"QTRACK_DATA_ROOT": str(shared_data_root)})
    assert result.code == 0, result.stderr[-2000:]
    client = MlflowClient(tracking_uri(folder))
    run = client.search_runs([client.get_experiment_by_name("synthetic_alpha158").experiment_id])[0]
    return folder, run.info.run_id


def traces(page: str) -> list[dict]:
    """Every trace of every figure on a page written by plotly's to_html."""
    found = []
    for call in re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, flags=re.S):
        found.extend(json.loads(call))
    return found


def test_every_run_logs_the_four_qlib_graphs_as_one_offline_page(trained):
    folder, run_id = trained
    client = MlflowClient(tracking_uri(folder))
    assert [a.path for a in client.list_artifacts(run_id, "reports")] == ["reports/qlib_report.html"]
    page = Path(client.download_artifacts(run_id, "reports/qlib_report.html", str(folder / "dl"))).read_text()
    for name in ("analysis_position.report_graph", "analysis_position.risk_analysis_graph",
                 "analysis_model.model_performance_graph", "analysis_position.score_ic_graph"):
        assert f"<h2>{name}" in page
    assert not re.search(r"<script[^>]*\bsrc=", page) and len(page) > 3_000_000, \
        "plotly.js is inlined: the page opens offline"

    ic = pd.read_pickle(client.download_artifacts(run_id, "sig_analysis/ic.pkl", str(folder / "dl")))
    drawn = next(trace for trace in traces(page) if trace.get("name") == "ic")
    assert plotly_values(drawn["y"]) == pytest.approx(ic.tolist(), abs=1e-9), \
        "Qlib's score IC graph, drawn from pred and label, agrees with the run's own IC record"


def test_a_graph_qlib_cannot_draw_is_named_on_the_page_and_the_others_stay(tmp_path):
    from qtrack.evaluation.qlib_reports import _drawn, write_report

    def refuses():
        raise ValueError("df is empty.")

    sections = [("analysis_model.model_performance_graph (pred_ic)", _drawn(refuses)),
                ("analysis_position.score_ic_graph", _drawn(lambda: []))]
    page = write_report(sections, "run x", tmp_path / "page.html").read_text()
    assert "Qlib could not draw this graph for this run: ValueError: df is empty." in page
    assert "<h2>analysis_position.score_ic_graph</h2>" in page


def run_objects(folder: Path, run_id: str):
    """A `load_object` over the run's logged records, as the run's own recorder reads them."""
    client = MlflowClient(tracking_uri(folder))
    return lambda name: pd.read_pickle(client.download_artifacts(run_id, name, str(folder / "objects")))


def sections(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


def test_the_page_the_worker_logged_is_the_page_the_run_draws_itself(trained, tmp_path):
    from qtrack.evaluation.qlib_reports import draw_report

    folder, run_id = trained
    client = MlflowClient(tracking_uri(folder))
    logged = Path(client.download_artifacts(run_id, "reports/qlib_report.html", str(tmp_path))).read_text()
    title = re.search(r"<title>(.*?)</title>", logged).group(1)
    drawn = draw_report(run_objects(folder, run_id), title, tmp_path / "here.html").read_text()
    assert sections(logged) == sections(drawn) and len(sections(drawn)) == 6
    assert traces(logged) == traces(drawn) and len(traces(drawn)) > 10
    run_logs = list(folder.glob("outputs/**/run.log"))
    assert run_logs and not any("report worker" in log.read_text() for log in run_logs), "the worker drew it"


def test_a_worker_draws_one_page_and_leaves_no_process_or_file(trained):
    import os

    from qtrack.evaluation.report_worker import ReportWorker

    folder, run_id = trained
    worker = ReportWorker()
    worker.start()
    worker.draw(run_objects(folder, run_id), "a page")
    page = worker.page()
    assert page is not None and sections(page.read_text())[0] == "analysis_position.report_graph"
    worker.close()
    assert not worker.folder.exists()
    with pytest.raises(ChildProcessError):
        os.waitpid(worker.pid, os.WNOHANG)  # reaped: no zombie left


def test_a_worker_that_fails_says_why_and_one_ended_early_is_reaped():
    import os

    from qtrack.evaluation.report_worker import ReportWorker

    failing = ReportWorker()
    failing.start()
    failing.draw(lambda name: None, "no records")  # nothing Qlib can draw from
    assert failing.page() is None and failing.code == 1
    assert "Error" in failing.error()
    failing.close()

    interrupted = ReportWorker()
    interrupted.start()
    interrupted.close()  # a run that ends (or is killed) before its records: the worker goes with it
    assert not interrupted.folder.exists() and interrupted.code is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(interrupted.pid, os.WNOHANG)


def test_a_worker_whose_run_process_ends_before_its_records_exits_by_itself():
    """The worker waits on a pipe from the run: when the run's process is gone (killed, or ended without
    records), the pipe's end reaches the worker, which removes its folder and exits instead of waiting for ever."""
    import subprocess
    import sys

    code = ("import os\n"
            "from qtrack.evaluation.report_worker import ReportWorker\n"
            "worker = ReportWorker()\n"
            "worker.start()\n"
            "print(worker.pid, worker.folder, flush=True)\n"
            "os._exit(0)\n")  # gone at once, as a killed run is: no close()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    pid, folder = done.stdout.split()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _alive(int(pid)):
        time.sleep(0.1)
    assert not _alive(int(pid)), "the worker outlived its run"
    assert not Path(folder).exists()


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_no_worker_where_memory_is_short_and_the_reason_is_given():
    from qtrack.evaluation.report_worker import ReportWorker

    short = ReportWorker(min_available=1 << 60)  # more than any machine has
    short.start()
    short.draw(lambda name: None, "a page")  # nothing to hand over: the run draws the page itself
    assert short.pid is None and short.page() is None
    assert "MiB of memory available" in short.error()
    short.close()
    assert not short.folder.exists()


def test_the_worker_starts_with_the_records_only_where_the_frames_come_from_the_cache(tmp_path, monkeypatch):
    """Started as the records begin, it imports beside them; but a run that built its frames is at its peak then,
    and a fork would add to it (490 symbols: 1.55 to 1.83 GB), so there it starts at the logging step."""
    from qtrack.stages import runner
    from qtrack.stages.train import run_train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QTRACK_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    started, real_evaluate = [], runner.evaluate

    def evaluate(cfg, data, *args, **kwargs):
        evaluation = real_evaluate(cfg, data, *args, **kwargs)  # the records are done; the logging is next
        started.append((data.cache_status, evaluation.report.pid is not None))
        return evaluation

    monkeypatch.setattr(runner, "evaluate", evaluate)
    client = MlflowClient(tracking_uri(tmp_path))
    for _ in range(2):
        result = run_train([*TINY, QLIB_REPORT, "model.num_boost_round=30"], quiet=True)
        logged = [a.path for a in client.list_artifacts(result.run_id, "reports")]
        assert logged == ["reports/qlib_report.html"]
    assert [status for status, _ in started] == ["miss", "hit"]
    assert started == [("miss", False), ("hit", True)]
