"""Signals delivered between model steps, never inside compiled code.

A Python signal handler runs wherever the main thread happens to be. When that is inside a
numba kernel, an exception the handler raises (Ctrl-C's ``KeyboardInterrupt``, SIGTERM's
``Terminated``, submitit's ``UncompletedJobError`` from SLURM's time-limit SIGUSR2) surfaces as
``SystemError: CPUDispatcher(...) returned a result with an exception set``, chained several
deep, and has been seen to crash the interpreter in garbage collection. Caught as an ordinary
error, it also made the sweep engine record the interrupted run as *failed* and carry on.

Inside :func:`deferred`, the Python handlers of :data:`NOTED_SIGNALS` only queue the signal;
:func:`checkpoint` runs the queued handlers. :func:`sim.api.simulate` steps the model inside
:func:`deferred` and calls :func:`checkpoint` after every step, so Ctrl-C still answers within
one step and the handler's exception is raised from plain Python code. The sweep engine wraps
its whole loop the same way and asks :func:`raised_by_signal` whether an exception is the
run's own error (recorded as a failed run) or the process being stopped (raised).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

# Signals whose Python handlers may raise: Ctrl-C, SIGTERM (experiments.signals), SLURM's
# warning signals (submitit requeues or gives up in its SIGUSR2 handler), SIGHUP, alarms.
NOTED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGALRM")
    if hasattr(signal, name)
)

_pending: list[tuple[Callable[[int, Any], Any], int, Any]] = []
_raised: list[BaseException] = []  # the last exception a queued handler raised
_depth = 0  # nesting of deferred()


def _queueing(handler: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
    def queue(signum: int, frame: Any) -> None:
        _pending.append((handler, signum, frame))

    queue.__wrapped__ = handler  # type: ignore[attr-defined]
    return queue


def checkpoint() -> None:
    """Run the handlers of the signals received since the last checkpoint (cheap if none)."""
    while _pending:
        handler, signum, frame = _pending.pop(0)
        try:
            handler(signum, frame)
        except BaseException as err:
            _pending.clear()
            _raised[:] = [err]
            raise


def queue_handlers() -> dict[int, tuple[Any, Any]]:
    """Make the current Python handlers of :data:`NOTED_SIGNALS` queue their signal until the
    next :func:`checkpoint`; returns ``{signal: (handler, wrapper)}``. Main thread only."""
    wrapped = {}
    for signum in NOTED_SIGNALS:
        handler = signal.getsignal(signum)
        if callable(handler):
            wrapped[signum] = (handler, _queueing(handler))
            signal.signal(signum, wrapped[signum][1])
    return wrapped


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Queue signals to :func:`checkpoint` while inside; run what is still queued on leaving.

    Only the main thread can set handlers; in another thread this does nothing (and there the
    handlers do not run anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _depth
    wrapped = queue_handlers()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for signum, (handler, wrapper) in wrapped.items():
            if signal.getsignal(signum) is wrapper:  # unless a handler replaced itself meanwhile
                signal.signal(signum, handler)
        try:
            checkpoint()
        finally:
            if _depth == 0:  # the outermost caller has had its chance to ask raised_by_signal
                _raised.clear()


def raised_by_signal(err: BaseException) -> BaseException | None:
    """The exception a queued signal handler raised, if ``err`` is it (or wraps it); else None.

    Outside :func:`deferred`, an interrupt inside compiled code arrives as a ``SystemError``
    around a ``KeyboardInterrupt`` or ``SystemExit``; that original is returned too.
    """
    seen: set[int] = set()
    origin: BaseException | None = err
    while origin is not None and id(origin) not in seen:
        seen.add(id(origin))
        if any(origin is raised for raised in _raised) or not isinstance(origin, Exception):
            return origin
        if not isinstance(origin, SystemError):
            return None
        origin = origin.__cause__ or origin.__context__
    return None
