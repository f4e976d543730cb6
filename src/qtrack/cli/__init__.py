"""The command line: `qtrack` (app.main) and `run_optimization`."""

from qtrack.cli.app import main, run_optimization

__all__ = ["main", "run_optimization"]
