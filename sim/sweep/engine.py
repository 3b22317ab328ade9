"""The engine: runs one shard of a design with a pool of worker processes.

The engine (:func:`run_sweep`) runs the runs of one shard with a pool of worker processes,
streams finished runs to atomically written part files, and finally merges the parts into one
sorted ``runs.parquet`` (and ``timeseries.parquet`` on request) block by block, so neither the
runs nor their tables are ever all in memory. Rerunning it on the same folder skips every run
already on disk (resume after a crash or ``SIGKILL``). A run that raises is recorded with status
``failed`` and its error message; an exception a signal handler raised during a run (Ctrl-C,
SIGTERM, submitit's time-limit handler on SLURM's SIGUSR2) is not the run's failure and stops
the sweep instead (:mod:`sim.interrupts`). This module does not import Hydra.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from sim import interrupts, pools
from sim.config import Config, validate
from sim.outcomes import OUTCOMES, summarize
from sim.sweep.design import Design
from sim.sweep.guard import check_folder, code_version, folder_lock, quarantine_corrupt
from sim.sweep.spec import SweepAborted
from sim.sweep.store import (
    MANIFEST_FILE,
    PartWriter,
    done_runs,
    finalize,
    outcome_row,
    parameter_row,
    remove_parts,
    run_sources,
    runs_schema,
    scan_folder,
    write_json,
)

# --------------------------------------------------------------------------------------------
# One run (executed in a worker process)
# --------------------------------------------------------------------------------------------

Runner = Callable[[Config], pd.DataFrame]


def simulate_table(config: Config) -> pd.DataFrame:
    """The default runner: simulate ``config`` and return its per-step outcome table."""
    from sim.api import simulate, timeseries

    return timeseries(simulate(steps=config.steps, seed=config.seed, config=config))


@dataclass(frozen=True)
class Task:
    run_id: int
    point_id: int
    replicate: int
    config: Config
    keep_timeseries: bool
    runner: Runner


def execute(task: Task) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Run one task; a run that raises becomes a row with status ``failed`` and its error."""
    interrupts.checkpoint()  # a signal received between runs stops the sweep here
    cfg = task.config
    row: dict[str, Any] = {
        "run_id": task.run_id,
        "point_id": task.point_id,
        "replicate": task.replicate,
        "seed": cfg.seed,
        **parameter_row(cfg),
    }
    try:
        validate(cfg)
        table = task.runner(cfg)
        row.update(outcome_row(summarize(table, cfg.burn_in)), status="ok", error=None)
    except Exception as err:
        interruption = interrupts.raised_by_signal(err)
        if interruption is not None:  # the process is being stopped, the run did not fail
            raise interruption from None
        message = " ".join(str(err).split()) or "(no message)"
        row.update(outcome_row(None), status="failed", error=f"{type(err).__name__}: {message}")
        return row, None
    if not task.keep_timeseries:
        return row, None
    table = table[["step", *OUTCOMES]].copy()
    table.insert(0, "run_id", task.run_id)
    return row, table


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one call of :func:`run_sweep` did, and the state of the folder afterwards."""

    folder: Path
    runs: int  # runs in this shard
    resumed: int  # of which already on disk before this call
    ran: int  # run by this call
    failed: int  # runs with status failed (all of the shard's, including resumed ones)
    missing: int  # runs with no row (0 unless the sweep stopped early)
    first_error: str | None
    seconds: float
    workers: int

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.missing == 0


def available_cores() -> int:
    """Cores this process may use (respects CPU affinity, e.g. a SLURM allocation)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_sweep(
    design: Design,
    folder: Path,
    *,
    runner: Runner = simulate_table,
    flush_seconds: float = 30.0,
) -> SweepResult:
    """Run (or resume) the shard ``design.spec.shard`` of ``design`` into ``folder``.

    Writes ``sweep.json`` first; finished runs go to ``parts/`` as they complete; at the end
    ``runs.parquet`` (and ``timeseries.parquet`` with ``save_timeseries``) are merged from the
    parts and the parts are removed. Runs already in the folder are skipped. ``runner`` maps a
    validated configuration to its per-step table (default: the simulation).
    """
    with folder_lock(folder):  # one process at a time writes into a sweep folder
        return _run_sweep(design, folder, runner, flush_seconds)


def _run_sweep(design: Design, folder: Path, runner: Runner, flush_seconds: float) -> SweepResult:
    t0 = time.perf_counter()
    spec = design.spec
    folder.mkdir(parents=True, exist_ok=True)
    if not check_folder(folder, design):
        write_json(folder / MANIFEST_FILE, {**design.manifest(), "code": code_version()})
    quarantine_corrupt(folder)  # a damaged part file is set aside and its runs rerun
    scan_folder(folder)
    ids = design.shard_range()
    done = done_runs(run_sources(folder), ids)
    n_todo = len(ids) - int(done.sum())
    workers = min(spec.workers or available_cores(), max(1, n_todo))
    writer = PartWriter(
        folder,
        runs_schema(design.varied),
        chunk_size=spec.chunk_size,
        keep_ts=spec.save_timeseries,
    )
    tasks = (
        Task(
            run_id=rid,
            point_id=rid // spec.replicates,
            replicate=rid % spec.replicates,
            config=design.config(rid),
            keep_timeseries=spec.save_timeseries,
            runner=runner,
        )
        for rid in ids
        if not done[rid - ids.start]
    )
    bar = tqdm(
        total=len(ids),
        initial=int(done.sum()),
        desc=f"sweep {spec.name}",
        unit="run",
        file=sys.stderr,
        disable=None if spec.progress is None else not spec.progress,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
        smoothing=0.05,
        dynamic_ncols=True,
    )
    try:
        if workers == 1:
            with interrupts.deferred():
                for task in tasks:
                    writer.add(*execute(task))
                    bar.update()
                    if writer.due(flush_seconds):
                        writer.flush()
        else:
            _run_pool(tasks, writer, bar, workers, flush_seconds)
    finally:
        # Whatever happens (Ctrl-C, a dead worker), the runs that finished are kept.
        writer.flush()
        bar.close()
    stats = finalize(
        [folder],
        folder,
        design.varied,
        timeseries=spec.save_timeseries,
        steps=design.max_steps(),
        chunk_size=spec.chunk_size,
    )
    remove_parts(folder)
    return SweepResult(
        folder=folder,
        runs=len(ids),
        resumed=int(done.sum()),
        ran=writer.written,
        failed=stats.failed,
        missing=len(ids) - stats.rows,
        first_error=stats.first_error,
        seconds=time.perf_counter() - t0,
        workers=workers,
    )


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fresh worker processes: forkserver (preloading the model) where there is one, else spawn.

    Plain ``fork`` is avoided: the parent runs threads (pyarrow, tqdm), and forking a threaded
    process can deadlock the child.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["sim.sweep", "sim.api"])
        return ctx
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _standard_start_method(method: str) -> Iterator[None]:
    """Make the process-wide start method a standard one while worker processes start.

    A new worker is told the parent's global start method; inside a job of the joblib launcher
    that is ``loky``, which a fresh worker does not know, so it would die on start-up.
    """
    current = multiprocessing.get_start_method(allow_none=True)
    if current in (None, "fork", "spawn", "forkserver"):
        yield
        return
    multiprocessing.set_start_method(method, force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(current, force=True)


def _run_pool(
    tasks: Iterator[Task], writer: PartWriter, bar: tqdm, workers: int, flush_seconds: float
) -> None:
    """Keep ``4 x workers`` runs in flight; record each as it finishes."""
    ctx = _pool_context()
    with _standard_start_method(ctx.get_start_method()):
        pool = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=pools.worker_start, initargs=(os.getpid(),)
        )
        _pool_loop(pool, 4 * workers, tasks, writer, bar, flush_seconds)


def _pool_loop(
    pool: ProcessPoolExecutor,
    window: int,
    tasks: Iterator[Task],
    writer: PartWriter,
    bar: tqdm,
    flush_seconds: float,
) -> None:
    inflight: dict[Future, int] = {}
    try:
        exhausted = False
        while inflight or not exhausted:
            while not exhausted and len(inflight) < window:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                inflight[pool.submit(execute, task)] = task.run_id
            if not inflight:
                break
            finished, _ = wait(inflight, timeout=flush_seconds, return_when=FIRST_COMPLETED)
            for future in finished:
                inflight.pop(future)
                writer.add(*future.result())
                bar.update()
            if writer.due(flush_seconds):
                writer.flush()
    except BrokenProcessPool as err:
        raise SweepAborted(
            "a worker process died (out of memory, or killed); the finished runs are saved: "
            "rerun the same command to resume"
        ) from err
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: stop the workers now rather than wait for their runs (which a
        # resume redoes); the finished runs are flushed by the caller.
        pools.kill_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def format_result(design: Design, result: SweepResult) -> str:
    """The summary printed at the end of a sweep."""
    spec = design.spec
    shard = (  # numbered as sweep.shard is: 0 to num_shards - 1
        f", shard {spec.shard} (shards 0 to {spec.num_shards - 1})" if spec.num_shards > 1 else ""
    )
    rate = result.ran / result.seconds if result.seconds > 0 else float("nan")
    lines = [
        f"sweep {spec.name}: {design.describe()}{shard}",
        f"{result.runs} runs: {result.ran} run now, {result.resumed} already done; "
        f"{result.runs - result.failed - result.missing} ok, {result.failed} failed"
        + (f", {result.missing} missing" if result.missing else ""),
        f"{result.seconds:.1f} s with {result.workers} worker(s), {rate:.3g} runs/s",
    ]
    if result.failed:
        lines.append(f"first failure: {result.first_error}")
        lines.append("failed runs have status 'failed' and their error in runs.parquet")
    return "\n".join(lines)
