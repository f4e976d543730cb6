#!/usr/bin/env python
"""Qlib's GRU through qrun and through `qtrack train --from-qrun` on one workflow file, and a sweep against separate
trains.

    python scripts/bench_deep.py --symbols 300 --days 600 --epochs 1,4 --threads 2
    python scripts/bench_deep.py --sp500 ../shared/data/sp500_sample --epochs 1,4

The data: a synthetic market written by `qtrack data synth`, or the S&P sample imported by `qtrack data import`.
Both tools read the same Qlib directory. The workflow is Qlib's examples/benchmarks/GRU/workflow_config_gru_Alpha360
(tests/fixtures), with the segments qtrack resolves and a fixed seed.

- Seconds per epoch: each tool runs the workflow at two epoch counts (early stopping off). Per epoch is the
  difference in wall time divided by the difference in epochs, so start-up, features and records cancel out.
- Peak memory: the whole process tree's PSS, sampled every 50 ms (bench_vs_qrun.measure).
- Metrics: IC and the excess return with cost, which must agree.
- A sweep of N trials (`run_optimization`, pruning off, only `lr` sampled so every network has the same size)
  against N separate `qtrack train` processes with the same epochs. Every one of those trains finds the dataset in
  the feature cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_qrun import latest_metrics, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QTRACK = str(Path(sys.executable).parent / "qtrack")


def prepare_data(work: Path, args: argparse.Namespace, env: dict[str, str]) -> tuple[str, Path]:
    if args.sp500:
        name, command = "sp500", [QTRACK, "data", "import", str(args.sp500), "--name", "sp500"]
    else:
        name = f"synth{args.symbols}"
        command = [QTRACK, "data", "synth", "--name", name, "--symbols", str(args.symbols), "--days", str(args.days)]
    measure(command, work, env)
    return name, Path(env["QTRACK_DATA_ROOT"]) / name


def segments(name: str, env: dict[str, str]) -> dict:
    """qtrack's default split of this dataset (label-horizon gaps), which the workflow then states explicitly."""
    os.environ["QTRACK_DATA_ROOT"] = env["QTRACK_DATA_ROOT"]
    from qtrack import config
    from qtrack.data.dataset import ensure_data, resolve_segments

    cfg = config.compose("train", [f"dataset.name={name}", "model=gru"]).cfg
    found, _ = resolve_segments(cfg, ensure_data(cfg.dataset))
    return found.as_dict()


def workflow(data: Path, uri: str, spans: dict, epochs: int, experiment: str, topk: int) -> dict:
    from qtrack.data import qlib_format

    base = yaml.safe_load((ROOT / "tests" / "fixtures" / "workflow_config_gru_Alpha360.yaml").read_text())
    base["experiment_name"] = experiment
    base["qlib_init"] = {"provider_uri": str(data), "region": "us", "exp_manager": {
        "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
        "kwargs": {"uri": uri, "default_exp_name": experiment}}}
    task = base["task"]
    task["model"]["kwargs"].update(n_epochs=epochs, early_stop=epochs + 1, seed=0)
    handler = task["dataset"]["kwargs"]["handler"]["kwargs"]
    handler.update(instruments="all", start_time=spans["train"][0], end_time=spans["test"][1],
                   fit_start_time=spans["train"][0], fit_end_time=spans["train"][1])
    task["dataset"]["kwargs"]["segments"] = spans
    port = task["record"][2]["kwargs"]["config"]
    # one instrument as the benchmark (--from-qrun takes one code): the same excess returns for both tools
    first = qlib_format.read_instruments(data, "all")["symbol"].tolist()[0]
    port["backtest"].update(start_time=spans["test"][0], end_time=spans["test"][1], benchmark=first)
    port["backtest"]["exchange_kwargs"]["limit_threshold"] = None
    port["strategy"]["kwargs"].update(topk=topk, n_drop=max(1, topk // 10))
    return base


def run_pair(work: Path, data: Path, spans: dict, epochs: int, env: dict, topk: int) -> dict[str, tuple]:
    uri = f"sqlite:///{work}/mlruns/mlflow.db"
    (work / "mlruns").mkdir(exist_ok=True)
    found = {}
    for tool in ("qrun", "qtrack"):
        experiment = f"{tool}_{epochs}"
        path = work / f"gru_{epochs}_{tool}.yaml"
        path.write_text(yaml.safe_dump(workflow(data, uri, spans, epochs, experiment, topk), sort_keys=False))
        command = ([str(Path(sys.executable).parent / "qrun"), str(path)] if tool == "qrun"
                   else [QTRACK, "train", "--from-qrun", str(path), "-q"])
        wall, peak = measure(command, work, env)
        found[tool] = (wall, peak, latest_metrics(uri, experiment))
        print(f"  {tool:6} {epochs} epochs: {wall:7.1f} s wall, peak {peak:7.0f} MiB, "
              f"IC {found[tool][2].get('IC', float('nan')):.6f}", flush=True)
    return found


def sweep_against_trains(work: Path, name: str, trials: int, epochs: int, env: dict) -> tuple[float, float]:
    common = [f"dataset.name={name}", "model=gru", f"model.n_epochs={epochs}", f"model.early_stop={epochs + 1}",
              "mlflow.plots=false", "mlflow.log_model=false"]
    sweep, _ = measure([str(Path(sys.executable).parent / "run_optimization"), "--trials", str(trials), *common,
                        "optimize.pruner=none", "hydra.run.dir=outputs/sweep",
                        # only lr is sampled: every trial's network is the size of the separate trains'
                        "~search_space.hidden_size", "~search_space.num_layers", "~search_space.dropout",
                        "~search_space.batch_size"], work, env)
    start = time.perf_counter()
    for index in range(trials):
        measure([QTRACK, "train", *common, f"seed={index}", "-q", f"hydra.run.dir=outputs/train{index}"], work, env)
    return sweep, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--days", type=int, default=600)
    parser.add_argument("--sp500", type=Path, default=None, help="the S&P sample folder, instead of a synthetic market")
    parser.add_argument("--epochs", default="1,4", help="two epoch counts, for the seconds per epoch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (OMP_NUM_THREADS)")
    parser.add_argument("--topk", type=int, default=20)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--sweep-epochs", type=int, default=2)
    parser.add_argument("--sweep-only", action="store_true", help="skip the qrun comparison")
    args = parser.parse_args()
    low, high = (int(value) for value in args.epochs.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "QTRACK_DATA_ROOT": str(work / "data"), "OMP_NUM_THREADS": str(args.threads)}
        env.pop("MLFLOW_TRACKING_URI", None)
        name, data = prepare_data(work, args, env)
        spans = segments(name, env)
        print(f"{time.strftime('%Y-%m-%d')} {platform.node()} {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores; data {name}; segments {spans}; torch threads {args.threads}", flush=True)
        if not args.sweep_only:
            compare_with_qrun(work, data, spans, env, args, (low, high))
        if args.trials:
            sweep, trains = sweep_against_trains(work, name, args.trials, args.sweep_epochs, env)
            print(f"{args.trials} trials x {args.sweep_epochs} epochs: one sweep {sweep:.1f} s, {args.trials} separate "
                  f"trains {trains:.1f} s ({sweep / trains:.3f}x)")


def compare_with_qrun(work: Path, data: Path, spans: dict, env: dict, args: argparse.Namespace,
                      epochs_pair: tuple[int, int]) -> None:
    low, high = epochs_pair
    runs = {epochs: run_pair(work, data, spans, epochs, env, args.topk) for epochs in (low, high)}
    per_epoch = {tool: (runs[high][tool][0] - runs[low][tool][0]) / (high - low) for tool in ("qrun", "qtrack")}
    print(f"seconds per epoch: qrun {per_epoch['qrun']:.2f}, qtrack {per_epoch['qtrack']:.2f} "
          f"({per_epoch['qtrack'] / per_epoch['qrun']:.3f}x)")
    peaks = {tool: max(runs[epochs][tool][1] for epochs in runs) for tool in ("qrun", "qtrack")}
    print(f"peak memory: qrun {peaks['qrun']:.0f} MiB, qtrack {peaks['qtrack']:.0f} MiB "
          f"({peaks['qtrack'] / peaks['qrun']:.3f}x)")
    for epochs, pair in runs.items():
        differences = {key: abs(pair["qtrack"][2][key] - value) for key, value in pair["qrun"][2].items()
                       if key in pair["qtrack"][2]}
        print(f"{epochs} epochs: max |qtrack - qrun| over {len(differences)} metrics: "
              f"{max(differences.values()):.3g}")


if __name__ == "__main__":
    main()
