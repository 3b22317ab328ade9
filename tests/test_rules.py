"""The rules of sim/rules.py against analytic cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from sim import rules


def test_alignment_quality_analytic():
    q = rules.alignment_quality(np.array([0.0, 2.0, 1e9]), 2.0)
    assert q[0] == 0.0
    assert q[1] == pytest.approx(1 - np.exp(-1))
    assert q[2] <= 1.0


def test_clarity_is_zero_without_coupling_and_power_law_otherwise():
    q = np.array([0.0, 0.25, 0.5, 0.99])
    assert np.all(rules.clarity(q, 0.0, 1.7) == 0.0)
    np.testing.assert_allclose(rules.clarity(q, 0.6, 2.0), 0.6 * q**2)
    # the slope is exactly zero at κ = 0, also at q = 0 with γ < 1
    assert np.all(rules.clarity_slope(q, 0.0, 0.5) == 0.0)
    np.testing.assert_allclose(rules.clarity_slope(q[1:], 0.6, 2.0), 1.2 * q[1:])


@pytest.mark.parametrize("mu", [0.5, 1.0, 3.0])
def test_contest_probability_analytic_cases(mu):
    z = np.array([0.0, 1.0, 2.0, 5.0])
    y = np.array([1.0, 1.0, 2.0, 0.0])
    p = rules.contest_probability(z, y, mu)
    assert p[0] == 0.0  # no attack, no success
    assert p[1] == pytest.approx(0.5)  # equal strengths: a fair contest
    assert p[2] == pytest.approx(0.5)
    assert p[3] == 1.0  # undefended
    np.testing.assert_allclose(
        rules.contest_probability(np.array([3.0]), np.array([1.0]), mu), 3**mu / (3**mu + 1)
    )


def test_contest_elasticity_matches_finite_difference():
    z, y, mu, h = 1.3, 0.7, 1.8, 1e-6
    p = rules.contest_probability(np.array([z]), np.array([y]), mu)
    fd = (
        rules.contest_probability(np.array([z * np.exp(h)]), np.array([y]), mu)
        - rules.contest_probability(np.array([z * np.exp(-h)]), np.array([y]), mu)
    ) / (2 * h)
    assert rules.contest_elasticity(p, mu)[0] == pytest.approx(fd[0], rel=1e-6)


@pytest.mark.parametrize("mu", [0.3, 1.5, 2.5, 5.0])
def test_best_response_ratio_is_optimal_on_a_dense_grid(mu):
    """Including the jump from 0 to an interior optimum that μ > 1 produces."""
    br = rules.BestResponse(mu)
    rho = np.geomspace(0.05, 1e4, 400)
    t = br.ratio(rho)
    got = rho * rules._tullock_share(t, mu) - t
    grid = np.concatenate([[0.0], np.geomspace(1e-6, 1e3, 200_000)])
    best = np.array([(r * rules._tullock_share(grid, mu) - grid).max() for r in rho])
    assert np.all(got >= best - 1e-6 * np.maximum(1.0, best))
    assert np.all(got >= 0.0)


@pytest.mark.parametrize("mu", [1.0, 0.6, 2.5])
def test_best_response_maximises_the_attackers_payoff(mu):
    br = rules.BestResponse(mu)
    rng = np.random.default_rng(3)
    for _ in range(25):
        prize, a, y = rng.uniform(0.1, 50), rng.uniform(0.05, 3), rng.uniform(0.05, 5)

        def payoff(x, prize=prize, a=a, y=y):
            x = np.atleast_1d(x)
            return prize * rules.contest_probability(a * x, np.full(x.shape, y), mu) - x

        x_star = br.effort(np.array([prize]), np.array([a]), np.array([y]), 1e9)
        grid = np.concatenate([[0.0], np.geomspace(1e-6, prize, 200_000)])
        brute = payoff(grid).max()
        assert payoff(x_star)[0] >= brute - 1e-6 * max(1.0, abs(brute))


def test_best_response_closed_form_for_mu_one():
    # x* = sqrt(V y / a) − y / a (Tullock 1980), clipped at zero and at the budget
    br = rules.BestResponse(1.0)
    v, a, y = np.array([10.0, 0.5, 10.0]), np.array([2.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])
    x = br.effort(v, a, y, np.array([100.0, 100.0, 1.0]))
    assert x[0] == pytest.approx(np.sqrt(10 / 2) - 0.5)
    assert x[1] == 0.0  # V a < y: attacking does not pay
    assert x[2] == 1.0  # budget binds


def test_residual_and_exploitation_harm():
    w, q, c = np.array([0.6, 0.4]), np.array([0.5, 0.9]), np.array([0.2, 0.8])
    assert rules.residual_harm(w, q, 2.0) == pytest.approx(2.0 * (0.6 * 0.5 + 0.4 * 0.1))
    phi = np.array([[0.1, 0.0, 0.2], [0.0, 0.3, 0.0]])
    h = np.array([1.0, 0.5, 2.0])
    harm = rules.exploitation_harm(w, q, c, phi, h)
    assert harm[0, 2] == pytest.approx(0.6 * 0.5 * 1.2 * 2.0 * 0.2)
    assert harm[1, 1] == pytest.approx(0.4 * 0.9 * 1.8 * 0.5 * 0.3)
    assert harm[0, 1] == 0.0


def test_compromise_update():
    phi = np.array([[0.2, 0.2, 0.0], [0.0, 0.0, 0.0]])
    successes = np.array([[0, 0, 0], [2, 0, 1]])
    out = rules.update_compromise(phi, successes, share=0.1, persistence=0.5)
    np.testing.assert_allclose(out[0], [0.1, 0.1, 0.0])  # no success: half is patched
    fresh = 1 - 0.9**3
    np.testing.assert_allclose(out[1], [fresh * 2 / 3, 0.0, fresh / 3])
    many = rules.update_compromise(out, np.full((2, 3), 10_000), 0.5, 0.9)
    assert np.all(many.sum(axis=1) <= 1.0 + 1e-12)


def test_net_alignment_inverts_with_clarity():
    q, c = np.array([0.8, 0.8, 0.8]), np.array([0.0, 1.0, 1.0])
    n = rules.net_alignment(q, c, np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(n, [0.8, 0.8, -0.8])  # fully compromised, fully clear: −q


def _expected_net(q, *, coupling, gamma, alpha, theta, eps, strength, defence, mu, sigma, carried):
    c = coupling * q**gamma
    a = alpha + theta * c**eps
    p = rules.contest_probability(strength * a, defence, mu)
    e_phi = carried + (1 - carried) * (1 - np.prod(1 - sigma * p))
    return q * (1 - e_phi * (1 + c))


@pytest.mark.parametrize("coupling", [0.0, 0.4, 1.0])
def test_marginal_return_matches_finite_difference(coupling):
    rng = np.random.default_rng(11)
    n_att = 40
    alpha = np.array([0.4, 0.3, 0.1])
    theta = np.array([3.0, 1.0, 1.5])
    eps = np.array([2.0, 0.5, 1.0])
    channel = rng.integers(0, 3, n_att)
    strength = rng.uniform(0.01, 2.0, n_att)  # K x per attempt
    defence = rng.uniform(0.3, 2.0, n_att)
    params = dict(coupling=coupling, gamma=1.5, mu=1.4, sigma=0.05, carried=0.1)
    q0 = 0.7
    c0 = coupling * q0**1.5
    a_lab = rules.attackability(np.array([c0]), alpha, theta, eps)[0]
    slope_a = rules.attackability_slope(np.array([c0]), theta, eps)[0]
    p = rules.contest_probability(strength * a_lab[channel], defence, 1.4)
    mr, e_n = rules.marginal_return(
        quality=np.array([q0]),
        clar=np.array([c0]),
        clar_slope=rules.clarity_slope(np.array([q0]), coupling, 1.5),
        carried=np.array([0.1]),
        attack_lab=np.zeros(n_att, dtype=np.intp),
        attack_channel=channel,
        attack_prob=p,
        attack_base=a_lab[channel],
        attack_gain_slope=slope_a[channel],
        share=0.05,
        decisiveness=1.4,
    )

    def f(q):
        return _expected_net(
            q,
            alpha=alpha[channel],
            theta=theta[channel],
            eps=eps[channel],
            strength=strength,
            defence=defence,
            **params,
        )

    h = 1e-6
    assert e_n[0] == pytest.approx(f(q0), rel=1e-12)
    assert mr[0] == pytest.approx((f(q0 + h) - f(q0 - h)) / (2 * h), rel=1e-5, abs=1e-8)
    if coupling == 0.0:
        # No clarity: the only effect of q is the q in front, so dE[n]/dq = 1 − E[φ] ≥ 0.
        assert mr[0] == pytest.approx(1 - (1 - f(q0) / q0))
        assert mr[0] >= 0


def test_diffusion_on_a_path():
    k = np.array([[0.0], [1.0], [0.0]])
    src, dst = np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1])
    deg = np.array([1.0, 2.0, 1.0])
    out = rules.diffuse_knowledge(k, src, dst, deg, 0.25)
    np.testing.assert_allclose(out[:, 0], [0.25, 1.0, 0.25])  # only the less informed move
    full = rules.diffuse_knowledge(k, src, dst, deg, 1.0)
    assert full.max() <= 1.0  # never past the best-informed neighbour


def test_sample_logits_frequencies_and_unavailable_options():
    rng = np.random.default_rng(5)
    logits = np.array([np.log([0.2, 0.5, 0.3]), [-np.inf, 0.0, -np.inf], [-np.inf] * 3])
    rows = np.repeat(logits, 40_000, axis=0)
    idx = rules.sample_logits(rows, rng.random(rows.shape[0]))
    first = np.bincount(idx[:40_000], minlength=3) / 40_000
    np.testing.assert_allclose(first, [0.2, 0.5, 0.3], atol=0.01)
    assert np.all(idx[40_000:80_000] == 1)
    assert np.all(idx[80_000:] == -1)


def test_project_simplex():
    v = np.array([[0.5, 0.5, 0.5], [2.0, -1.0, 0.0], [0.2, 0.3, 0.5]])
    p = rules.project_simplex(v)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p[0], [1 / 3] * 3)
    np.testing.assert_allclose(p[1], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(p[2], v[2])


def test_reach_and_budgets():
    w = rules.reach_weights(5, 1.0)
    assert w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w[0] / w[1], 2.0)
    assert np.all(rules.reach_weights(4, 0.0) == 0.25)
    b = rules.lognormal(np.random.default_rng(0), 200_000, 2.0, 0.8)
    assert b.mean() == pytest.approx(2.0, rel=0.02)
    assert np.all(rules.lognormal(np.random.default_rng(0), 3, 2.0, 0.0) == 2.0)


def test_fermi():
    assert rules.fermi(np.array([0.0]), 3.0)[0] == pytest.approx(0.5)
    assert rules.fermi(np.array([1.0]), 2.0)[0] == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_bruteforce_helper_is_sane():
    # guards the brute-force comparison above: the Tullock μ = 1 optimum is interior here
    res = minimize_scalar(lambda x: -(4 * x / (x + 1) - x), bounds=(0, 10), method="bounded")
    assert res.x == pytest.approx(1.0, rel=1e-4)


def test_open_weights_selection():
    rng = np.random.default_rng(5)
    assert rules.open_weights(5, 0.4, "largest", rng).tolist() == [1, 1, 0, 0, 0]
    assert rules.open_weights(5, 0.4, "smallest", rng).tolist() == [0, 0, 0, 1, 1]
    drawn = np.array([rules.open_weights(5, 0.4, "random", rng) for _ in range(4000)])
    assert (drawn.sum(axis=1) == 2).all()  # round(0.4 · 5) labs, every draw
    np.testing.assert_allclose(drawn.mean(axis=0), 0.4, atol=0.03)  # uniformly chosen
    np.testing.assert_allclose(rules.open_weights(5, 0.4, "random", None), 0.4)  # expectation


def test_adversary_effort_step_adjusts_partially_and_stops_when_attacking_does_not_pay():
    budget = np.array([10.0, 10.0, 10.0])
    effort = np.array([2.0, 0.12, 0.5, 0.5])
    target = np.array([6.0, 0.0, 0.0, 1.0])
    new = rules.adversary_effort_step(target, effort, np.full(4, 10.0), 0.25)
    # 0.09 is below 1% of the budget with nothing worth attacking: stop; 0.375 is not
    np.testing.assert_allclose(new, [3.0, 0.0, 0.375, 0.625])
    assert rules.adversary_effort_step(np.array([0.0]), np.array([20.0]), budget[:1], 0.5) == 10.0


def test_roth_erev_update_reinforces_the_chosen_channel_and_forgets():
    prop = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    new = rules.roth_erev_update(prop.copy(), np.array([1, 0]), np.array([4.0, 0.0]), 0.1, 0.3)
    np.testing.assert_allclose(new[0], [0.9 + 0.6, 0.9 + 0.7 * 4.0, 0.9 + 0.6])
    np.testing.assert_allclose(new[1], [1.0, 1.0, 1.0])  # all zero: reset to ones


def _quadratic_split_objective(alpha: np.ndarray, beta: np.ndarray):
    """V(ω) = Σ_k (α_k ω_k − β_k ω_k² / 2) per lab, whatever the share: every channel always
    wants more defence (α_k > β_k), so only the simplex limits the split."""

    def objective(share, split):
        return (split * alpha - 0.5 * beta * split**2).sum(axis=1) + 0.0 * share

    return objective


def _simplex_steps(objective, split: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` simplex split steps of one lab (η_s = 0.3, gradient scale 1)."""
    for _ in range(steps):
        _, split = rules.lab_policy_step(
            objective, np.zeros(1), split, step_size=0.3, scale=np.ones(1), ceiling=1.0,
            on_simplex=True,
        )  # fmt: skip
    return split


def test_split_step_on_the_simplex_reaches_the_constrained_optimum_in_one_newton_step():
    """For a separable quadratic the constrained Newton step is exact: ω_k = (α_k − λ) / β_k
    with Σ ω_k = 1, reached from a nearby split in one step of size 1."""
    alpha = np.array([[5.0, 4.5, 4.2], [3.0, 3.2, 5.2]])
    beta = np.array([[4.0, 2.0, 3.0], [1.0, 2.0, 5.0]])
    lam = ((alpha / beta).sum(axis=1) - 1.0) / (1.0 / beta).sum(axis=1)
    optimum = (alpha - lam[:, None]) / beta
    assert np.all(optimum > 0.15) and np.allclose(optimum.sum(axis=1), 1.0)
    start = rules.project_simplex(optimum + np.array([[0.1, -0.05, -0.05], [-0.1, 0.0, 0.1]]))
    _, split = rules.lab_policy_step(
        _quadratic_split_objective(alpha, beta), np.zeros(2), start,
        step_size=1.0, scale=np.ones(2), ceiling=1.0, on_simplex=True,
    )  # fmt: skip
    np.testing.assert_allclose(split, optimum, atol=1e-6)
    assert np.all(np.abs(split - start) <= rules.MAX_SPLIT_STEP + 1e-12)


def test_per_channel_split_step_is_stuck_where_every_channel_wants_more_defence():
    """The defect the simplex step repairs: when each channel's own Newton step exceeds the
    cap, the capped steps are equal and the projection takes them back."""
    alpha = np.array([[50.0, 20.0, 10.0]])
    beta = np.array([[1.0, 1.0, 1.0]])
    objective = _quadratic_split_objective(alpha, beta)
    start = np.full((1, 3), 1.0 / 3.0)
    _, stuck = rules.lab_policy_step(
        objective, np.zeros(1), start, step_size=0.3, scale=np.ones(1), ceiling=1.0
    )
    np.testing.assert_allclose(stuck, start, atol=1e-12)
    split = _simplex_steps(objective, start, 20)
    # the optimum of this objective on the simplex is the corner of the most valuable channel
    np.testing.assert_allclose(split, [[1.0, 0.0, 0.0]], atol=1e-9)


def test_split_step_on_the_simplex_rests_at_an_edge_optimum():
    """Where the best split leaves a channel undefended, the step's resting point is the
    constrained optimum (equal marginal values on the defended channels, lower on the other),
    not a corner: α = (5, 5, 0), β = (1, 4, 1) has its optimum at (0.8, 0.2, 0), marginal
    values (4.2, 4.2, 0). The same from a split that starts at that optimum."""
    alpha = np.array([[5.0, 5.0, 0.0]])
    beta = np.array([[1.0, 4.0, 1.0]])
    objective = _quadratic_split_objective(alpha, beta)
    for start in (np.full((1, 3), 1.0 / 3.0), np.array([[0.8, 0.2, 0.0]])):
        split = _simplex_steps(objective, start, 80)
        np.testing.assert_allclose(split, [[0.8, 0.2, 0.0]], atol=1e-6)
