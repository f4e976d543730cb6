"""What every stage does around its work: check the tracking URI, make the run folder, keep the log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtrack import config, paths
from qtrack.config.schema import Settings
from qtrack.stages import outputs
from qtrack.tracking.store import check_tracking_uri, use_store

log = logging.getLogger("qtrack")


@dataclass
class StageContext:
    cfg: Settings
    run_dir: Path
    checked: Any = None  # what the stage's check returned (its own settings, parsed once)


@contextmanager
def stage(name: str, overrides: list[str], check: Callable[[Any], Any] | None = None) -> Iterator[StageContext]:
    """Compose and validate the stage's config (`check` validates the stage's own settings), make sure
    every folder it writes to can be written, check the tracking store, then open the run folder and log."""
    composed = config.compose(name, overrides)
    checked = check(composed.cfg) if check is not None else None
    paths.check_writable(paths.data_root(), "the data root")
    run_dir = outputs.make_run_dir(composed.run_dir)
    if _tracks(composed.cfg):
        check_tracking_uri(composed.cfg.mlflow.tracking_uri)
        use_store(composed.cfg.mlflow.tracking_uri)
    (run_dir / "config.yaml").write_text(config.to_yaml(composed.cfg))
    handler = outputs.attach_log_file(run_dir)
    try:
        yield StageContext(cfg=composed.cfg, run_dir=run_dir, checked=checked)
    except Exception:
        log.exception("%s failed", name)
        raise
    finally:
        outputs.detach_log_file(handler)


def _tracks(cfg: Settings) -> bool:
    """Whether the stage logs to MLflow (only `optimize --no-mlflow` does not)."""
    return cfg.optimize is None or cfg.optimize.mlflow
