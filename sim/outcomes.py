"""The model-level outcomes of docs/ODD.md §5: names, meanings, and the run summary (§4.1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.config import CHANNELS
from sim.stats import batch_means_se, mser_burn_in

#: Every per-step outcome, in column order, with its meaning. The DataCollector reports exactly
#: these; ``docs/ODD.md`` lists them and the tests check that the two agree.
OUTCOMES: dict[str, str] = {
    "mean_alignment": "reach-weighted mean alignment quality q̄",
    "mean_clarity": "reach-weighted mean value-direction clarity c̄",
    "coupling": "current paradox coupling κ (falls under decoupling R&D)",
    **{f"attempts_{k}": f"attack attempts through the {k} channel" for k in CHANNELS},
    **{f"successes_{k}": f"successful attacks through the {k} channel" for k in CHANNELS},
    **{
        f"success_rate_{k}": f"successes / attempts through the {k} channel (0 if no attempts)"
        for k in CHANNELS
    },
    "attempts_total": "attack attempts, all channels",
    "successes_total": "successful attacks, all channels",
    "success_rate_total": "successes / attempts, all channels (0 if no attempts)",
    "harm_residual": "Σ w_i (1 − q_i) h0: harm from unaligned use",
    "harm_exploitation": "Σ w_i q_i (1 + c_i) h_k φ_ik: harm from compromised use",
    "harm_total": "residual plus exploitation harm",
    "compromised_share": "reach-weighted compromised share of use φ̄",
    "net_alignment": "reach-weighted mean of n_i = q_i (1 − φ_i (1 + c_i)), in [−1, 1]",
    "spend_alignment": "lab spending on alignment this step",
    "spend_defence": "lab spending on defence this step",
    "spend_decoupling": "lab spending on decoupling R&D this step",
    "spend_attack": "adversary effort spent on attempts this step",
    "adversaries_active": "adversaries not deterred",
    "adversaries_deterred": "adversaries deterred after detection",
    **{f"knowledge_{k}": f"mean adversary knowledge K in the {k} channel" for k in CHANNELS},
    "mean_alignment_share": "reach-weighted mean share s of lab budgets spent on alignment",
    "open_reach": "reach share of labs whose weights are open (released or leaked)",
    "marginal_return": "reach-weighted mean of ∂E[n_i]/∂q_i at the current state",
    "paradox_index": "reach share of labs whose marginal return on alignment is negative",
}


#: The headline outcome: MSER-5 chooses every run's burn-in on it (``burn_in=auto``).
BURN_IN_OUTCOME = "net_alignment"
#: How a summary's burn-in was chosen: by MSER-5 on :data:`BURN_IN_OUTCOME`, or set by the user.
BURN_IN_RULES: tuple[str, ...] = ("auto", "set")


#: Names under which Mesa's DataCollector reports outcomes that share a name with a model
#: parameter: ``mesa.batch_run`` puts parameters and outcomes in one row, so an outcome called
#: ``coupling`` would overwrite the ``coupling`` parameter. The project's own tables
#: (:func:`sim.api.timeseries`, ``runs.parquet``) keep the outcome names of :data:`OUTCOMES`.
REPORTER_NAMES: dict[str, str] = {"coupling": "coupling_current"}


def reporter_name(outcome: str) -> str:
    """The DataCollector's column for an outcome (:data:`REPORTER_NAMES`, else its own name)."""
    return REPORTER_NAMES.get(outcome, outcome)


def summarize(table: pd.DataFrame, burn_in: int | str = "auto") -> dict[str, Any]:
    """Every outcome's final value, time average after the burn-in and its standard error.

    ``table`` is a run's per-step table (``step`` 0 is the initial state, then steps 1..T).
    ``burn_in`` is the run setting of that name: ``"auto"`` chooses the burn-in d by MSER-5
    (:func:`sim.stats.mser_burn_in`) on the headline outcome, net alignment, over steps 1..T,
    and applies it to every outcome; an integer d ≥ 0 is used as given. Returns

    - ``burn_in``: d, in steps; ``burn_in_rule``: ``"auto"`` (MSER-5) or ``"set"``;
    - ``time_average_over``: the steps averaged, ``"steps d+1..T"`` (or why there are none);
    - ``outcomes``: per outcome, ``final`` (the value at the last step), ``mean`` (the average
      over steps d+1..T) and ``se`` (the batch-means standard error of that mean,
      :func:`sim.stats.batch_means_se`: 10 batches, so a t-interval has 9 degrees of freedom;
      NaN with fewer than two steps averaged).

    A run of 0 steps (or a burn-in covering every step) has no steps to average: its ``mean``
    and ``se`` are NaN, never the initial state. Values that are not finite become NaN.
    """
    after = table[table["step"] >= 1]
    steps = len(after)
    if isinstance(burn_in, str):
        if burn_in != "auto":
            raise ValueError(f"burn_in must be 'auto' or an integer >= 0, got {burn_in!r}")
        d, rule = mser_burn_in(after[BURN_IN_OUTCOME].to_numpy(float)), "auto"
    else:
        if isinstance(burn_in, bool) or int(burn_in) != burn_in or burn_in < 0:
            raise ValueError(f"burn_in must be 'auto' or an integer >= 0, got {burn_in!r}")
        d, rule = int(burn_in), "set"
    window = after.iloc[d:]
    chosen = f"MSER-5 on {BURN_IN_OUTCOME}" if rule == "auto" else "set by burn_in"
    if len(window):
        over = f"steps {d + 1}..{steps} (burn-in of {d} steps, {chosen})"
    else:
        over = f"none: {steps} steps and a burn-in of {d} leave no step to average"
    final = table.iloc[-1]
    outcomes = {}
    for name in OUTCOMES:
        values = window[name].to_numpy(float)
        outcomes[name] = {
            "final": _clean(final[name]),
            "mean": _clean(values.mean()) if values.size else float("nan"),
            "se": _clean(batch_means_se(values)),
        }
    return {"burn_in": d, "burn_in_rule": rule, "time_average_over": over, "outcomes": outcomes}


def _clean(x: float) -> float:
    x = float(x)
    return x if np.isfinite(x) else float("nan")
