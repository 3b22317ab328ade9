"""The Mesa model of the alignment-paradox arms race (``docs/ODD.md`` §2–5, §7).

One step runs, in this order: leaks, invest, derive q and c, publish, target, contest,
consequences (compromise, harm, detection), adapt (knowledge, diffusion, learning), collect.
Each stage is a call into :mod:`sim.kernels` over whole arrays; there is no per-agent Python loop
on the hot path. ``docs/ODD.md`` specifies the model and gives every modelling choice with its
reason.
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
from sim.agents import Adversary, Lab
from sim.config import CHANNELS, Config, config_from_flat, validate
from sim.network import Network, build_network
from sim.outcomes import OUTCOMES

#: Adversaries are evaluated side by side in blocks of this many when targets are chosen (the
#: compiled kernel vectorises across them; its scratch memory is this many times 3 N values).
#: Results do not depend on it.
TARGET_CHUNK = 128

#: A best-responding adversary for which attacking does not pay, and whose adjusted effort is
#: below this share of its budget, stops attacking (effort 0) instead of creeping toward zero.
MIN_EFFORT_SHARE = 0.01

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
        self.adv_rule = config.learning.adversary.rule
        self.lab_rule = config.learning.lab.rule
        self.coupling = m.coupling
        ch = [getattr(m.channels, k) for k in CHANNELS]
        self.base = np.array([c.base_vulnerability for c in ch])
        self.gain = np.array([c.clarity_gain for c in ch])
        self.elasticity = np.array([c.clarity_elasticity for c in ch])
        self.severity = np.array([c.severity for c in ch])
        self.best_response = kn.BestResponse(m.decisiveness)
        self.stake_factor = foresight_factor(
            config.learning.lab.foresight, m.defence_decay, m.compromise_persistence
        )

        self._init_labs()
        self._init_adversaries()
        self.net: Network = build_network(
            m.network, m.n_adversaries, int(self.rng.integers(2**31 - 1))
        )
        self.lab_agents = AgentSet([Lab(self, i) for i in range(m.n_labs)], random=self.random)
        self._adversary_agents: AgentSet | None = None

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
            _ = self.adversary_agents  # materialise them so the collector can see them
        self.datacollector = OutcomeCollector(
            model_reporters={name: partial(_read_outcome, name) for name in OUTCOMES},
            agenttype_reporters=agent_reporters,
        )
        self.datacollector.collect(self)

    # ------------------------------------------------------------------ construction

    def _init_labs(self) -> None:
        m, pol, lab = self.config.model, self.config.policy, self.config.learning.lab
        n = m.n_labs
        reach = kn.reach_weights(n, m.reach_exponent)
        n_open = round(pol.open_weights_share * n)
        open_w = np.zeros(n, dtype=bool)
        if pol.open_weights_selection == "largest":
            open_w[:n_open] = True
        elif pol.open_weights_selection == "smallest":
            open_w[n - n_open :] = True
        else:
            open_w[self.rng.choice(n, size=n_open, replace=False)] = True
        split = np.array(
            [lab.defence_split.weights, lab.defence_split.prompt, lab.defence_split.output]
        )
        s0 = min(lab.alignment_share, 1.0 - pol.defence_mandate)
        self.lab = LabArrays(
            budget=kn.lognormal(self.rng, n, m.lab_budget_mean, m.lab_budget_dispersion),
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
        budget = kn.lognormal(self.rng, n, m.adversary_budget_mean, m.adversary_budget_dispersion)
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
    def adversary_agents(self) -> AgentSet:
        """Mesa agents for the adversaries, created on first use (views onto the arrays)."""
        if self._adversary_agents is None:
            n = self.config.model.n_adversaries
            self._adversary_agents = AgentSet(
                [Adversary(self, j) for j in range(n)], random=self.random
            )
        return self._adversary_agents

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
            self.lab.quality = kn.alignment_quality(self.lab.capital, m.alignment_scale)
        else:
            self.lab.quality = np.full(m.n_labs, m.fixed_alignment)
        self.lab.clarity = kn.clarity(self.lab.quality, self.coupling, m.clarity_exponent)

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
        a_lab = kn.attackability(lab.clarity, self.base, self.gain, self.elasticity)
        defence = lab.defence + m.defence_floor
        prize = kn.damage_value(lab.reach, lab.quality, lab.clarity, m.attacker_value)
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
            propensity=adv.propensity if self.adv_rule == "roth_erev" else None,
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
        clar_slope = kn.clarity_slope(lab.quality, self.coupling, m.clarity_exponent)
        gain_slope = kn.attackability_slope(lab.clarity, self.gain, self.elasticity)
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
            float(pol.detection_probability),
            adv.deterred_until,
            t + pol.deterrence_steps,
            lab.reach.size,
            float(m.compromise_share),
            float(m.decisiveness),
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
        lab.marginal_return, _ = kn.marginal_return_from_sums(
            lab.quality, lab.clarity, clar_slope, carried, log_surv, dlog_surv
        )
        lab.compromised = kn.update_compromise(
            lab.compromised, att["success_counts"], m.compromise_share, m.compromise_persistence
        )
        lab.net = kn.net_alignment(lab.quality, lab.clarity, lab.compromised.sum(axis=1))
        att["harm_exploitation"] = kn.exploitation_harm(
            lab.reach, lab.quality, lab.clarity, lab.compromised, self.severity
        )

    # ------------------------------------------------------------------ adaptation

    def _adapt(self, att: dict[str, np.ndarray]) -> None:
        """Adversary strategies (against the contest they just had), then knowledge (decay,
        learning from success, diffusion along G), then the labs."""
        m, adv, cfg = self.config.model, self.adv, self.config.learning.adversary
        who = att["who"]
        if self.adv_rule == "imitation":
            tried = att["attempted"]
            prize = att["prize"][att["lab"]]
            payoff = np.where(tried, att["success"] * prize, 0.0)
            payoff -= np.where(tried, att["effort"], 0.0)
            self._adversary_imitation(who, payoff)
        best_respond = self.adv_rule in ("best_response", "roth_erev")
        targets = np.empty(0)
        if best_respond and self.best_response.mu != 1.0:
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
            best_respond,
            self.adv_rule == "roth_erev",
            float(cfg.effort_adjustment),
            MIN_EFFORT_SHARE,
            float(cfg.forgetting),
            float(cfg.experimentation),
            float(m.knowledge_decay),
            float(m.knowledge_gain),
        )
        adv.knowledge = kn.diffuse_knowledge_csr(
            adv.knowledge, self.net.indptr, self.net.dst, self.net.degree, m.diffusion_rate
        )
        self._observe(att)
        if self.lab_rule == "best_response":
            self._lab_best_response()
        elif self.lab_rule == "imitation":
            self._lab_imitation(att)

    def _adversary_best_response(self, att: dict[str, np.ndarray]) -> None:
        """Effort moves a share η_x of the way to the myopic best response against the target.

        Partial adjustment never reaches zero by itself; when attacking does not pay at all (the
        best response is 0) and the adjusted effort is below :data:`MIN_EFFORT_SHARE` of the
        budget, the adversary stops (effort 0, no attempt) until a target is worth attacking.
        (The rule as whole-array code; the step runs it compiled in
        :func:`sim.kernels.adapt_adversaries`, and ``tests/test_engine.py`` checks they agree.)
        """
        adv, eta = self.adv, self.config.learning.adversary.effort_adjustment
        who, lab, ch = att["who"], att["lab"], att["channel"]
        effectiveness = att["knowledge"] * att["base"]
        target = self.best_response.effort(
            att["prize"][lab], effectiveness, att["defence"][lab, ch], adv.budget[who]
        )
        new = att["effort"] + eta * (target - att["effort"])
        floor = MIN_EFFORT_SHARE * adv.budget[who]
        adv.effort[who] = np.where((target == 0.0) & (new < floor), 0.0, new)

    def _roth_erev(self, att: dict[str, np.ndarray]) -> None:
        """Roth & Erev (1995) reinforcement of channel propensities, with forgetting and
        experimentation: the chosen channel gets (1 − ε) of the payoff, the others ε/2 each."""
        cfg, adv = self.config.learning.adversary, self.adv
        who, ch = att["who"][att["attempted"]], att["channel"][att["attempted"]]
        reward = att["success"][att["attempted"]] * att["prize"][att["lab"][att["attempted"]]]
        prop = adv.propensity[who] * (1.0 - cfg.forgetting)
        spill = cfg.experimentation * reward / 2.0
        prop += spill[:, None]
        prop[np.arange(who.size), ch] += (1.0 - cfg.experimentation) * reward - spill
        dead = prop.sum(axis=1) <= 0.0
        prop[dead] = 1.0
        adv.propensity[who] = prop

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
            < kn.fermi(adv.payoff[neighbour] - adv.payoff, cfg.imitation_intensity)
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

    def _lab_objective(self, share: Float, split: Float) -> Float:
        m, pol, lab = self.config.model, self.config.policy, self.lab
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
            coupling=self.coupling,
            base=self.base,
            gain=self.gain,
            elasticity=self.elasticity,
            severity=self.severity,
            liability=pol.liability,
            model=m,
            stake_factor=self.stake_factor,
        )

    def _lab_best_response(self) -> None:
        """Move (s_i, ω_i) toward the best response for the one-step-ahead expected objective.

        Runs :func:`lab_policy_step` on :func:`lab_objective` in compiled form
        (:func:`sim.kernels.lab_best_response`; ``tests/test_engine.py`` checks that the two
        agree).
        """
        m, pol, lab, cfg = self.config.model, self.config.policy, self.lab, self.config.learning.lab
        fixed = np.nan if m.fixed_alignment is None else m.fixed_alignment
        constants = np.array(
            [
                fixed,
                m.alignment_decay,
                m.alignment_scale,
                m.clarity_exponent,
                m.defence_decay,
                m.defence_floor,
                m.decisiveness,
                m.compromise_share,
                m.compromise_persistence,
                m.defender_value,
                self.stake_factor,
            ],
            dtype=float,
        )
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
            constants,
            float(cfg.step_size),
            m.defender_value * self.stake_factor * lab.reach,
            1.0 - pol.defence_mandate,
            MAX_SPLIT_STEP,
            9,
            20,
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
        adopt = self.rng.random(n) < kn.fermi(
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
        lab.net = kn.net_alignment(lab.quality, lab.clarity, lab.compromised.sum(axis=1))
        # With no attacks yet, the marginal return is that of an unattacked lab: 1.
        lab.marginal_return = np.ones_like(lab.quality)
        for name in OUTCOMES:
            self.outcomes[name] = 0.0
        self._record_state()
        self.outcomes["harm_total"] = self.outcomes["harm_residual"]


def _read_outcome(name: str, model: AlignmentParadoxModel) -> float:
    """DataCollector model reporter (used through ``functools.partial``, which pickles)."""
    return model.outcomes[name]


class OutcomeCollector(mesa.DataCollector):
    """Mesa's DataCollector, recording the outcomes without deep copies.

    Mesa deep-copies every model reporter's value on every collect, in case it is mutable; the
    outcomes are Python floats (immutable), so they are appended as they are. Everything else
    (agent reporters, tables, the data frames, ``mesa.batch_run``) is Mesa's own.
    """

    def collect(self, model: mesa.Model) -> None:
        outcomes = getattr(model, "outcomes", None)
        if outcomes is None or any(
            not (isinstance(r, partial) and r.func is _read_outcome)
            for r in self.model_reporters.values()
        ):
            super().collect(model)
            return
        self._collection_steps.append(model.time)
        for name, column in self.model_vars.items():
            column.append(outcomes[name])
        reporters = self.model_reporters
        self.model_reporters = {}  # the agent-level part of Mesa's collect
        try:
            super().collect(model)
        finally:
            self.model_reporters = reporters


def target_logits(
    *,
    knowledge: Float,
    effort: Float,
    api_access: Bool,
    active: Bool,
    attackability: Float,
    defence: Float,
    prize: Float,
    open_weights: Bool,
    rationality: float,
    decisiveness: float,
    propensity: Float | None,
) -> Float:
    """Log-probabilities of each (lab, channel) target for a block of adversaries (B x N x 3).

    Utility is λ (p̂ V_a(i) − x_j) with p̂ the contest probability at the adversary's effort.
    Access: weights need open (or leaked) weights; prompts need query access or open weights;
    outputs are reachable by everyone. Without propensities the choice is one logit over all
    accessible pairs; with Roth–Erev propensities the channel is drawn in proportion to them and
    the lab within the channel by logit. Unavailable targets get −inf.
    """
    strength = knowledge[:, None, :] * attackability[None, :, :] * effort[:, None, None]
    p = kn.contest_probability(strength, defence[None, :, :], decisiveness)
    util = rationality * (p * prize[None, :, None] - effort[:, None, None])
    access = np.empty(util.shape, dtype=bool)
    access[:, :, 0] = open_weights[None, :]
    access[:, :, 1] = open_weights[None, :] | api_access[:, None]
    access[:, :, 2] = True
    access &= active[:, None, None]
    logits = np.where(access, util, -np.inf)
    if propensity is not None:
        channel_ok = access.any(axis=1)
        top = np.max(logits, axis=1, keepdims=True)
        safe_top = np.where(np.isfinite(top), top, 0.0)
        lse = safe_top[:, 0, :] + np.log(
            np.sum(np.exp(logits - safe_top), axis=1) + np.where(channel_ok, 0.0, 1.0)
        )
        weights = propensity * channel_ok
        total = weights.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            log_pk = np.log(np.divide(weights, total, out=np.zeros_like(weights), where=total > 0))
        adjust = np.where(channel_ok, log_pk - lse, 0.0)
        logits = logits + adjust[:, None, :]
    return logits


def foresight_factor(foresight: float, defence_decay: float, persistence: float) -> float:
    """F = 1 / ((1 − β (1 − δ_D)) (1 − β ρ)): the discounted stream of one unit of defence.

    A unit of defence capital bought now is still (1 − δ_D)^τ units τ steps later, and the
    compromise it prevents at any step would have persisted at rate ρ; with discount factor β
    and the marginal effect of defence held at its current (stationary) level, the discounted
    sum of both geometric series is F times the one-step effect. β = 0 gives F = 1 exactly
    (``docs/ODD.md`` §7.1).
    """
    if foresight == 0.0:
        return 1.0
    return 1.0 / ((1.0 - foresight * (1.0 - defence_decay)) * (1.0 - foresight * persistence))


#: Largest change of a defence-split component in one best-response step.
MAX_SPLIT_STEP = 0.25
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def best_share(
    objective: Any, share: Float, split: Float, ceiling: float, grid: int = 9, rounds: int = 20
) -> Float:
    """Each lab's best alignment share in [0, ceiling] for its objective, split held fixed.

    A coarse grid finds the best bracket (the objective need not be concave: the paradox can
    make it bimodal), then golden-section search refines it, all labs at once.
    """
    n = share.size
    points = np.linspace(0.0, ceiling, grid)
    values = np.stack([objective(np.full(n, p), split) for p in points])
    best = values.argmax(axis=0)
    lo, hi = points[np.maximum(best - 1, 0)], points[np.minimum(best + 1, grid - 1)]
    c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fc, fd = objective(c, split), objective(d, split)
    for _ in range(rounds):
        left = fc >= fd  # the maximum lies in [lo, d]
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
        c_new, d_new = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        fc, fd = (
            np.where(left, objective(c_new, split), fd),
            np.where(left, fc, objective(d_new, split)),
        )
        c, d = np.where(left, c_new, d), np.where(left, c, d_new)
    candidate = 0.5 * (lo + hi)
    # keep the grid point if refinement did not beat it (flat or kinked objectives)
    grid_best = points[best]
    better = objective(candidate, split) >= values[best, np.arange(n)]
    return np.where(better, candidate, grid_best)


def lab_policy_step(
    objective: Any,
    share: Float,
    split: Float,
    *,
    step_size: float,
    scale: Float,
    ceiling: float,
) -> tuple[Float, Float]:
    """One myopic best-response step of every lab on its policy (s, ω).

    The alignment share moves a share ``step_size`` of the way to its best response
    (:func:`best_share`). The defence split then takes a Newton step −g/H per channel (g and H
    by central differences), scaled by ``step_size``, falling back to the gradient divided by
    ``scale`` where the objective is not concave, capped at :data:`MAX_SPLIT_STEP` and
    projected onto the simplex.
    """
    new_share = share + step_size * (best_share(objective, share, split, ceiling) - share)
    h = 1e-5
    base = objective(new_share, split)
    moves = np.empty_like(split)
    for k in range(split.shape[1]):
        e = np.zeros(split.shape[1])
        e[k] = h
        up, down = objective(new_share, split + e), objective(new_share, split - e)
        grad = (up - down) / (2 * h)
        curv = (up - 2 * base + down) / h**2
        concave = curv < -1e-9 * np.maximum(np.abs(base), 1.0)
        step = np.where(concave, -grad / np.where(concave, curv, -1.0), grad / scale)
        moves[:, k] = np.clip(step_size * step, -MAX_SPLIT_STEP, MAX_SPLIT_STEP)
    return new_share, kn.project_simplex(split + moves)


def lab_objective(
    share: Float,
    split: Float,
    *,
    capital: Float,
    investable: Float,
    defence: Float,
    compromised: Float,
    seen_attempts: Float,
    seen_strength: Float,
    reach: Float,
    coupling: float,
    base: Float,
    gain: Float,
    elasticity: Float,
    severity: Float,
    liability: float,
    model: Any,
    stake_factor: float = 1.0,
) -> Float:
    """A lab's expected objective for next step if it spends share s on alignment, split ω.

    U_i = v_d w_i q_i' (1 − F E[φ_i'] (1 + c_i')) − F liability · E[exploitation harm_i']
    (+ the retained alignment share when q is held fixed), where next step's q', c', D' follow
    from the investment rule and E[φ'] from the attacks the lab has seen (smoothed count and
    strength per channel), with the attack effectiveness re-evaluated at the new clarity: the
    lab knows that alignment makes it a clearer target. F (``stake_factor``, see
    :func:`foresight_factor`) weights the terms that compromise drives; F = 1 is the myopic lab
    (``docs/ODD.md`` §7.1).
    """
    m = model
    spend_a = share * investable
    if m.fixed_alignment is None:
        cap = (1.0 - m.alignment_decay) * capital + spend_a
        q = kn.alignment_quality(cap, m.alignment_scale)
    else:
        q = np.full_like(capital, m.fixed_alignment)
    c = kn.clarity(q, coupling, m.clarity_exponent)
    spend_d = ((1.0 - share) * investable)[:, None] * split
    d = np.maximum((1.0 - m.defence_decay) * defence + spend_d, 0.0)
    a = kn.attackability(c, base, gain, elasticity)
    p = kn.contest_probability(seen_strength * a, d + m.defence_floor, m.decisiveness)
    log_surv = seen_attempts * np.log1p(-np.minimum(m.compromise_share * p, 1.0 - 1e-15))
    total_log = log_surv.sum(axis=1)
    carried_ch = m.compromise_persistence * compromised
    carried = carried_ch.sum(axis=1)
    fresh = (1.0 - carried) * -np.expm1(total_log)
    phi = carried + fresh
    frac = np.divide(
        log_surv, total_log[:, None], out=np.zeros_like(log_surv), where=total_log[:, None] < 0
    )
    phi_ch = carried_ch + fresh[:, None] * frac
    value = m.defender_value * reach * q * (1.0 - stake_factor * phi * (1.0 + c))
    harm = reach * q * (1.0 + c) * (stake_factor * (phi_ch @ severity))
    objective = value - liability * harm
    if m.fixed_alignment is not None:
        objective = objective + spend_a
    return objective
