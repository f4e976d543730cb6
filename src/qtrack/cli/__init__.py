"""The command line: `qtrack` (app.main) and `run_optimization`."""

from qtrack.cli.app import entry, main, run_optimization

__all__ = ["entry", "main", "run_optimization"]
