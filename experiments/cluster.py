"""SLURM submission for ``hydra/launcher=slurm``: pre-flight checks, detached submission, waiting.

The launcher (``hydra_plugins.paradox_launcher.slurm.ParadoxSlurmLauncher``, a subclass of
hydra-submitit-launcher's) calls into this module, which needs neither Hydra nor the model:

- :func:`preflight`, before anything is submitted: SLURM's commands are on PATH; the request
  (``cpus_per_task`` x ``tasks_per_node``, ``mem_gb``, ``timeout_min``) fits at least one node
  of the partition, checked against ``sinfo``; the Python interpreter exists; the sweep folder
  is writable; on a cluster of other machines, both sit on a shared (network) file system; no
  job of an earlier submission into the same folder is still queued or running. A failed check
  raises :class:`ClusterError` with one line naming the key, the request and the largest node;
  the launcher prints it and exits 2.
- :func:`detached`, with ``hydra.launcher.detach=true``: the lines printed after submitting (job
  ids, and the exact ``paradox status``, ``paradox collect`` and resume commands).
- :func:`wait`, otherwise: polls ``squeue`` (not ``sacct``, which many clusters and a bare
  single-node SLURM do not have) until every array task has a result or has left the queue
  without one, failing fast on a pending reason that never passes (``PartitionConfig`` and the
  like). Tasks that ended without a result (cancelled, timed out after their resubmissions,
  out of memory) end in :class:`Unfinished`, whose message tells the user to rerun the
  same command with ``hydra.sweep.dir=<folder>``; a sweep shard then resumes from its finished
  runs.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Network and cluster file systems (``/proc/mounts`` types) a compute node can see.
SHARED_FS = (
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "beegfs",
    "cifs",
    "smb3",
    "ceph",
    "cephfs",
    "panfs",
    "wekafs",
    "glusterfs",
    "fuse.glusterfs",
    "fuse.sshfs",
    "fuse.cephfs",
    "fuse.gcsfuse",
    "9p",
    "virtiofs",
)
#: squeue's final states of a job (it keeps finished jobs visible for MinJobAge seconds).
FINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
    "TIMEOUT",
}
#: Pending reasons that never pass by waiting: the request exceeds what the partition allows.
NEVER_RUNS = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxMemoryPerJob",
    "QOSMaxWallDurationPerJobLimit",
    "AssocMaxWallDurationPerJobLimit",
}
COMMANDS = ("sbatch", "sinfo", "squeue", "scancel")
# slurmctld checks time limits every 30 s, so the warning (SIGUSR2 signal_delay_s before the
# limit) can come 30 s early; 15 s more leaves a task time to start and install its handler.
SIGNAL_SLACK_S = 45


class ClusterError(RuntimeError):
    """A request that cannot run: one line, naming the key and what would fit."""


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    cpus: int
    memory_mb: int
    partition: str
    default: bool
    time_limit_min: float  # the partition's MaxTime; inf when unlimited


def _run(argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def parse_time_limit(text: str) -> float:
    """sinfo's ``%l`` (``infinite``, ``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``) in minutes."""
    text = text.strip()
    if text in ("infinite", "UNLIMITED", "n/a", ""):
        return float("inf")
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 3:
        h, m, s = parts
    elif len(parts) == 2:
        h, (m, s) = 0, parts
    else:
        h, m, s = 0, parts[0], 0
    return days * 1440 + h * 60 + m + s / 60


def nodes(runner: Callable[[Sequence[str]], subprocess.CompletedProcess[str]] = _run) -> list[Node]:
    """Every (node, partition) pair ``sinfo`` reports, with CPUs, memory and time limit."""
    proc = runner(["sinfo", "-h", "-N", "-o", "%N|%o|%c|%m|%P|%l"])
    if proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise ClusterError(
            f"sinfo failed ({said}): this machine does not reach a SLURM controller (submit from "
            "the cluster's login node; a test cluster needs SLURM_CONF)"
        )
    found = []
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6:
            continue
        name, address, cpus, memory, partition, limit = fields
        found.append(
            Node(
                name=name,
                address=address,
                cpus=int(re.sub(r"\D.*", "", cpus) or 0),
                memory_mb=int(re.sub(r"\D.*", "", memory) or 0),
                partition=partition.rstrip("*"),
                default=partition.endswith("*"),
                time_limit_min=parse_time_limit(limit),
            )
        )
    return found


def _gb(memory_mb: int) -> str:
    return f"{memory_mb / 1024:.0f} GB" if memory_mb >= 10240 else f"{memory_mb / 1024:.1f} GB"


def check_request(params: Mapping[str, Any], found: Sequence[Node]) -> None:
    """Raise :class:`ClusterError` unless the request fits one node of the partition."""
    partition = params.get("partition")
    if partition:
        candidates = [n for n in found if n.partition == partition]
        if not candidates:
            names = sorted({n.partition for n in found})
            raise ClusterError(
                f"hydra.launcher.partition={partition}: no such partition; sinfo lists "
                f"{', '.join(names) or 'none'}"
            )
        where = f"partition {partition}"
    else:
        candidates = [n for n in found if n.default] or list(found)
        where = f"the default partition {candidates[0].partition}" if candidates else "the cluster"
    if not candidates:
        raise ClusterError("sinfo lists no nodes: is this a SLURM cluster?")
    per_task = params.get("cpus_per_task") or 1
    tasks = params.get("tasks_per_node") or 1
    cpus = int(per_task) * int(tasks)
    mem_gb = params.get("mem_gb")
    mem_mb = int(float(mem_gb) * 1024) if mem_gb else 0
    fits = [n for n in candidates if n.cpus >= cpus and n.memory_mb >= mem_mb]
    if not fits:
        big = max(candidates, key=lambda n: (n.cpus, n.memory_mb))
        asked = [f"hydra.launcher.cpus_per_task={per_task}"]
        if int(tasks) != 1:
            asked.append(f"hydra.launcher.tasks_per_node={tasks}")
        if mem_gb:
            asked.append(f"hydra.launcher.mem_gb={mem_gb}")
        fit_cpus = max(1, big.cpus // int(tasks))
        fit_mem = max(1, int(big.memory_mb * 0.9 / 1024))
        raise ClusterError(
            f"{' '.join(asked)} fits no node of {where}: the largest node, {big.name}, has "
            f"{big.cpus} CPUs and {_gb(big.memory_mb)}; ask for at most that, e.g. "
            f"hydra.launcher.cpus_per_task={min(int(per_task), fit_cpus)} "
            f"hydra.launcher.mem_gb={min(int(float(mem_gb or fit_mem)), fit_mem)}"
        )
    timeout = params.get("timeout_min")
    delay = params.get("signal_delay_s")
    if timeout and delay is not None and float(timeout) * 60 < float(delay) + SIGNAL_SLACK_S:
        # slurmctld checks time limits every 30 s and may warn that much early: the warning
        # could reach a task before submitit's handler is installed and kill it (FAILED).
        raise ClusterError(
            f"hydra.launcher.timeout_min={timeout} leaves no room for the time-limit warning "
            f"(hydra.launcher.signal_delay_s={delay}, which SLURM may send up to 30 s early): "
            f"make timeout_min x 60 at least signal_delay_s + {SIGNAL_SLACK_S}, e.g. "
            f"hydra.launcher.timeout_min={math.ceil((float(delay) + SIGNAL_SLACK_S) / 60)}"
        )
    longest = max(n.time_limit_min for n in candidates)
    if timeout and float(timeout) > longest:
        raise ClusterError(
            f"hydra.launcher.timeout_min={timeout} exceeds the time limit of {where} "
            f"({longest:.0f} minutes); ask for at most that"
        )


def filesystem_type(path: Path) -> str:
    """The ``/proc/mounts`` type of the file system holding ``path`` (longest mount prefix)."""
    path = path.resolve()
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == Path(point) or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _this_host(node: Node) -> bool:
    names = {socket.gethostname(), socket.getfqdn(), socket.gethostname().split(".")[0]}
    if node.name in names or node.address in names:
        return True
    if node.address in ("localhost", "127.0.0.1", "::1") or node.address.startswith("127."):
        return True
    return False


def check_paths(
    python: str, sweep_dir: Path, found: Sequence[Node], partition: str | None = None
) -> None:
    """The interpreter exists; the folder is writable; both are shared when nodes are remote."""
    exe = Path(python)
    if not exe.exists() or not os.access(exe.resolve(), os.X_OK):
        raise ClusterError(f"the Python interpreter {python} does not exist or is not executable")
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=sweep_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ClusterError(
            f"hydra.sweep.dir={sweep_dir}: cannot write there ({err.strerror or err}); "
            "choose a folder on a file system the compute nodes share"
        ) from None
    candidates = [n for n in found if not partition or n.partition == partition]
    if all(_this_host(n) for n in candidates):
        return  # a single machine: every path is visible to the node
    for what, path in (("the Python interpreter", exe), ("hydra.sweep.dir", sweep_dir)):
        kind = filesystem_type(path)
        if kind not in SHARED_FS and not kind.startswith("fuse"):
            raise ClusterError(
                f"{what} {path} is on a local file system ({kind}) that the compute nodes "
                "cannot see; put the project (its .venv) and results/ on the shared file "
                "system (e.g. your home or project space), or set hydra.launcher.preflight=false "
                "if this file system is shared after all"
            )


def queued_jobs(sweep_dir: Path, runner=_run) -> list[str]:
    """Jobs of earlier submissions into ``sweep_dir`` that are still pending or running."""
    ids = sorted(array_ids(sweep_dir))
    if not ids:
        return []
    proc = runner(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T"])
    if proc.returncode != 0:
        return []
    return [
        line.split("|")[0]
        for line in proc.stdout.splitlines()
        if "|" in line and line.split("|")[1] not in FINAL_STATES
    ]


def array_ids(sweep_dir: Path) -> set[str]:
    """SLURM array job ids submitted into ``sweep_dir`` (from submitit's ``.submitit`` folders)."""
    found = set()
    for path in (sweep_dir / ".submitit").glob("*_*"):
        match = re.fullmatch(r"(\d+)_(\d+)", path.name)
        if match:
            found.add(match.group(1))
    return found


def preflight(
    params: Mapping[str, Any], sweep_dir: Path, python: str = sys.executable, runner=_run
) -> None:
    """Every check before submitting; raises :class:`ClusterError` with one line."""
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        raise ClusterError(
            f"hydra/launcher=slurm needs SLURM's commands, and {', '.join(missing)} is not on "
            "PATH: submit from a machine of the cluster (its login node)"
        )
    found = nodes(runner)
    check_request(params, found)
    check_paths(python, sweep_dir, found, params.get("partition"))
    busy = queued_jobs(sweep_dir, runner)
    if busy:
        raise ClusterError(
            f"jobs {', '.join(busy)} of an earlier submission into {sweep_dir} are still queued "
            f"or running; wait for them (paradox status {sweep_dir}) or cancel them "
            f"(scancel {' '.join(sorted({b.split('_')[0] for b in busy}))}) before resubmitting"
        )


def discard_unused(sweep_dir: Path) -> None:
    """Remove a multirun folder that holds nothing but Hydra's ``multirun.yaml``.

    Hydra writes that file before the launcher runs; when the pre-flight refuses, the folder
    would otherwise stay behind, empty of results.
    """
    if sweep_dir.is_dir() and {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml"}:
        shutil.rmtree(sweep_dir)


# --------------------------------------------------------------------------------------------
# After submitting
# --------------------------------------------------------------------------------------------


def app_command(job_name: str, sweep_dir: Path, argv: Sequence[str] | None = None) -> str:
    """The command line to rerun this multirun into ``sweep_dir`` (which makes it resume)."""
    argv = list(sys.argv if argv is None else argv)
    prog = argv[0] if argv and argv[0].startswith("paradox") else f"paradox {job_name}"
    rest = [a for a in argv[1:] if not a.startswith("hydra.sweep.dir=")]
    if "-m" not in rest and "--multirun" not in rest:
        rest.insert(0, "-m")
    return " ".join([prog, shlex.join([*rest, f"hydra.sweep.dir={sweep_dir}"])])


def detached(array_id: str, n_tasks: int, sweep_dir: Path, resume: str) -> str:
    """What a detached submission prints: the jobs, then how to follow, collect and resume."""
    last = f"{array_id}_{n_tasks - 1}"
    return "\n".join(
        [
            f"submitted {n_tasks} job(s) as SLURM array {array_id} "
            f"({array_id}_0{' .. ' + last if n_tasks > 1 else ''}); they write into {sweep_dir}",
            f"  progress: paradox status {sweep_dir}",
            f"  collect:  paradox collect {sweep_dir}",
            f"  resume:   {resume}",
            f"  cancel:   scancel {array_id}",
            "Resume (the same command with hydra.sweep.dir) once no job is queued or running, "
            "if some did not finish; it skips the runs already done.",
            str(sweep_dir),
        ]
    )


@dataclass
class Ended:
    """An array task that left the queue without a result."""

    index: int
    job_id: str
    state: str
    log: Path | None


class Unfinished(RuntimeError):
    """Some array tasks ended without a result; the message says how to resume."""

    def __init__(
        self,
        ended: Sequence[Ended],
        total: int,
        resume: str,
        failures: Sequence[str] = (),
        timed_out: Sequence[str] = (),
    ):
        self.ended = list(ended)
        parts = [
            f"job {e.index} ({e.job_id}: {e.state}{', log ' + str(e.log) if e.log else ''})"
            for e in ended
        ]
        parts += [*timed_out, *failures]
        states = {e.state.split()[0] for e in ended}
        hint = ""
        if timed_out or "TIMEOUT" in states:
            hint = " (timed out after its resubmissions: raise hydra.launcher.timeout_min)"
        elif "OUT_OF_MEMORY" in states:
            hint = " (out of memory: raise hydra.launcher.mem_gb)"
        super().__init__(
            f"{len(parts)} of {total} jobs did not finish{hint}: {'; '.join(parts)}. The "
            f"finished runs are saved; rerun to resume: {resume}"
        )


def squeue_states(array_ids_: Sequence[str], runner=_run) -> dict[str, tuple[str, str]] | None:
    """``{"<array>_<task>": (state, reason)}`` for the tasks still known to slurmctld."""
    proc = runner(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(array_ids_), "-o", "%i|%T|%r"])
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return {}
        return None  # a transient failure: try again at the next poll
    states = {}
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 3:
            states[fields[0]] = (fields[1], fields[2])
    return states


def wait(
    jobs: Sequence[Any],
    *,
    resume: str,
    cancel: Callable[[Sequence[str]], None],
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    runner=_run,
    poll_s: float = 2.0,
    max_poll_s: float = 30.0,
) -> list[Any]:
    """Wait for submitit ``jobs`` (tasks of one or more arrays); return their results in order.

    A task is done when submitit's result file exists. A task that is in a final state (or gone
    from ``squeue``) without one for a few polls has ended unfinished. Raises
    :class:`ClusterError` when a task pends for a reason that never passes (after cancelling the
    jobs), :class:`Unfinished` when tasks ended without a result or raised.
    """
    arrays = sorted({j.job_id.split("_")[0] for j in jobs})
    open_ = dict(enumerate(jobs))
    ended: list[Ended] = []
    misses: dict[int, int] = {}
    started = time.monotonic()
    last_summary = ""
    while open_:
        states = squeue_states(arrays, runner)
        counts: dict[str, int] = {}
        for i, job in list(open_.items()):
            if job.paths.result_pickle.exists():
                del open_[i]
                continue
            if states is None:
                continue
            state, reason = states.get(job.job_id, ("", ""))
            counts[state or "gone"] = counts.get(state or "gone", 0) + 1
            if state == "PENDING" and reason in NEVER_RUNS:
                cancel(arrays)
                raise ClusterError(
                    f"job {job.job_id} can never start (Reason={reason}): the request exceeds "
                    "what the partition allows; the jobs were cancelled"
                )
            if state and state not in FINAL_STATES:
                misses.pop(i, None)
                continue
            # final, or no longer listed: give the result file a few polls to appear
            misses[i] = misses.get(i, 0) + 1
            if misses[i] >= 3:
                log_path = job.paths.stderr if job.paths.stderr.exists() else None
                ended.append(Ended(i, job.job_id, _describe(state, reason), log_path))
                del open_[i]
        counts["finished"] = len(jobs) - len(open_) - len(ended)
        counts["ended unfinished"] = len(ended)
        summary = ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()) if v)
        if summary and summary != last_summary:
            log(f"slurm: {summary}")
            last_summary = summary
        if open_:
            elapsed = time.monotonic() - started
            time.sleep(min(max_poll_s, poll_s + elapsed / 20))
    results: list[Any] = []
    failures: list[str] = []
    timed_out: list[str] = []
    for i, job in enumerate(jobs):
        if any(e.index == i for e in ended):
            results.append(None)
            continue
        try:
            result = job.results()[0]
        except Exception as err:  # the job's function raised: report its last line
            text = str(err)
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            lines = [ln for ln in lines if not ln.startswith("-")]
            detail = lines[-2] if len(lines) >= 2 else (lines or [type(err).__name__])[-1]
        else:
            raised = raised_in_task(result)
            if raised is None:
                results.append(result)
                continue
            text = detail = f"{type(raised).__name__}: {raised}"
        if "timed-out too many times" in text:  # submitit gave up resubmitting
            timed_out.append(f"job {i} ({job.job_id}: TIMEOUT)")
        else:
            failures.append(f"job {i} ({job.job_id}) raised: {detail.strip()}")
        results.append(None)
    if ended or failures or timed_out:
        raise Unfinished(ended, len(jobs), resume, failures, timed_out)
    return results


def raised_in_task(result: Any) -> BaseException | None:
    """The exception a job's task function raised, if ``result`` is Hydra's record of one.

    Hydra's ``run_job`` catches an exception of the task function and returns it inside a
    ``JobReturn`` whose status is FAILED; submitit then stores that as a success. Unchecked,
    reading its ``return_value`` later re-raised the exception in the submitting process, which
    ended in a traceback (submitit's ``UncompletedJobError`` after the last resubmission).
    """
    status = getattr(result, "status", None)
    if getattr(status, "name", None) != "FAILED":
        return None
    raised = getattr(result, "_return_value", None)
    return raised if isinstance(raised, BaseException) else RuntimeError(str(raised))


def sbatch_error(err: BaseException) -> str:
    """The line of a failed submission that says why (sbatch's ``error:`` line)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return lines[-1] if lines else type(err).__name__


def _describe(state: str, reason: str) -> str:
    if not state:
        return "ended without a result"
    if reason and reason not in ("None", "(null)"):
        return f"{state} {reason}"
    return state
