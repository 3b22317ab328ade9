"""A single-node SLURM on localhost for the system tests (issue 16), started without systemd.

:class:`LocalSlurm` writes a minimal ``slurm.conf`` sized from this machine (CPUs from
``os.cpu_count()``, ``RealMemory`` from ``/proc/meminfo``) into a private folder, starts its own
``munged`` (own socket, so an existing one is left alone), ``slurmctld`` and ``slurmd`` on free
ports, waits until ``sinfo`` shows the node idle, and stops exactly the processes it started, by
the PIDs in their pidfiles. Clients reach it through ``SLURM_CONF`` (:attr:`LocalSlurm.env`).

It needs Debian's ``slurm-wlm`` and ``munge`` (``make sysdeps`` installs them) and root (the
daemons run as root, munged as the ``munge`` user). :func:`unavailable` says why it cannot run
here, or returns None. By hand::

    .venv/bin/python -m tests.slurm_cluster /tmp/slurm   # starts it, prints SLURM_CONF, waits
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel", "srun")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def unavailable() -> str | None:
    """Why a local SLURM cannot be started here, or None if it can."""
    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        return (
            f"SLURM is not installed ({', '.join(missing)} not found): `make sysdeps` installs "
            "slurm-wlm and munge through apt (as root on Debian)"
        )
    if os.geteuid() != 0:
        return "starting slurmctld, slurmd and munged needs root"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "there is no 'munge' user (the munge package creates it)"
    if not Path("/etc/munge/munge.key").exists():
        return "/etc/munge/munge.key is missing (the munge package creates it)"
    return None


def machine_memory_mb() -> int:
    """Total memory in MB, from /proc/meminfo (what slurmd itself reports, rounded down)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """A single-node SLURM whose state, logs, pidfiles and munge socket live under ``root``."""

    def __init__(self, root: Path, cpus: int | None = None, memory_mb: int | None = None):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        # a little below the total, so slurmd never finds less than configured (node drained)
        self.memory_mb = memory_mb or int(machine_memory_mb() * 0.95)
        self.conf = self.root / "slurm.conf"
        # munged runs as the munge user, which cannot enter a private folder (pytest's tmp_path
        # is 0700): its files go to a folder of its own, made in start()
        self.munge_dir = Path(tempfile.mkdtemp(prefix="paradox-munge-"))
        self.socket = self.munge_dir / "munge.socket"
        self.pidfiles = {
            "munged": self.munge_dir / "munged.pid",
            "slurmctld": self.root / "slurmctld.pid",
            "slurmd": self.root / "slurmd.pid",
        }
        self.started: dict[str, int] = {}

    @property
    def env(self) -> dict[str, str]:
        """What a client (sinfo, sbatch, paradox) needs in its environment to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def write_conf(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ctld_port, slurmd_port = _free_port(), _free_port()
        lines = [
            "ClusterName=paradoxtest",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire: also how long a requeued job waits before it may start again (120 s
            # by default)
            f"AuthInfo=socket={self.socket},cred_expire=10",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/affinity",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "KillWait=5",  # seconds from SIGTERM to SIGKILL when a job is cancelled
            "MinJobAge=600",  # finished jobs stay visible to squeue for 10 minutes
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.pidfiles['slurmctld']}",
            f"SlurmdPidFile={self.pidfiles['slurmd']}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _daemon(self, name: str, argv: list[str]) -> None:
        """Start a daemon that forks into the background; remember the PID it writes."""
        pidfile = self.pidfiles[name]
        pidfile.unlink(missing_ok=True)
        env = {**os.environ, **self.env}
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} did not start: {proc.stderr.strip() or proc.stdout}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text.isdigit():
                self.started[name] = int(text)
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} wrote no pidfile {pidfile}; see its log under {self.root}")

    def start(self, timeout: float = 60) -> None:
        """Start munged, slurmctld and slurmd; return once the node is idle (or raise)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_conf()
        self.munge_dir.mkdir(exist_ok=True)
        self.munge_dir.chmod(0o755)
        munge = pwd.getpwnam("munge")
        os.chown(self.munge_dir, munge.pw_uid, munge.pw_gid)
        try:
            self._daemon(
                "munged",
                [
                    "runuser",
                    "-u",
                    "munge",
                    "--",
                    _which("munged") or "munged",
                    f"--socket={self.socket}",
                    f"--pid-file={self.pidfiles['munged']}",
                    f"--log-file={self.munge_dir / 'munged.log'}",
                    f"--seed-file={self.munge_dir / 'munged.seed'}",
                ],
            )
            self._daemon("slurmctld", [_which("slurmctld") or "slurmctld", "-f", str(self.conf)])
            self._daemon(
                "slurmd", [_which("slurmd") or "slurmd", "-f", str(self.conf), "-N", "localhost"]
            )
            self.wait_idle(timeout)
        except BaseException:
            self.stop()
            raise

    def sinfo_state(self) -> str:
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=30,
        )
        return proc.stdout.strip() if proc.returncode == 0 else f"sinfo: {proc.stderr.strip()}"

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.sinfo_state()
            if state == "idle":
                return
            time.sleep(0.5)
        log = self.root / "log" / "slurmd.log"
        tail = log.read_text().splitlines()[-5:] if log.exists() else []
        raise RuntimeError(f"the node is not idle after {timeout:.0f} s ({state}); {tail}")

    def stop(self) -> None:
        """Stop the daemons this object started (slurmd, slurmctld, munged), by their PIDs."""
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.started.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.munge_dir, ignore_errors=True)

    def __enter__(self) -> LocalSlurm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (our own child not yet reaped) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


if __name__ == "__main__":
    reason = unavailable()
    if reason:
        sys.exit(f"cannot start SLURM here: {reason}")
    cluster = LocalSlurm(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/paradox-slurm"))
    # SIGTERM (kill, timeout) stops the daemons too, as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cluster.start()
    print(f"export SLURM_CONF={cluster.conf}   # then sinfo, sbatch, paradox ...; Ctrl-C stops it")
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cluster.stop()
