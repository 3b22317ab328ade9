"""The model as a plain function, and its outcomes as a tidy table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from sim import interrupts
from sim.config import Config, check_run_settings
from sim.model import AlignmentParadoxModel
from sim.outcomes import OUTCOMES, reporter_name


def simulate(
    *,
    steps: int = 200,
    seed: int = 0,
    config: Config | None = None,
    progress: Callable[[int], None] | None = None,
    **params: Any,
) -> AlignmentParadoxModel:
    """Build a model from ``config`` or keyword parameters, seed it, and run ``steps`` steps.

    ``progress`` (if given) is called after every step with the number of steps done.
    ``scenario=<name>`` (a keyword parameter) composes that scenario as ``paradox run`` does;
    ``steps`` and ``seed`` are checked like the config keys (``ParameterError``).
    """
    steps, seed = check_run_settings(steps, seed)
    # Signals (Ctrl-C, SIGTERM, SLURM's) act between steps, never inside a compiled kernel.
    with interrupts.deferred():
        model = AlignmentParadoxModel(rng=seed, config=config, **params)
        for done in range(1, steps + 1):
            model.step()
            interrupts.checkpoint()
            if progress is not None:
                progress(done)
    return model


def timeseries(model: AlignmentParadoxModel) -> pd.DataFrame:
    """One row per collected step: ``step`` then every outcome of :data:`sim.OUTCOMES`."""
    table = model.datacollector.get_model_vars_dataframe().reset_index(drop=True)
    table = table.rename(columns={reporter_name(n): n for n in OUTCOMES})
    table.insert(0, "step", np.arange(len(table), dtype=np.int64))
    return table[["step", *OUTCOMES]]


def run_model(*, steps: int = 200, seed: int = 0, **params: Any) -> dict[str, np.ndarray]:
    """The model as a function: keyword parameters in, outcome time series out.

    Returns a dict mapping every outcome name to a float array of length ``steps + 1`` (step 0
    is the initial state). Suitable as an EMA Workbench model function or inside a SALib loop:
    integral floats are accepted for integer keys, and ``scenario=<name>`` starts from a scenario
    of ``conf/scenario/`` as ``paradox run scenario=<name>`` does.
    """
    table = timeseries(simulate(steps=steps, seed=seed, **params))
    return {name: table[name].to_numpy(dtype=float) for name in OUTCOMES}


def run_summary(
    *, steps: int = 200, seed: int = 0, burn_in: int | str = "auto", **params: Any
) -> dict[str, float]:
    """The model as a function with scalar outcomes: ``mean_<outcome>`` (the time average after
    the run's burn-in, as ``runs.parquet`` holds it), ``final_<outcome>`` and ``se_<outcome>``
    for every outcome, plus ``burn_in`` (in steps).

    Made for EMA Workbench (``Model("paradox", function=sim.run_summary)`` with
    ``ScalarOutcome("mean_paradox_index")``) and SALib loops: keyword parameters in (integral
    floats accepted for integer keys, ``scenario=`` composed), floats out.
    """
    from sim.config import Config
    from sim.outcomes import summarize

    steps, seed = check_run_settings(steps, seed)
    Config(steps=steps, burn_in=burn_in)  # checks burn_in's own rule before the run
    table = timeseries(simulate(steps=steps, seed=seed, **params))
    summary = summarize(table, burn_in)
    out: dict[str, float] = {"burn_in": float(summary["burn_in"])}
    for name, stats in summary["outcomes"].items():
        out[f"mean_{name}"] = float(stats["mean"])
        out[f"final_{name}"] = float(stats["final"])
        out[f"se_{name}"] = float(stats["se"])
    return out
