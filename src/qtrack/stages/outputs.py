"""The run folder: outputs/<date>/<time>/ (or hydra.run.dir), with the resolved config and the log."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from qtrack.config.redact import RedactingFilter
from qtrack.paths import check_writable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def make_run_dir(run_dir: str | None, now: datetime | None = None) -> Path:
    if run_dir:
        path = Path(run_dir).expanduser()
    else:
        now = now or datetime.now()
        path = Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")[:12]
    path = path.resolve()
    check_writable(path, "the run folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def attach_log_file(run_dir: Path) -> logging.Handler:
    """Everything at INFO and above (qtrack's and the libraries') goes to <run_dir>/run.log."""
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    logging.getLogger("qtrack").setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
