"""``paradox status FOLDER``: how far a sweep, or the shards of a multirun of sweeps, has got.

Reads only files: each shard's ``sweep.json`` (its slice of the design) and the runs it has
saved so far (``runs.parquet`` once it has finished, part files under ``parts/`` while it runs;
a part is written every ``sweep.chunk_size`` runs or 30 s, so the count lags by at most that).
Where the folder was submitted to SLURM (``hydra/launcher=slurm``) and ``squeue`` is on PATH,
each shard's job and its state are shown too. One line per shard, then a total::

    shard  runs        done  failed  state
    0      0-99         100       0  finished
    1      100-199       40       0  RUNNING (job 12_1)
    2      200-299        0       -  PENDING Resources (job 12_2)
    total  300          140       0  3 shards of 3 started, 1 finished

For a multirun of ``paradox run`` (one job per run) it lists the jobs, finished when their
``summary.json`` exists. Exit status: 0 when every run is done, 1 while some are not, 2 when the
folder holds neither.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from sim.sweep import MANIFEST_FILE, RUNS_FILE, run_sources


@dataclass
class Shard:
    shard: int
    folder: Path
    first: int
    stop: int
    done: int
    failed: int
    finished: bool
    job: str | None = None
    state: str | None = None

    @property
    def runs(self) -> int:
        return self.stop - self.first


def shard_progress(folder: Path) -> Shard:
    """Runs done and failed in one shard folder (a folder with ``sweep.json``)."""
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    first, stop = (int(x) for x in manifest.get("shard_runs", (0, manifest["n_runs"])))
    ids: set[int] = set()
    failed: set[int] = set()
    for path in run_sources(folder):
        try:
            table = pq.read_table(path, columns=["run_id", "status"])
        except (OSError, ValueError):  # a part being written right now
            continue
        run_ids = table.column("run_id").to_pylist()
        ids.update(run_ids)
        bad = pc.not_equal(table.column("status"), "ok").to_pylist()
        failed.update(r for r, b in zip(run_ids, bad, strict=True) if b)
    in_slice = {r for r in ids if first <= r < stop}
    return Shard(
        shard=int(manifest.get("shard", 0)),
        folder=folder,
        first=first,
        stop=stop,
        done=len(in_slice),
        failed=len(failed & in_slice),
        finished=(folder / RUNS_FILE).exists() and not (folder / "parts").exists(),
    )


def _slurm_tasks(folder: Path) -> dict[int, str]:
    """Job number (the multirun's subfolder) → latest SLURM task id submitted for it."""
    latest: dict[int, tuple[int, str]] = {}
    for path in (folder / ".submitit").glob("*_*"):
        match = re.fullmatch(r"(\d+)_(\d+)", path.name)
        if match:
            array, index = int(match.group(1)), int(match.group(2))
            if index not in latest or array > latest[index][0]:
                latest[index] = (array, path.name)
    return {index: name for index, (_, name) in latest.items()}


def _squeue(task_ids: list[str]) -> dict[str, str]:
    if not task_ids or shutil.which("squeue") is None:
        return {}
    arrays = sorted({t.split("_")[0] for t in task_ids})
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays), "-o", "%i|%T|%r"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 3:
            job, state, reason = fields
            states[job] = state if reason in ("None", "(null)", "") else f"{state} {reason}"
    return states


def status(folder: Path) -> tuple[list[Shard], int | None, int | None]:
    """Every shard under ``folder`` with its progress; the design's runs and shards.

    Runs and shards are None when no shard has written its ``sweep.json`` yet (jobs that are
    still pending are listed from SLURM alone). Raises ``FileNotFoundError`` when the folder
    holds neither a sweep nor submitted jobs.
    """
    if (folder / MANIFEST_FILE).exists():
        dirs = [folder]
    else:
        dirs = sorted(p.parent for p in folder.glob(f"*/{MANIFEST_FILE}"))
    tasks = _slurm_tasks(folder)
    if not dirs and not tasks:
        raise FileNotFoundError(
            f"no sweep in {folder}: no sweep.json there or in its subfolders (give a paradox "
            "sweep folder or the folder of a multirun of its shards)"
        )
    shards = [shard_progress(d) for d in dirs]
    n_runs = num_shards = None
    if dirs:
        manifest = json.loads((dirs[0] / MANIFEST_FILE).read_text())
        n_runs, num_shards = int(manifest["n_runs"]), int(manifest["num_shards"])
    if tasks:
        states = _squeue(list(tasks.values()))
        for s in shards:
            if s.folder.name.isdigit() and int(s.folder.name) in tasks:
                s.job = tasks[int(s.folder.name)]
                s.state = states.get(s.job)
        known = {int(s.folder.name) for s in shards if s.folder.name.isdigit()}
        for num in sorted(set(tasks) - known):  # submitted, no folder yet: shard = job number
            job = tasks[num]
            shards.append(Shard(num, folder / str(num), 0, 0, 0, 0, False, job, states.get(job)))
    return sorted(shards, key=lambda s: s.shard), n_runs, num_shards


def format_status(shards: list[Shard], n_runs: int | None, num_shards: int | None) -> str:
    lines = [f"{'shard':<6} {'runs':<11} {'done':>5} {'failed':>7}  state"]
    for s in shards:
        if s.finished:
            state = "finished"
        elif s.state:
            state = s.state
        elif not s.runs:
            state = "not started"
        else:
            state = "stopped or running" if s.done < s.runs else "done, not merged"
        if s.job:
            state += f" (job {s.job})"
        span, failed = (f"{s.first}-{s.stop - 1}", str(s.failed)) if s.runs else ("", "-")
        lines.append(f"{s.shard:<6} {span:<11} {s.done:>5} {failed:>7}  {state}")
    if num_shards is None or n_runs is None:
        lines.append("no shard has started yet")
        return "\n".join(lines)
    for missing in sorted(set(range(num_shards)) - {s.shard for s in shards}):
        lines.append(f"{missing:<6} {'':<11} {0:>5} {'-':>7}  not started")
    done = sum(s.done for s in shards)
    failed = sum(s.failed for s in shards)
    finished = sum(s.finished for s in shards)
    started = len({s.shard for s in shards if s.runs})
    lines.append(
        f"{'total':<6} {n_runs:<11} {done:>5} {failed:>7}  {started} of {num_shards} shards "
        f"started, {finished} finished; {n_runs - done} runs to go"
    )
    return "\n".join(lines)


def run_jobs(folder: Path) -> tuple[str, bool]:
    """Status of a multirun of ``paradox run`` (job folders with ``summary.json``): the table
    and whether every job has finished."""
    tasks = _slurm_tasks(folder)
    folders = {int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()}
    states = _squeue(list(tasks.values())) if tasks else {}
    lines = [f"{'job':<6} state"]
    finished = 0
    for num in sorted(folders | set(tasks)):
        done = (folder / str(num) / "summary.json").exists()
        finished += done
        state = "finished" if done else states.get(tasks.get(num, ""), "not finished")
        if num in tasks:
            state += f" (job {tasks[num]})"
        lines.append(f"{num:<6} {state}")
    total = len(folders | set(tasks))
    lines.append(f"{'total':<6} {total} jobs of paradox run, {finished} finished")
    return "\n".join(lines), finished == total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paradox status",
        description="Per-shard progress of a paradox sweep folder, or of a multirun of its "
        "shards (e.g. submitted with hydra/launcher=slurm), from the files it has written.",
    )
    parser.add_argument("folder", type=Path, help="a sweep folder or a multirun of its shards")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.folder.is_dir():
        print(f"paradox status: {args.folder} is not a folder", file=sys.stderr)
        return 2
    has_sweep = (args.folder / MANIFEST_FILE).exists() or any(
        args.folder.glob(f"*/{MANIFEST_FILE}")
    )
    if not has_sweep and any(args.folder.glob("*/.hydra")):
        text, finished = run_jobs(args.folder)
        print(text)
        return 0 if finished else 1
    try:
        shards, n_runs, num_shards = status(args.folder)
    except FileNotFoundError as err:
        print(f"paradox status: {err}", file=sys.stderr)
        return 2
    print(format_status(shards, n_runs, num_shards))
    return 0 if n_runs is not None and sum(s.done for s in shards) >= n_runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
