"""Model invariants, determinism, access rules, policy levers and the Mesa interfaces."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd
import pytest

import sim
import sim.model as model_mod
from sim import rules
from sim.agents import Adversary, Lab
from sim.api import simulate, timeseries
from sim.config import ADVERSARY_RULES, LAB_RULES
from sim.model import AlignmentParadoxModel
from sim.outcomes import reporter_name
from sim.rules import lab_objective

from .conftest import SMALL


def _check_state(model: AlignmentParadoxModel) -> None:
    lab, adv = model.lab, model.adv
    for name, arr in vars(lab).items():
        assert np.all(np.isfinite(arr)), f"lab.{name} not finite"
    for name, arr in vars(adv).items():
        assert np.all(np.isfinite(arr)), f"adv.{name} not finite"
    assert np.all(lab.capital >= 0) and np.all(lab.defence >= 0)
    assert np.all((lab.quality >= 0) & (lab.quality < 1))
    assert np.all((lab.clarity >= 0) & (lab.clarity <= 1))
    assert np.all((lab.alignment_share >= 0) & (lab.alignment_share <= 1))
    assert np.all(lab.defence_split >= -1e-12)
    np.testing.assert_allclose(lab.defence_split.sum(axis=1), 1.0)
    assert np.all(lab.compromised >= 0) and np.all(lab.compromised.sum(axis=1) <= 1 + 1e-12)
    assert np.all((lab.net >= -1) & (lab.net <= 1))
    assert np.all((adv.knowledge >= 0) & (adv.knowledge <= 1 + 1e-12))
    assert np.all((adv.effort >= 0) & (adv.effort <= adv.budget * (1 + 1e-12)))
    assert np.all(adv.propensity > 0)


def _check_table(table: pd.DataFrame) -> None:
    values = table.drop(columns=["step"]).to_numpy(dtype=float)
    assert np.all(np.isfinite(values))
    for col in [c for c in table if c.startswith("success_rate") or c.startswith("knowledge")]:
        assert table[col].between(0, 1).all(), col
    for col in ("paradox_index", "compromised_share", "open_reach", "mean_alignment"):
        assert table[col].between(0, 1).all(), col
    assert table["net_alignment"].between(-1, 1).all()
    for col in [c for c in table if c.startswith(("harm", "spend", "attempts", "successes"))]:
        assert (table[col] >= 0).all(), col
    np.testing.assert_allclose(
        table["harm_total"], table["harm_residual"] + table["harm_exploitation"]
    )
    assert (table["successes_total"] <= table["attempts_total"]).all()


@pytest.mark.parametrize("adversary_rule", ADVERSARY_RULES)
@pytest.mark.parametrize("lab_rule", LAB_RULES)
def test_invariants_hold_for_every_learning_rule(adversary_rule, lab_rule):
    model = AlignmentParadoxModel(rng=3, adversary_rule=adversary_rule, lab_rule=lab_rule, **SMALL)
    for _ in range(30):
        model.step()
        _check_state(model)
    table = timeseries(model)
    assert len(table) == 31 and list(table["step"]) == list(range(31))
    _check_table(table)
    assert table["attempts_total"].iloc[1:].sum() > 0


@pytest.mark.parametrize("adversary_rule", ADVERSARY_RULES)
def test_no_paradox_without_coupling(adversary_rule):
    """κ = 0: the paradox index is exactly 0 and no lab's marginal return is negative."""
    model = AlignmentParadoxModel(
        rng=1, coupling=0.0, adversary_rule=adversary_rule, attacker_value=200.0, **SMALL
    )
    for _ in range(40):
        model.step()
        assert model.outcomes["paradox_index"] == 0.0
        assert np.all(model.lab.marginal_return >= 0.0)
        assert np.all(model.lab.clarity == 0.0)
    assert timeseries(model)["successes_total"].sum() > 0  # attacks did succeed


def test_strong_coupling_produces_a_paradox():
    """The converse check: with κ = 1 and strong adversaries some labs are past their optimum."""
    table = timeseries(
        simulate(
            steps=40,
            seed=2,
            coupling=1.0,
            attacker_value=200.0,
            adversary_budget_mean=2.0,
            lab_rule="fixed",
            lab_alignment_share=0.9,
            **SMALL,
        )
    )
    assert table["paradox_index"].iloc[1:].max() > 0
    assert table["marginal_return"].iloc[1:].min() < 1.0


def test_same_seed_same_results_and_different_seed_different():
    a = timeseries(simulate(steps=25, seed=42, **SMALL))
    b = timeseries(simulate(steps=25, seed=42, **SMALL))
    c = timeseries(simulate(steps=25, seed=43, **SMALL))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_results_do_not_depend_on_the_targeting_block_size(monkeypatch):
    a = timeseries(simulate(steps=10, seed=7, **SMALL))
    monkeypatch.setattr(model_mod, "TARGET_CHUNK", 7)
    b = timeseries(simulate(steps=10, seed=7, **SMALL))
    pd.testing.assert_frame_equal(a, b)


def test_weights_channel_needs_open_weights_and_prompts_need_access():
    closed = timeseries(
        simulate(
            steps=15,
            seed=0,
            open_weights_share=0.0,
            leak_probability=0.0,
            api_access_share=0.0,
            **SMALL,
        )
    )
    assert closed["attempts_weights"].sum() == 0
    assert closed["attempts_prompt"].sum() == 0
    assert closed["attempts_output"].sum() > 0
    leaky = simulate(steps=15, seed=0, open_weights_share=0.0, leak_probability=1.0, **SMALL)
    assert leaky.lab.open_weights.all()  # leaked weights stay open
    assert timeseries(leaky)["attempts_weights"].sum() > 0


def test_detection_deters_for_the_set_number_of_steps():
    model = AlignmentParadoxModel(rng=0, detection_probability=1.0, deterrence_steps=3, **SMALL)
    model.step()
    tried = model.adv.target_lab >= 0
    assert tried.sum() > 0
    # detected at step 1, every attacker sits out steps 2, 3 and 4 (and is counted as deterred
    # from the end of step 1: the count describes who may attack next)
    assert model.outcomes["adversaries_deterred"] == tried.sum()
    for _ in (2, 3, 4):
        model.step()
        assert np.all(model.adv.target_lab[tried] == -1)
    model.step()  # step 5: the first cohort is back
    assert np.any(model.adv.target_lab[tried] >= 0)


def test_detection_without_deterrence_deters_nobody():
    model = AlignmentParadoxModel(rng=0, detection_probability=1.0, deterrence_steps=0, **SMALL)
    for _ in range(3):
        model.step()
        assert model.outcomes["adversaries_deterred"] == 0
        assert model.outcomes["attempts_total"] > 0


def test_decoupling_lowers_coupling_and_costs_budget():
    model = AlignmentParadoxModel(rng=0, decoupling_share=0.2, decoupling_efficiency=0.5, **SMALL)
    kappas = []
    for _ in range(10):
        model.step()
        kappas.append(model.coupling)
    assert np.all(np.diff(kappas) < 0)
    assert model.outcomes["spend_decoupling"] == pytest.approx(0.2 * model.lab.budget.sum())
    off = AlignmentParadoxModel(rng=0, **SMALL)
    off.step()
    assert off.coupling == 0.8 and off.outcomes["spend_decoupling"] == 0.0


def test_defence_mandate_caps_the_alignment_share():
    model = AlignmentParadoxModel(rng=0, defence_mandate=0.7, lab_alignment_share=0.9, **SMALL)
    for _ in range(10):
        model.step()
        assert np.all(model.lab.alignment_share <= 0.3 + 1e-12)


def test_publication_spills_alignment_to_other_labs():
    kw = dict(lab_rule="fixed", n_adversaries=1, network_topology="none", **{"n_labs": 4})
    with_pub = AlignmentParadoxModel(rng=0, publication_rate=0.5, **kw)
    without = AlignmentParadoxModel(rng=0, publication_rate=0.0, **kw)
    with_pub.step()
    without.step()
    spend = 0.5 * with_pub.lab.budget
    spill = 0.5 * (spend.sum() - spend) / 3
    np.testing.assert_allclose(with_pub.lab.capital - without.lab.capital, spill)


def test_fixed_alignment_holds_quality():
    table = timeseries(simulate(steps=10, seed=0, fixed_alignment=0.6, **SMALL))
    np.testing.assert_allclose(table["mean_alignment"], 0.6)
    assert (table["spend_alignment"] == 0).all()


def test_lab_objective_gradient_vanishes_at_the_tullock_best_response():
    """One lab, fixed q, one channel attacked once per step with strength K x: the lab's
    objective is v_d q (1 − p (1 + c)) + s b, whose stationary point in defence spending y is
    the Tullock best response y = sqrt(V_d a x) − a x (d0 = 0, full depreciation)."""

    class M:  # the model fields lab_objective reads
        fixed_alignment = 0.5
        alignment_decay = alignment_scale = 1.0
        clarity_exponent = 1.0
        defence_decay = 1.0
        defence_floor = 0.0
        decisiveness = 1.0
        compromise_share = 1.0
        compromise_persistence = 0.0
        defender_value = 4.0

    q, kappa = 0.5, 0.6
    c = kappa * q
    base, gain, elast = np.array([0.2, 0, 0]), np.array([1.0, 0, 0]), np.array([1.0, 1, 1])
    a = 0.2 + c
    kx = 0.3  # K x of the attacker
    v_d = M.defender_value * q * (1 + c)
    y_star = np.sqrt(v_d * a * kx) - a * kx
    budget = 2.0

    def objective(s):
        return lab_objective(
            np.array([s]),
            np.array([[1.0, 0.0, 0.0]]),
            capital=np.zeros(1),
            investable=np.array([budget]),
            defence=np.zeros((1, 3)),
            compromised=np.zeros((1, 3)),
            seen_attempts=np.array([[1.0, 0, 0]]),
            seen_strength=np.array([[kx, 0, 0]]),
            reach=np.ones(1),
            coupling=kappa,
            base=base,
            gain=gain,
            elasticity=elast,
            severity=np.ones(3),
            liability=0.0,
            model=M,
        )[0]

    s_star = 1 - y_star / budget
    h = 1e-6
    assert (objective(s_star + h) - objective(s_star - h)) / (2 * h) == pytest.approx(0, abs=1e-6)
    assert objective(s_star) > objective(s_star + 0.05)
    assert objective(s_star) > objective(s_star - 0.05)


def test_every_agent_is_registered_when_the_model_is_built():
    """A Mesa model: all agents exist from the start, and the count never changes."""
    model = AlignmentParadoxModel(rng=0, n_labs=4, n_adversaries=50)
    assert len(model.agents) == 54
    assert len(model.agents_by_type[Lab]) == 4 and len(model.agents_by_type[Adversary]) == 50
    assert [a.index for a in model.adversary_agents] == list(range(50))
    _ = model.adversary_agents, model.lab_agents
    model.step()
    assert len(model.agents) == 54
    with pytest.raises(AttributeError, match="derived by the model"):
        next(iter(model.lab_agents)).alignment_quality = 0.5


def test_agents_are_views_onto_the_arrays():
    model = AlignmentParadoxModel(rng=0, **SMALL)
    model.step()
    labs = list(model.agents_by_type[Lab])
    assert len(labs) == SMALL["n_labs"]
    lab = labs[0]
    assert lab.alignment_quality == model.lab.quality[lab.index]
    assert lab.reach == max(model.lab.reach)
    lab.alignment_share = 0.25
    assert model.lab.alignment_share[lab.index] == 0.25
    advs = model.adversary_agents
    assert len(advs) == SMALL["n_adversaries"]
    one = next(iter(advs))
    assert isinstance(one, Adversary)
    assert one.budget == model.adv.budget[one.index]
    assert set(one.knowledge) == {"weights", "prompt", "output"}
    assert len(one.neighbours) == int(model.net.degree[one.index])
    assert model.network.number_of_nodes() == SMALL["n_adversaries"]


def test_per_agent_state_on_request():
    model = AlignmentParadoxModel(rng=0, collect_agents=True, n_labs=3, n_adversaries=20)
    model.step()
    model.step()
    labs = model.datacollector.get_agenttype_vars_dataframe(Lab)
    assert len(labs) == 3 * 3 and "alignment_quality" in labs
    advs = model.datacollector.get_agenttype_vars_dataframe(Adversary)
    assert len(advs) == 3 * 20


def test_batch_run_drives_the_model():
    results = mesa.batch_run(
        AlignmentParadoxModel,
        parameters={"coupling": [0.0, 0.8], "n_labs": 4, "n_adversaries": 60},
        rng=[1, 2],
        max_steps=5,
        number_processes=1,
        data_collection_period=-1,
        display_progress=False,
    )
    frame = pd.DataFrame(results)
    assert len(frame) == 4
    assert {reporter_name(n) for n in sim.OUTCOMES} <= set(frame.columns)
    assert (frame.loc[frame["coupling"] == 0.0, "paradox_index"] == 0).all()


def test_batch_run_keeps_every_parameter_column_under_decoupling():
    """No reporter shares a name with a parameter, so batch_run's rows keep the coupling the
    run was given even while decoupling R&D lowers the current coupling (issue 18, item 6)."""
    from sim.config import flat_keys

    clash = {reporter_name(n) for n in sim.OUTCOMES} & {*flat_keys(), "coupling"}
    assert clash == set()
    results = mesa.batch_run(
        AlignmentParadoxModel,
        parameters={
            "coupling": [0.4, 0.8],
            "n_labs": 4,
            "n_adversaries": 60,
            "decoupling_share": 0.3,
        },
        rng=[1, 2],
        max_steps=4,
        number_processes=1,
        data_collection_period=1,
        display_progress=False,
    )
    frame = pd.DataFrame(results)
    assert sorted(frame["coupling"].unique()) == [0.4, 0.8]
    later = frame[frame["Step"] > 0]
    assert (later["coupling_current"] < later["coupling"]).all()
    # the project's own tables keep the outcome's name
    table = timeseries(simulate(steps=3, seed=1, n_labs=4, n_adversaries=60, decoupling_share=0.3))
    assert "coupling" in table and "coupling_current" not in table


def test_run_model_is_a_plain_function():
    out = sim.run_model(steps=6, seed=1, n_labs=4, n_adversaries=50)
    assert set(out) == set(sim.OUTCOMES)
    assert all(isinstance(v, np.ndarray) and v.shape == (7,) for v in out.values())
    again = sim.run_model(steps=6, seed=1, n_labs=4, n_adversaries=50)
    assert all(np.array_equal(out[k], again[k]) for k in out)


def test_bad_keyword_parameters():
    with pytest.raises(sim.ParameterError, match=r"model\.coupling"):
        AlignmentParadoxModel(rng=0, coupling=2.0)
    with pytest.raises(TypeError, match="did you mean coupling"):
        AlignmentParadoxModel(rng=0, couplin=0.5)
    with pytest.raises(sim.ParameterError, match=r"model\.n_labs"):
        AlignmentParadoxModel(rng=0, n_labs=2.5)


def test_best_response_adversaries_move_to_the_best_response():
    """With full adjustment, effort equals the best response against the contest just fought,
    computed here from the step's state."""
    model = AlignmentParadoxModel(
        rng=0, adversary_rule="best_response", adversary_effort_adjustment=1.0, **SMALL
    )
    captured = {}
    original = model._target

    def spy(t):
        att = original(t)
        captured.update(att)
        return att

    model._target = spy
    model.step()
    who, lab, ch = captured["who"], captured["lab"], captured["channel"]
    expected = model.best_response.effort(
        captured["prize"][lab],
        captured["knowledge"] * captured["base"],
        captured["defence"][lab, ch],
        model.adv.budget[who],
    )
    expected = np.where(expected < rules.MIN_EFFORT_SHARE * model.adv.budget[who], 0.0, expected)
    np.testing.assert_allclose(model.adv.effort[who], expected, rtol=1e-12)
    assert np.any(expected > 0) and np.any(expected != captured["effort"])


def test_zero_value_targets_stop_best_responding_attackers():
    model = AlignmentParadoxModel(
        rng=0,
        adversary_rule="best_response",
        attacker_value=0.0,
        detection_probability=0.0,
        **SMALL,
    )
    for _ in range(30):
        model.step()
    assert model.outcomes["attempts_total"] == 0
    assert np.all(model.adv.effort == 0)


def test_spend_attack_counts_the_effort_actually_spent():
    model = AlignmentParadoxModel(rng=0, adversary_rule="best_response", **SMALL)
    before = model.adv.effort.copy()
    model.step()
    tried = model.adv.target_lab >= 0
    assert model.outcomes["spend_attack"] == pytest.approx(before[tried & (before > 0)].sum())


def test_seed_is_not_a_model_parameter():
    with pytest.raises(TypeError, match="rng="):
        AlignmentParadoxModel(seed=5)


#: A concentrated market in which the top lab draws most attacks (docs/ODD.md §7.1).
CONCENTRATED = dict(
    n_labs=6,
    n_adversaries=200,
    reach_exponent=1.5,
    fixed_alignment=0.9,
    coupling=1.0,
    adversary_budget_mean=1.0,
    attacker_value=80.0,
)


def _attempts_per_lab(model: AlignmentParadoxModel, steps: int) -> np.ndarray:
    total = np.zeros(model.config.model.n_labs)
    original = model._record

    def spy(spend, att):
        total[:] += att["attempt_counts"].sum(axis=1)
        original(spend, att)

    model._record = spy
    for _ in range(steps):
        model.step()
    return total


def test_prize_congestion_none_is_the_full_prize_and_linear_scales_it():
    """none: the prize is v_a w q (1 + c), as before the switch existed, and a run equals one
    that does not name the key; linear: the same times 1 − φ_i from before the step's contests."""
    for rule in ("none", "linear"):
        model = AlignmentParadoxModel(rng=4, prize_congestion=rule, **CONCENTRATED)
        for _ in range(5):
            model.step()
        phi = model.lab.compromised.sum(axis=1)
        assert phi.max() > 0.05
        original, captured = model._target, {}

        def spy(t, original=original, captured=captured):
            att = original(t)
            captured.update(att)
            return att

        model._target = spy
        model.step()
        lab, m = model.lab, model.config.model
        full = m.attacker_value * lab.reach * lab.quality * (1.0 + lab.clarity)
        expected = full if rule == "none" else full * (1.0 - phi)
        np.testing.assert_array_equal(captured["prize"], expected)
    named = timeseries(simulate(steps=30, seed=2, prize_congestion="none", **CONCENTRATED))
    unnamed = timeseries(simulate(steps=30, seed=2, **CONCENTRATED))
    pd.testing.assert_frame_equal(named, unnamed, check_exact=True)


def test_linear_prize_congestion_spreads_attacks_across_labs():
    """Without congestion the top lab's prize does not fall as it is compromised, so it draws
    most attempts; with linear congestion part of them go to the other labs."""
    shares = {}
    for rule in ("none", "linear"):
        shares[rule] = []
        for seed in range(4):
            model = AlignmentParadoxModel(rng=seed, prize_congestion=rule, **CONCENTRATED)
            attempts = _attempts_per_lab(model, 60)
            shares[rule].append(attempts[0] / attempts.sum())
    none, linear = np.array(shares["none"]), np.array(shares["linear"])
    assert linear.mean() < none.mean() - 0.05
    assert np.sum(linear < none) >= 3


def test_foresight_factor_and_myopic_default():
    assert rules.foresight_factor(0.0, 0.2, 0.5) == 1.0
    assert rules.foresight_factor(0.5, 0.2, 0.5) == pytest.approx(1 / (0.6 * 0.75))
    # a stream of (1 − δ_D)^τ ρ^s β^(τ+s), summed directly
    beta, dd, rho = 0.7, 0.3, 0.4
    direct = sum(
        (beta * (1 - dd)) ** tau * (beta * rho) ** s for tau in range(400) for s in range(400)
    )
    assert rules.foresight_factor(beta, dd, rho) == pytest.approx(direct, rel=1e-12)
    named = timeseries(simulate(steps=20, seed=1, lab_foresight=0.0, **SMALL))
    unnamed = timeseries(simulate(steps=20, seed=1, **SMALL))
    pd.testing.assert_frame_equal(named, unnamed, check_exact=True)


def test_foresight_raises_the_top_labs_defence_spending():
    """With q held fixed, a forward-looking lab weights its compromise loss by F > 1 against
    the retained money, so the most attacked lab spends more on defence."""
    for seed in range(3):
        spent = {}
        for beta in (0.0, 0.6):
            model = AlignmentParadoxModel(rng=seed, lab_foresight=beta, **CONCENTRATED)
            defence = []
            for _ in range(60):
                model.step()
                defence.append((1.0 - model.lab.alignment_share[0]) * model.lab.budget[0])
            spent[beta] = np.mean(defence[20:])
        assert spent[0.6] > spent[0.0] + 0.1, (seed, spent)
