"""The SLURM helpers without a cluster: pre-flight rules, commands printed, `paradox status`.

The same code against a real single-node SLURM: tests/test_slurm.py (``make test-system``).
"""

from __future__ import annotations

import re
import subprocess

import pytest
from omegaconf import OmegaConf

from experiments import cluster
from experiments.status import main as status_main

from .conftest import PARADOX, REPO, paradox

NODES = [
    cluster.Node("small", "10.0.0.1", 8, 32_000, "short", True, 240.0),
    cluster.Node("big", "10.0.0.2", 64, 256_000, "long", False, float("inf")),
]


def test_request_that_fits_no_node_names_request_and_largest_node():
    with pytest.raises(cluster.ClusterError) as err:
        cluster.check_request({"cpus_per_task": 16, "mem_gb": 8}, NODES)
    assert str(err.value) == (
        "hydra.launcher.cpus_per_task=16 hydra.launcher.mem_gb=8 fits no node of the default "
        "partition short: the largest node, small, has 8 CPUs and 31 GB; ask for at most "
        "that, e.g. hydra.launcher.cpus_per_task=8 hydra.launcher.mem_gb=8"
    )
    with pytest.raises(cluster.ClusterError, match=r"mem_gb=40 fits no node .* 31 GB"):
        cluster.check_request({"cpus_per_task": 2, "mem_gb": 40}, NODES)
    # the same request fits the other partition
    cluster.check_request({"cpus_per_task": 16, "mem_gb": 40, "partition": "long"}, NODES)
    with pytest.raises(cluster.ClusterError, match="partition=gpu: no such partition; sinfo lists"):
        cluster.check_request({"partition": "gpu"}, NODES)
    with pytest.raises(cluster.ClusterError, match=r"timeout_min=300 exceeds .* \(240 minutes\)"):
        cluster.check_request({"cpus_per_task": 1, "timeout_min": 300}, NODES)
    # tasks per node multiply the CPUs asked for
    with pytest.raises(cluster.ClusterError, match="tasks_per_node=4"):
        cluster.check_request({"cpus_per_task": 4, "tasks_per_node": 4}, NODES)


def test_a_time_limit_too_short_for_its_warning_signal_is_refused():
    """slurmctld may send the warning 30 s early; a task signalled before submitit installs its
    handler dies (FAILED) instead of being resubmitted, as a 1-minute test job once did."""
    with pytest.raises(cluster.ClusterError) as err:
        cluster.check_request({"timeout_min": 1, "signal_delay_s": 30}, NODES)
    assert str(err.value) == (
        "hydra.launcher.timeout_min=1 leaves no room for the time-limit warning "
        "(hydra.launcher.signal_delay_s=30, which SLURM may send up to 30 s early): make "
        "timeout_min x 60 at least signal_delay_s + 45, e.g. hydra.launcher.timeout_min=2"
    )
    cluster.check_request({"timeout_min": 2, "signal_delay_s": 75}, NODES)  # 120 = 75 + 45
    cluster.check_request({"timeout_min": 120, "signal_delay_s": 120}, NODES)  # the defaults


def test_sinfo_output_and_time_limits_are_parsed():
    out = "n1|n1|32|191000|batch*|2-00:00:00\nn2|10.1.1.2|64|512000+|big|infinite\n"

    def sinfo(argv):
        return subprocess.CompletedProcess(argv, 0, out, "")

    found = cluster.nodes(sinfo)
    assert [(n.name, n.cpus, n.memory_mb, n.partition, n.default) for n in found] == [
        ("n1", 32, 191000, "batch", True),
        ("n2", 64, 512000, "big", False),
    ]
    assert found[0].time_limit_min == 2 * 1440
    assert cluster.parse_time_limit("1:30:00") == 90
    assert cluster.parse_time_limit("45:00") == 45
    assert cluster.parse_time_limit("infinite") == float("inf")


def test_remote_nodes_need_a_shared_file_system(tmp_path):
    remote = [cluster.Node("c1", "10.9.9.9", 8, 32_000, "batch", True, 60.0)]
    if cluster.filesystem_type(tmp_path) in cluster.SHARED_FS:
        pytest.skip("tmp_path is on a network file system here")
    with pytest.raises(cluster.ClusterError, match=r"local file system .* cannot see"):
        cluster.check_paths("/usr/bin/env", tmp_path / "sweep", remote)
    # on a single machine (the node is this host) every path is visible
    local = [cluster.Node("localhost", "127.0.0.1", 8, 32_000, "batch", True, 60.0)]
    cluster.check_paths("/usr/bin/env", tmp_path / "sweep", local)
    with pytest.raises(cluster.ClusterError, match="does not exist or is not executable"):
        cluster.check_paths(str(tmp_path / "nopython"), tmp_path / "sweep", local)


def test_resume_command_is_the_command_with_the_sweep_folder(tmp_path):
    argv = ["paradox sweep", "-m", "hydra/launcher=slurm", "sweep.shard=range(0,4)",
            "hydra.sweep.dir=old"]  # fmt: skip
    assert cluster.app_command("sweep", tmp_path, argv) == (
        f"paradox sweep -m hydra/launcher=slurm 'sweep.shard=range(0,4)' hydra.sweep.dir={tmp_path}"
    )


def test_status_counts_runs_per_shard_from_the_part_files(tmp_path):
    tiny = ["sweep=paradox_curve", "steps=2", "model.n_adversaries=40", "model.n_labs=3"]
    folder = tmp_path / "m"
    proc = paradox(
        "sweep", "-m", *tiny, "sweep.num_shards=3", "sweep.shard=0,2", "sweep.workers=1",
        f"hydra.sweep.dir={folder}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run(
        [*PARADOX, "status", str(folder)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 1, out.stderr  # shard 1 never ran
    lines = out.stdout.strip().splitlines()
    assert re.match(r"0\s+0-132\s+133\s+0\s+finished", lines[1]), out.stdout
    assert re.match(r"1\s+0\s+-\s+not started", lines[3]), out.stdout
    assert lines[-1].split()[:4] == ["total", "400", "267", "0"]
    assert status_main([str(tmp_path)]) == 2


def test_cluster_guide_states_the_launcher_defaults(tmp_path):
    """docs/cluster.md's table of launcher keys gives the defaults the config composes."""
    guide = (REPO / "docs" / "cluster.md").read_text()
    section = guide.split("## 3. Launcher keys", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, flags=re.M)
    assert len(rows) >= 12
    proc = paradox(
        "sweep", "hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    composed = OmegaConf.create(proc.stdout)
    for key, default in rows:
        assert key in composed, key
        assert OmegaConf.create(f"v: {default.strip()}").v == composed[key], key


class _FinishedJob:
    """A submitit job whose result file exists, as cluster.wait sees it."""

    def __init__(self, job_id: str, folder, result):
        from types import SimpleNamespace

        done = folder / f"{job_id}_result.pkl"
        done.write_text("")
        self.job_id, self._result = job_id, result
        self.paths = SimpleNamespace(result_pickle=done, stderr=folder / f"{job_id}.err")

    def results(self):
        return [self._result]


def test_wait_reports_a_task_that_raised_inside_hydra_as_a_line_not_a_traceback(tmp_path):
    """Hydra's run_job turns a task's exception into a FAILED JobReturn that submitit stores as
    a success; reading it later re-raised in the submitter (a traceback after the last
    resubmission of a timed-out shard)."""
    from hydra.core.utils import JobReturn, JobStatus
    from submitit.core.utils import UncompletedJobError

    def returned(value, status):
        ret = JobReturn()
        ret.return_value, ret.status = value, status
        return ret

    jobs = [
        _FinishedJob("7_0", tmp_path, returned(3, JobStatus.COMPLETED)),
        _FinishedJob("7_1", tmp_path, returned(UncompletedJobError(
            "Job not requeued because: timed-out too many times."), JobStatus.FAILED)),
        _FinishedJob("7_2", tmp_path, returned(ValueError("bad level"), JobStatus.FAILED)),
    ]  # fmt: skip

    def squeue(argv):
        return subprocess.CompletedProcess(argv, 0, "", "")

    with pytest.raises(cluster.Unfinished) as err:
        cluster.wait(jobs, resume="paradox sweep ...", cancel=lambda ids: None, runner=squeue,
                     log=lambda msg: None)  # fmt: skip
    message = str(err.value)
    assert message.startswith("2 of 3 jobs did not finish (timed out after its resubmissions")
    assert "job 1 (7_1: TIMEOUT)" in message
    assert "job 2 (7_2) raised: ValueError: bad level" in message
    assert message.endswith("rerun to resume: paradox sweep ...")
    ok = cluster.wait(jobs[:1], resume="-", cancel=lambda ids: None, runner=squeue,
                      log=lambda msg: None)  # fmt: skip
    assert [r.return_value for r in ok] == [3]
