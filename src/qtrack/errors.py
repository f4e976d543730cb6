"""Errors that the CLI turns into one line on stderr and an exit code."""

from __future__ import annotations


class QtrackError(Exception):
    """A problem the user can fix (bad config, missing data). Exit code 2."""

    exit_code = 2


class TrackingError(QtrackError):
    """The tracking server or store cannot be reached or used. Exit code 3."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every open run and trial is closed as on Ctrl-C.
    Exit code 143 (128 + 15), as a shell reports a process ended by SIGTERM."""
