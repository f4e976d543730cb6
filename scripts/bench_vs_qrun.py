#!/usr/bin/env python
"""qtrack train against Qlib's own `qrun` on the same data, config and seed.

    python scripts/bench_vs_qrun.py --data ~/.qtrack/data/sp500 \
        --train 2009-01-02,2013-12-31 --valid 2014-01-06,2014-12-31 --test 2015-01-06,2016-12-28
    python scripts/bench_vs_qrun.py --sp500 ../shared/data/sp500_sample     # real data, automatic segments
    python scripts/bench_vs_qrun.py --sp500 ../shared/data/sp500_sample --records 3   # and the records step

It resolves the segments as qtrack does (label-horizon gaps), writes the equivalent qrun workflow YAML
(LightGBM with qtrack's hyperparameters, Alpha158, SignalRecord + SigAnaRecord + PortAnaRecord, the
equal-weighted universe as benchmark), then runs, in a fresh folder: qrun, qtrack cold (empty feature
cache) and qtrack warm (cache filled). It reports wall time, peak memory (the summed PSS of the whole
process tree, sampled every 50 ms: Qlib's feature workers are child processes) and the metrics.

Each command runs twice: once alone, for its wall time, and once sampled, for its peak (the cache is emptied
before the sampled cold run). Sampling reads each process's smaps_rollup, and the kernel walks its page
tables to answer: on 2 cores that took CPU from LightGBM's two threads, and made a warm train 17% slower
(15.2 s alone, 17.9 s sampled) where it made qrun 4% slower (84.4 s, 87.6 s). The sampled runs' times
are printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import psutil
import yaml

# qrun runs Qlib's own model classes (qtrack's subclasses in qtrack.models.boosters train the same way).
QLIB_MODULES = {"LGBModel": "qlib.contrib.model.gbdt", "CatBoostModel": "qlib.contrib.model.catboost_model"}
METRICS = ("IC", "ICIR", "Rank IC", "1day.excess_return_with_cost.annualized_return")


def _sample(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall seconds, peak memory of the process tree in MiB (sampled every 50 ms), the return code and stderr.

    Memory is the sum of the processes' proportional set sizes (PSS): a page two processes share counts half in
    each. Summed RSS counted a child started with vfork (Python's subprocess) as a second copy of its parent
    until it ran its program: a 2.3 GB train measured 3.7 GB in two runs of four."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        root, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_pss(p) for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - start
        errors.seek(0)
        return wall, peak / 2**20, process.returncode, errors.read()


def _pss(process: psutil.Process) -> int:
    try:
        return process.memory_full_info().pss
    except (psutil.AccessDenied, AttributeError):
        return process.memory_info().rss


def without_torch(qrun: str, *args: str) -> list[str]:
    """qrun as it runs where PyTorch is not installed. Qlib's model package imports every PyTorch model it finds
    (7 s and about 300 MiB a process here), which a LightGBM workflow never uses."""
    python = str(Path(qrun).parent / "python")
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from qlib.cli.run import run\n"
            f"sys.argv = ['qrun', *{list(args)!r}]\n"
            "sys.exit(run())\n")
    return [python, "-c", code]


CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


def measure_capped(command: list[str], cwd: Path, env: dict[str, str], cap_gb: float) -> tuple[float, float, bool]:
    """Wall seconds, peak tree memory (PSS) in MiB and whether the run ran out of memory, under a memory cap: a
    cgroup v1 memory group under this process's own (the kernel then ends this run alone), else `prlimit --as`."""
    group = _memory_group(cap_gb)
    if group is not None:
        wrapped = ["sh", "-c", f'echo $$ > "{group}/cgroup.procs" && exec "$@"', "capped", *command]
    else:
        wrapped = ["prlimit", f"--as={int(cap_gb * 2**30)}", *command]
    try:
        wall, peak, returncode, stderr = _sample(wrapped, cwd, env)
    finally:
        if group is not None:
            with contextlib.suppress(OSError):
                group.rmdir()
    out_of_memory = returncode == -9 or "MemoryError" in stderr or "std::bad_alloc" in stderr
    if returncode != 0 and not out_of_memory:
        _fail(command, stderr, words=3)
    return wall, peak, out_of_memory


def _memory_group(cap_gb: float) -> Path | None:
    try:
        own = next(line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.split(":", 2)[1] == "memory")
        group = CGROUP_MEMORY / own.strip("/") / f"bench{os.getpid()}_{time.monotonic_ns()}"
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(int(cap_gb * 2**30)))
        return group
    except (OSError, StopIteration):
        return None


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak tree memory (PSS) in MiB, of one sampled run; exits with the command's stderr on
    failure."""
    wall, peak, returncode, stderr = _sample(command, cwd, env)
    if returncode != 0:
        _fail(command, stderr)
    return wall, peak


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one run with nothing sampling it; exits with the command's stderr on failure."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        _fail(command, done.stderr)
    return time.perf_counter() - start


def _fail(command: list[str], stderr: str, words: int = 2) -> NoReturn:
    """Stop the benchmark with the command's first words and the end of its stderr."""
    raise SystemExit(f"{' '.join(command[:words])} failed:\n{stderr[-3000:]}")


def resolved_setup(data: Path, overrides: list[str]) -> tuple[dict, dict]:
    """qtrack's resolved config and segments for these overrides."""
    from qtrack import config
    from qtrack.data.dataset import ensure_data, resolve_segments

    cfg = config.compose("train", overrides).cfg
    segments, _ = resolve_segments(cfg, ensure_data(cfg.dataset))
    return config.to_container(cfg), segments.as_dict()


def qrun_workflow(cfg: dict, segments: dict, data: Path, uri: str) -> dict:
    from qtrack.data import qlib_format
    from qtrack.models import specs as models

    spec = models.model_spec(cfg["model"], cfg["seed"])
    benchmark = qlib_format.read_instruments(data, cfg["dataset"]["market"])["symbol"].tolist()
    bt = cfg["backtest"]
    handler = {
        "start_time": segments["train"][0],
        "end_time": segments["test"][1],
        "fit_start_time": segments["train"][0],
        "fit_end_time": segments["train"][1],
        "instruments": cfg["dataset"]["market"],
    }
    port = {
        "strategy": {
            "class": "TopkDropoutStrategy",
            "module_path": "qlib.contrib.strategy",
            "kwargs": {"signal": "<PRED>", "topk": bt["topk"], "n_drop": bt["n_drop"]},
        },
        "backtest": {
            "start_time": segments["test"][0],
            "end_time": segments["test"][1],
            "account": bt["account"],
            "benchmark": benchmark,
            "exchange_kwargs": {
                "limit_threshold": bt["limit_threshold"],
                "deal_price": bt["deal_price"],
                "open_cost": bt["open_cost"],
                "close_cost": bt["close_cost"],
                "min_cost": bt["min_cost"],
            },
        },
    }
    return {
        "qlib_init": {
            "provider_uri": str(data),
            "region": cfg["dataset"]["region"],
            "exp_manager": {
                "class": "MLflowExpManager",
                "module_path": "qlib.workflow.expm",
                "kwargs": {"uri": uri, "default_exp_name": "qrun"},
            },
        },
        "experiment_name": "qrun",
        "task": {
            "model": {"class": spec.class_name, "module_path": QLIB_MODULES.get(spec.class_name, spec.module_path),
                      "kwargs": spec.init_kwargs},
            "dataset": {
                "class": "DatasetH",
                "module_path": "qlib.data.dataset",
                "kwargs": {
                    "handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler", "kwargs": handler},
                    "segments": {k: list(v) for k, v in segments.items()},
                },
            },
            "record": [
                {
                    "class": "SignalRecord",
                    "module_path": "qlib.workflow.record_temp",
                    "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"},
                },
                {
                    "class": "SigAnaRecord",
                    "module_path": "qlib.workflow.record_temp",
                    "kwargs": {"ana_long_short": False, "ann_scaler": 252},
                },
                {"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp", "kwargs": {"config": port}},
            ],
        },
    }


def latest_metrics(uri: str, experiment: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], order_by=["attributes.start_time DESC"]
    )[0]
    return {k: run.data.metrics.get(k, float("nan")) for k in METRICS}


def imported_sample(folder: Path, root: Path) -> Path:
    """The CSV folder imported by `qtrack data import` (the importer's cleaning included) as dataset `sp500`."""
    env = {**os.environ, "QTRACK_DATA_ROOT": str(root)}
    qtrack = str(Path(sys.executable).parent / "qtrack")
    subprocess.run([qtrack, "data", "import", str(folder.expanduser().absolute()), "--name", "sp500"], env=env,
                   check=True, capture_output=True, text=True)
    return root / "sp500"


def records_step(qtrack_args: list[str], work: Path, env: dict[str, str], repeats: int) -> None:
    """The `records` step's seconds (from each run's summary.json), median of `repeats` warm runs per engine."""
    import json
    import statistics

    seconds = {}
    for engine in ("fast", "qlib"):
        runs = []
        for repeat in range(repeats):
            folder = work / f"records-{engine}-{repeat}"
            subprocess.run([*qtrack_args, f"backtest.engine={engine}", f"hydra.run.dir={folder}",
                            "mlflow.qlib_report=false"], cwd=work, env=env, check=True, capture_output=True)
            runs.append(json.loads((folder / "summary.json").read_text())["seconds"]["records"])
        seconds[engine] = statistics.median(runs)
    print(f"records step (median of {repeats}): Qlib's backtest {seconds['qlib']:.2f}s, fast {seconds['fast']:.2f}s "
          f"({seconds['qlib'] / seconds['fast']:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a Qlib data directory")
    source.add_argument("--sp500", type=Path, help="a folder of daily price CSVs (the S&P sample), imported first")
    parser.add_argument("--train", help="START,END (default: qtrack's automatic segments)")
    parser.add_argument("--valid", help="START,END")
    parser.add_argument("--test", help="START,END")
    parser.add_argument("--market", default="all")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--records", type=int, default=0, metavar="N",
                        help="also time the records step (predictions, IC analysis, backtest) of N warm runs with "
                             "each backtest engine, fast and Qlib's, and print the medians")
    args = parser.parse_args()
    from qtrack.data.store import CACHE_DIR

    imported = tempfile.TemporaryDirectory() if args.sp500 else None
    data = imported_sample(args.sp500, Path(imported.name)) if args.sp500 else args.data.expanduser().absolute()
    os.environ["QTRACK_DATA_ROOT"] = str(data.parent)
    overrides = [
        f"dataset.name={data.name}",
        f"dataset.market={args.market}",
        *(f"dataset.segments.{name}=[{getattr(args, name)}]" for name in ("train", "valid", "test")
          if getattr(args, name)),
    ]
    cfg, segments = resolved_setup(data, overrides)
    resolved = [f"dataset.segments.{k}=[{v[0]},{v[1]}]" for k, v in segments.items()]
    bin_dir = Path(sys.executable).parent
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"data: {data} ({args.market}); segments {segments}")

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep.absolute() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "QTRACK_DATA_ROOT": str(work / "data")}
        (work / "data").mkdir()
        (work / "data" / data.name).symlink_to(data.resolve())
        env.pop("MLFLOW_TRACKING_URI", None)
        qrun_uri = f"sqlite:///{work / 'qrun.db'}"
        (work / "workflow.yaml").write_text(yaml.safe_dump(qrun_workflow(cfg, segments, data.resolve(), qrun_uri)))
        qtrack_args = [
            str(bin_dir / "qtrack"),
            "train",
            "-q",
            "mlflow.experiment_name=qtrack",
            *overrides[:2],
            *resolved,
        ]

        qrun = without_torch(str(bin_dir / "qrun"), "workflow.yaml")
        walls = {"qrun": timed(qrun, work, env), "qtrack cold": timed(qtrack_args, work, env),
                 "qtrack warm": timed(qtrack_args, work, env)}
        shutil.rmtree(work / "data" / CACHE_DIR)  # the sampled cold run starts from an empty cache too
        sampled = {"qrun": measure(qrun, work, env), "qtrack cold": measure(qtrack_args, work, env),
                   "qtrack warm": measure(qtrack_args, work, env)}
        if args.records:
            records_step(qtrack_args, work, env, args.records)
        metrics = {
            "qrun": latest_metrics(qrun_uri, "qrun"),
            "qtrack": latest_metrics(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}", "qtrack"),
        }

    base_wall, (base_sampled, base_peak) = walls["qrun"], sampled["qrun"]
    for label, wall in walls.items():
        sampled_wall, peak = sampled[label]
        print(
            f"{label:12s} wall {wall:7.2f}s ({wall / base_wall:4.2f}x qrun)   peak {peak:7.1f} MiB "
            f"({peak / base_peak:4.2f}x qrun)   sampled run {sampled_wall:6.2f}s ({sampled_wall / base_sampled:4.2f}x)"
        )
    for tool, values in metrics.items():
        print(f"{tool:12s} " + "  ".join(f"{k} {v:.6f}" for k, v in values.items()))


if __name__ == "__main__":
    main()
