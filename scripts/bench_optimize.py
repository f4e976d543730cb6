#!/usr/bin/env python
"""What one `qtrack optimize` process saves over one process per trial, on a synthetic market.

    python scripts/bench_optimize.py --symbols 100 --days 1040 --trials 10 [--n-jobs 1] [-- overrides]

1. `qtrack optimize --trials N` in an empty folder: the market is generated, the features are built
   once and every trial reuses them in memory.
2. The same N trials as N separate `qtrack train` processes with `dataset.cache=false`, the way a
   sweep that reloads data for every trial runs (each trial's exact overrides are read from the study).
3. The same N trials as N `qtrack train` processes with the feature cache warm.

Wall time, peak RSS of the largest single process (resource.getrusage), and the sweep's per-trial times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def qtrack(workdir: Path, args: list[str]) -> float:
    env = {**os.environ, "QTRACK_DATA_ROOT": str(workdir / "data")}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "qtrack"), *args], cwd=workdir, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"qtrack {args[0]} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def trial_overrides(workdir: Path, study_name: str) -> list[list[str]]:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(workdir / "mlruns" / "optuna.journal")))
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
    return [t.user_attrs["train_overrides"] for t in trials if "train_overrides" in t.user_attrs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=1040)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--model", default="lightgbm")
    parser.add_argument("--pruner", default="none", help="none (default) runs every trial fully, like the baselines")
    parser.add_argument("--sweep-only", action="store_true", help="skip the process-per-trial baselines")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, after --")
    args = parser.parse_args()
    base = [f"model={args.model}", f"dataset.synthetic.symbols={args.symbols}",
            f"dataset.synthetic.days={args.days}", *args.overrides]
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores"
    print(f"machine: {machine}, Python {platform.python_version()}")
    print(f"market: {args.symbols} symbols x {args.days} days, model {args.model}, {args.trials} trials, "
          f"n_jobs {args.n_jobs}, pruner {args.pruner}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sweep = ["optimize", "-q", "--trials", str(args.trials), "--n-jobs", str(args.n_jobs), "--study-name",
                 "bench", "hydra.run.dir=sweep", f"optimize.pruner={args.pruner}", *base]
        wall = qtrack(workdir, sweep)
        summary = json.loads((workdir / "sweep" / "optimize.json").read_text())
        seconds = [t["seconds"] for t in summary["this_run"]]
        states = [t["state"] for t in summary["this_run"]]
        print(f"optimize, one process:      wall {wall:7.2f}s  peak RSS {peak_mib():7.1f} MiB  | per trial "
              f"median {statistics.median(seconds):5.2f}s  ({states.count('COMPLETE')} complete, "
              f"{states.count('PRUNED')} pruned, {states.count('FAIL')} failed)")
        if args.sweep_only:
            return
        trials = trial_overrides(workdir, "bench")
        for label, extra in (("no feature cache", ["dataset.cache=false"]), ("feature cache warm", [])):
            total = sum(qtrack(workdir, ["train", "-q", *overrides, *extra]) for overrides in trials)
            print(f"train x {len(trials)}, {label + ':':<19} wall {total:7.2f}s  "
                  f"({total / max(len(trials), 1):5.2f}s per trial)")


if __name__ == "__main__":
    main()
