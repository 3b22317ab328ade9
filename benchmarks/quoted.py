"""The slopes the docs quote for named markets, measured under both defence-split steps.

    .venv/bin/python -m benchmarks.quoted                 # prints the tables (7 minutes on 2 cores)
    .venv/bin/python -m benchmarks.quoted --save docs/figures/quoted.csv  # and quoted_short.csv

For each market below and each labs' split step (``learning.lab.split_step``: ``per_channel``,
the default until 2026-12-06, and ``simplex``, the default since), the simulated secant slope
(N(0.95) − N(0.75)) / 0.2 over paired seeds (`paradox validate`'s first seeds, runs of 600 steps
averaged after step 150) with its standard error, the market theory's slope for the same seeds
(point theory, one leak time drawn per seed as in `paradox validate`), and the deeper/easier
decomposition on both sides (docs/theory.md §4.3). In the paradox-curve market, κ* is also
interpolated between the κ whose slopes change sign. Then the short runs of docs/ODD.md §7.1:
the paradox-curve market at κ = 1 (seeds 0–29, 150 steps, means over steps 1–150) and one change
at a time to it (:data:`FACTORS`): the slope with its 95% t half-width, its decomposition, and the
top lab's compromised share, defence spending and attempts. These are the numbers quoted in the
README,
docs/ODD.md (§7.1, the scenario table), docs/theory.md §4.3 and §4.7 and the comments of
conf/scenario/*_market.yaml and conf/sweep/paradox_curve.yaml, so a reader can re-measure them.
The theory's slope over seeds has its own sampling noise (``theory_sd``: open-weights sets and
leak draws), so its κ* is uncertain too.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from experiments import validate
from sim.config import config_from_flat

#: The 8-lab market of the paradox curve and the regime map (conf/sweep/paradox_curve.yaml).
CURVE = {
    "model.n_labs": 8,
    "model.n_adversaries": 300,
    "model.attacker_value": 80.0,
    "model.adversary_budget_mean": 1.0,
}
#: name, overrides of the default configuration, paired seeds.
CASES: list[tuple[str, dict, int]] = [
    ("concentrated_market", {"model.coupling": 1.0, "model.reach_exponent": 1.5}, 12),
    ("competitive_market", {"model.coupling": 1.0, "model.reach_exponent": 0.5}, 12),
    ("default market, κ = 0.8", {"model.coupling": 0.8}, 12),
    ("default market, κ = 1", {"model.coupling": 1.0}, 12),
    ("paradox-curve market, κ = 0.75", {**CURVE, "model.coupling": 0.75}, 20),
    ("paradox-curve market, κ = 0.8", {**CURVE, "model.coupling": 0.8}, 20),
    ("paradox-curve market, κ = 0.85", {**CURVE, "model.coupling": 0.85}, 20),
    ("paradox-curve market, κ = 0.9", {**CURVE, "model.coupling": 0.9}, 20),
    ("paradox-curve market, κ = 1", {**CURVE, "model.coupling": 1.0}, 20),
]
RULES = ("per_channel", "simplex")
#: Root of the theory's leak draws: replicate r draws from [root, r] in every case, so the
#: theory's slopes are paired across cases (and κ) as the simulated ones are.
LEAK_ROOT = 20261206


def measure(args: tuple[int, str]) -> dict:
    index, rule = args
    name, values, n_seeds = CASES[index]
    base = validate.market_config(config_from_flat(), {"learning.lab.split_step": rule})
    seeds = validate.paired_seeds(validate.DEFAULT_SEEDS)[:n_seeds]
    runs = validate.validate_market(
        base,
        values,
        seeds,
        validate.DEFAULT_STEPS,
        validate.DEFAULT_BURN_IN,
        LEAK_ROOT,
    )
    out = validate.summarise_market(runs)
    keep = ("seeds", "sim_slope", "sim_se", "theory_slope", "theory_sd", "sim_deeper",
            "sim_easier", "theory_deeper", "theory_easier")  # fmt: skip
    return {"market": name, "split_step": rule, **{k: out[k] for k in keep}}


#: The mechanism measurement of docs/ODD.md §7.1: the paradox-curve market at κ = 1, seeds
#: 0–29 used directly, 150 steps, every quantity a run's mean over steps 1–150.
MECHANISM = {**CURVE, "model.coupling": 1.0}
MECHANISM_SEEDS, SHORT_STEPS = range(30), 150
#: What changes the slope in that market (docs/ODD.md §7.1, items 1–5 and the open-weights
#: draw): label, overrides of MECHANISM, seeds (0..n−1). 150-step runs, as the mechanism.
FACTORS: list[tuple[str, dict, int]] = [
    *[(f"ē = {e}", {"model.adversary_budget_mean": e}, 12) for e in (0.1, 0.2, 0.3, 0.5, 1.0, 3.0)],
    *[(f"v_a = {v}", {"model.attacker_value": v}, 12) for v in (40.0, 160.0)],
    *[(f"ζ = {z}", {"model.reach_exponent": z}, 12) for z in (0.5, 1.0, 1.5, 2.0)],
    ("20 labs, ζ = 1", {"model.n_labs": 20}, 12),
    *[(f"{n} adversaries", {"model.n_adversaries": n}, 12) for n in (100, 1000)],
    ("ρ = 0", {"model.compromise_persistence": 0.0}, 12),
    ("linear congestion", {"model.prize_congestion": "linear"}, 30),
    ("foresight β = 0.6", {"learning.lab.foresight": 0.6}, 30),
    *[(f"λ = {r}", {"learning.adversary.rationality": r}, 12) for r in (0.5, 10.0)],
    ("open weights: largest", {"policy.open_weights_selection": "largest"}, 12),
    ("open weights: smallest", {"policy.open_weights_selection": "smallest"}, 12),
    ("default size (20 labs, 1,000 adversaries)",
     {"model.n_labs": 20, "model.n_adversaries": 1000}, 30),
    ("default size, largest", {"model.n_labs": 20, "model.n_adversaries": 1000,
                               "policy.open_weights_selection": "largest"}, 12),
    ("default size, smallest", {"model.n_labs": 20, "model.n_adversaries": 1000,
                                "policy.open_weights_selection": "smallest"}, 12),
]  # fmt: skip


def short_runs(args: tuple[str, str, dict, int]) -> dict:
    """For one setting of the mechanism market: the secant slope over seeds 0..n−1 (mean, SE,
    95% t half-width, per-seed SD, seeds with a negative slope, and the means over seeds whose
    top lab starts open and closed), its decomposition, and at q = 0.95 the top lab's
    compromised share, defence spending per step and the attempts per step it sees (smoothed),
    beside all attempts per step and the reach-weighted compromised share."""
    from sim.market import decompose

    label, rule, values, n_seeds = args
    base = validate.market_config(
        config_from_flat(), {**MECHANISM, **values, "learning.lab.split_step": rule}
    )
    investable = 1.0 - base.policy.decoupling_share  # per unit of budget

    def watch(model) -> dict:
        out, lab = model.outcomes, model.lab
        return {
            "clarity": float(np.sum(lab.reach * lab.clarity)),
            "top_phi": lab.compromised[0].sum(),
            "top_defence": (1.0 - lab.alignment_share[0]) * (lab.budget[0] * investable),
            "top_attempts": lab.seen_attempts[0].sum(),
            "attempts": sum(out[f"attempts_{c}"] for c in ("weights", "prompt", "output")),
        }

    rows = []
    for seed in range(n_seeds):
        for q in (0.75, 0.95):
            cfg = validate.market_config(base, {"model.fixed_alignment": q})
            run = validate.window_run(cfg, seed, SHORT_STEPS, 0, watch)  # steps 1..150
            means = {key: float(value) for key, value in run["means"].items()}
            rows.append({"seed": seed, "q": q, "top_open": bool(run["open"][0]), **means})
    runs = pd.DataFrame(rows)
    wide = runs.pivot(index="seed", columns="q")
    slope = (wide["N"][0.95] - wide["N"][0.75]) / 0.2
    top_open = wide["top_open"][0.75].astype(bool)
    means = runs.drop(columns="top_open").groupby("q").mean()
    parts = decompose(0.75, means.loc[0.75].to_dict(), 0.95, means.loc[0.95].to_dict())
    se = float(slope.std(ddof=1) / np.sqrt(slope.size))
    return {
        "setting": label,
        "split_step": rule,
        "seeds": n_seeds,
        "slope": float(slope.mean()),
        "slope_se": se,
        "slope_t95": se * float(stats.t.ppf(0.975, n_seeds - 1)),
        "slope_sd": float(slope.std(ddof=1)),
        "negative_seeds": int((slope < 0).sum()),
        "slope_top_open": float(slope[top_open].mean()) if top_open.any() else np.nan,
        "slope_top_closed": float(slope[~top_open].mean()) if (~top_open).any() else np.nan,
        "top_open_seeds": int(top_open.sum()),
        "deeper": parts["deeper"],
        "easier": parts["easier"],
        "N_075": float(means.loc[0.75, "N"]),
        "N_095": float(means.loc[0.95, "N"]),
        "top_phi_075": float(means.loc[0.75, "top_phi"]),
        **{k: float(means.loc[0.95, k]) for k in ("top_phi", "top_defence", "top_attempts",
                                                   "attempts", "Phi")},
    }  # fmt: skip


def kappa_star(table: pd.DataFrame, rule: str, column: str = "sim_slope") -> float:
    """The zero of the line through the paradox-curve market's slopes (``column``: simulated or
    theory) at the two κ that bracket a sign change (NaN if none does)."""
    rows = table[(table.split_step == rule) & table.market.str.startswith("paradox-curve")]
    kappas = rows.market.str.extract(r"κ = ([0-9.]+)")[0].astype(float).to_numpy()
    slopes = rows[column].to_numpy()
    order = np.argsort(kappas)
    kappas, slopes = kappas[order], slopes[order]
    for i in range(kappas.size - 1):
        (k0, k1), (s0, s1) = kappas[i : i + 2], slopes[i : i + 2]
        if s0 >= 0 > s1:
            return float(k0 + s0 * (k1 - k0) / (s0 - s1))
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quoted", description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--save", type=Path, default=None, help="CSV of the table")
    args = parser.parse_args(argv)
    tasks = [(i, rule) for i in range(len(CASES)) for rule in RULES]
    with ProcessPoolExecutor(args.workers) as pool:
        table = pd.DataFrame(list(pool.map(measure, tasks)))
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    for rule in RULES:
        sim, theory = kappa_star(table, rule), kappa_star(table, rule, "theory_slope")
        print(f"paradox-curve market, {rule}: κ* simulated ≈ {sim:.3f}, theory ≈ {theory:.3f}")
    settings = [("mechanism", MECHANISM_SEEDS.stop, {})] + [(a, n, v) for a, v, n in FACTORS]
    jobs = [(label, rule, values, n) for label, n, values in settings for rule in RULES]
    with ProcessPoolExecutor(args.workers) as pool:
        found = pd.DataFrame(list(pool.map(short_runs, jobs)))
    print("\nThe paradox-curve market at κ = 1 and one change at a time (docs/ODD.md §7.1): "
          f"seeds 0..n-1, {SHORT_STEPS} steps, means over steps 1-{SHORT_STEPS}; the top lab's "
          "numbers and Phi at q = 0.95")  # fmt: skip
    print(found.round(3).to_string(index=False))
    if args.save:
        table.to_csv(args.save, index=False)
        found.to_csv(args.save.with_name(args.save.stem + "_short.csv"), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
