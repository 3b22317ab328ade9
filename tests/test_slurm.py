"""The SLURM path end to end, on a real single-node SLURM started by the fixture (issue 16).

Marked ``system`` (``make test-system``): they need Debian's slurm-wlm and munge (``make
sysdeps``) and root, and skip with the reason where those are missing. Under CI (``CI=true``) a
SLURM that is installed but does not start fails the tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.collect import main as collect_main

from .conftest import PARADOX, REPO
from .slurm_cluster import LocalSlurm, unavailable

pytestmark = pytest.mark.system

#: 400 runs of about 0.1 s: each of two shards takes 15 to 30 s on one core, long enough to
#: cancel one midway; parts every 10 runs, so a cancelled shard has saved some.
WORKLOAD = [
    "sweep=paradox_curve",
    "steps=150",
    "model.n_adversaries=40",
    "model.n_labs=3",
    "sweep.chunk_size=10",
]
SHARDS = ["sweep.num_shards=2", "sweep.shard=range(0,2)"]
SMALL_JOBS = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except RuntimeError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"SLURM is installed but did not start here: {err}")
    yield cluster
    cluster.stop()


def _env(cluster: LocalSlurm, home: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(REPO),
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(home),
        **cluster.env,
    }


def paradox(cluster: LocalSlurm, *args: str, cwd: Path, timeout: float = 600):
    return subprocess.run(
        [*PARADOX, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(cluster, cwd),
    )


def _as_argv(command: str) -> list[str]:
    """A printed ``paradox <app> ...`` command as this interpreter runs it."""
    words = shlex.split(command)
    assert words[0] == "paradox", command
    return [*PARADOX, *words[1:]]


def squeue(cluster: LocalSlurm, *args: str) -> list[str]:
    proc = subprocess.run(
        ["squeue", "-h", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **cluster.env},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def wait_for_queue_empty(cluster: LocalSlurm, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while squeue(cluster, "-o", "%i"):
        assert time.monotonic() < deadline, "jobs still queued"
        time.sleep(1)


@pytest.fixture(scope="module")
def local_table(tmp_path_factory):
    """The same sweep run locally, in one job: the reference table."""
    where = tmp_path_factory.mktemp("local")
    proc = subprocess.run(
        [*PARADOX, "sweep", *WORKLOAD, "sweep.workers=2", f"hydra.run.dir={where / 'sweep'}"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(where)},
    )
    assert proc.returncode == 0, proc.stderr
    return pd.read_parquet(where / "sweep" / "runs.parquet")


def test_oversized_request_fails_fast_naming_request_and_largest_node(slurm, tmp_path):
    cpus = slurm.cpus + 1
    folder = tmp_path / "big"
    t0 = time.monotonic()
    proc = paradox(
        slurm,
        "sweep",
        "-m",
        "hydra/launcher=slurm",
        f"hydra.launcher.cpus_per_task={cpus}",
        *WORKLOAD,
        *SHARDS,
        f"hydra.sweep.dir={folder}",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 60
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"hydra.launcher.cpus_per_task={cpus}" in lines[0]
    assert f"the largest node, localhost, has {slurm.cpus} CPUs" in lines[0]
    assert not folder.exists()
    assert squeue(slurm, "-o", "%i") == []  # nothing was submitted

    memory_gb = slurm.memory_mb // 1024 + 1
    proc = paradox(
        slurm,
        "sweep",
        "-m",
        *SMALL_JOBS,
        f"hydra.launcher.mem_gb={memory_gb}",
        *WORKLOAD,
        *SHARDS,
        f"hydra.sweep.dir={folder}",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"hydra.launcher.mem_gb={memory_gb} fits no node" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr

    # without the pre-flight, SLURM accepts the array but never starts it (the hang of issue
    # 16): the launcher sees the pending reason, cancels the jobs and says why
    proc = paradox(
        slurm,
        "sweep",
        "-m",
        "hydra/launcher=slurm",
        f"hydra.launcher.cpus_per_task={cpus}",
        "hydra.launcher.preflight=false",
        *WORKLOAD,
        *SHARDS,
        f"hydra.sweep.dir={folder}",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "can never start (Reason=PartitionConfig)" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    wait_for_queue_empty(slurm, timeout=60)


def test_sharded_sweep_on_slurm_equals_the_local_run(slurm, local_table, tmp_path):
    folder = tmp_path / "shards"
    proc = paradox(
        slurm, "sweep", "-m", *SMALL_JOBS, *WORKLOAD, *SHARDS, f"hydra.sweep.dir={folder}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(folder)
    assert "Bypassing sacct" not in proc.stderr and "Traceback" not in proc.stderr
    # both shards ran as tasks of one array
    tasks = [p.name for p in (folder / ".submitit").iterdir() if re.fullmatch(r"\d+_\d", p.name)]
    assert len(tasks) == 2 and len({t.split("_")[0] for t in tasks}) == 1, tasks
    assert collect_main([str(folder)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "runs.parquet"), local_table)


def test_cancelled_task_resumes_with_nothing_lost_or_duplicated(slurm, local_table, tmp_path):
    folder = tmp_path / "cancel"
    sweep = subprocess.Popen(
        [*PARADOX, "sweep", "-m", *SMALL_JOBS, *WORKLOAD, *SHARDS, f"hydra.sweep.dir={folder}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(slurm, tmp_path),
    )
    try:
        # wait until shard 0 runs and has saved some runs, then cancel its array task
        deadline = time.monotonic() + 300
        task = None
        while time.monotonic() < deadline:
            tasks = [p.name for p in (folder / ".submitit").glob("*_0")]
            parts = list((folder / "0" / "parts").glob("runs-*.parquet"))
            if tasks and parts:
                task = tasks[0]
                break
            time.sleep(0.2)
        assert task, "shard 0 never saved a part"
        assert squeue(slurm, "-j", task, "-o", "%T") == ["RUNNING"]
        subprocess.run(["scancel", task], check=True, env={**os.environ, **slurm.env})
        _, err = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.send_signal(signal.SIGINT)
            sweep.wait(30)
    assert sweep.returncode == 1, err
    message = err.strip().splitlines()[-1]
    assert f"job 0 ({task}: CANCELLED" in message
    assert "Traceback" not in err and "Bypassing sacct" not in err
    resume = message.split("rerun to resume: ", 1)[1]
    assert f"hydra.sweep.dir={folder}" in resume
    wait_for_queue_empty(slurm)

    status = subprocess.run(
        [*PARADOX, "status", str(folder)], capture_output=True, text=True,
        env=_env(slurm, tmp_path), timeout=120,
    )  # fmt: skip
    assert status.returncode == 1, status.stderr
    shard0 = next(ln for ln in status.stdout.splitlines() if ln.startswith("0 "))
    done0 = int(shard0.split()[2])
    assert 0 < done0 < 200 and "CANCELLED" in shard0
    assert collect_main([str(folder)]) == 1  # runs are missing

    rerun = subprocess.run(
        _as_argv(resume), cwd=tmp_path, capture_output=True, text=True,
        env=_env(slurm, tmp_path), timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    # the resumed shard ran only the runs it had not saved
    ran = json.loads((folder / "0" / "provenance.json").read_text())["sweep"]
    assert (ran["ran"], ran["resumed"]) == (200 - done0, done0)
    assert collect_main([str(folder)]) == 0
    table = pd.read_parquet(folder / "runs.parquet")
    assert table["run_id"].is_unique and len(table) == 400
    pd.testing.assert_frame_equal(table, local_table)


def test_timed_out_shard_is_resubmitted_then_told_to_rerun(slurm, tmp_path):
    """A shard that reaches its time limit is requeued (once here) and resumes; when the
    resubmissions are used up, the submitter says so and prints the command to rerun.

    slurmctld checks time limits every 30 s and sends the warning once the time left is below
    signal_delay_s + 30 s: with a 2-minute limit and a 75 s delay, 15 to 45 s after a start, so
    never before submitit has installed its handler (a 1-minute limit with a 30 s delay could
    signal a task in its first second and kill it outright). The work (416 runs of 1,000 steps
    on one core) outlasts both attempts."""
    folder = tmp_path / "timeout"
    proc = paradox(
        slurm, "sweep", "-m", *SMALL_JOBS, "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=75", "hydra.launcher.max_num_timeout=1",
        "sweep=sobol_screen", "steps=1000", "sweep.chunk_size=5", "sweep.num_shards=1",
        "sweep.shard=0", f"hydra.sweep.dir={folder}", cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert "1 of 1 jobs did not finish (timed out after its resubmissions: raise " in message
    assert "TIMEOUT" in message and "Traceback" not in proc.stderr
    resume = message.split("rerun to resume: ")[1]
    assert resume.startswith("paradox sweep -m hydra/launcher=slurm ")
    assert "hydra.launcher.max_num_timeout=1" in resume
    assert resume.endswith(f"hydra.sweep.dir={folder}")
    logs = "".join(p.read_text() for p in (folder / ".submitit").glob("*/*_log.out"))
    assert logs.count("Requeued job") == 1, logs
    assert "timed-out too many times" in logs
    assert logs.count("Loading pickle") == 2  # two attempts
    done = subprocess.run(
        [*PARADOX, "status", str(folder)], capture_output=True, text=True,
        env=_env(slurm, tmp_path), timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and int(done.stdout.splitlines()[1].split()[2]) > 0
    # the signal that stopped each attempt did not make the run under way a failed run
    assert int(done.stdout.splitlines()[1].split()[3]) == 0, done.stdout


def test_detached_submission_prints_the_commands_and_status_follows_it(slurm, tmp_path):
    folder = tmp_path / "detached"
    tiny = ["sweep=paradox_curve", "steps=5", "model.n_adversaries=40", "model.n_labs=3"]
    t0 = time.monotonic()
    proc = paradox(
        slurm, "sweep", "-m", *SMALL_JOBS, "hydra.launcher.detach=true", *tiny,
        "sweep.num_shards=3", "sweep.shard=range(0,3)", f"hydra.sweep.dir={folder}",
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 60
    lines = proc.stdout.strip().splitlines()
    array = re.search(r"submitted 3 job\(s\) as SLURM array (\d+)", proc.stdout)
    assert array, proc.stdout
    assert f"  progress: paradox status {folder}" in lines
    assert f"  collect:  paradox collect {folder}" in lines
    assert f"  cancel:   scancel {array.group(1)}" in lines
    resume = next(ln for ln in lines if ln.startswith("  resume:")).split(":", 1)[1].strip()
    assert resume.startswith("paradox sweep -m ") and resume.endswith(f"hydra.sweep.dir={folder}")
    assert lines[-1] == str(folder)
    wait_for_queue_empty(slurm)
    status = subprocess.run(
        [*PARADOX, "status", str(folder)], capture_output=True, text=True,
        env=_env(slurm, tmp_path), timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.strip().splitlines()[-1].split()[1:4] == ["400", "400", "0"]
    assert status.stdout.count("finished") >= 3
    assert collect_main([str(folder)]) == 0
    # resubmitting while nothing runs is allowed; it finds every run done
    again = subprocess.run(
        _as_argv(resume.replace("hydra.launcher.detach=true", "hydra.launcher.detach=false")),
        cwd=tmp_path, capture_output=True, text=True, env=_env(slurm, tmp_path), timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    ran = json.loads((folder / "1" / "provenance.json").read_text())["sweep"]
    assert ran["ran"] == 0 and ran["resumed"] == ran["runs"] > 0


def test_resubmitting_while_jobs_run_is_refused(slurm, tmp_path):
    folder = tmp_path / "busy"
    proc = paradox(
        slurm, "sweep", "-m", *SMALL_JOBS, "hydra.launcher.detach=true", *WORKLOAD, *SHARDS,
        f"hydra.sweep.dir={folder}", cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    array = re.search(r"SLURM array (\d+)", proc.stdout).group(1)
    try:
        again = paradox(
            slurm, "sweep", "-m", *SMALL_JOBS, *WORKLOAD, *SHARDS, f"hydra.sweep.dir={folder}",
            cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert again.returncode == 2
        assert "still queued or running" in again.stderr
        assert f"scancel {array}" in again.stderr
    finally:
        subprocess.run(["scancel", array], env={**os.environ, **slurm.env}, check=False)
        wait_for_queue_empty(slurm)
