"""A Qlib data directory written by a test itself (numpy to Qlib's .bin layout), not by qtrack's importer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

STOCKS = [f"SH6000{n:02d}" for n in range(24)]
INDEX = "SH000300"


def write_qlib_directory(root: Path, seed: int = 7, days: int = 330, stocks: int = len(STOCKS)) -> Path:
    """Qlib's daily layout: calendars/day.txt, instruments/<market>.txt, features/<code>/<field>.day.bin."""
    codes = STOCKS if stocks == len(STOCKS) else [f"SH60{n:04d}" for n in range(stocks)]
    rng = np.random.default_rng(seed)
    calendar = pd.bdate_range("2015-01-05", periods=days)
    (root / "calendars").mkdir(parents=True)
    (root / "calendars" / "day.txt").write_text("\n".join(calendar.strftime("%Y-%m-%d")) + "\n")
    closes = {}
    for code in codes:
        drift = rng.normal(0, 0.02, len(calendar)) + 0.004 * np.sin(np.arange(len(calendar)) / (3 + len(closes)))
        closes[code] = 10 * np.exp(np.cumsum(drift))
    closes[INDEX] = np.mean(list(closes.values()), axis=0) * 300
    for code, close in closes.items():
        previous = np.concatenate([[close[0]], close[:-1]])
        open_ = previous * (1 + rng.normal(0, 0.004, len(close)))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.005, len(close))))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.005, len(close))))
        fields = {"open": open_, "high": high, "low": low, "close": close, "vwap": (high + low + close) / 3,
                  "volume": 1e6 * np.exp(rng.normal(0, 0.3, len(close))), "factor": np.ones(len(close)),
                  "change": close / previous - 1}
        fields["change"][0] = np.nan
        folder = root / "features" / code.lower()
        folder.mkdir(parents=True)
        for name, values in fields.items():
            np.concatenate([[0.0], values]).astype("<f4").tofile(folder / f"{name}.day.bin")
    span = f"{calendar[0]:%Y-%m-%d}\t{calendar[-1]:%Y-%m-%d}"
    (root / "instruments").mkdir()
    (root / "instruments" / "csi300.txt").write_text("".join(f"{code}\t{span}\n" for code in codes))
    (root / "instruments" / "all.txt").write_text("".join(f"{code}\t{span}\n" for code in [*codes, INDEX]))
    return root


# Segments over the directory's days, with label-horizon gaps between them, as qtrack keeps.
SEGMENTS = {"train": ["2015-01-05", "2015-08-31"], "valid": ["2015-09-03", "2015-11-30"],
            "test": ["2015-12-03", "2016-03-25"]}


def qrun_workflow(fixture: Path, data: Path, uri: str, model: dict) -> dict:
    """One of Qlib's benchmark workflow files, pointed at a written directory, SEGMENTS and a tracking store."""
    import copy

    import yaml

    base = yaml.safe_load(fixture.read_text())
    base["qlib_init"] = {"provider_uri": str(data), "region": "cn", "exp_manager": {
        "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
        "kwargs": {"uri": uri, "default_exp_name": "qrun"}}}
    task = base["task"]
    task["model"] = copy.deepcopy(model)
    task["dataset"]["kwargs"]["handler"]["kwargs"].update(
        start_time=SEGMENTS["train"][0], end_time=SEGMENTS["test"][1], fit_start_time=SEGMENTS["train"][0],
        fit_end_time=SEGMENTS["train"][1])
    task["dataset"]["kwargs"]["segments"] = SEGMENTS
    port = task["record"][2]["kwargs"]["config"]
    port["strategy"]["kwargs"].update(topk=8, n_drop=2)
    port["backtest"].update(start_time=SEGMENTS["test"][0], end_time=SEGMENTS["test"][1])
    return base
