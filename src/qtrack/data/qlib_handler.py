"""Qlib's Alpha158 and Alpha360 handlers without one needless copy of the whole frame.

Before running learn (or infer) processors that write in place, Qlib copies the entire raw frame so
the raw data stays untouched. When the first processor is a dropna (Alpha158's default DropnaLabel),
that copy is wasted: dropna already returns a new frame, and every later processor writes to that.
Qlib's copy also consolidates the frame's blocks, so it briefly holds three copies of the data. On a
500-symbol, 14-year market the build's peak fell from 4813.5 MiB to the loading peak, 4202.5 MiB.
Features, labels and processor fitting are Qlib's; the frames are equal to Qlib's handler's.

Qlib also keeps a second whole frame for learning (`_learn`: the inference frame after the learn processors),
although Alpha158's and Alpha360's learn processors only drop rows without a label and normalise the label
each day. `LearnOnDemand` (qtrack.data.learn_rows) builds a segment's learning rows when they are asked for
instead: one copy of the dataset in memory instead of two.

`engine="fast"` swaps Qlib's expression engine for qtrack's (qtrack.features), which computes the same
expressions, read from the handler's own loader config, to the same float32 bits, and Qlib's CSZScoreNorm
for qtrack's (qtrack.data.processors, the same bits too). The engine is a handler argument, so it is part
of the dataset config and therefore of the feature-cache key.
"""

from __future__ import annotations

from qlib.contrib.data import handler as qlib_handlers
from qlib.data.dataset.handler import DataHandlerLP
from qlib.data.dataset.processor import DropnaProcessor, Processor

from qtrack.data.learn_rows import LearnOnDemand
from qtrack.data.processors import fast_processors
from qtrack.qlib_compat import ProcessorCopyHook

# Processors whose output never shares memory with their input (pandas' dropna copies even when it
# drops nothing, and with copy-on-write a later write copies anyway).
FRESH_OUTPUT = (DropnaProcessor,)


class LeanCopies(ProcessorCopyHook):
    @classmethod
    def processors_are_readonly(cls, proc_l: list[Processor]) -> bool:
        if proc_l and isinstance(proc_l[0], FRESH_OUTPUT):
            return True
        return super().processors_are_readonly(proc_l)


ENGINES = ("fast", "qlib")
FAST_LOADER = {"class": "FastDataLoader", "module_path": "qtrack.features.loader"}


class EngineSwitch(DataHandlerLP):
    """Sits between Qlib's Alpha handler and DataHandlerLP in the MRO, where the loader config is built."""

    def __init__(self, *args, data_loader=None, **kwargs):
        if getattr(self, "engine", "qlib") == "fast":
            if isinstance(data_loader, dict):
                given = data_loader.get("kwargs", {})
                data_loader = {**FAST_LOADER, "kwargs": {"config": given["config"], "freq": given["freq"]}}
            for name in ("infer_processors", "learn_processors"):
                kwargs[name] = fast_processors(kwargs.get(name, []))
        super().__init__(*args, data_loader=data_loader, **kwargs)


class Alpha158(LearnOnDemand, LeanCopies, qlib_handlers.Alpha158, EngineSwitch):
    def __init__(self, engine: str = "qlib", **kwargs):
        self.engine = engine
        super().__init__(**kwargs)


class Alpha360(LearnOnDemand, LeanCopies, qlib_handlers.Alpha360, EngineSwitch):
    def __init__(self, engine: str = "qlib", **kwargs):
        self.engine = engine
        super().__init__(**kwargs)
