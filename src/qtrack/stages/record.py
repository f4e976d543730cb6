"""The only code that writes a model's run: its inputs before the fit (`record_inputs`), and an Evaluation after
it (`record`): Qlib's records' objects and metrics, qtrack's metrics and curves, the target, model and pipeline,
plots, Qlib's report page, the MLflow model, the times and the summary."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qtrack import config
from qtrack.config.schema import Settings
from qtrack.console import Observer, timed
from qtrack.data.prepare import PreparedData
from qtrack.evaluation import plots, qlib_reports
from qtrack.runtime import log_uncommitted_code
from qtrack.stages.evaluate import Evaluation
from qtrack.tracking import inputs, names
from qtrack.tracking import params as tracking
from qtrack.tracking.recorder import CachingRecorder, recorder_for
from qtrack.tracking.runs import ActiveRun

log = logging.getLogger("qtrack")


def record_inputs(cfg: Settings, data: PreparedData, run: ActiveRun) -> None:
    """What a run starts from, logged before the fit so that a failed run shows it too: params (with the
    resolved segments), config.yaml, the segments as MLflow datasets, and uncommitted code."""
    client, run_id = run.client, run.run_id
    params = tracking.flatten(config.to_container(cfg))
    params.update({f"segments.{name}": ",".join(span) for name, span in data.segments.as_dict().items()})
    truncated = tracking.log_params(client, run_id, params)
    if truncated:
        client.set_tag(run_id, names.TRUNCATED_PARAMS, ",".join(truncated))
    client.log_text(run_id, config.to_yaml(cfg), "config.yaml")
    inputs.log_segment_inputs(client, run_id, cfg, data)
    log_uncommitted_code(client, run_id)


def record(evaluation: Evaluation, run: ActiveRun, observer: Observer,
           seconds: dict[str, float] | None = None) -> dict[str, float]:
    """Write `evaluation` to `run`. A model's evaluation also logs its extras, shown as the `logging` step, and
    the times: `seconds` (the data's, when the run prepared it) then the evaluation's and the logging's.
    Returns those times."""
    recorder = recorder_for(run)
    if evaluation.model is None:
        _record_qlib(evaluation, recorder)
        return dict(evaluation.seconds)
    times = {**(seconds or {}), **evaluation.seconds}
    with timed(observer, times, "logging", "logging metrics, plots and model"), \
            _report_aside(evaluation, run.run_id) as log_report:
        _record_fit(evaluation, run)
        _record_qlib(evaluation, recorder)
        _record_extras(evaluation, run, recorder)
        log_report(recorder)
    tracking.log_metrics(run.client, run.run_id, {f"time.{k}_seconds": v for k, v in times.items()})
    return times


@contextmanager
def _report_aside(evaluation: Evaluation, run_id: str) -> Iterator[Callable[[CachingRecorder], None]]:
    """Qlib's report page (when the run logs it), drawn by the evaluation's worker while the rest is logged; the
    function yielded logs it."""
    worker = evaluation.report
    if worker is None:
        yield lambda recorder: None
        return
    title = f"Qlib report: {evaluation.spec.name}, run {run_id}"
    try:
        worker.start()  # where it has not started with the records
        worker.draw(evaluation.recorder.load_object, title)
        yield lambda recorder: _log_report(evaluation, recorder, title, worker)
    finally:
        worker.close()


def _record_fit(evaluation: Evaluation, run: ActiveRun) -> None:
    """The training curves; for a network, its best epoch, weights and device."""
    client, run_id = run.client, run.run_id
    tracking.log_curves(client, run_id, evaluation.curves)
    if evaluation.spec.flavor == "pytorch":
        from qtrack.models import torch_runtime

        model = evaluation.model
        for name, value in torch_runtime.device_tags(model).items():
            client.set_tag(run_id, name, value)
        if model.best_epoch is not None:
            tracking.log_metrics(client, run_id, {"best_epoch": model.best_epoch})
        log_bytes(client, run_id, torch_runtime.weights_bytes(model.network), "best_epoch.pt")


def _record_qlib(evaluation: Evaluation, recorder: CachingRecorder) -> None:
    """Qlib's records as Qlib writes them: each save one upload, the metrics as logged (NaN included)."""
    for folder, objects in evaluation.recorder.saves:
        recorder.save_objects(artifact_path=folder, **objects)
    recorder.log_metrics(**evaluation.recorder.metrics)


def _record_extras(evaluation: Evaluation, run: ActiveRun, recorder: CachingRecorder) -> None:
    client, run_id, cfg = run.client, run.run_id, evaluation.cfg
    if evaluation.pipeline:
        log_bytes(client, run_id, evaluation.pipeline, "dataset.pkl")
    tracking.log_metrics(client, run_id, evaluation.metrics)  # validation, and the test segment's regression
    if evaluation.constant_predictions:
        client.set_tag(run_id, names.CONSTANT_PREDICTIONS, "true")
    if cfg.mlflow.plots:
        _log_plots(recorder)
    if evaluation.example is not None:
        from qtrack.models import specs

        logged = specs.log_flavor_model(evaluation.spec, evaluation.model, evaluation.example, recorder,
                                        run.tracking_uri)
        client.set_tag(run_id, names.MODEL_URI, logged.model_uri)


def log_bytes(client: Any, run_id: str, content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        client.log_artifact(run_id, str(path))


def _log_report(evaluation: Evaluation, recorder: CachingRecorder, title: str, worker: Any) -> None:
    """Qlib's report page under reports/: the worker's, or drawn here when the worker could not give it."""
    page = worker.page()
    if page is None:
        log.warning("the report worker gave no page (%s); drawing it in the run's process", worker.error())
    with tempfile.TemporaryDirectory() as tmp:
        if page is None:
            page = qlib_reports.draw_report(evaluation.recorder.load_object, title,
                                            Path(tmp) / qlib_reports.REPORT_NAME)
        recorder.client.log_artifact(recorder.id, str(page), qlib_reports.ARTIFACT_DIR)


def _log_plots(recorder: Any) -> None:
    report = recorder.load_object("portfolio_analysis/report_normal_1day.pkl")
    ic = recorder.load_object("sig_analysis/ic.pkl")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.cumulative_return_plot(report, folder / "cumulative_return.png")
        plots.daily_ic_plot(ic, folder / "daily_ic.png")
        recorder.client.log_artifacts(recorder.id, str(folder), "plots")


def write_summary(summary: dict, run: ActiveRun, output_dir: Path | None) -> None:
    text = json.dumps(summary, indent=2, sort_keys=True)
    run.client.log_text(run.run_id, text, "summary.json")
    if output_dir is not None:
        (output_dir / "summary.json").write_text(text)

