"""The model-level outcomes of docs/ODD.md §5: names, meanings, and the run summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.config import CHANNELS

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


def summarize(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Final value and time average (over steps 1..T; step 0 is the initial state) per outcome."""
    after = table[table["step"] >= 1] if (table["step"] >= 1).any() else table
    final = table.iloc[-1]
    return {
        name: {
            "final": _clean(final[name]),
            "mean": _clean(after[name].mean()),
        }
        for name in OUTCOMES
    }


def _clean(x: float) -> float:
    x = float(x)
    return x if np.isfinite(x) else float("nan")
