"""The alignment-paradox model written the plain Mesa way: the reference for the benchmarks.

Same rules, parameters and step order as :class:`sim.AlignmentParadoxModel` (``docs/ODD.md``),
written as a researcher would first write them in Mesa: every lab and adversary is a
``mesa.Agent`` with its state in Python attributes and its behaviour in methods, stepped one by
one with ``AgentSet.shuffle_do`` (or ``do`` where a stage must be simultaneous), using the
``math`` module and the model's generator one draw at a time. It shares nothing with ``sim``
except the parameter schema (:func:`sim.config.config_from_flat`, so both take the same keyword
parameters and defaults), the learning strategies' names and properties (:mod:`sim.strategies`,
which say which rules an agent follows, not how) and the golden ratio.

It is the baseline of ``benchmarks/bench.py`` (single runs, and ``mesa.batch_run`` sweeps) and a
differential test of the engine (``tests/test_reference.py``): being an independent
implementation with its own random draws, it agrees with the engine in distribution, not draw
for draw, so the test compares seed-averaged outcomes.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import mesa
import networkx as nx

from sim import strategies
from sim.config import CHANNELS, config_from_flat
from sim.outcomes import OUTCOMES, reporter_name
from sim.rules import GOLDEN

K = len(CHANNELS)  # weights, prompt, output


def contest(z: float, y: float, mu: float) -> float:
    """Tullock success probability z^μ / (z^μ + y^μ); 0 without attack, 1 against no defence."""
    if z <= 0.0:
        return 0.0
    return 1.0 / (1.0 + (y / z) ** mu)


def best_effort(prize: float, a: float, y: float, cap: float, mu: float) -> float:
    """The attacker's myopic best response argmax_x V p(a x, y) − x on [0, cap]."""
    if a <= 0.0:
        return 0.0
    if y <= 0.0:
        return min(1e-6 * prize, cap) if prize > 0.0 else 0.0  # token effort
    rho = prize * a / y  # in t = a x / y the payoff is ρ t^μ/(t^μ + 1) − t (times y/a)
    if mu == 1.0:
        t = max(math.sqrt(max(rho, 0.0)) - 1.0, 0.0)
    else:

        def payoff(t: float) -> float:
            return rho * t**mu / (t**mu + 1.0) - t

        grid = [0.0] + [10.0 ** (e / 4.0) for e in range(-36, 37)]
        values = [payoff(t) for t in grid]
        g = max(range(len(grid)), key=values.__getitem__)
        lo, hi = grid[max(g - 1, 0)], grid[min(g + 1, len(grid) - 1)]
        for _ in range(60):
            c, d = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
            if payoff(c) >= payoff(d):
                hi = d
            else:
                lo = c
        t = 0.5 * (lo + hi)
        if payoff(t) <= 0.0:
            t = 0.0
    return min(max(t * y / a, 0.0), cap)


def fermi(delta: float, beta: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * beta * delta))


class RefLab(mesa.Agent):
    """An aligner; all state in attributes, one method per stage."""

    def __init__(self, model: ReferenceModel, rank: int, reach: float, budget: float) -> None:
        super().__init__(model)
        cfg = model.config
        lab = cfg.learning.lab
        self.rank, self.reach, self.budget = rank, reach, budget
        self.capital = cfg.model.initial_alignment
        self.quality = self.clarity = 0.0
        self.defence = [cfg.model.initial_defence] * K
        self.open_weights = False
        self.alignment_share = min(lab.alignment_share, 1.0 - cfg.policy.defence_mandate)
        split = [lab.defence_split.weights, lab.defence_split.prompt, lab.defence_split.output]
        self.split = [s / sum(split) for s in split]
        self.compromised = [0.0] * K
        self.seen_attempts = [0.0] * K
        self.seen_strength = [0.0] * K
        self.performance = 0.0
        self.net = 0.0
        self.marginal_return = 1.0
        self.spend_alignment = 0.0
        self.attacks: list[tuple[int, float, float, float]] = []  # (channel, p, base, K x)
        self.successes = [0] * K
        self.next_policy: tuple[float, list[float]] = (self.alignment_share, self.split)

    # -- derived quantities
    def derive(self) -> None:
        m = self.model.config.model
        if m.fixed_alignment is None:
            self.quality = -math.expm1(-self.capital / m.alignment_scale)
        else:
            self.quality = m.fixed_alignment
        self.clarity = self.model.coupling * self.quality**m.clarity_exponent
        # derive runs before the attacks of a step: the congested prize uses that state
        self.uncompromised = 1.0 - sum(self.compromised)

    def base(self, k: int) -> float:
        ch = self.model.channel[k]
        return ch.base_vulnerability + ch.clarity_gain * self.clarity**ch.clarity_elasticity

    def prize(self) -> float:
        m = self.model.config.model
        value = m.attacker_value * self.reach * self.quality * (1.0 + self.clarity)
        return value * self.uncompromised if m.prize_congestion == "linear" else value

    # -- stages
    def leak(self) -> None:
        if not self.open_weights and self.random_draw() < self.model.config.policy.leak_probability:
            self.open_weights = True

    def random_draw(self) -> float:
        return float(self.model.rng.random())

    def invest(self) -> None:
        m, pol = self.model.config.model, self.model.config.policy
        decoupling = pol.decoupling_share * self.budget
        investable = self.budget - decoupling
        alignment = self.alignment_share * investable
        self.capital = (1.0 - m.alignment_decay) * self.capital + alignment
        for k in range(K):
            spend = (1.0 - self.alignment_share) * investable * self.split[k]
            self.defence[k] = (1.0 - m.defence_decay) * self.defence[k] + spend
            self.model.tally["spend_defence"] += spend
        self.spend_alignment = 0.0 if m.fixed_alignment is not None else alignment
        self.model.tally["spend_alignment"] += self.spend_alignment
        self.model.tally["spend_decoupling"] += decoupling
        self.attacks = []
        self.successes = [0] * K

    def consequences(self) -> None:
        """Compromise and inversion after this step's contests; the exact marginal return."""
        m = self.model.config.model
        sigma, rho = m.compromise_share, m.compromise_persistence
        carried_total = rho * sum(self.compromised)
        q, c = self.quality, self.clarity
        clar_slope = (
            self.model.coupling * m.clarity_exponent * max(q, 1e-12) ** (m.clarity_exponent - 1.0)
        )
        log_surv = dlog_surv = 0.0
        for k, p, base, _ in self.attacks:
            ch = self.model.channel[k]
            one_minus = max(1.0 - sigma * p, 1e-300)
            log_surv += math.log(one_minus)
            gain_slope = (
                ch.clarity_gain
                * ch.clarity_elasticity
                * max(c, 1e-12) ** (ch.clarity_elasticity - 1.0)
            )
            dlogp_dc = gain_slope / base if base > 0 else 0.0
            dp_dq = m.decisiveness * p * (1.0 - p) * dlogp_dc * clar_slope
            dlog_surv += -sigma * dp_dq / one_minus
        e_phi = carried_total + (1.0 - carried_total) * -math.expm1(log_surv)
        de_phi = -(1.0 - carried_total) * math.exp(log_surv) * dlog_surv
        self.marginal_return = (
            1.0 - e_phi * (1.0 + c) - q * (de_phi * (1.0 + c) + e_phi * clar_slope)
        )
        s_total = sum(self.successes)
        fresh = (1.0 - carried_total) * -math.expm1(s_total * math.log1p(-min(sigma, 1 - 1e-15)))
        self.compromised = [
            rho * self.compromised[k] + (fresh * self.successes[k] / s_total if s_total else 0.0)
            for k in range(K)
        ]
        self.net = q * (1.0 - sum(self.compromised) * (1.0 + c))
        for k in range(K):
            sev = self.model.channel[k].severity
            self.model.tally["harm_exploitation"] += (
                self.reach * q * (1.0 + c) * sev * self.compromised[k]
            )

    def observe(self) -> None:
        mem = self.model.config.learning.lab.memory
        for k in range(K):
            seen = [kx for ch, _, _, kx in self.attacks if ch == k]
            mean = sum(seen) / len(seen) if seen else self.seen_strength[k]
            self.seen_attempts[k] += mem * (len(seen) - self.seen_attempts[k])
            self.seen_strength[k] += mem * (mean - self.seen_strength[k])

    def objective(self, share: float, split: list[float]) -> float:
        """v_d w E[n'] − liability E[harm'] one step ahead (the retained share if q is fixed)."""
        m, pol = self.model.config.model, self.model.config.policy
        investable = self.budget * (1.0 - pol.decoupling_share)
        if m.fixed_alignment is None:
            cap = (1.0 - m.alignment_decay) * self.capital + share * investable
            q = -math.expm1(-cap / m.alignment_scale)
        else:
            q = m.fixed_alignment
        c = self.model.coupling * q**m.clarity_exponent
        log_surv = []
        for k in range(K):
            ch = self.model.channel[k]
            d = max(
                (1.0 - m.defence_decay) * self.defence[k] + (1 - share) * investable * split[k], 0
            )
            a = ch.base_vulnerability + ch.clarity_gain * c**ch.clarity_elasticity
            p = contest(self.seen_strength[k] * a, d + m.defence_floor, m.decisiveness)
            log_surv.append(
                self.seen_attempts[k] * math.log1p(-min(m.compromise_share * p, 1 - 1e-15))
            )
        total = sum(log_surv)
        carried = [m.compromise_persistence * x for x in self.compromised]
        fresh = (1.0 - sum(carried)) * -math.expm1(total)
        phi = sum(carried) + fresh
        f = self.model.foresight  # weight of the terms compromise drives (1: myopic)
        value = m.defender_value * self.reach * q * (1.0 - f * phi * (1.0 + c))
        harm = 0.0
        for k in range(K):
            phi_k = carried[k] + (fresh * log_surv[k] / total if total < 0 else 0.0)
            harm += self.reach * q * (1.0 + c) * f * phi_k * self.model.channel[k].severity
        out = value - pol.liability * harm
        return out + share * investable if m.fixed_alignment is not None else out

    def best_respond(self) -> None:
        """Share toward its best response (grid, then golden section); a Newton step per channel
        on the split, projected onto the simplex."""
        cfg, pol = self.model.config.learning.lab, self.model.config.policy
        ceiling = 1.0 - pol.defence_mandate
        points = [ceiling * g / 8 for g in range(9)]
        values = [self.objective(s, self.split) for s in points]
        best = max(range(9), key=values.__getitem__)
        lo, hi = points[max(best - 1, 0)], points[min(best + 1, 8)]
        for _ in range(22):
            c, d = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
            if self.objective(c, self.split) >= self.objective(d, self.split):
                hi = d
            else:
                lo = c
        target = 0.5 * (lo + hi)
        if self.objective(target, self.split) < values[best]:
            target = points[best]
        share = self.alignment_share + cfg.step_size * (target - self.alignment_share)
        self.alignment_share = share
        h = 1e-5
        here = self.objective(share, self.split)
        scale = self.model.config.model.defender_value * self.model.foresight * self.reach
        moved = []
        for k in range(K):
            up = [w + (h if j == k else 0.0) for j, w in enumerate(self.split)]
            down = [w - (h if j == k else 0.0) for j, w in enumerate(self.split)]
            f_up, f_down = self.objective(share, up), self.objective(share, down)
            grad = (f_up - f_down) / (2 * h)
            curv = (f_up - 2 * here + f_down) / h**2
            step = -grad / curv if curv < -1e-9 * max(abs(here), 1.0) else grad / scale
            moved.append(self.split[k] + min(max(cfg.step_size * step, -0.25), 0.25))
        self.split = project_simplex(moved)

    def imitate(self) -> None:
        model, cfg, pol = self.model, self.model.config.learning.lab, self.model.config.policy
        harm = sum(
            self.reach * self.quality * (1.0 + self.clarity) * model.channel[k].severity * x
            for k, x in enumerate(self.compromised)
        )
        perf = self.net - pol.liability * harm / (model.config.model.defender_value * self.reach)
        self.performance += cfg.memory * (perf - self.performance)

    def copy_other(self) -> None:
        """Decide whether to copy a random other lab (applied by :meth:`apply_copy`)."""
        model, cfg, pol = self.model, self.model.config.learning.lab, self.model.config.policy
        self.next_policy = (self.alignment_share, self.split)
        others = [lab for lab in model.labs if lab is not self]
        if not others:
            return
        other = others[int(model.rng.integers(len(others)))]
        if model.rng.random() < fermi(
            other.performance - self.performance, cfg.imitation_intensity
        ):
            share = other.alignment_share + model.rng.normal(0.0, cfg.mutation)
            share = min(max(share, 0.0), 1.0 - pol.defence_mandate)
            self.next_policy = (share, list(other.split))

    def apply_copy(self) -> None:
        self.alignment_share, self.split = self.next_policy


def project_simplex(v: list[float]) -> list[float]:
    u = sorted(v, reverse=True)
    css, rho, theta = 0.0, 0, 0.0
    for r, x in enumerate(u):
        css += x
        if x - (css - 1.0) / (r + 1) > 0:
            rho, theta = r, (css - 1.0) / (r + 1)
    del rho
    return [max(x - theta, 0.0) for x in v]


class RefAdversary(mesa.Agent):
    """An attacker; picks a target, fights, learns, all in its own methods."""

    def __init__(self, model: ReferenceModel, budget: float, knowledge: list[float]) -> None:
        super().__init__(model)
        cfg = model.config
        self.budget = budget
        self.effort = cfg.learning.adversary.effort_share * budget
        self.knowledge = knowledge
        self.api_access = bool(model.rng.random() < cfg.policy.api_access_share)
        self.deterred_until = -1
        self.propensity = [1.0, 1.0, 1.0]
        self.payoff = 0.0
        self.neighbours: list[RefAdversary] = []
        self.fought: tuple[RefLab, int, float, float, bool] | None = None
        self.next_knowledge: list[float] = knowledge
        self.next_effort = self.effort

    def attack(self) -> None:
        """Pick an accessible (lab, channel) by logit on p̂ V_a − x, then fight the contest."""
        model = self.model
        m, adv = model.config.model, model.config.learning.adversary
        self.fought = None
        if self.deterred_until >= model.steps:
            return
        x = self.effort
        options: list[tuple[float, RefLab, int]] = []
        for lab in model.labs:
            for k in range(K):
                if k == 0 and not lab.open_weights:
                    continue
                if k == 1 and not (lab.open_weights or self.api_access):
                    continue
                p = contest(self.knowledge[k] * lab.base(k) * x, lab.defence[k] + m.defence_floor,
                            m.decisiveness)  # fmt: skip
                options.append((adv.rationality * (p * lab.prize() - x), lab, k))
        if not options:
            return
        if (
            model.adversary_strategy.reinforces_channels
        ):  # channel by propensity, lab within it by logit
            chans = sorted({k for _, _, k in options})
            weights = [self.propensity[k] for k in chans]
            pick = model.rng.random() * sum(weights)
            k_pick = chans[-1]
            for k, w in zip(chans, weights, strict=True):
                if pick < w:
                    k_pick = k
                    break
                pick -= w
            options = [o for o in options if o[2] == k_pick]
        top = max(u for u, _, _ in options)
        weights = [math.exp(u - top) for u, _, _ in options]
        pick = model.rng.random() * sum(weights)
        chosen = options[-1]
        for option, w in zip(options, weights, strict=True):
            if pick < w:
                chosen = option
                break
            pick -= w
        _, lab, k = chosen
        kx = self.knowledge[k]
        base = lab.base(k)
        p = contest(kx * base * x, lab.defence[k] + m.defence_floor, m.decisiveness)
        won = False
        if x > 0:
            won = bool(model.rng.random() < p)
            detected = bool(model.rng.random() < model.config.policy.detection_probability)
            lab.attacks.append((k, p, base, kx * x))
            model.tally[f"attempts_{CHANNELS[k]}"] += 1
            model.tally["spend_attack"] += x
            if won:
                lab.successes[k] += 1
                model.tally[f"successes_{CHANNELS[k]}"] += 1
            if detected:
                self.deterred_until = model.steps + model.config.policy.deterrence_steps
        self.fought = (lab, k, kx, x, won)

    def adapt(self) -> None:
        """Effort and channel propensities from the contest just fought, then knowledge."""
        model = self.model
        m, adv = model.config.model, model.config.learning.adversary
        if self.fought is not None:
            lab, k, kx, x, won = self.fought
            prize = lab.prize()
            if model.adversary_strategy.best_responds:
                d = lab.defence[k] + m.defence_floor
                target = best_effort(prize, kx * lab.base(k), d, self.budget, m.decisiveness)
                new = x + adv.effort_adjustment * (target - x)
                self.effort = 0.0 if target == 0.0 and new < 0.01 * self.budget else new
            if model.adversary_strategy.reinforces_channels and x > 0:
                reward = prize if won else 0.0
                spill = adv.experimentation * reward / 2.0
                self.propensity = [
                    p * (1.0 - adv.forgetting)
                    + (reward * (1.0 - adv.experimentation) if j == k else spill)
                    for j, p in enumerate(self.propensity)
                ]
                if sum(self.propensity) <= 0:
                    self.propensity = [1.0, 1.0, 1.0]
        self.knowledge = [kk * (1.0 - m.knowledge_decay) for kk in self.knowledge]
        if self.fought is not None and self.fought[4]:
            k = self.fought[1]
            self.knowledge[k] += m.knowledge_gain * (1.0 - self.knowledge[k])

    def imitate(self) -> None:
        """Smooth the payoff of this step (the Fermi rule compares smoothed payoffs)."""
        adv = self.model.config.learning.adversary
        payoff = 0.0
        if self.fought is not None and self.fought[3] > 0:
            lab, _, _, x, won = self.fought
            payoff = (lab.prize() if won else 0.0) - x
        self.payoff += adv.payoff_memory * (payoff - self.payoff)

    def copy_neighbour(self) -> None:
        """Decide whom to copy (applied by :meth:`apply_copy` once everyone has decided)."""
        model, adv = self.model, self.model.config.learning.adversary
        self.next_effort = self.effort
        if not self.neighbours:
            return
        other = self.neighbours[int(model.rng.integers(len(self.neighbours)))]
        if model.rng.random() < fermi(other.payoff - self.payoff, adv.imitation_intensity):
            share = other.effort / other.budget + model.rng.normal(0.0, adv.mutation)
            self.next_effort = min(max(share, 0.0), 1.0) * self.budget

    def apply_copy(self) -> None:
        self.effort = self.next_effort

    def learn_from_neighbours(self) -> None:
        """Move toward better-informed neighbours (computed for all before anyone moves)."""
        rate = self.model.config.model.diffusion_rate
        if not self.neighbours or rate == 0.0:
            self.next_knowledge = self.knowledge
            return
        n = len(self.neighbours)
        self.next_knowledge = [
            own + rate * sum(max(nb.knowledge[k] - own, 0.0) for nb in self.neighbours) / n
            for k, own in enumerate(self.knowledge)
        ]

    def update_knowledge(self) -> None:
        self.knowledge = self.next_knowledge


class ReferenceModel(mesa.Model):
    """Plain-Mesa version of :class:`sim.AlignmentParadoxModel` (same keyword parameters)."""

    def __init__(self, *, rng: Any = None, **params: Any) -> None:
        super().__init__(rng=rng)
        self.config = cfg = config_from_flat(**params)
        m, pol = cfg.model, cfg.policy
        self.adversary_strategy = strategies.for_adversaries(cfg.learning.adversary.rule)
        self.lab_strategy = strategies.for_labs(cfg.learning.lab.rule)
        self.coupling = m.coupling
        beta = cfg.learning.lab.foresight  # discounted stream of a unit of defence
        self.foresight = 1.0 / (
            (1.0 - beta * (1.0 - m.defence_decay)) * (1.0 - beta * m.compromise_persistence)
        )
        self.channel = [getattr(m.channels, name) for name in CHANNELS]
        zipf = [(i + 1) ** -m.reach_exponent for i in range(m.n_labs)]
        for i in range(m.n_labs):
            budget = self._lognormal(m.lab_budget_mean, m.lab_budget_dispersion)
            RefLab(self, i, zipf[i] / sum(zipf), budget)
        self.labs = self.agents_by_type[RefLab]
        n_open = round(pol.open_weights_share * m.n_labs)
        by_rank = sorted(self.labs, key=lambda lab: lab.rank)
        if pol.open_weights_selection == "largest":
            opened = by_rank[:n_open]
        elif pol.open_weights_selection == "smallest":
            opened = by_rank[m.n_labs - n_open :]
        else:
            opened = [by_rank[i] for i in self.rng.choice(m.n_labs, size=n_open, replace=False)]
        for lab in opened:
            lab.open_weights = True
        for _ in range(m.n_adversaries):
            knowledge = []
            for ch in self.channel:
                k0, nu = ch.initial_knowledge, m.knowledge_concentration
                knowledge.append(float(self.rng.beta(k0 * nu, (1 - k0) * nu)) if 0 < k0 < 1 else k0)
            RefAdversary(
                self,
                self._lognormal(m.adversary_budget_mean, m.adversary_budget_dispersion),
                knowledge,
            )
        self.adversaries = self.agents_by_type[RefAdversary]
        graph = self._graph(int(self.rng.integers(2**31 - 1)))
        members = list(self.adversaries)
        for node, agent in enumerate(members):
            agent.neighbours = [members[nb] for nb in graph.neighbors(node)]
        self.tally: dict[str, float] = {}
        self.outcomes: dict[str, float] = dict.fromkeys(OUTCOMES, 0.0)
        self.labs.do("derive")
        self._record(initial=True)
        self.datacollector = mesa.DataCollector(
            model_reporters={reporter_name(name): partial(_outcome, name) for name in OUTCOMES}
        )
        self.datacollector.collect(self)

    def _lognormal(self, mean: float, sd: float) -> float:
        if sd == 0.0:
            return float(mean)
        return float(self.rng.lognormal(math.log(mean) - 0.5 * sd**2, sd))

    def _graph(self, seed: int) -> nx.Graph:
        net, n = self.config.model.network, self.config.model.n_adversaries
        if net.topology == "none" or n < 2:
            return nx.empty_graph(n)
        if net.topology == "watts_strogatz":
            return nx.watts_strogatz_graph(n, net.mean_degree, net.rewiring, seed=seed)
        if net.topology == "barabasi_albert":
            return nx.barabasi_albert_graph(n, max(1, net.mean_degree // 2), seed=seed)
        return nx.fast_gnp_random_graph(n, min(1.0, net.mean_degree / (n - 1)), seed=seed)

    def step(self) -> None:
        m, pol = self.config.model, self.config.policy
        self.tally = dict.fromkeys(
            ["spend_alignment", "spend_defence", "spend_decoupling", "spend_attack",
             "harm_exploitation"]
            + [f"{kind}_{ch}" for kind in ("attempts", "successes") for ch in CHANNELS],
            0.0,
        )  # fmt: skip
        self.labs.shuffle_do("leak")
        self.labs.shuffle_do("invest")
        if pol.decoupling_share > 0:
            mean_spend = (
                pol.decoupling_share * sum(lab.budget for lab in self.labs) / len(self.labs)
            )
            self.coupling *= math.exp(-pol.decoupling_efficiency * mean_spend)
        self.labs.do("derive")
        if pol.publication_rate > 0:  # published know-how: labs gain capital, adversaries learn
            total = sum(lab.spend_alignment for lab in self.labs)
            n = len(self.labs)
            if n > 1:
                for lab in self.labs:
                    lab.capital += pol.publication_rate * (total - lab.spend_alignment) / (n - 1)
                self.labs.do("derive")
            mean_clarity = sum(lab.reach * lab.clarity for lab in self.labs)
            for agent in self.adversaries:
                agent.knowledge = [
                    kk + pol.publication_rate * max(mean_clarity - kk, 0.0)
                    for kk in agent.knowledge
                ]
        self.adversaries.shuffle_do("attack")
        self.labs.do("consequences")
        if self.adversary_strategy.imitates:
            self.adversaries.do("imitate")
            self.adversaries.shuffle_do("copy_neighbour")
            self.adversaries.do("apply_copy")
        self.adversaries.shuffle_do("adapt")
        self.adversaries.do("learn_from_neighbours")
        self.adversaries.do("update_knowledge")
        self.labs.do("observe")
        if self.lab_strategy.best_responds:
            self.labs.shuffle_do("best_respond")
        elif self.lab_strategy.imitates:
            self.labs.do("imitate")
            self.labs.shuffle_do("copy_other")
            self.labs.do("apply_copy")
        del m
        self._record()
        self.datacollector.collect(self)

    def _record(self, initial: bool = False) -> None:
        out = self.outcomes
        labs, advs = list(self.labs), list(self.adversaries)
        if not initial:
            out.update(self.tally)
            for ch in CHANNELS:
                a, s = out[f"attempts_{ch}"], out[f"successes_{ch}"]
                out[f"success_rate_{ch}"] = s / a if a else 0.0
            a = sum(out[f"attempts_{ch}"] for ch in CHANNELS)
            s = sum(out[f"successes_{ch}"] for ch in CHANNELS)
            out["attempts_total"], out["successes_total"] = a, s
            out["success_rate_total"] = s / a if a else 0.0
        h0 = self.config.model.residual_severity
        out["mean_alignment"] = sum(lab.reach * lab.quality for lab in labs)
        out["mean_clarity"] = sum(lab.reach * lab.clarity for lab in labs)
        out["coupling"] = self.coupling
        out["harm_residual"] = sum(lab.reach * (1 - lab.quality) for lab in labs) * h0
        out["harm_total"] = out["harm_residual"] + out["harm_exploitation"]
        out["compromised_share"] = sum(lab.reach * sum(lab.compromised) for lab in labs)
        for lab in labs:
            lab.net = lab.quality * (1.0 - sum(lab.compromised) * (1.0 + lab.clarity))
        out["net_alignment"] = sum(lab.reach * lab.net for lab in labs)
        active = sum(1 for agent in advs if agent.deterred_until <= self.steps)
        out["adversaries_active"] = float(active)
        out["adversaries_deterred"] = float(len(advs) - active)
        for k, ch in enumerate(CHANNELS):
            out[f"knowledge_{ch}"] = sum(agent.knowledge[k] for agent in advs) / len(advs)
        out["mean_alignment_share"] = sum(lab.reach * lab.alignment_share for lab in labs)
        out["open_reach"] = sum(lab.reach for lab in labs if lab.open_weights)
        out["marginal_return"] = sum(lab.reach * lab.marginal_return for lab in labs)
        out["paradox_index"] = sum(lab.reach for lab in labs if lab.marginal_return < 0.0)


def _outcome(name: str, model: ReferenceModel) -> float:
    return model.outcomes[name]
