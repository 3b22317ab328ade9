"""Worker processes that leave nothing behind.

Every pool of the project (the sweep engine's, the market theory's overlays, ``paradox
validate`` and ``paradox boundary``) starts its workers with :func:`worker_start`:

* a worker ends as soon as the process that started it ends (:func:`die_with`), so ``kill -9``,
  an out-of-memory kill or a scheduler's SIGKILL leaves no worker computing on;
* SLURM's warning signals (SIGUSR1/2, sent to every process of a job step) are left to the
  parent, which decides what to do (submitit requeues or gives up); a worker's default action
  would be to die and the parent would report a broken pool instead;
* Ctrl-C and the other handlers act between model steps (:mod:`sim.interrupts`).

:func:`fresh_pool` is the pool itself for callers that need no more: fresh processes (fork
server, else spawn; never fork, since the caller may run threads), and on any interruption the
workers are killed at once instead of finishing their tasks.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from sim import interrupts


def worker_start(pid: int) -> None:
    """Worker initializer: leave SLURM's warning signals to the parent, let the remaining
    handlers (Ctrl-C) act between steps, and end with process ``pid`` (the parent)."""
    for name in ("SIGUSR1", "SIGUSR2"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    interrupts.queue_handlers()  # for the life of the worker
    die_with(pid)


def die_with(pid: int) -> None:
    """End this worker as soon as process ``pid`` ends.

    A worker's parent is the fork server, not the process that asked for the pool, so a
    parent-death signal would not fire when that process is killed: the workers, and the fork
    server waiting for them, would live on. A daemon thread waits on a pidfd of ``pid`` (or
    polls it, where pidfds are missing) and exits the worker when it is gone.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
        fd = None

    def _watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=_watch, name="die-with-parent", daemon=True).start()


def fresh_context() -> multiprocessing.context.BaseContext:
    """Fresh worker processes: the fork server where there is one, else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's workers now, rather than wait for their tasks."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.kill()


@contextlib.contextmanager
def fresh_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` fresh processes started by :func:`worker_start`; on an exception
    (Ctrl-C, SIGTERM, a task's error) its workers are killed instead of finishing their tasks."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=fresh_context(),
        initializer=worker_start,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    except BaseException:
        kill_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
