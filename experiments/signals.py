"""SIGTERM handled like Ctrl-C.

SLURM (at the time limit or on ``scancel``), ``timeout`` and process managers stop a job with
SIGTERM. Python's default is to die at once, saving nothing and saying nothing. ``paradox``
installs :func:`install` first, so SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``)
in the main thread: every handler of Ctrl-C runs (a sweep flushes its finished runs, stops its
workers and prints the command that resumes it) and the exit status is 143 (128 + SIGTERM)
instead of 130.
"""

from __future__ import annotations

import signal
from typing import Any


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def _raise(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated(f"received signal {signal.Signals(signum).name}")


def install() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread."""
    signal.signal(signal.SIGTERM, _raise)


def exit_status(err: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


def describe(err: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
