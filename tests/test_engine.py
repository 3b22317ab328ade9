"""The compiled engine against the whole-array statements of the same rules, and the networks."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import sim.network as network_mod
from sim import kernels as kn
from sim import rules
from sim.api import simulate, timeseries
from sim.config import NetworkConfig
from sim.model import AlignmentParadoxModel
from sim.network import Network, build_network
from sim.rules import MAX_SPLIT_STEP, lab_objective, lab_policy_step, target_logits

from .conftest import SMALL


def _targeting_inputs(rng: np.random.Generator, n_adv: int, n_lab: int) -> dict:
    return dict(
        knowledge=rng.random((n_adv, 3)),
        effort=rng.random(n_adv) * (rng.random(n_adv) > 0.1),  # some zero efforts
        api_access=rng.random(n_adv) < 0.5,
        active=rng.random(n_adv) < 0.9,
        attackability=rng.random((n_lab, 3)) * 2,
        defence=rng.random((n_lab, 3)) + 0.05,
        prize=rng.random(n_lab) * 5,
        open_weights=rng.random(n_lab) < 0.4,
    )


@pytest.mark.parametrize("mu", [1.0, 2.5])
@pytest.mark.parametrize("roth_erev", [True, False])
def test_compiled_targeting_matches_the_logit_statement(mu, roth_erev):
    """Same uniforms, same choices: the kernel is target_logits + sample_logits, compiled."""
    rng = np.random.default_rng(11)
    n_adv, n_lab = 3000, 7
    inp = _targeting_inputs(rng, n_adv, n_lab)
    propensity = rng.random((n_adv, 3)) + 0.05 if roth_erev else None
    uniforms = rng.random(n_adv)
    logits = target_logits(**inp, rationality=3.0, decisiveness=mu, propensity=propensity).reshape(
        n_adv, -1
    )
    expected = rules.sample_logits(logits, uniforms)
    lab, channel = np.empty(n_adv, dtype=np.intp), np.empty(n_adv, dtype=np.intp)
    chosen = kn.choose_targets(
        **inp,
        rationality=3.0,
        decisiveness=mu,
        propensity=propensity,
        uniforms=uniforms,
        target_lab=lab,
        target_channel=channel,
    )
    got = np.where(lab >= 0, lab * 3 + channel, -1)
    np.testing.assert_array_equal(got, expected)
    who = np.flatnonzero(got >= 0)
    np.testing.assert_array_equal(chosen["who"], who)
    k, i = channel[who], lab[who]
    np.testing.assert_array_equal(chosen["knowledge"], inp["knowledge"][who, k])
    np.testing.assert_array_equal(chosen["base"], inp["attackability"][i, k])
    strength = inp["knowledge"][who, k] * inp["attackability"][i, k] * inp["effort"][who]
    np.testing.assert_allclose(  # μ ≠ 1: numpy's and the C library's pow may differ by an ulp
        chosen["prob"], rules.contest_probability(strength, inp["defence"][i, k], mu), rtol=1e-15
    )


def test_fast_exp_is_within_one_ulp_and_bit_reproducible():
    d = -np.concatenate([np.random.default_rng(0).random(200_000) * 700, [0.0, 1e-300, 708.0]])
    got = kn.fast_exp(d)
    ref = np.exp(d)
    assert np.all(np.abs(got - ref) <= np.spacing(ref))
    assert kn.fast_exp(np.zeros(1))[0] == 1.0
    # The same reduction and polynomial evaluated by numpy, operation by operation: equal bits
    # mean the compiler neither fused multiply-adds nor reassociated anything.
    x = np.maximum(d, kn._EXP_FLOOR)
    n = np.floor(x * kn._LOG2E + 0.5)
    r = (x - n * kn._LN2_HI) - n * kn._LN2_LO
    poly = np.full_like(r, 1.0 / 6227020800.0)
    for c in kn._EXP_COEFFS:
        poly = c + r * poly
    np.testing.assert_array_equal(got, np.ldexp(poly, n.astype(int)))


def test_compiled_diffusion_matches_the_edge_list_statement():
    g = nx.watts_strogatz_graph(500, 6, 0.3, seed=4)
    net = Network.from_edges(500, np.array(list(g.edges())))
    k = np.random.default_rng(1).random((500, 3))
    expected = rules.diffuse_knowledge(k, net.src, net.dst.astype(np.intp), net.degree, 0.3)
    got = kn.diffuse_knowledge_csr(k, net.indptr, net.dst, net.degree, 0.3)
    np.testing.assert_array_equal(got, expected)


def _lab_state(seed: int, **params) -> AlignmentParadoxModel:
    model = AlignmentParadoxModel(rng=seed, n_labs=8, n_adversaries=400, **params)
    for _ in range(6):
        model.step()
    return model


LAB_CASES = [
    {},
    {"liability": 2.0},
    {"fixed_alignment": 0.6, "decisiveness": 2.0},
    {"lab_split_step": "per_channel"},
    {"lab_split_step": "per_channel", "liability": 2.0},
    {"liability": 2.0, "fixed_alignment": 0.6},
]


def _compiled_objective(model: AlignmentParadoxModel):
    """lab_objective over all labs, evaluated lab by lab by the compiled kernel on the model's
    own constants (:class:`sim.kernels.LabConstants`, foresight factor F included)."""
    pol, lab = model.config.policy, model.lab
    prm = model.lab_constants
    args = (
        lab.capital,
        lab.budget * (1.0 - pol.decoupling_share),
        lab.defence,
        lab.compromised,
        lab.seen_attempts,
        lab.seen_strength,
        lab.reach,
        float(model.coupling),
        model.base,
        model.gain,
        model.elasticity,
        model.severity,
        float(pol.liability),
        prm,
    )

    def objective(share, split):
        share = np.broadcast_to(share, lab.reach.shape)
        return np.array(
            [kn._lab_value(i, share[i], *split[i], *args) for i in range(lab.reach.size)]
        )

    return objective


def _numpy_objective(model: AlignmentParadoxModel):
    """:func:`sim.rules.lab_objective` at the model's current state."""
    m, pol, lab = model.config.model, model.config.policy, model.lab

    def objective(share, split):
        return lab_objective(
            share,
            split,
            capital=lab.capital,
            investable=lab.budget * (1.0 - pol.decoupling_share),
            defence=lab.defence,
            compromised=lab.compromised,
            seen_attempts=lab.seen_attempts,
            seen_strength=lab.seen_strength,
            reach=lab.reach,
            coupling=model.coupling,
            base=model.base,
            gain=model.gain,
            elasticity=model.elasticity,
            severity=model.severity,
            liability=pol.liability,
            model=m,
            stake_factor=model.stake_factor,
        )

    return objective


@pytest.mark.parametrize("params", LAB_CASES)
def test_compiled_lab_objective_matches_lab_objective(params):
    model = _lab_state(3, **params)
    compiled = _compiled_objective(model)
    rng = np.random.default_rng(0)
    for _ in range(5):
        share = rng.random(model.lab.reach.size)
        split = rules.project_simplex(rng.random((model.lab.reach.size, 3)))
        np.testing.assert_allclose(
            compiled(share, split), _numpy_objective(model)(share, split), rtol=1e-13, atol=1e-15
        )


@pytest.mark.parametrize("params", LAB_CASES)
def test_compiled_lab_best_response_is_lab_policy_step(params):
    """The same search (grid, golden section, Newton step on the split, projection) as
    lab_policy_step: on the same objective, the same result. (The objectives agree to rounding,
    test above; central differences with h = 1e-5 amplify rounding, so the two engines' splits
    are compared on one objective.)"""
    model = _lab_state(5, **params)
    lab = model.lab
    expected = lab_policy_step(
        _compiled_objective(model),
        lab.alignment_share,
        lab.defence_split,
        step_size=model.config.learning.lab.step_size,
        scale=model.config.model.defender_value * lab.reach,
        ceiling=1.0 - model.config.policy.defence_mandate,
        on_simplex=model.config.learning.lab.split_step == "simplex",
    )
    before = lab.defence_split.copy()
    model._lab_best_response()
    np.testing.assert_allclose(lab.alignment_share, expected[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(lab.defence_split, expected[1], rtol=0, atol=1e-9)
    assert np.abs(lab.defence_split - before).max() > 1e-6  # the split did move
    assert MAX_SPLIT_STEP == 0.25


FORESIGHT_CASES = [
    {"lab_foresight": 0.6},
    {"lab_foresight": 0.9, "liability": 2.0},
    {"lab_foresight": 0.6, "fixed_alignment": 0.6, "decisiveness": 2.0},
]


@pytest.mark.parametrize("params", FORESIGHT_CASES)
def test_forward_looking_lab_objective_and_best_response_match_the_numpy_statements(params):
    """β > 0: the compiled objective (F in its constants) equals lab_objective with
    stake_factor F, and the compiled best response is lab_policy_step on it, with the split's
    gradient fallback scaled by v_d F w."""
    model = _lab_state(3, **params)
    assert model.stake_factor > 1.0
    compiled = _compiled_objective(model)
    rng = np.random.default_rng(1)
    for _ in range(5):
        share = rng.random(model.lab.reach.size)
        split = rules.project_simplex(rng.random((model.lab.reach.size, 3)))
        np.testing.assert_allclose(
            compiled(share, split), _numpy_objective(model)(share, split), rtol=1e-13, atol=1e-15
        )
    lab = model.lab
    expected = lab_policy_step(
        compiled,
        lab.alignment_share,
        lab.defence_split,
        step_size=model.config.learning.lab.step_size,
        scale=model.config.model.defender_value * model.stake_factor * lab.reach,
        ceiling=1.0 - model.config.policy.defence_mandate,
        on_simplex=model.config.learning.lab.split_step == "simplex",
    )
    model._lab_best_response()
    np.testing.assert_allclose(lab.alignment_share, expected[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(lab.defence_split, expected[1], rtol=0, atol=1e-9)


def _capture_step(model: AlignmentParadoxModel) -> dict:
    captured: dict = {}
    original = model._adapt

    def spy(att):
        captured.update(att)
        captured["effort_before"] = model.adv.effort.copy()
        captured["propensity_before"] = model.adv.propensity.copy()
        captured["knowledge_before"] = model.adv.knowledge.copy()
        captured["marginal_return"] = model.lab.marginal_return.copy()
        original(att)

    model._adapt = spy
    model.step()
    return captured


@pytest.mark.parametrize("mu", [1.0, 2.0])
def test_compiled_adversary_adaptation_matches_the_array_statements(mu):
    model = AlignmentParadoxModel(rng=2, decisiveness=mu, diffusion_rate=0.0, **SMALL)
    model.step()
    att = _capture_step(model)
    got_effort, got_prop = model.adv.effort.copy(), model.adv.propensity.copy()
    got_knowledge = model.adv.knowledge.copy()
    # replay with the whole-array statements
    model.adv.effort[:] = att["effort_before"]
    model.adv.propensity[:] = att["propensity_before"]
    adv, cfg = model.adv, model.config.learning.adversary
    who, lab, ch = att["who"], att["lab"], att["channel"]
    target = model.best_response.effort(
        att["prize"][lab], att["knowledge"] * att["base"], att["defence"][lab, ch], adv.budget[who]
    )
    adv.effort[who] = rules.adversary_effort_step(
        target, att["effort"], adv.budget[who], cfg.effort_adjustment
    )
    tried = att["attempted"]
    reward = att["success"][tried] * att["prize"][lab[tried]]
    adv.propensity[who[tried]] = rules.roth_erev_update(
        adv.propensity[who[tried]], ch[tried], reward, cfg.forgetting, cfg.experimentation
    )
    np.testing.assert_array_equal(model.adv.effort, got_effort)
    np.testing.assert_array_equal(model.adv.propensity, got_prop)
    m = model.config.model
    knowledge = att["knowledge_before"] * (1.0 - m.knowledge_decay)
    who, ch = att["who"][att["success"]], att["channel"][att["success"]]
    knowledge[who, ch] += m.knowledge_gain * (1.0 - knowledge[who, ch])
    np.testing.assert_array_equal(got_knowledge, knowledge)


def test_compiled_contest_sums_match_marginal_return():
    model = AlignmentParadoxModel(rng=4, coupling=0.9, **SMALL)
    model.step()
    compromised_before = model.lab.compromised.copy()
    att = _capture_step(model)
    m, lab = model.config.model, model.lab
    tried = att["attempted"]
    slope, _ = rules.marginal_return(
        quality=lab.quality,
        clar=lab.clarity,
        clar_slope=rules.clarity_slope(lab.quality, model.coupling, m.clarity_exponent),
        carried=m.compromise_persistence * compromised_before.sum(axis=1),
        attack_lab=att["lab"][tried],
        attack_channel=att["channel"][tried],
        attack_prob=att["prob"][tried],
        attack_base=att["base"][tried],
        attack_gain_slope=rules.attackability_slope(lab.clarity, model.gain, model.elasticity)[
            att["lab"][tried], att["channel"][tried]
        ],
        share=m.compromise_share,
        decisiveness=m.decisiveness,
    )
    np.testing.assert_allclose(att["marginal_return"], slope, rtol=1e-12, atol=1e-14)
    cell = att["lab"][tried] * 3 + att["channel"][tried]
    n = lab.reach.size
    counts = np.bincount(cell, minlength=3 * n).reshape(n, 3)
    np.testing.assert_array_equal(att["attempt_counts"], counts)
    strength = np.bincount(
        cell, weights=att["knowledge"][tried] * att["effort"][tried], minlength=3 * n
    )
    np.testing.assert_array_equal(att["strength_sum"], strength.reshape(n, 3))


def test_the_datacollector_records_every_outcome_at_every_step():
    from sim.outcomes import OUTCOMES, reporter_name

    model = AlignmentParadoxModel(rng=0, **SMALL)
    for _ in range(3):
        model.step()
    table = model.datacollector.get_model_vars_dataframe()
    assert list(table.columns) == [reporter_name(n) for n in OUTCOMES] and len(table) == 4
    last = table.iloc[-1].to_dict()
    assert {n: last[reporter_name(n)] for n in OUTCOMES} == model.outcomes
    per_agent = AlignmentParadoxModel(rng=0, collect_agents=True, **SMALL)
    for _ in range(3):
        per_agent.step()
    pd.testing.assert_frame_equal(per_agent.datacollector.get_model_vars_dataframe(), table)


# ------------------------------------------------------------------ networks


def _check_csr(net: Network) -> None:
    src = net.src
    assert np.all(src != net.dst), "self-loop"
    pairs = set(zip(src.tolist(), net.dst.tolist(), strict=True))
    assert len(pairs) == net.dst.size, "duplicate edge"
    assert all((b, a) in pairs for a, b in pairs), "not symmetric"
    rows = np.split(net.dst, net.indptr[1:-1])
    assert all(np.all(np.diff(r) > 0) for r in rows), "rows not sorted"
    np.testing.assert_array_equal(net.degree, np.diff(net.indptr))


@pytest.mark.parametrize(
    ("topology", "k"), [("watts_strogatz", 6), ("barabasi_albert", 6), ("erdos_renyi", 8)]
)
def test_array_generators_give_valid_graphs_of_the_right_size(topology, k):
    n = 20_000
    cfg = NetworkConfig(topology=topology, mean_degree=k, rewiring=0.2)
    net = build_network(cfg, n, seed=3)
    _check_csr(net)
    assert net.n == n
    if topology == "watts_strogatz":
        assert net.n_edges == n * k // 2
    elif topology == "barabasi_albert":
        m = k // 2
        assert net.n_edges == m + (n - m - 1) * m
    else:
        assert abs(net.degree.mean() - k) < 0.1
    again = build_network(cfg, n, seed=3)
    np.testing.assert_array_equal(net.dst, again.dst)
    assert not np.array_equal(net.dst, build_network(cfg, n, seed=4).dst)


@pytest.mark.parametrize(
    ("topology", "k"), [("watts_strogatz", 6), ("barabasi_albert", 6), ("erdos_renyi", 8)]
)
def test_array_generators_draw_the_networkx_graph_models(topology, k, monkeypatch):
    """Same random-graph model as networkx: clustering and degree spread agree (seed-averaged)."""
    n, p = 4000, 0.1
    cfg = NetworkConfig(topology=topology, mean_degree=k, rewiring=p)
    stats = {}
    for generator in ("networkx", "arrays"):
        monkeypatch.setattr(network_mod, "NETWORKX_MAX_NODES", n if generator == "networkx" else 0)
        clustering, spread = [], []
        for seed in range(4):
            g = build_network(cfg, n, seed=seed).to_networkx()
            clustering.append(nx.average_clustering(g))
            spread.append(np.std([d for _, d in g.degree()]))
        stats[generator] = (np.mean(clustering), np.mean(spread))
    assert stats["arrays"][0] == pytest.approx(stats["networkx"][0], abs=0.01)
    assert stats["arrays"][1] == pytest.approx(stats["networkx"][1], rel=0.05)


def test_models_above_the_networkx_size_use_the_array_generator(monkeypatch):
    monkeypatch.setattr(network_mod, "NETWORKX_MAX_NODES", 50)
    model = AlignmentParadoxModel(rng=1, **SMALL)
    _check_csr(model.net)
    assert model.network.number_of_edges() == SMALL["n_adversaries"] * 6 // 2
    table = timeseries(simulate(steps=5, seed=1, **SMALL))
    assert np.isfinite(table.drop(columns="step").to_numpy()).all()
