"""What keeps a sweep folder consistent: the code version its runs came from, and a lock so that
one process at a time writes into it.

- :func:`code_version` hashes the source files that decide a run's numbers. A sweep folder records
  it in ``sweep.json``; resuming with other code would mix runs of two model versions in one
  table, so :func:`check_code` refuses it unless the user forces it.
- :func:`folder_lock` holds an exclusive ``flock`` on ``<folder>/.lock`` while a sweep writes
  there. A second sweep started on the same folder is refused at once instead of computing every
  run a second time. The operating system releases the lock when its process dies, even by
  ``kill -9``, so a stale lock cannot block a resume.

This module does not import Hydra.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sim.sweep.spec import SweepMismatch

SIM = Path(__file__).resolve().parent.parent
#: Modules of ``sim/`` that do not decide a run's numbers (figures, derived tables, analysis).
NOT_RUN_CODE: tuple[str, ...] = ("figures.py", "analysis.py", "gsa.py")
LOCK_FILE = ".lock"


class SweepBusy(SweepMismatch):
    """Another process is writing into the sweep folder."""


class CodeChanged(SweepMismatch):
    """The folder's runs came from another version of the model's code."""


def source_files() -> list[Path]:
    return sorted(
        p for p in SIM.rglob("*.py") if p.name not in NOT_RUN_CODE and "__pycache__" not in p.parts
    )


def code_version() -> dict[str, Any]:
    """The version of the code that computes runs: a hash of ``sim/``'s run code (every module
    but figures and analysis), and the git commit and dirty state when there is a repository."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(str(path.relative_to(SIM)).encode() + b"\0" + path.read_bytes() + b"\0")
    commit, dirty = None, None
    try:
        repo = SIM.parent
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", "sim"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = bool(status)
    except (OSError, subprocess.SubprocessError):
        pass
    return {"sources": digest.hexdigest()[:16], "commit": commit, "dirty": dirty}


def check_code(folder: Path, old: dict[str, Any], *, force: bool, new_folder: str) -> None:
    """Refuse to resume ``folder`` (whose ``sweep.json`` is ``old``) with other run code."""
    recorded = old.get("code")
    current = code_version()
    if recorded is not None and recorded.get("sources") == current["sources"]:
        return
    if force:
        return
    if recorded is None:
        what = "was written before sweeps recorded their code version"
    else:
        commit = recorded.get("commit") or "unknown commit"
        what = (
            f"holds runs of other model code (sources {recorded.get('sources')} at "
            f"{commit[:10]}{' with local changes' if recorded.get('dirty') else ''}; now "
            f"{current['sources']} at {(current['commit'] or 'unknown commit')[:10]}"
            f"{' with local changes' if current['dirty'] else ''})"
        )
    raise CodeChanged(
        f"{folder} {what}: resuming would mix runs of two model versions in one table; "
        f"{new_folder}, or add sweep.resume_other_code=true to mix them knowingly"
    )


_HELD: dict[Path, tuple[int, int]] = {}  # folder -> (fd, depth): re-entrant within a process


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's lock (exclusive, non-blocking); raise :class:`SweepBusy` if another
    process holds it. Re-entrant within one process."""
    folder = folder.resolve()
    if folder in _HELD:
        fd, depth = _HELD[folder]
        _HELD[folder] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _HELD[folder]
            _HELD[folder] = (fd, depth - 1)
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise SweepBusy(
            f"{folder} is in use by a sweep still running ({holder}); wait for it to finish "
            "(then rerun to pick up anything it missed), or give another folder"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
    _HELD[folder] = (fd, 1)
    try:
        yield
    finally:
        del _HELD[folder]
        os.close(fd)  # releases the flock; the file stays (removing it would race a waiter)


def check_folder(folder: Path, design: Any, new_folder: str = "give a new hydra.run.dir") -> bool:
    """True if ``folder`` already holds this sweep, from this code (or ``resume_other_code``);
    raise :class:`SweepMismatch` if it holds another sweep, :class:`CodeChanged` if other code
    wrote it. False for a folder with no sweep yet."""
    import json

    from sim.sweep.store import MANIFEST_FILE, check_manifest

    if not check_manifest(folder, design, new_folder):
        return False
    old = json.loads((folder / MANIFEST_FILE).read_text())
    check_code(folder, old, force=design.spec.resume_other_code, new_folder=new_folder)
    return True


def quarantine_corrupt(folder: Path, notify: Any = None) -> list[Path]:
    """Rename unreadable run tables of ``folder`` (part files, or the final ``runs.parquet``)
    to ``<name>.corrupt`` so that a resume reruns their runs instead of failing on them.

    A part file is written atomically, so it is corrupt only if the disk or another program
    damaged it. ``notify`` (default: print to stderr) gets one line per file. Returns the new
    paths. A per-step part whose runs part is quarantined goes with it.
    """
    import sys

    import pyarrow.parquet as pq

    from sim.sweep.store import PARTS_DIR, RUNS_FILE, TIMESERIES_FILE

    parts = folder / PARTS_DIR
    candidates = [folder / RUNS_FILE, *sorted(parts.glob("runs-*.parquet"))]
    moved: list[Path] = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            pq.read_table(path, columns=["run_id", "status"])
        except Exception as err:  # any unreadable file: truncated, garbage, wrong schema
            companions = (
                [folder / TIMESERIES_FILE]
                if path.name == RUNS_FILE
                else [parts / path.name.replace("runs-", "timeseries-", 1)]
            )
            for src in [path, *companions]:
                if src.exists():
                    target = src.with_name(src.name + ".corrupt")
                    os.replace(src, target)
                    moved.append(target)
            reason = " ".join(str(err).split())[:120]
            line = (
                f"sweep: {path} is unreadable ({type(err).__name__}: {reason}); renamed to "
                f"{path.name}.corrupt, its runs will be run again (or count as missing)"
            )
            (notify or (lambda text: print(text, file=sys.stderr, flush=True)))(line)
    return moved
