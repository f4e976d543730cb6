#!/usr/bin/env python
"""Wall time and peak memory of `qtrack train`, split into data, features, fit, records and logging.

    python scripts/bench_train.py --symbols 100 --days 1040 [--model lightgbm] [-- extra overrides]

Each run uses a fresh data root and tracking store in a temporary folder, so the first ("cold") run
includes generating the market and creating the store; a second ("warm") run reuses both.
Peak memory is the maximum resident set size of the `qtrack` process (resource.getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ("data", "features", "fit", "records", "logging")


def run_once(workdir: Path, overrides: list[str]) -> dict:
    qtrack = Path(sys.executable).parent / "qtrack"
    env = {**os.environ, "QTRACK_DATA_ROOT": str(workdir / "data")}
    env.pop("MLFLOW_TRACKING_URI", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(
        [str(qtrack), "train", "-q", "hydra.run.dir=bench_run", *overrides],
        cwd=workdir, env=env, capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"qtrack train failed:\n{done.stderr[-2000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads((workdir / "bench_run" / "summary.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mib": max(peak_kib, before) / 1024,
        "steps_s": summary["seconds"],
        "IC": summary["metrics"].get("IC"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=1040)
    parser.add_argument("--model", default="lightgbm")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, after --")
    args = parser.parse_args()
    overrides = [
        f"model={args.model}",
        f"dataset.synthetic.symbols={args.symbols}",
        f"dataset.synthetic.days={args.days}",
        *args.overrides,
    ]
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores"
    print(f"machine: {machine}, Python {platform.python_version()}")
    print(f"market: {args.symbols} symbols x {args.days} days, model {args.model}")
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("cold", "warm"):
            result = run_once(Path(tmp), overrides)
            steps = "  ".join(f"{name} {result['steps_s'].get(name, 0.0):6.2f}s" for name in STEPS)
            other = result["wall_s"] - sum(result["steps_s"].values())
            print(
                f"{label}: wall {result['wall_s']:6.2f}s  peak RSS {result['peak_rss_mib']:7.1f} MiB  | "
                f"{steps}  start-up/other {other:5.2f}s  | IC {result['IC']:.4f}"
            )


if __name__ == "__main__":
    main()
