#!/usr/bin/env python
"""The fast feature engine against Qlib's expression engine: wall time and peak memory of the feature step.

    python scripts/bench_features.py --data ~/.qtrack/data/big --sizes 125,250,500 --qlib-sizes 500

Each measurement is a fresh process that initialises Qlib and loads Alpha158 (and the label) for the first
N symbols of the market over the whole calendar, through `FastDataLoader` (features.engine=fast) or Qlib's
`QlibDataLoader` (features.engine=qlib): the step the engine replaces; Qlib's processors run after it either
way. Peak memory is the summed RSS of the process tree (Qlib computes in worker processes), sampled every
50 ms; "step" is that peak less the process's RSS just before the step (imports and Qlib's setup).
Qlib's default kernels (cores - 2, at least 1) are used, as qtrack does without `kernels=`. Both engines run with
the environment defaults the `qtrack` command sets before NumPy is imported (`runtime.PROCESS_DEFAULTS`: NumPy's
huge pages off), unless the environment sets them: a train computes its features under them, whichever engine.
Without them this script measured the fast engine as no train runs it: 4.3-4.7 s against 3.2-3.3 s on 490 stocks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

HANDLERS = ("alpha158", "alpha360")


def child(data: Path, engine: str, size: int, handler: str) -> None:
    from qlib.contrib.data.loader import Alpha158DL, Alpha360DL
    from qlib.data.dataset.loader import QlibDataLoader

    from qtrack.data import qlib_format
    from qtrack.features.loader import FastDataLoader
    from qtrack.runtime import init_qlib

    init_qlib(data, "us", f"sqlite:///{data.parent}/bench-features.db", "bench")
    symbols = qlib_format.read_instruments(data, "all")["symbol"].tolist()[:size]
    loader = Alpha158DL if handler == "alpha158" else Alpha360DL
    config = {"feature": loader.get_feature_config(), "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])}
    cls = FastDataLoader if engine == "fast" else QlibDataLoader
    before = psutil.Process().memory_info().rss / 2**20
    start = time.perf_counter()
    frame = cls(config).load(symbols)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": len(frame), "columns": frame.shape[1], "before": before}))


def measure(command: list[str], env: dict[str, str]) -> tuple[dict, float]:
    """The child's own report and the peak RSS of its process tree in MiB."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)] if p.is_running()))
        time.sleep(0.05)
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[-4:])} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a Qlib data directory")
    parser.add_argument("--sizes", default="125,250,500", help="symbol counts for the fast engine")
    parser.add_argument("--qlib-sizes", default="500", help="symbol counts for Qlib's engine (slow)")
    parser.add_argument("--handler", choices=HANDLERS, default="alpha158")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data.expanduser().absolute()
    if args.child:
        child(data, args.child[0], int(args.child[1]), args.handler)
        return

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    from qtrack.runtime import PROCESS_DEFAULTS

    env = {**PROCESS_DEFAULTS, **os.environ}
    print(f"data: {data}, {args.handler}; " + ", ".join(f"{name}={env[name]}" for name in PROCESS_DEFAULTS))
    me = [sys.executable, __file__, "--data", str(data), "--handler", args.handler, "--child"]
    runs = [("fast", int(n)) for n in args.sizes.split(",")] + [("qlib", int(n)) for n in args.qlib_sizes.split(",")]
    results = {}
    for engine, size in runs:
        report, peak = measure([*me, engine, str(size)], env)
        results[engine, size] = (report, peak)
        cells = report["rows"] * (report["columns"])
        print(f"{engine:4s} {size:4d} symbols: {report['rows']:9d} rows  {report['seconds']:8.2f}s  "
              f"{cells / report['seconds'] / 1e6:7.1f} M values/s  peak {peak:7.1f} MiB "
              f"(step: +{peak - report['before']:7.1f} MiB)", flush=True)
    for (engine, size), (report, peak) in results.items():
        if engine == "qlib" and ("fast", size) in results:
            fast, fast_peak = results["fast", size]
            step, fast_step = peak - report["before"], fast_peak - fast["before"]
            print(f"{size} symbols: fast is {report['seconds'] / fast['seconds']:.1f}x faster than qlib; peak "
                  f"memory {fast_peak / peak:.2f}x qlib's, the step's own {fast_step / step:.2f}x")


if __name__ == "__main__":
    main()
