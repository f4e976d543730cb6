#!/usr/bin/env python
"""Peak memory as the universe grows: `qtrack train` and `qrun` (LightGBM on Alpha158) on synthetic markets.

    python scripts/bench_scale.py --symbols 500,1500,3000 --days 3500 --cap-gb 14

For each size it writes a market with `qtrack data synth`, then runs, one after the other:
- `qtrack train` (the default config, cold: an empty feature cache);
- `qrun` on the equivalent workflow (bench_vs_qrun.qrun_workflow: the same segments, model and backtest), with
  PyTorch hidden from it, as on a machine without PyTorch (Qlib's model package imports every PyTorch model it
  finds: 7 s and about 300 MiB that a LightGBM run never uses).

Each runs under a memory cap (a cgroup v1 memory group under this process's own, else `prlimit --as`), so that
running out of memory ends that run alone and never the machine's other processes; the script then reports that
it ran out of memory. Peak memory is the whole process tree's PSS (bench_vs_qrun._sample), sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_qrun import measure_capped, qrun_workflow, resolved_setup, without_torch  # noqa: E402

BIN = Path(sys.executable).parent


def run_size(work: Path, symbols: int, days: int, cap_gb: float, env: dict, with_qrun: bool) -> dict:
    name = f"scale{symbols}"
    synth = [str(BIN / "qtrack"), "data", "synth", "--name", name, "--symbols", str(symbols), "--days", str(days)]
    measure_capped(synth, work, env, cap_gb)
    data = Path(env["QTRACK_DATA_ROOT"]) / name
    os.environ["QTRACK_DATA_ROOT"] = env["QTRACK_DATA_ROOT"]
    cfg, segments = resolved_setup(data, [f"dataset.name={name}"])
    found = {"symbols": symbols, "rows": stock_days(data)}
    train = [str(BIN / "qtrack"), "train", "-q", f"dataset.name={name}", f"hydra.run.dir=outputs/{name}"]
    found["qtrack"] = measure_capped(train, work, env, cap_gb)
    print(f"  {symbols} symbols: qtrack {describe(found['qtrack'])}", flush=True)
    if with_qrun:
        workflow = work / f"{name}.yaml"
        uri = f"sqlite:///{work / (name + '_qrun.db')}"
        workflow.write_text(yaml.safe_dump(qrun_workflow(cfg, segments, data.resolve(), uri)))
        found["qrun"] = measure_capped(without_torch(str(BIN / "qrun"), str(workflow)), work, env, cap_gb)
        print(f"  {symbols} symbols: qrun   {describe(found['qrun'])}", flush=True)
    return found


def stock_days(data: Path) -> int:
    """Stored rows: the days each symbol's close file holds."""
    return sum((path.stat().st_size - 4) // 4 for path in (data / "features").glob("*/close.day.bin"))


def describe(result: tuple[float, float, bool]) -> str:
    wall, peak, out_of_memory = result
    if out_of_memory:
        return f"ran out of memory after {wall:.0f} s (peak {peak / 1024:.2f} GiB at the cap)"
    return f"{wall:7.1f} s wall, peak {peak / 1024:6.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", default="500,1500,3000")
    parser.add_argument("--days", type=int, default=3500)
    parser.add_argument("--cap-gb", type=float, default=14.0, help="memory cap of each run")
    parser.add_argument("--qrun-sizes", default=None, help="run qrun at these symbol counts only (default: all)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    sizes = [int(value) for value in args.symbols.split(",")]
    qrun_sizes = sizes if args.qrun_sizes is None else [int(value) for value in args.qrun_sizes.split(",") if value]
    print(f"{time.strftime('%Y-%m-%d')} {platform.node()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; {args.days} days; "
          f"cap {args.cap_gb} GiB a run", flush=True)
    with contextlib.ExitStack() as stack:
        work = args.keep.absolute() if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "QTRACK_DATA_ROOT": str(work / "data")}
        env.pop("MLFLOW_TRACKING_URI", None)
        results = [run_size(work, symbols, args.days, args.cap_gb, env, symbols in qrun_sizes) for symbols in sizes]
    print(f"{'symbols':>8} {'stock-days':>11} {'qtrack peak':>12} {'bytes/row':>10} {'qrun peak':>22}")
    for found in results:
        wall, peak, oom = found["qtrack"]
        qrun = found.get("qrun")
        qrun_text = "-" if qrun is None else ("out of memory" if qrun[2] else f"{qrun[1] / 1024:.2f} GiB")
        per_row = "-" if oom else f"{peak * 2**20 / found['rows']:.0f}"
        print(f"{found['symbols']:>8} {found['rows']:>11,} {('OOM' if oom else f'{peak / 1024:.2f} GiB'):>12} "
              f"{per_row:>10} {qrun_text:>22}")


if __name__ == "__main__":
    main()
