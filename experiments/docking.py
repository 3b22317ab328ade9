"""Docking the simulation to the theory: the checks behind ``docs/theory.md``.

``python -m experiments.docking`` recomputes the tables quoted in the docs (a few minutes):
the contest_1v1 efforts against the closed form, the simulated paradox curve against N(q), and
the mean-field error at three population sizes. The tests call the same functions.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sim import static_game as th
from sim.api import simulate, timeseries
from sim.config import config_from_flat
from sim.meanfield import MeanField

#: The contest_1v1 scenario as keyword parameters (conf/scenario/contest_1v1.yaml).
CONTEST_1V1: dict = dict(
    n_labs=1, n_adversaries=1, fixed_alignment=0.6, defence_floor=0.0, defence_decay=1.0,
    compromise_share=1.0, compromise_persistence=0.0, knowledge_decay=0.0,
    lab_budget_mean=50.0, lab_budget_dispersion=0.0, adversary_budget_mean=50.0,
    adversary_budget_dispersion=0.0, output_initial_knowledge=1.0, network_topology="none",
    open_weights_share=0.0, leak_probability=0.0, api_access_share=0.0, publication_rate=0.0,
    detection_probability=0.0, adversary_rule="best_response", lab_rule="best_response",
    lab_defence_split_weights=0.0, lab_defence_split_prompt=0.0, lab_defence_split_output=1.0,
)  # fmt: skip

#: Identical labs and adversaries with fixed strategies: the mean field is exact in expectation.
HOMOGENEOUS: dict = dict(
    reach_exponent=0.0, lab_budget_dispersion=0.0, adversary_budget_dispersion=0.0,
    knowledge_concentration=1e6, knowledge_gain=0.0, diffusion_rate=0.0, open_weights_share=0.0,
    leak_probability=0.0, detection_probability=0.0, adversary_rule="fixed", lab_rule="fixed",
)  # fmt: skip


def contest_docking(steps: int = 400, burn_in: int = 300, **overrides) -> dict:
    """Simulated efforts in contest_1v1 (mean after burn-in) against the closed form."""
    cfg = config_from_flat(**{**CONTEST_1V1, **overrides})
    table = timeseries(simulate(steps=steps, seed=0, config=cfg))
    game = th.StaticGame.from_config(cfg, "output")
    q = cfg.model.fixed_alignment
    eq = th.equilibrium(game.effectiveness(q), game.prize(q), game.loss(q), game.decisiveness)
    late = table.iloc[burn_in + 1 :]
    return {
        "x_sim": float(late["spend_attack"].mean()),
        "y_sim": float(late["spend_defence"].mean()),
        "x_star": float(eq.x),
        "y_star": float(eq.y),
        "p_star": float(eq.p),
        "p_sim": float(late["success_rate_output"].mean()),
    }


def simulated_curve(
    qs: Sequence[float], *, coupling: float, steps: int = 1500, burn_in: int = 300,
    seeds: Sequence[int] = (0, 1), **overrides,
) -> pd.DataFrame:  # fmt: skip
    """Mean realised net alignment in contest_1v1 for each fixed q, with its standard error."""
    rows = []
    for q in qs:
        values = []
        for seed in seeds:
            cfg = config_from_flat(
                **{**CONTEST_1V1, "fixed_alignment": q, "coupling": coupling, **overrides}
            )
            table = timeseries(simulate(steps=steps, seed=seed, config=cfg))
            values.append(table["net_alignment"].iloc[burn_in + 1 :].to_numpy())
        v = np.concatenate(values)
        rows.append({"q": q, "N_sim": v.mean(), "se": v.std(ddof=1) / np.sqrt(v.size)})
    return pd.DataFrame(rows)


def meanfield_error(
    n_labs: int, *, ratio: int = 50, steps: int = 100, seeds: Sequence[int] = range(8),
    columns: Sequence[str] = ("net_alignment", "compromised_share", "harm_exploitation"),
    **overrides,
) -> dict[str, float]:  # fmt: skip
    """RMS over time of (seed-averaged simulation − mean-field ODE), per outcome."""
    cfg = config_from_flat(
        **{**HOMOGENEOUS, "n_labs": n_labs, "n_adversaries": ratio * n_labs, **overrides}
    )
    ode = MeanField(cfg).solve(steps)
    runs = [timeseries(simulate(steps=steps, seed=s, config=cfg)) for s in seeds]
    mean = sum(r[list(columns)] for r in runs) / len(runs)
    return {c: float(np.sqrt(((mean[c] - ode[c]) ** 2).mean())) for c in columns}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print("## contest_1v1 efforts (mean of steps 301-400) against the closed form\n")
    print("| v_a | v_d | κ | x_sim | x* | y_sim | y* |\n|---|---|---|---|---|---|---|")
    for v_a, v_d, kappa in ((40, 20, 0.8), (10, 40, 0.8), (25, 25, 0.3), (60, 10, 1.0)):
        r = contest_docking(attacker_value=float(v_a), defender_value=float(v_d), coupling=kappa)
        print(f"| {v_a} | {v_d} | {kappa} | {r['x_sim']:.4f} | {r['x_star']:.4f} | "
              f"{r['y_sim']:.4f} | {r['y_star']:.4f} |")  # fmt: skip
    print("\n## mean-field error (RMS over 100 steps, 8 seeds), M = 50 N\n")
    print(
        "| N | M | net_alignment | compromised_share | harm_exploitation |\n|---|---|---|---|---|"
    )
    for n in (5, 20, 80):
        e = meanfield_error(n)
        print(f"| {n} | {50 * n} | {e['net_alignment']:.5f} | {e['compromised_share']:.5f} | "
              f"{e['harm_exploitation']:.5f} |")  # fmt: skip
    print("\n## simulated paradox curve in contest_1v1 against N(q)\n")
    qs = [0.2, 0.4, 0.6, 0.8, 0.95]
    for kappa in (0.1, 0.8):
        sim_curve = simulated_curve(qs, coupling=kappa)
        game = th.StaticGame.from_config(config_from_flat(**{**CONTEST_1V1, "coupling": kappa}),
                                         "output")  # fmt: skip
        sim_curve["N_theory"] = th.net_alignment(game, sim_curve["q"].to_numpy())
        q_star = th.optimum(game)
        q_text = "none" if q_star is None else f"{q_star:.3f}"
        print(f"κ = {kappa} (κ* = {th.threshold(game):.3f}, q* = {q_text})\n")
        print("| q | N (simulated) | s.e. | N(q) theory |\n|---|---|---|---|")
        for row in sim_curve.itertuples():
            print(f"| {row.q} | {row.N_sim:.4f} | {row.se:.4f} | {row.N_theory:.4f} |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
