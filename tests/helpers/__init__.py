"""What the tests share besides fixtures: the tiny market's overrides, the real CLI in a subprocess,
the S&P sample's location and skips that say why."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from helpers.forked_cli import run_forked

# A tiny market with a strong planted signal: a few dozen symbols and a few hundred days.
TINY = [
    "dataset.synthetic.symbols=30",
    "dataset.synthetic.days=300",
    "dataset.synthetic.signal=0.3",
    "backtest.topk=10",
    "backtest.n_drop=2",
    NO_QLIB_REPORT := "mlflow.qlib_report=false",  # 4 s a process; test_reports and test_dashboard turn it on
    # MLflow's flavour of the model (2-3 s a train: skops and the environment files); the tests that register,
    # predict, retrain or look at the LoggedModel turn it on.
    "mlflow.log_model=false",
    # The run's PNG plots (matplotlib: 0.6-1.2 s a train); the tests that look for them turn them on.
    "mlflow.plots=false",
]
QLIB_REPORT = "mlflow.qlib_report=true"
WITH_MODEL = "mlflow.log_model=true"
WITH_PLOTS = "mlflow.plots=true"
FAST_MODEL = {
    "lightgbm": ["model.num_boost_round=100"],
    "catboost": ["model.num_boost_round=80"],
    "xgboost": ["model.num_boost_round=60"],
    "linear": [],
}
# Qlib's PyTorch models, small enough for the tiny market: one thread each (two xdist workers share 2 cores,
# and torch's threads spin-wait on a busy core: a GRU forward took 3 s with 2 threads, 0.3 s with 1).
FAST_DEEP = {
    "gru": ["model.n_epochs=2", "model.hidden_size=8", "model.num_layers=1", "model.batch_size=400",
            "model.num_threads=1"],
    "gru_ts": ["model.n_epochs=2", "model.hidden_size=8", "model.num_layers=1", "model.batch_size=200",
               "model.num_threads=1"],
    "mlp": ["model.max_steps=30", "model.eval_steps=10", "model.batch_size=512", "model.num_threads=1"],
}


# Read by NumPy's BLAS, numba or torch when they are imported: a forked child would not see them.
IMPORT_TIME_ENV = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                   "NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT"}


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str



def cli_command(args: list[str], program: str = "qtrack") -> list[str]:
    """The real console script (`qtrack` or `run_optimization`) of this environment."""
    return [str(Path(sys.executable).parent / program), *args]


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    merged = {**os.environ, **(env or {})}
    if "MLFLOW_TRACKING_URI" not in (env or {}):
        merged.pop("MLFLOW_TRACKING_URI", None)  # tests use the default store in their own folder
    return merged


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600, program: str = "qtrack",
    fresh: bool = False,
) -> CliResult:
    """The real CLI in its own process: forked from a server with the heavy libraries imported (forked_cli), or
    the console script in a new interpreter, as a user runs it: with `fresh`, or when `env` sets a variable
    that a library reads as it is imported."""
    if not (fresh or IMPORT_TIME_ENV.intersection(env or {})):
        return CliResult(*run_forked(program, args, cwd, cli_env(env), timeout))
    done = subprocess.run(
        cli_command(args, program), cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sp500_sample"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_dir(), reason=f"the S&P 500 sample is not at {SAMPLE} (it sits beside the repository in CI)"
)


def cut_sample(destination: Path, last_day: str) -> Path:
    """The sample with every price file cut after `last_day` (files that are not price tables as they are)."""
    destination.mkdir(parents=True)
    for path in SAMPLE.glob("*.csv"):
        try:
            frame = pd.read_csv(path)
            frame = frame[pd.to_datetime(frame["timestamp"]) <= last_day]
        except (KeyError, ValueError, pd.errors.ParserError):
            shutil.copy(path, destination / path.name)
            continue
        frame.to_csv(destination / path.name, index=False)
    return destination


def tracking_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"


def needs_postgres(url: str):
    """Skip, saying why, when the PostgreSQL the machine should run at 127.0.0.1:5432 does not answer."""
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=2).close()
        reachable = True
    except Exception:  # noqa: BLE001 - any failure to connect means: skip
        reachable = False
    return pytest.mark.skipif(not reachable, reason=f"PostgreSQL is not reachable at {url}")


def shared_root(factory: pytest.TempPathFactory) -> Path:
    """One data root for the whole session, shared by every xdist worker: each tiny market is generated,
    and its features built, once (qtrack's own file locks make that safe across processes)."""
    base = factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-data"
    root.mkdir(exist_ok=True)
    return root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plotly_values(field) -> list[float]:
    """A Plotly trace's x or y as numbers: Plotly sends numeric arrays as base64 of their bytes."""
    import base64

    import numpy as np

    if isinstance(field, dict) and "bdata" in field:
        return np.frombuffer(base64.b64decode(field["bdata"]), dtype=field["dtype"]).tolist()
    return [float(value) for value in field]
