"""The static game against numerical best responses, and the simulation docked to the theory."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from experiments.docking import (
    CONTEST_1V1,
    HOMOGENEOUS,
    contest_docking,
    meanfield_error,
    simulated_curve,
)
from sim import static_game as th
from sim.api import simulate, timeseries
from sim.config import Config, config_from_flat
from sim.meanfield import MeanField

from .conftest import REPO

GAME = th.StaticGame(
    coupling=0.8, clarity_exponent=1.5, base_vulnerability=0.1, clarity_gain=1.5,
    clarity_elasticity=1.0, attacker_value=40.0, defender_value=20.0,
)  # fmt: skip


@pytest.mark.parametrize(
    ("a", "prize", "loss", "mu"),
    [(1.0, 10.0, 10.0, 1.0), (0.4, 30.0, 5.0, 1.0), (2.5, 3.0, 12.0, 1.0), (1.3, 8.0, 4.0, 0.5)],
)
def test_closed_form_equilibrium_matches_numerical_best_responses(a, prize, loss, mu):
    eq = th.equilibrium(a, prize, loss, mu)
    x, y = th.best_response_iteration(a, prize, loss, mu)
    assert float(eq.x) == pytest.approx(x, rel=1e-5)
    assert float(eq.y) == pytest.approx(y, rel=1e-5)
    assert bool(eq.valid)


def test_equilibrium_first_order_conditions():
    a, v_a, v_d, h = 0.7, 12.0, 5.0, 1e-6
    eq = th.equilibrium(a, v_a, v_d)
    x, y = float(eq.x), float(eq.y)

    def p(xx, yy):
        return a * xx / (a * xx + yy)

    assert (v_a * (p(x + h, y) - p(x - h, y)) / (2 * h)) == pytest.approx(1.0, rel=1e-6)
    assert (-v_d * (p(x, y + h) - p(x, y - h)) / (2 * h)) == pytest.approx(1.0, rel=1e-6)
    assert float(eq.p) == pytest.approx(p(x, y))
    assert float(eq.p) == pytest.approx(a * v_a / (a * v_a + v_d))


def test_no_coupling_no_paradox_in_theory():
    game = replace(GAME, coupling=0.0)
    q = np.linspace(0.01, 0.99, 99)
    p = th.success_probability(game, q)
    assert np.allclose(p, p[0])  # p* does not depend on q
    assert np.all(np.diff(th.net_alignment(game, q)) > 0)
    assert th.optimum(game) is None and th.paradox_region(game) == []


def test_slope_matches_finite_difference():
    q, h = np.linspace(0.05, 0.95, 19), 1e-6
    fd = (th.net_alignment(GAME, q + h) - th.net_alignment(GAME, q - h)) / (2 * h)
    np.testing.assert_allclose(th.net_alignment_slope(GAME, q), fd, rtol=1e-5, atol=1e-8)


def test_threshold_separates_monotone_from_interior_optimum():
    kappa_star = th.threshold(GAME)
    assert kappa_star is not None and 0 < kappa_star < GAME.coupling
    q = np.linspace(1e-4, 1 - 1e-9, 20001)
    below, above = (
        replace(GAME, coupling=0.98 * kappa_star),
        replace(GAME, coupling=1.02 * kappa_star),
    )
    assert np.all(np.diff(th.net_alignment(below, q)) > 0)
    assert th.optimum(below) is None
    q_star = th.optimum(above)
    assert q_star is not None
    assert th.net_alignment(above, q_star) >= th.net_alignment(above, q).max() - 1e-12
    assert abs(th.net_alignment_slope(above, q_star)) < 1e-6
    (lo, hi), *_ = th.paradox_region(above)
    assert lo == pytest.approx(q_star, abs=1e-6) and hi == 1.0


def test_no_threshold_when_inversion_is_cheap():
    weak = replace(GAME, attacker_value=0.1, compromise_share=0.01)
    assert th.threshold(weak) is None


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"attacker_value": 10.0, "defender_value": 40.0},
        {"attacker_value": 25.0, "defender_value": 25.0, "coupling": 0.3},
        {"attacker_value": 60.0, "defender_value": 10.0, "coupling": 1.0},
        {"fixed_alignment": 0.9, "output_clarity_gain": 3.0},
    ],
)
def test_contest_1v1_converges_to_the_closed_form(params):
    r = contest_docking(**params)
    assert r["x_sim"] == pytest.approx(r["x_star"], rel=0.05)
    assert r["y_sim"] == pytest.approx(r["y_star"], rel=0.05)


def test_contest_1v1_scenario_matches_the_docking_parameters(compose_config):
    from experiments.schema import to_config
    from sim.config import to_flat

    cfg = to_config(compose_config("scenario=contest_1v1"))
    flat = to_flat(cfg)
    for key, value in CONTEST_1V1.items():
        assert flat[key] == value, key


def _curve(kappa, **kw):
    qs = [0.1, 0.3, 0.5, 0.7, 0.85, 0.95]
    rows = []
    for q in qs:
        values = [
            timeseries(simulate(steps=120, seed=s, fixed_alignment=q, coupling=kappa,
                                n_labs=8, n_adversaries=300, **kw))["net_alignment"]
            .iloc[41:].mean()
            for s in range(2)
        ]  # fmt: skip
        rows.append(np.mean(values))
    return np.array(rows)


def test_population_paradox_curve_is_monotone_without_coupling():
    """docs/ODD.md §1: at κ = 0 net alignment rises with (exogenous) alignment."""
    n = _curve(0.0)
    assert np.all(np.diff(n) > 0), n


def test_population_paradox_curve_has_an_interior_maximum_with_strong_coupling():
    """docs/ODD.md §1: κ high, in the concentrated market of the paradox-curve experiments
    (§7.1): the curve peaks before q → 1."""
    n = _curve(1.0, attacker_value=80.0, adversary_budget_mean=1.0)
    assert n.argmax() < len(n) - 1, n
    assert n[-1] < n.max() - 0.01, n


@pytest.mark.slow
def test_simulated_1v1_curve_follows_theory_below_and_above_threshold():
    qs = [0.2, 0.4, 0.6, 0.8, 0.95]
    below = simulated_curve(qs, coupling=0.1, steps=1300)
    assert np.all(np.diff(below["N_sim"]) > -3 * below["se"].iloc[1:].to_numpy()), below
    above = simulated_curve(qs, coupling=0.8, steps=1300)
    game = th.StaticGame.from_config(config_from_flat(**{**CONTEST_1V1, "coupling": 0.8}),
                                     "output")  # fmt: skip
    q_star = th.optimum(game)
    assert q_star is not None
    peak = above["q"].iloc[int(above["N_sim"].argmax())]
    assert abs(peak - q_star) <= 0.2  # the grid's resolution around q*
    assert above["N_sim"].iloc[-1] < above["N_sim"].max() - 3 * above["se"].iloc[-1]
    theory_n = th.net_alignment(game, above["q"].to_numpy())
    assert np.all(np.abs(above["N_sim"] - theory_n) < 4 * above["se"] + 0.03)


def test_meanfield_map_is_exact_for_deterministic_parts():
    cfg = config_from_flat(n_labs=4, n_adversaries=100, **HOMOGENEOUS)
    sim_table = timeseries(simulate(steps=30, seed=0, config=cfg))
    mapped = MeanField(cfg).iterate(30)
    for col in ("mean_alignment", "knowledge_weights", "knowledge_prompt", "spend_defence"):
        # knowledge starts Beta-distributed with a tiny spread (concentration 1e6)
        np.testing.assert_allclose(mapped[col], sim_table[col], rtol=1e-3, err_msg=col)


def test_meanfield_error_shrinks_with_size():
    small = meanfield_error(3, ratio=30, steps=60, seeds=range(6))
    large = meanfield_error(24, ratio=30, steps=60, seeds=range(6))
    for col, err in small.items():
        assert large[col] < err, (col, small, large)
    assert large["net_alignment"] < 0.01


@pytest.mark.slow
def test_meanfield_error_at_three_sizes():
    errors = [meanfield_error(n)["net_alignment"] for n in (5, 20, 80)]
    assert errors[0] > errors[1] > errors[2], errors


@pytest.mark.parametrize("lab_rule", ["fixed", "best_response"])
@pytest.mark.parametrize("adversary_rule", ["fixed", "best_response", "roth_erev"])
def test_meanfield_solves_for_every_rule(lab_rule, adversary_rule):
    cfg = config_from_flat(lab_rule=lab_rule, adversary_rule=adversary_rule)
    table = MeanField(cfg).solve(50)
    assert len(table) == 51 and np.isfinite(table.drop(columns="step").to_numpy()).all()
    assert table["net_alignment"].between(-1, 1).all()


def test_paradox_theory_command(tmp_path, compose_config):
    out = tmp_path / "th"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "theory", "scenario=contest_1v1", "steps=20",
         f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    summary = json.loads((out / "theory.json").read_text())
    for key in ("x_star", "y_star", "p_star", "q_star", "kappa_star"):
        assert key in summary
    assert summary["channel"] == "output"
    r = contest_docking()
    assert summary["x_star"] == pytest.approx(r["x_star"])
    curve = pd.read_parquet(out / "paradox_curve.parquet")
    assert {"q", "c", "p_star", "N", "x_star", "y_star"} <= set(curve.columns)
    meanfield = pd.read_parquet(out / "meanfield.parquet")
    assert len(meanfield) == 21
    # the market theory nests the static game: same curve, a paradox above κ* = 0.2
    market = pd.read_parquet(out / "market_curve.parquet").set_index("q")
    assert {0.75, 0.95} <= set(market.index)
    for column in ("N", "Phi", "deeper", "easier", "dN_dq"):
        assert column in market
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_object(compose_config("scenario=contest_1v1"))
    game = th.StaticGame.from_config(cfg, "output")
    assert market.loc[0.6, "N"] == pytest.approx(th.net_alignment(game, 0.6), abs=2e-4)
    block = summary["market"]
    assert block["covered"] and block["secant_slope"] < 0
    assert block["deeper"] + block["easier"] == pytest.approx(1 - block["secant_slope"])
    assert 0.2 <= block["kappa_star_secant"] <= 0.3
    assert block["kappa_star_local"] == pytest.approx(0.2, abs=1 / 32)


def test_paradox_theory_reports_no_optimum_as_null(tmp_path):
    out = tmp_path / "null"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "theory", "model.coupling=0", "steps=5",
         "model.n_labs=3", "model.n_adversaries=40",
         f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "theory.json").read_text())
    assert summary["q_star"] is None and summary["paradox_region"] == []


def test_meanfield_solve_falls_back_to_the_step_map_when_the_ode_is_not_smooth():
    """With fixed alignment the labs' best response switches corners, the adaptive integrator
    stalls, and solve() returns the expected step map instead of running without end."""
    cfg = Config(steps=20)
    cfg.model.fixed_alignment = 0.5
    table = MeanField(cfg).solve(20)
    assert table.attrs["method"].startswith("expected step map")
    pd.testing.assert_frame_equal(table, MeanField(cfg).iterate(20))
    with pytest.raises(RuntimeError, match="non-smooth"):
        MeanField(cfg).solve(20, fallback=False)
    smooth = MeanField(Config(steps=20)).solve(20)
    assert smooth.attrs["method"] == "RK45"


def test_mean_field_lab_values_defence_with_foresight():
    """The mean field's lab takes the simulation's objective, foresight factor F included: a
    forward-looking lab (β = 0.6) puts less of its budget into alignment than the myopic one,
    as the simulated labs do (0.29 → 0.16 over steps 121-150 in this market, seed 1)."""
    from sim.meanfield import MeanField

    shares = {}
    for beta in (0.0, 0.6):
        cfg = config_from_flat(n_labs=8, n_adversaries=300, adversary_budget_mean=1.0,
                               attacker_value=80.0, coupling=1.0, lab_foresight=beta)  # fmt: skip
        shares[beta] = MeanField(cfg).iterate(150)["mean_alignment_share"].iloc[-30:].mean()
    assert shares[0.6] < shares[0.0] - 0.1
