#!/usr/bin/env python
"""Where a `qtrack train` holds its memory: the process's RSS sampled every 20 ms with the qtrack, Qlib or
LightGBM code the main thread is running, printed whenever it moves by more than --step MiB.

    QTRACK_DATA_ROOT=/tmp/mem/data python scripts/trace_memory.py dataset.name=scale500

tracemalloc would see numpy's allocations but not LightGBM's (C++), and memray is not a dependency; RSS with the
running code says which step holds what, including the C++ side. The arguments are `qtrack train` overrides.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
import traceback

import psutil

KEEP = ("/qtrack/", "/qlib/", "/lightgbm/")


def where(frame) -> str:
    stack = [f"{os.path.basename(f.filename)}:{f.name}" for f in traceback.extract_stack(frame)
             if any(part in f.filename for part in KEEP)]
    return " > ".join(stack[-4:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=float, default=100.0, help="print when RSS moved by this many MiB")
    args, overrides = parser.parse_known_args()
    process, main_thread, samples = psutil.Process(), threading.main_thread(), []

    def sample() -> None:
        while True:
            frame = sys._current_frames().get(main_thread.ident)
            samples.append((time.perf_counter(), process.memory_info().rss / 2**20, where(frame) if frame else ""))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    sys.argv = ["qtrack", "train", "-q", *overrides]
    from qtrack.cli.app import main as cli

    with contextlib.suppress(SystemExit):
        cli()
    start, printed = samples[0][0], -1e9
    peak = max(samples, key=lambda sample: sample[1])
    for moment, rss, place in samples:
        if abs(rss - printed) >= args.step or (moment, rss) == peak[:2]:
            print(f"{moment - start:7.1f} s {rss:8.0f} MiB  {place}")
            printed = rss
    print(f"peak {peak[1]:.0f} MiB at {peak[0] - start:.1f} s: {peak[2]}")


if __name__ == "__main__":
    main()
