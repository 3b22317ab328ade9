"""Agent-based simulation of the AI alignment paradox (West & Aydin, arXiv:2405.20806).

The public interface:

- :class:`AlignmentParadoxModel`, a standard ``mesa.Model`` (keyword parameters, ``rng=``,
  a ``DataCollector`` reporting the outcomes of ``docs/ODD.md`` §5 at step 0 and after every
  step);
- :func:`run_model`, the same model as a plain function of keyword parameters returning its
  outcome time series (for EMA Workbench, SALib or any experiment design);
- :class:`Config` and its parts, the validated parameter schema.
"""

from sim.config import Config, ParameterError, config_from_flat, flat_keys
from sim.model import AlignmentParadoxModel
from sim.outcomes import OUTCOMES, summarize
from sim.run import run_model, timeseries

__all__ = [
    "OUTCOMES",
    "AlignmentParadoxModel",
    "Config",
    "ParameterError",
    "config_from_flat",
    "flat_keys",
    "run_model",
    "summarize",
    "timeseries",
]
__version__ = "0.1.0"
