"""Qlib's report page must not pay for jsonschema's IRI grammars (qlib_reports._without_iri_grammars)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from qtrack.evaluation import qlib_reports
qlib_reports._without_iri_grammars()
from qlib.contrib.report import analysis_model, analysis_position
import jsonschema
print("lark" in sys.modules, "rfc3987_syntax" in sys.modules and sys.modules["rfc3987_syntax"] is not None)
"""


def test_the_report_imports_without_building_lark_grammars():
    import importlib.util

    assert importlib.util.find_spec("rfc3987_syntax") is not None, "the case: the package is installed (Jupyter's)"
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split()[-2:] == ["False", "False"]
