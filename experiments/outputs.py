"""Writing a run's folder: atomic files, provenance, and clean-up after a rejected run."""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from sim.files import atomic_write, write_json, write_text  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parent.parent
PACKAGES = (
    "alignment-paradox-sim",
    "mesa",
    "numpy",
    "scipy",
    "networkx",
    "pandas",
    "pyarrow",
    "hydra-core",
    "omegaconf",
    "matplotlib",
)


def write_parquet(path: Path, frame: Any) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def git_state() -> dict[str, Any]:
    """Commit of the code that ran, and whether the work tree had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def command_line() -> str | None:
    """The command as the user typed it, subcommand included (``paradox sweep sweep=...``):
    the dispatcher sets ``sys.argv[0]`` to ``paradox <command>``."""
    if not sys.argv:
        return None
    head = sys.argv[0].split() if sys.argv[0].startswith("paradox ") else ["paradox"]
    return shlex.join([*head, *sys.argv[1:]])


def provenance(
    *, seed: int, overrides: list[str], started: str, finished: str, wall_seconds: float
) -> dict[str, Any]:
    return {
        "seed": seed,
        "command": command_line(),
        "argv": list(sys.argv),
        "overrides": overrides,
        "started_at": started,
        "finished_at": finished,
        "wall_time_seconds": wall_seconds,
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions(),
    }


def write_provenance(path: Path, prov: dict[str, Any]) -> None:
    """Write ``provenance.json`` keeping every invocation that wrote into its folder.

    The file's top level is the latest invocation (as before); ``invocations`` lists them all,
    oldest first, each with its command, git state and times. An entry with the same
    ``started_at`` and ``pid`` (the start record of this invocation) is replaced.
    """
    prov = {**prov, "pid": os.getpid()}
    previous: list[dict[str, Any]] = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            previous = old.get("invocations") or [
                {k: v for k, v in old.items() if k != "invocations"}
            ]
    entry = {k: v for k, v in prov.items() if k != "invocations"}
    same = (entry.get("started_at"), entry.get("pid"))
    kept = [e for e in previous if (e.get("started_at"), e.get("pid")) != same]
    write_json(path, {**entry, "invocations": [*kept, entry]})


HYDRA_OWN = (".hydra",)


def discard_run_dir(path: Path, job_name: str, stop_at: Path | None = None) -> None:
    """Remove what Hydra put into a run folder for a run that was rejected before it started.

    Only Hydra's own record (``.hydra/`` and ``<job_name>.log``) is removed; the folder, and its
    parents up to ``stop_at``, are then removed only if empty, so a user-chosen folder is never
    wiped.
    """
    if not path.exists():
        return
    for name in HYDRA_OWN:
        shutil.rmtree(path / name, ignore_errors=True)
    (path / f"{job_name}.log").unlink(missing_ok=True)
    stop = (stop_at or Path.cwd()).resolve()
    current = path.resolve()
    while current != stop and stop in current.parents:
        try:
            current.rmdir()
        except OSError:
            break
        current = current.parent


def check_output_dir(hc: Any, key: str) -> None:
    """Refuse an empty ``hydra.run.dir=`` (Hydra then writes into the current folder, e.g. the
    repository root) and any output folder that is the repository itself."""
    from hydra.types import RunMode

    from sim.config import ParameterError

    out = Path(hc.runtime.output_dir).resolve()
    raw = hc.sweep.dir if hc.mode == RunMode.MULTIRUN else hc.run.dir
    empty = raw is None or not str(raw).strip()
    if hc.mode == RunMode.MULTIRUN:
        key = "hydra.sweep.dir"
    if empty or out == REPO.resolve():
        where = "the repository" if out == REPO.resolve() else "the current folder"
        raise ParameterError(
            key, str(raw or ""), f"a folder for the outputs (empty or {where} is refused: {out})"
        )


def validated_or_exit(cfg: Any, app: str) -> tuple[Any, Path]:
    """Inside a Hydra app: the composed ``cfg`` as a validated :class:`sim.config.Config` and
    the run folder; on a ``ParameterError`` print one line naming the key, remove what Hydra
    put into the folder, and exit 2 (bad input leaves nothing behind)."""
    from hydra.core.hydra_config import HydraConfig

    from experiments.schema import label_scenario, to_config
    from sim.config import ParameterError

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    try:
        check_output_dir(hc, "hydra.run.dir")
        label_scenario(cfg, hc.runtime.choices.get("scenario"))
        return to_config(cfg), out_dir
    except ParameterError as err:
        discard_run_dir(out_dir, hc.job.name)
        print(f"{app}: {err}", file=sys.stderr)
        sys.exit(2)
