"""Agent-based simulation of the AI alignment paradox (West & Aydin, arXiv:2405.20806).

The public interface:

- :class:`AlignmentParadoxModel`, a standard ``mesa.Model`` (keyword parameters, ``rng=``,
  a ``DataCollector`` reporting the outcomes of ``docs/ODD.md`` §5 at step 0 and after every
  step);
- :func:`run_model`, the same model as a plain function of keyword parameters returning its
  outcome time series (for EMA Workbench, SALib or any experiment design);
- :class:`Config` and its parts, the validated parameter schema.

The names are imported on first use, so ``from sim.config import Config`` does not load the
model and its compiled kernels (numba); docs/architecture.md describes the layers.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name → module that defines it
_EXPORTS: dict[str, str] = {
    "OUTCOMES": "sim.outcomes",
    "AlignmentParadoxModel": "sim.model",
    "Config": "sim.config",
    "ParameterError": "sim.config",
    "config_from_flat": "sim.config",
    "flat_keys": "sim.config",
    "run_model": "sim.api",
    "run_summary": "sim.api",
    "summarize": "sim.outcomes",
    "timeseries": "sim.api",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
