"""Will a run fit in memory? An estimate from the population sizes, checked before it starts.

A run's memory is dominated by its adversaries: their state arrays and their network's edges.
Measured on the default model (``n_adversaries`` = 10^5 to 1.6·10^6, mean degree 6): about 640
bytes per adversary on top of ~250 MB for the interpreter, numpy, numba and Mesa. The estimate
below is deliberately a little above that, so a run it lets through does not die half-way with
the machine swapping; a run it refuses names the key, the estimate and what is available.
"""

from __future__ import annotations

import os
from pathlib import Path

from sim.config import Config, ParameterError

BASE_BYTES = 300 * 2**20  # interpreter, numpy, numba, Mesa, compiled kernels
PER_ADVERSARY = 450  # state arrays (measured ~400)
PER_EDGE = 48  # adjacency (both directions, indices and weights)
PER_LAB = 4096
PER_AGENT_ROW = 160  # collect_agents: one DataCollector row per agent per step


def estimate_bytes(config: Config) -> int:
    """Peak memory of one run of ``config``, in bytes (an estimate; see the module doc)."""
    m = config.model
    degree = 0 if m.network.topology == "none" else m.network.mean_degree
    total = BASE_BYTES + m.n_adversaries * (PER_ADVERSARY + PER_EDGE * degree)
    total += m.n_labs * PER_LAB
    if config.collect_agents:
        total += (config.steps + 1) * (m.n_adversaries + m.n_labs) * PER_AGENT_ROW
    return int(total)


def available_bytes() -> int | None:
    """Memory this process may still use: the smaller of the system's available memory and
    the cgroup's limit less its usage (a container or SLURM allocation); None if unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text().strip())
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def check_memory(config: Config, copies: int = 1, *, key: str = "model.n_adversaries") -> None:
    """Raise :class:`ParameterError` naming ``key`` when ``copies`` runs of ``config`` at once
    (a sweep's workers) would not fit in the memory available now. ``PARADOX_NO_MEMORY_CHECK=1``
    skips the check."""
    if os.environ.get("PARADOX_NO_MEMORY_CHECK") == "1":
        return
    need = estimate_bytes(config) * max(1, copies)
    have = available_bytes()
    if have is None or need <= have:
        return
    each = f" ({copies} runs at once)" if copies > 1 else ""
    raise ParameterError(
        key,
        getattr(config.model, key.rpartition(".")[2], None) if key.startswith("model.") else None,
        f"a population that fits in memory: this needs about {_gb(need)}{each}, "
        f"{_gb(have)} available (fewer adversaries, fewer sweep.workers, or "
        "PARADOX_NO_MEMORY_CHECK=1 to try anyway)",
    )
