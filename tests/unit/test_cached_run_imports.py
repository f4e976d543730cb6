"""A run whose features come from the cache never imports numba (about 0.2 s of a warm train's start)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import pickle
import sys

from qtrack.data import dataset, raw_cache  # the dataset step and the raw-feature cache
from qtrack.features.loader import FastDataLoader  # the class a cached dataset's pickle names

loader = pickle.loads(pickle.dumps(FastDataLoader({"feature": (["$close"], ["CLOSE"])})))
print(sorted(name for name in sys.modules if name.split(".")[0] in ("numba", "llvmlite")))
from qtrack.features import compute  # what a miss imports
print("numba" in sys.modules)
"""


def test_the_modules_a_cache_hit_goes_through_leave_numba_out():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2:] == ["[]", "True"]
