"""Several `qrun` workflows as one benchmark (`qtrack benchmark --from-qrun`), and the command a translation
stands for."""

from __future__ import annotations

from pathlib import Path

from qtrack.config.qrun import honoured
from qtrack.config.values import override_value
from qtrack.errors import QtrackError


def benchmark_overrides(workflows: list[Path]) -> list[str]:
    """Several workflows as one benchmark: they must share everything but the model (one dataset is built
    for all), and each model may appear once; each workflow's model keys become its model_overrides."""
    translations = [(path, honoured(path)) for path in workflows]
    first_path, first = translations[0]
    models: list[str] = []
    overrides = list(first.shared)
    for path, translation in translations:
        if translation.shared != first.shared:
            differing = sorted(set(translation.shared) ^ set(first.shared))
            key = differing[0].split("=", 1)[0]
            raise QtrackError(f"--from-qrun: {path.name} and {first_path.name} differ in {key}; a benchmark "
                              "compares models on one dataset, features and backtest")
        if translation.model in models:
            raise QtrackError(f"--from-qrun: two workflows run {translation.model}; a benchmark takes each model "
                              "once (train them separately)")
        models.append(translation.model)
        overrides.append(f"++model_overrides.{translation.model}={override_value(translation.model_overrides)}")
    # A workflow plants no seed, so more seeds would repeat the same fits; `seeds=N` after them still wins.
    return [*overrides, f"models={override_value(models)}", "seeds=1"]


def command_line(stage: str, overrides: list[str]) -> str:
    import shlex

    return " ".join(["qtrack", stage, *(shlex.quote(item) for item in overrides)])
