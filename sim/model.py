"""The Mesa model of the alignment-paradox arms race (``docs/ODD.md`` §2–5, §7).

One step runs, in this order: leaks, invest, derive q and c, publish, target, contest,
consequences (compromise, harm, detection), adapt (knowledge, diffusion, learning), collect.
Each stage applies a rule of :mod:`sim.rules` (or its compiled twin in :mod:`sim.kernels`) to
whole population arrays; there is no per-agent Python loop on the hot path. The agents
(:mod:`sim.agents`) are Mesa agents whose attributes are rows of those arrays, and the learning
rules are the strategy objects of :mod:`sim.strategies`. ``docs/ODD.md`` specifies the model and
gives every modelling choice with its reason; ``docs/architecture.md`` shows the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import mesa
import numpy as np
from mesa.agentset import AgentSet
from numpy.typing import NDArray

from sim import kernels as kn
from sim import rules, strategies
from sim.agents import Adversary, Lab
from sim.config import CHANNELS, Config, config_from_flat, validate
from sim.network import Network, build_network
from sim.outcomes import OUTCOMES, reporter_name

#: Adversaries are evaluated side by side in blocks of this many when targets are chosen (the
#: compiled kernel vectorises across them; its scratch memory is this many times 3 N values).
#: Results do not depend on it.
TARGET_CHUNK = 128

Bool = NDArray[np.bool_]
Float = NDArray[np.float64]
Int = NDArray[np.intp]


@dataclass
class LabArrays:
    """State of all labs, one row each (index 0 has the largest reach)."""

    budget: Float
    reach: Float
    capital: Float
    quality: Float
    clarity: Float
    defence: Float  # N x 3
    open_weights: Bool
    alignment_share: Float
    defence_split: Float  # N x 3
    compromised: Float  # N x 3, share of use compromised via each channel
    seen_attempts: Float  # N x 3, smoothed attempts observed per step
    seen_strength: Float  # N x 3, smoothed mean K_jk x_j of observed attempts
    performance: Float  # smoothed realised objective (imitation)
    net: Float
    marginal_return: Float


@dataclass
class AdversaryArrays:
    """State of all adversaries, one row each."""

    budget: Float
    effort: Float
    knowledge: Float  # M x 3
    api_access: Bool
    deterred_until: NDArray[np.int64]
    propensity: Float  # M x 3, Roth-Erev channel propensities
    payoff: Float  # smoothed realised payoff (imitation)
    target_lab: Int  # last chosen target (-1: none)
    target_channel: Int


class AlignmentParadoxModel(mesa.Model):
    """Labs align their models; adversaries try to misalign them; alignment sharpens the target.

    Parameters are keyword arguments with flat names (``coupling=0.5``, ``n_adversaries=5000``,
    ``weights_severity=2.0``, ``adversary_rule="fixed"``); :func:`sim.config.flat_keys` lists
    them with their config keys. Alternatively pass a whole validated :class:`sim.config.Config`
    as ``config``. Randomness comes only from ``rng`` (Mesa's convention): the same ``rng`` and
    parameters give the same trajectory.

    ``collect_agents=True`` also records per-agent state in the DataCollector (by agent type).
    """

    def __init__(
        self,
        *,
        rng: int | np.random.Generator | None = None,
        config: Config | None = None,
        collect_agents: bool = False,
        **params: Any,
    ) -> None:
        for run_key in ("seed", "steps"):
            if run_key in params:
                raise TypeError(
                    f"'{run_key}' is not a model parameter: seed the model with rng= "
                    "(Mesa's convention) and call step() as often as needed"
                )
        super().__init__(rng=rng)
        if config is None:
            config = config_from_flat(**params)
        elif params:
            raise TypeError("pass either config= or keyword parameters, not both")
        else:
            validate(config)
        self.config = config
        m = config.model
        self.adversary_strategy = strategies.for_adversaries(config.learning.adversary.rule)
        self.lab_strategy = strategies.for_labs(config.learning.lab.rule)
        self.coupling = m.coupling
        channels = rules.ChannelParameters.from_model(m)
        self.base, self.gain, self.elasticity = channels.base, channels.gain, channels.elasticity
        self.severity = channels.severity
        self.best_response = rules.BestResponse(m.decisiveness)
        # the kernels' constants, named and built once
        self.lab_constants = kn.LabConstants.from_config(config)
        self.lab_search = kn.LabSearch.from_config(config)
        self.contest_settings = kn.ContestSettings.from_config(config)
        self.adversary_learning = kn.AdversaryLearning.from_config(
            config,
            best_respond=self.adversary_strategy.best_responds,
            reinforce=self.adversary_strategy.reinforces_channels,
        )
        self.stake_factor = self.lab_constants.stake_factor

        self._init_labs()
        self._init_adversaries()
        self.net: Network = build_network(
            m.network, m.n_adversaries, int(self.rng.integers(2**31 - 1))
        )
        # Every agent exists and is registered from the start; its state is a row of the arrays.
        self.lab_agents: AgentSet = Lab.create_agents(self, m.n_labs, np.arange(m.n_labs))
        self.adversary_agents: AgentSet = Adversary.create_agents(
            self, m.n_adversaries, np.arange(m.n_adversaries)
        )

        self.outcomes: dict[str, float] = {}
        self._derive()
        self._compute_initial_outcomes()
        agent_reporters = None
        if collect_agents:
            agent_reporters = {
                Lab: {
                    name: name
                    for name in (
                        "alignment_capital",
                        "alignment_quality",
                        "clarity",
                        "alignment_share",
                        "compromised_share",
                        "net_alignment",
                        "marginal_return",
                        "open_weights",
                    )
                },
                Adversary: {"effort": "effort", "active": "active", "knowledge": "knowledge"},
            }
        self.datacollector = mesa.DataCollector(
            model_reporters={reporter_name(n): partial(_read_outcome, n) for n in OUTCOMES},
            agenttype_reporters=agent_reporters,
        )
        self.datacollector.collect(self)

    # ------------------------------------------------------------------ construction

    def _init_labs(self) -> None:
        m, pol, lab = self.config.model, self.config.policy, self.config.learning.lab
        n = m.n_labs
        reach = rules.reach_weights(n, m.reach_exponent)
        open_w = rules.open_weights(n, pol.open_weights_share, pol.open_weights_selection, self.rng)
        split = np.array(
            [lab.defence_split.weights, lab.defence_split.prompt, lab.defence_split.output]
        )
        s0 = min(lab.alignment_share, 1.0 - pol.defence_mandate)
        self.lab = LabArrays(
            budget=rules.lognormal(self.rng, n, m.lab_budget_mean, m.lab_budget_dispersion),
            reach=reach,
            capital=np.full(n, m.initial_alignment),
            quality=np.zeros(n),
            clarity=np.zeros(n),
            defence=np.full((n, 3), m.initial_defence),
            open_weights=open_w,
            alignment_share=np.full(n, s0),
            defence_split=np.tile(split / split.sum(), (n, 1)),
            compromised=np.zeros((n, 3)),
            seen_attempts=np.zeros((n, 3)),
            seen_strength=np.zeros((n, 3)),
            performance=np.zeros(n),
            net=np.zeros(n),
            marginal_return=np.zeros(n),
        )

    def _init_adversaries(self) -> None:
        m, pol, adv = self.config.model, self.config.policy, self.config.learning.adversary
        n = m.n_adversaries
        budget = rules.lognormal(
            self.rng, n, m.adversary_budget_mean, m.adversary_budget_dispersion
        )
        knowledge = np.empty((n, 3))
        for k, name in enumerate(CHANNELS):
            mean = getattr(m.channels, name).initial_knowledge
            if 0.0 < mean < 1.0:
                nu = m.knowledge_concentration
                knowledge[:, k] = self.rng.beta(mean * nu, (1.0 - mean) * nu, size=n)
            else:
                knowledge[:, k] = mean
        self.adv = AdversaryArrays(
            budget=budget,
            effort=adv.effort_share * budget,
            knowledge=knowledge,
            api_access=self.rng.random(n) < pol.api_access_share,
            deterred_until=np.full(n, -1, dtype=np.int64),
            propensity=np.ones((n, 3)),
            payoff=np.zeros(n),
            target_lab=np.full(n, -1, dtype=np.intp),
            target_channel=np.full(n, -1, dtype=np.intp),
        )

    @property
    def network(self):
        """The adversary network as a ``networkx.Graph``."""
        return self.net.to_networkx()

    # ------------------------------------------------------------------ the step

    def step(self) -> None:
        t = self.steps  # Mesa has already advanced the counter: this is step t >= 1
        self._leak()
        spend = self._invest()
        self._derive()
        self._publish(spend["alignment"])
        attempts = self._target(t)
        self._consequences(t, attempts)
        self._adapt(attempts)
        self._record(spend, attempts)
        self.datacollector.collect(self)

    def _leak(self) -> None:
        p = self.config.policy.leak_probability
        closed = ~self.lab.open_weights
        draws = self.rng.random(closed.size)
        self.lab.open_weights |= closed & (draws < p)

    def _invest(self) -> dict[str, Float]:
        """A ← (1 − δ_A) A + s b, D ← (1 − δ_D) D + (1 − s) b ω, after decoupling R&D."""
        m, pol, lab = self.config.model, self.config.policy, self.lab
        decoupling = pol.decoupling_share * lab.budget
        investable = lab.budget - decoupling
        alignment = lab.alignment_share * investable
        defence = ((1.0 - lab.alignment_share) * investable)[:, None] * lab.defence_split
        lab.capital = (1.0 - m.alignment_decay) * lab.capital + alignment
        lab.defence = (1.0 - m.defence_decay) * lab.defence + defence
        if decoupling.any():
            self.coupling *= float(np.exp(-pol.decoupling_efficiency * decoupling.mean()))
        if m.fixed_alignment is not None:
            alignment = np.zeros_like(alignment)  # q is exogenous: the share is retained
        return {"alignment": alignment, "defence": defence, "decoupling": decoupling}

    def _derive(self) -> None:
        m = self.config.model
        if m.fixed_alignment is None:
            self.lab.quality = rules.alignment_quality(self.lab.capital, m.alignment_scale)
        else:
            self.lab.quality = np.full(m.n_labs, m.fixed_alignment)
        self.lab.clarity = rules.clarity(self.lab.quality, self.coupling, m.clarity_exponent)

    def _publish(self, alignment_spend: Float) -> None:
        """Published know-how: other labs gain alignment capital, adversaries gain knowledge."""
        rate = self.config.policy.publication_rate
        if rate == 0.0:
            return
        n = alignment_spend.size
        if n > 1:
            others = (alignment_spend.sum() - alignment_spend) / (n - 1)
            self.lab.capital = self.lab.capital + rate * others
            self._derive()
        mean_clarity = float(self.lab.reach @ self.lab.clarity)
        k = self.adv.knowledge
        k += rate * np.maximum(mean_clarity - k, 0.0)

    def _target(self, t: int) -> dict[str, np.ndarray]:
        """Each active adversary picks one accessible (lab, channel) by logit on expected gain."""
        m, adv_cfg = self.config.model, self.config.learning.adversary
        lab, adv = self.lab, self.adv
        n_adv = adv.budget.size
        uniforms = self.rng.random(n_adv)
        active = adv.deterred_until < t
        a_lab = rules.attackability(lab.clarity, self.base, self.gain, self.elasticity)
        defence = lab.defence + m.defence_floor
        prize = rules.damage_value(lab.reach, lab.quality, lab.clarity, m.attacker_value)
        if m.prize_congestion == "linear":
            # Only the not-yet-compromised use is left to win (state before this step's
            # contests). The prize feeds targeting, adaptation and imitation payoffs below.
            prize = prize * (1.0 - lab.compromised.sum(axis=1))
        chosen = kn.choose_targets(
            knowledge=adv.knowledge,
            effort=adv.effort,
            api_access=adv.api_access,
            active=active,
            attackability=a_lab,
            defence=defence,
            prize=prize,
            open_weights=lab.open_weights,
            rationality=adv_cfg.rationality,
            decisiveness=m.decisiveness,
            propensity=adv.propensity if self.adversary_strategy.reinforces_channels else None,
            uniforms=uniforms,
            target_lab=adv.target_lab,
            target_channel=adv.target_channel,
            block=TARGET_CHUNK,
        )
        del uniforms, active
        chose = chosen["who"]
        target_lab, target_ch = adv.target_lab[chose], adv.target_channel[chose]
        effort = chosen["effort"]  # as fought: adaptation changes adv.effort later
        knowledge, base, prob = chosen["knowledge"], chosen["base"], chosen["prob"]
        attempted = effort > 0
        return {
            "effort": effort,
            "knowledge": knowledge,
            "who": chose,
            "lab": target_lab,
            "channel": target_ch,
            "base": base,
            "prob": prob,
            "attempted": attempted,
            "prize": prize,
            "defence": defence,
            "a_lab": a_lab,
        }

    def _consequences(self, t: int, att: dict[str, np.ndarray]) -> None:
        """Contest outcomes, compromise and inversion, harm, detection and deterrence."""
        m, pol, lab, adv = self.config.model, self.config.policy, self.lab, self.adv
        n_chose = att["who"].size
        uniforms = self.rng.random(2 * n_chose)  # success draws, then detection draws
        clar_slope = rules.clarity_slope(lab.quality, self.coupling, m.clarity_exponent)
        gain_slope = rules.attackability_slope(lab.clarity, self.gain, self.elasticity)
        success, attempts, successes, strength, log_surv, dlog_surv, spent = kn.contest_outcomes(
            att["who"],
            att["lab"],
            att["channel"],
            att["effort"],
            att["knowledge"],
            att["base"],
            att["prob"],
            uniforms[:n_chose],
            uniforms[n_chose:],
            adv.deterred_until,
            t + pol.deterrence_steps,
            self.contest_settings,
            np.ascontiguousarray(gain_slope),
            clar_slope,
        )
        del uniforms
        att["success"] = success
        att["attempt_counts"] = attempts
        att["success_counts"] = successes
        att["strength_sum"] = strength
        att["spend_attack"] = spent
        carried = m.compromise_persistence * lab.compromised.sum(axis=1)
        lab.marginal_return, _ = rules.marginal_return_from_sums(
            lab.quality, lab.clarity, clar_slope, carried, log_surv, dlog_surv
        )
        lab.compromised = rules.update_compromise(
            lab.compromised, att["success_counts"], m.compromise_share, m.compromise_persistence
        )
        lab.net = rules.net_alignment(lab.quality, lab.clarity, lab.compromised.sum(axis=1))
        att["harm_exploitation"] = rules.exploitation_harm(
            lab.reach, lab.quality, lab.clarity, lab.compromised, self.severity
        )

    # ------------------------------------------------------------------ adaptation

    def _adapt(self, att: dict[str, np.ndarray]) -> None:
        """Adversary strategies (against the contest they just had), then knowledge (decay,
        learning from success, diffusion along G), then the labs."""
        m, adv, strategy = self.config.model, self.adv, self.adversary_strategy
        who = att["who"]
        if strategy.imitates:
            tried = att["attempted"]
            prize = att["prize"][att["lab"]]
            payoff = np.where(tried, att["success"] * prize, 0.0)
            payoff -= np.where(tried, att["effort"], 0.0)
            self._adversary_imitation(who, payoff)
        targets = np.empty(0)
        if strategy.best_responds and self.best_response.mu != 1.0:
            ch = att["channel"]
            targets = self.best_response.effort(
                att["prize"][att["lab"]],
                att["knowledge"] * att["base"],
                att["defence"][att["lab"], ch],
                adv.budget[who],
            )
        kn.adapt_adversaries(
            who,
            att["lab"],
            att["channel"],
            att["effort"],
            att["knowledge"],
            att["success"],
            att["prize"],
            att["a_lab"],
            att["defence"],
            adv.budget,
            targets,
            adv.effort,
            adv.propensity,
            adv.knowledge,
            self.adversary_learning,
        )
        adv.knowledge = kn.diffuse_knowledge_csr(
            adv.knowledge, self.net.indptr, self.net.dst, self.net.degree, m.diffusion_rate
        )
        self._observe(att)
        if self.lab_strategy.best_responds:
            self._lab_best_response()
        elif self.lab_strategy.imitates:
            self._lab_imitation(att)

    def _adversary_imitation(self, who: Int, payoff: Float) -> None:
        """Fermi rule: copy a random neighbour's effort share with probability
        1 / (1 + exp(−β (π_neighbour − π_self))) (Szabó & Tőke 1998), plus mutation."""
        cfg, adv, net = self.config.learning.adversary, self.adv, self.net
        this_step = np.zeros(adv.budget.size)
        this_step[who] = payoff
        adv.payoff += cfg.payoff_memory * (this_step - adv.payoff)
        n = adv.budget.size
        has = net.degree > 0
        pick = net.indptr[:-1] + np.floor(self.rng.random(n) * net.degree).astype(np.intp)
        neighbour = net.dst[np.minimum(pick, max(net.dst.size - 1, 0))] if net.dst.size else pick
        adopt = has & (
            self.rng.random(n)
            < rules.fermi(adv.payoff[neighbour] - adv.payoff, cfg.imitation_intensity)
        )
        noise = self.rng.normal(0.0, cfg.mutation, n)
        share = adv.effort / adv.budget
        new_share = np.clip(share[neighbour] + noise, 0.0, 1.0)
        adv.effort = np.where(adopt, new_share * adv.budget, adv.effort)

    def _observe(self, att: dict[str, np.ndarray]) -> None:
        """Labs update smoothed attack rates and strengths per channel from this step's attempts."""
        lab, mem = self.lab, self.config.learning.lab.memory
        counts = att["attempt_counts"]
        total = att["strength_sum"]  # Σ K x of the attempts, what the lab faced
        mean_strength = np.divide(total, counts, out=lab.seen_strength.copy(), where=counts > 0)
        lab.seen_attempts += mem * (counts - lab.seen_attempts)
        lab.seen_strength += mem * (mean_strength - lab.seen_strength)

    def _lab_best_response(self) -> None:
        """Move (s_i, ω_i) toward the best response for the one-step-ahead expected objective.

        Runs :func:`lab_policy_step` on :func:`lab_objective` in compiled form
        (:func:`sim.kernels.lab_best_response`; ``tests/test_engine.py`` checks that the two
        agree).
        """
        pol, lab = self.config.policy, self.lab
        lab.alignment_share, lab.defence_split = kn.lab_best_response(
            lab.alignment_share,
            np.ascontiguousarray(lab.defence_split),
            lab.capital,
            lab.budget * (1.0 - pol.decoupling_share),
            np.ascontiguousarray(lab.defence),
            np.ascontiguousarray(lab.compromised),
            lab.seen_attempts,
            lab.seen_strength,
            lab.reach,
            float(self.coupling),
            self.base,
            self.gain,
            self.elasticity,
            self.severity,
            float(pol.liability),
            self.lab_constants,
            self.config.model.defender_value * self.stake_factor * lab.reach,
            self.lab_search,
        )

    def _lab_imitation(self, att: dict[str, np.ndarray]) -> None:
        """Fermi rule between labs on realised performance n_i − liability · H_i / (v_d w_i)."""
        m, pol, cfg, lab = self.config.model, self.config.policy, self.config.learning.lab, self.lab
        n = lab.reach.size
        harm = att["harm_exploitation"].sum(axis=1)
        perf = lab.net - pol.liability * harm / (m.defender_value * lab.reach)
        lab.performance += cfg.memory * (perf - lab.performance)
        if n < 2:
            return
        other = (np.arange(n) + 1 + self.rng.integers(0, n - 1, size=n)) % n
        adopt = self.rng.random(n) < rules.fermi(
            lab.performance[other] - lab.performance, cfg.imitation_intensity
        )
        noise = self.rng.normal(0.0, cfg.mutation, n)
        ceiling = 1.0 - pol.defence_mandate
        new_share = np.clip(lab.alignment_share[other] + noise, 0.0, ceiling)
        lab.alignment_share = np.where(adopt, new_share, lab.alignment_share)
        lab.defence_split = np.where(adopt[:, None], lab.defence_split[other], lab.defence_split)

    # ------------------------------------------------------------------ outcomes

    def _record(self, spend: dict[str, Float], att: dict[str, np.ndarray]) -> None:
        out = self.outcomes
        attempts = att["attempt_counts"].sum(axis=0)
        successes = att["success_counts"].sum(axis=0)
        for k, name in enumerate(CHANNELS):
            out[f"attempts_{name}"] = float(attempts[k])
            out[f"successes_{name}"] = float(successes[k])
            out[f"success_rate_{name}"] = float(successes[k] / attempts[k]) if attempts[k] else 0.0
        total_a, total_s = float(attempts.sum()), float(successes.sum())
        out["attempts_total"] = total_a
        out["successes_total"] = total_s
        out["success_rate_total"] = total_s / total_a if total_a else 0.0
        out["harm_exploitation"] = float(att["harm_exploitation"].sum())
        out["spend_alignment"] = float(spend["alignment"].sum())
        out["spend_defence"] = float(spend["defence"].sum())
        out["spend_decoupling"] = float(spend["decoupling"].sum())
        out["spend_attack"] = att["spend_attack"]
        self._record_state()
        out["harm_total"] = out["harm_residual"] + out["harm_exploitation"]

    def _record_state(self) -> None:
        """Outcomes that depend only on the current state (also reported at step 0).

        The reach-weighted means are one matrix-vector product, so that data collection stays a
        small part of the step (benchmarks/README.md).
        """
        lab, adv, m = self.lab, self.adv, self.config.model
        w = lab.reach
        out = self.outcomes
        rows = np.stack(
            [
                lab.quality,
                lab.clarity,
                lab.compromised.sum(axis=1),
                lab.net,
                lab.alignment_share,
                lab.open_weights,
                lab.marginal_return,
                lab.marginal_return < 0.0,
                1.0 - lab.quality,
            ]
        )
        (
            out["mean_alignment"],
            out["mean_clarity"],
            out["compromised_share"],
            out["net_alignment"],
            out["mean_alignment_share"],
            out["open_reach"],
            out["marginal_return"],
            out["paradox_index"],
            unaligned,
        ) = (rows @ w).tolist()
        out["coupling"] = float(self.coupling)
        out["harm_residual"] = unaligned * m.residual_severity
        # mean knowledge, and who is free to attack in the next step
        k0, k1, k2, active = kn.adversary_summary(adv.knowledge, adv.deterred_until, self.steps)
        out["knowledge_weights"], out["knowledge_prompt"], out["knowledge_output"] = k0, k1, k2
        out["adversaries_active"] = float(active)
        out["adversaries_deterred"] = float(adv.budget.size - active)

    def _compute_initial_outcomes(self) -> None:
        """Step-0 row: the initial state, before any attack (counts and spending are zero)."""
        lab = self.lab
        lab.net = rules.net_alignment(lab.quality, lab.clarity, lab.compromised.sum(axis=1))
        # With no attacks yet, the marginal return is that of an unattacked lab: 1.
        lab.marginal_return = np.ones_like(lab.quality)
        for name in OUTCOMES:
            self.outcomes[name] = 0.0
        self._record_state()
        self.outcomes["harm_total"] = self.outcomes["harm_residual"]


def _read_outcome(name: str, model: AlignmentParadoxModel) -> float:
    """DataCollector model reporter (used through ``functools.partial``, which pickles)."""
    return model.outcomes[name]
