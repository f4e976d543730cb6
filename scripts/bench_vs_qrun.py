#!/usr/bin/env python
"""qtrack train against Qlib's own `qrun` on the same data, config and seed.

    python scripts/bench_vs_qrun.py --data ~/.qtrack/data/sp500 \
        --train 2009-01-02,2013-12-31 --valid 2014-01-06,2014-12-31 --test 2015-01-06,2016-12-28

It resolves the segments as qtrack does (label-horizon gaps), writes the equivalent qrun workflow YAML
(LightGBM with qtrack's hyperparameters, Alpha158, SignalRecord + SigAnaRecord + PortAnaRecord, the
equal-weighted universe as benchmark), then runs, in a fresh folder: qrun, qtrack cold (empty feature
cache) and qtrack warm (cache filled). It reports wall time, peak memory (the summed RSS of the whole
process tree, sampled every 50 ms: qtrack's feature workers are child processes) and the metrics.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

# qrun runs Qlib's own model classes (qtrack's subclasses in qtrack.models.boosters train the same way).
QLIB_MODULES = {"LGBModel": "qlib.contrib.model.gbdt", "CatBoostModel": "qlib.contrib.model.catboost_model"}
METRICS = ("IC", "ICIR", "Rank IC", "1day.excess_return_with_cost.annualized_return")


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak tree RSS in MiB; exits with the command's stderr on failure."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:2])} failed:\n{process.stderr.read()[-3000:]}")
    return wall, peak / 2**20


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a Qlib data directory")
    parser.add_argument("--train", required=True, help="START,END")
    parser.add_argument("--valid", required=True, help="START,END")
    parser.add_argument("--test", required=True, help="START,END")
    parser.add_argument("--market", default="all")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    data = args.data.expanduser().absolute()
    os.environ["QTRACK_DATA_ROOT"] = str(data.parent)
    overrides = [
        f"dataset.name={data.name}",
        f"dataset.market={args.market}",
        *(f"dataset.segments.{name}=[{getattr(args, name)}]" for name in ("train", "valid", "test")),
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

        results = {}
        results["qrun"] = measure([str(bin_dir / "qrun"), "workflow.yaml"], work, env)
        results["qtrack cold"] = measure(qtrack_args, work, env)
        results["qtrack warm"] = measure(qtrack_args, work, env)
        metrics = {
            "qrun": latest_metrics(qrun_uri, "qrun"),
            "qtrack": latest_metrics(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}", "qtrack"),
        }

    base_wall, base_peak = results["qrun"]
    for label, (wall, peak) in results.items():
        print(
            f"{label:12s} wall {wall:7.2f}s ({wall / base_wall:4.2f}x qrun)   peak {peak:7.1f} MiB "
            f"({peak / base_peak:4.2f}x qrun)"
        )
    for tool, values in metrics.items():
        print(f"{tool:12s} " + "  ".join(f"{k} {v:.6f}" for k, v in values.items()))


if __name__ == "__main__":
    main()
