#!/usr/bin/env python
"""qtrack creating a new SQLite store while a program that takes no qtrack lock (a plain MlflowClient, as in an
`mlflow ui` or a notebook) migrates the same file at the same moment.

    python scripts/race_store.py --rounds 12

Each round starts two qtrack processes (`ensure_sqlite_store`) and one plain client together on a new store, with
no store template, and counts the qtrack processes that failed. A race, not a test: its outcome varies from run to
run, so it is measured here rather than asserted in the suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PLAIN = "import sys; from mlflow.tracking import MlflowClient; MlflowClient(sys.argv[1]).search_experiments()"
QTRACK = "import sys; from qtrack.tracking.store import ensure_sqlite_store; ensure_sqlite_store(sys.argv[1])"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    failed, errors = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            folder = Path(tmp) / str(round_)
            (folder / "mlruns").mkdir(parents=True)
            uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
            env = {**os.environ, "XDG_CACHE_HOME": str(folder / "cache")}  # no template: every process migrates
            launched = [subprocess.Popen([sys.executable, "-c", code, uri], env=env, stderr=subprocess.PIPE, text=True)
                        for code in (QTRACK, PLAIN, QTRACK)]
            ended = [(process.wait(timeout=300), process.stderr.read()) for process in launched]
            for (code, stderr) in (ended[0], ended[2]):
                if code:
                    failed += 1
                    named = [line for line in stderr.splitlines() if "Error" in line]
                    errors.append((named[-1] if named else f"exit code {code}")[:160])
    print(f"qtrack processes that failed: {failed} of {2 * args.rounds}")
    for line in errors:
        print(f"  {line}")


if __name__ == "__main__":
    main()
