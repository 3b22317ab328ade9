"""Stationary theory of the heterogeneous market (docs/theory.md §4).

The static game of :mod:`sim.static_game` is one lab against one adversary, and the mean field of
:mod:`sim.meanfield` has one representative lab. Neither sees what decides the simulated market:
reach concentrated by a Zipf law and targeted almost by argmax, which labs have open weights, and
adversary budgets whose best responses are capped. This module predicts the market's stationary
state directly, for alignment held at an exogenous level q (``model.fixed_alignment``), as the
fixed point of the simulation's own rules evaluated in expectation:

* **labs** i = 1..N keep their own reach w_i, budget b_i, access (open or closed weights) and
  defence D_ik; labs that best-respond hold the defence at which the myopic objective of
  :func:`sim.rules.lab_objective` is stationary (the observed attack counts and mean strengths
  are their expectations); labs on the fixed rule spend (1 − s) b ω every step;
* **adversaries** are types: Gauss–Hermite nodes of the lognormal budget distribution times
  query access (yes/no), each with its own effort, knowledge per channel and channel
  propensities. Nothing is simulated: each type is one row of expectations, weighted by its
  quadrature weight;
* **targeting** is the simulation's logit (with Roth–Erev channel propensities where that rule
  is on), **effort** the capped Tullock best response averaged over the targets the type
  chooses, **knowledge** the stationary point of publication, decay, learning from success and
  mean-field diffusion, **propensities** the stationary point of Roth–Erev reinforcement;
* **compromise** is exact in expectation: with independent adversaries the expected surviving
  share of lab i is Π_types (1 − u σ Σ_k P(i, k) p_ik)^(M ω_type), and with persistence ρ the
  stationary expected compromised share is φ = F / (1 − ρ + ρ F) where F is the expected fresh
  compromise.

The fixed point is found by damped iteration with a step that shrinks like 1/n (the averaging
of fictitious play, which settles the winner-take-all targeting that plain iteration would flip
back and forth). Every solve reports whether it converged and its last residual.

Net alignment N(q) = Σ_i w_i q (1 − φ_i (1 + c)) = q (1 − Φ (1 + c)) with Φ = Σ_i w_i φ_i,
since all labs share q. The secant slope between two levels therefore splits exactly into
1 − *deeper* − *easier* (:func:`decompose`): compromised use inverted more deeply, and attacks
succeeding more.

Under Roth–Erev the point theory makes every adversary of a type choose its channels alike.
With ``channel_grid`` > 0 each type's channel probabilities are a distribution instead, on a
grid over the simplex (:mod:`sim.simplex`), moved by the successes of a master equation that
carries each grid point's mean knowledge, effort and propensity total with its mass
(:meth:`MarketTheory._solve_distribution`, docs/theory.md §4.1): the adversaries specialise, as
they do in the simulation. It costs more than ten times as much per solve.

What the theory leaves out is listed in docs/theory.md §4.6: endogenous alignment (q is always
exogenous here), the imitation rules, liability in the labs' objective, the variance of
knowledge within a type beyond what the distribution option carries, and the correlation
between a lab's compromised share and the attacks it draws.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from sim import kernels as kn
from sim import pools, rules, simplex, strategies
from sim import stats as S
from sim.config import CHANNELS, Config

Float = np.ndarray

#: The alignment levels whose secant slope the regime map, the validation and `theory.json`
#: report: the top of the alignment range, where the paradox shows first.
SECANT = (0.75, 0.95)

#: Steps of expected dynamics run from the initial state before the fixed-point iteration.
WARMUP = 150
#: A solve that finds no new smallest residual for this many iterations is cycling; it stops
#: there, unconverged (docs/theory.md §4.2).
PATIENCE = 500
#: Steps after the warm-up over which the propensity-distribution theory is averaged (the
#: simulation's validation window, steps 151-600).
WINDOW = 450
#: The propensity-distribution theory has settled when its compromised shares, averaged over
#: the two halves of the window, differ by less than this for every lab.
SETTLED = 1e-3
#: With ``state="give_up"`` the top lab's defence spending is held at the mandate's floor over
#: these steps of the expected dynamics (inclusive), then it best-responds again (the default of
#: ``MarketTheory(give_up_steps=...)``).
GIVE_UP_STEPS = (10, 50)
#: Which stationary state :meth:`MarketTheory.solve` reports (docs/theory.md §4.6).
STATES = ("path", "give_up")
#: Refinement rounds of the labs' best response in each step of the expected dynamics
#: (:meth:`MarketTheory._lab_defence`: golden-section search between the neighbours of the best
#: point of its 61-point grid in log Λ, and bisection for a binding budget or mandate). The grid
#: alone is 47% apart in Λ, up to about 21% apart in defence, which biased a top lab's defence
#: spending by about 8% in a validation market (docs/theory.md §4.1). 24 rounds bring the
#: golden-section bracket to 7·10⁻⁶ and the bisection to 1.4·10⁻⁶ in log Λ (fewer left a jitter
#: that kept a slow path from settling).
LAB_STEP_ROUNDS = 24
#: Refinement rounds of the labs' best response in the point theory's fixed-point polish.
POLISH_ROUNDS = 40
#: How the labs move in each step of the expected dynamics (``MarketTheory(lab_step=...)``,
#: docs/theory.md §4.1): ``joint``, the spending η_s of the way to the stock that minimises the
#: lab's one-step loss over its whole defence vector; ``model``, the model's own step of the
#: labs' policy (:func:`sim.kernels.lab_best_response`: the alignment share toward its best
#: response with the split held, then a Newton step of the split), applied to the attacks the
#: theory's labs saw. Not to be confused with ``learning.lab.rule``, how the labs learn at all.
LAB_STEPS = ("joint", "model")


class NotCovered(ValueError):
    """The configuration uses a rule the market theory does not describe."""


@dataclass(frozen=True)
class MarketStructure:
    """What a seed draws before the first step that the theory conditions on.

    ``open_weights`` and ``budget`` are per lab (index 0 has the largest reach); ``api_share`` is
    the realised share of adversaries with query access; ``adversary_budget`` is the adversaries'
    drawn budgets, one per adversary, which the theory groups into quantile nodes
    (:func:`sample_nodes`), and ``adversary_access`` which of them have query access (with it,
    the two groups get their own nodes and ``api_share`` is not read). ``None`` means the
    configuration's expectation (labs: budgets at their mean; access: the configured share;
    adversary budgets: the configured lognormal's Gauss–Hermite nodes). ``opened_at``
    (per lab, the step whose leak opened its weights; ``inf`` where none did) dates a run's
    leaks: ``open_weights`` is then the set at step 0, and only the distribution option, which
    follows the market step by step, can use it.
    """

    open_weights: np.ndarray
    budget: np.ndarray | None = None
    api_share: float | None = None
    opened_at: np.ndarray | None = None
    adversary_budget: np.ndarray | None = None
    adversary_access: np.ndarray | None = None


@dataclass
class MarketState:
    """The stationary state the theory predicts for one market at one alignment level."""

    q: float
    clarity: float
    reach: Float
    phi: Float  # expected compromised share per lab
    defence: Float  # N x 3
    attempts: Float  # N x 3, expected attempts per step
    strength: Float  # N x 3, mean K x of the attempts
    success_prob: Float  # N x 3, attempt-weighted mean success probability
    effort: Float  # per adversary type
    knowledge: Float  # types x 3
    channel_probs: Float  # types x 3
    type_weights: Float
    converged: bool
    iterations: int
    residual: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def Phi(self) -> float:
        """Reach-weighted compromised share Φ."""
        return float(self.reach @ self.phi)

    @property
    def net_alignment(self) -> float:
        """N = q (1 − Φ (1 + c)) (every lab shares q)."""
        return float(self.q * (1.0 - self.Phi * (1.0 + self.clarity)))

    def lab_table(self) -> pd.DataFrame:
        total = self.attempts.sum()
        return pd.DataFrame(
            {
                "lab": np.arange(self.reach.size),
                "reach": self.reach,
                "compromised_share": self.phi,
                "attempts": self.attempts.sum(axis=1),
                "attack_share": self.attempts.sum(axis=1) / total if total > 0 else 0.0,
                **{f"defence_{k}": self.defence[:, j] for j, k in enumerate(CHANNELS)},
            }
        )


@dataclass
class _Context:
    """What stays fixed while the market settles at one level q."""

    q: float
    c: float
    a_lab: Float
    stake: Float
    prize: Float
    investable: Float
    budgets: Float
    weights: Float
    access: Float
    active: float
    kappa: float  # the coupling κ (the model's lab step recomputes clarity from it)


@dataclass
class _Vars:
    """The market's moving parts: per type effort, knowledge, channel probabilities; per lab
    compromised share and defence."""

    effort: Float
    knowledge: Float
    probs: Float
    phi: Float
    defence: Float


def coverage(cfg: Config) -> list[str]:
    """Reasons the market theory does not describe ``cfg`` (empty when it does)."""
    m, pol, learn = cfg.model, cfg.policy, cfg.learning
    adversary = strategies.for_adversaries(learn.adversary.rule)
    lab = strategies.for_labs(learn.lab.rule)
    reasons = []
    if adversary.no_stationary_theory:
        reasons.append(
            f"learning.adversary.rule={adversary.name} ({adversary.no_stationary_theory})"
        )
    if lab.no_stationary_theory:
        reasons.append(f"learning.lab.rule={lab.name} ({lab.no_stationary_theory})")
    if lab.best_responds and pol.liability != 0:
        reasons.append("policy.liability > 0 (the labs' defence path assumes no liability term)")
    if not lab.imitates and m.defence_decay == 0:
        reasons.append(
            "model.defence_decay = 0 (defence capital only accumulates: no stationary state)"
        )
    if pol.decoupling_share > 0:
        reasons.append("policy.decoupling_share > 0 (κ falls over time: no stationary state)")
    return reasons


class MarketTheory:
    """The stationary market for one configuration; :meth:`solve` gives it at a level q.

    ``lab_rounds`` refines the labs' best response in each step of the expected dynamics
    (:data:`LAB_STEP_ROUNDS`); 0 keeps the best point of the coarse grid, which every
    measurement made before commit 772d027 used (docs/theory.md §4.1). ``sample_groups`` is the
    number of quantile groups a run's drawn adversary budgets are cut into
    (``MarketStructure.adversary_budget``; by default twice ``budget_nodes``; the ninth
    validation design was measured with 12, docs/theory.md §4.10).
    """

    def __init__(
        self,
        config: Config,
        *,
        budget_nodes: int = 12,
        channel_grid: int = 0,
        state: str = "path",
        give_up_steps: tuple[int, int] = GIVE_UP_STEPS,
        lab_rounds: int = LAB_STEP_ROUNDS,
        lab_step: str = "joint",
        sample_groups: int | None = None,
    ) -> None:
        reasons = coverage(config)
        if channel_grid < 0 or channel_grid % 3:
            raise ValueError(
                f"channel_grid must be 0 or a positive multiple of 3, got {channel_grid}"
            )
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        if len(give_up_steps) != 2 or not 1 <= give_up_steps[0] <= give_up_steps[1]:
            raise ValueError(f"give_up_steps must be (a, b) with 1 <= a <= b, got {give_up_steps}")
        whole = isinstance(lab_rounds, int | np.integer) and not isinstance(lab_rounds, bool)
        if not whole or lab_rounds < 0:
            raise ValueError(f"lab_rounds must be an integer >= 0, got {lab_rounds!r}")
        if sample_groups is None:
            sample_groups = 2 * budget_nodes
        whole = isinstance(sample_groups, int | np.integer) and not isinstance(sample_groups, bool)
        if not whole or sample_groups < 1:
            raise ValueError(f"sample_groups must be an integer >= 1, got {sample_groups!r}")
        if lab_step not in LAB_STEPS:
            raise ValueError(f"lab_step must be one of {', '.join(LAB_STEPS)}, got {lab_step!r}")
        self.channel_grid = channel_grid
        self.lab_rounds = int(lab_rounds)
        self.lab_step = lab_step
        self.state = state
        self.give_up_steps = tuple(int(t) for t in give_up_steps)
        if reasons:
            raise NotCovered("; ".join(reasons))
        self.cfg = config
        m = config.model
        self.channels = rules.ChannelParameters.from_model(m)
        self.base, self.gain = self.channels.base, self.channels.gain
        self.elasticity = self.channels.elasticity
        self.best_response = rules.BestResponse(m.decisiveness)
        self.adversary_strategy = strategies.for_adversaries(config.learning.adversary.rule)
        self.lab_strategy = strategies.for_labs(config.learning.lab.rule)
        self.reach = rules.reach_weights(m.n_labs, m.reach_exponent)
        self.budget_nodes, self.budget_weights = _lognormal_nodes(
            m.adversary_budget_mean, m.adversary_budget_dispersion, budget_nodes
        )
        # A run's drawn sample is cut into this many quantile groups (MarketStructure.
        # adversary_budget): twice the lognormal's Gauss–Hermite nodes, since a group's mean
        # drops the spread within it (docs/theory.md §4.10).
        self.sample_groups = int(sample_groups)
        self.stake_factor = rules.foresight_factor(
            config.learning.lab.foresight, m.defence_decay, m.compromise_persistence
        )
        self.congestion = getattr(m, "prize_congestion", "none") == "linear"
        # Both options act on best-responding labs along the expected dynamics, step by step.
        for option, chosen, why in (
            ("state='give_up'", state == "give_up", "a lab with a fixed policy has one state"),
            ("lab_step='model'", lab_step == "model", "other labs take no best-response step"),
        ):
            if chosen and not self.follows_path:
                raise ValueError(
                    f"{option} needs the distribution option (channel_grid > 0, Roth–Erev "
                    "adversaries): it acts along the expected dynamics through the window, where "
                    "the point theory polishes a fixed point after the warm-up"
                )
            if chosen and not self.lab_strategy.best_responds:
                raise ValueError(
                    f"{option} needs best-responding labs (learning.lab.rule=best_response): {why}"
                )
        if lab_step == "model":  # what the model's own lab step reads, fixed for the theory
            self.lab_search = kn.LabSearch.from_config(config)
            self.lab_constants = kn.LabConstants.from_config(config)
            self.lab_scale = m.defender_value * self.stake_factor * self.reach

    @property
    def follows_path(self) -> bool:
        """Whether :meth:`solve` follows the expected dynamics through a window (the
        distribution option: ``channel_grid`` > 0 with Roth–Erev adversaries) rather than
        polishing a fixed point; the give-up state, dated leaks and ``noise`` need it."""
        return bool(self.channel_grid and self.adversary_strategy.reinforces_channels)

    # ------------------------------------------------------------------ structure

    def expected_structure(self) -> MarketStructure:
        """Open weights by the configured selection (random: the expected share per lab)."""
        m, pol = self.cfg.model, self.cfg.policy
        share, selection = pol.open_weights_share, pol.open_weights_selection
        open_w = rules.open_weights(m.n_labs, share, selection, None).astype(float)
        return MarketStructure(open_weights=open_w)

    def draw_structures(
        self, rng: np.random.Generator, draws: int, start: int, stop: int
    ) -> list[MarketStructure]:
        """Open-weights sets as a run would have them: the configured selection, then leaks.

        Each draw picks the initial open labs as the model does (at random, or by reach) and
        adds the leaks of a time drawn uniformly in the averaging window [start, stop]
        (:meth:`with_leaks`). The theory averaged over the draws is the quasi-static
        expectation over the window.
        """
        m, pol = self.cfg.model, self.cfg.policy
        share, selection = pol.open_weights_share, pol.open_weights_selection
        out = []
        for _ in range(draws):
            open_w = rules.open_weights(m.n_labs, share, selection, rng)
            out.append(MarketStructure(open_weights=self.with_leaks(open_w, rng, start, stop)))
        return out

    def with_leaks(
        self, open_w: np.ndarray, rng: np.random.Generator, start: int, stop: int
    ) -> np.ndarray:
        """``open_w`` after the leaks of a time drawn uniformly in [start, stop].

        A closed lab has leaked by step t with probability 1 − (1 − ℓ)^t; averaging the theory
        over such draws gives the expectation over the window a run averages over.
        """
        leak = self.cfg.policy.leak_probability
        if leak <= 0 or stop <= 0:
            return open_w.astype(float)
        t = rng.integers(max(start, 1), max(stop, 1) + 1)
        leaked = rng.random(open_w.size) < 1.0 - (1.0 - leak) ** t
        return (open_w.astype(bool) | leaked).astype(float)

    # ------------------------------------------------------------------ solving

    def solve(
        self,
        q: float,
        structure: MarketStructure | None = None,
        *,
        coupling: float | None = None,
        max_iter: int = 3000,
        tol: float = 1e-5,
        warmup: int = WARMUP,
        patience: int | None = PATIENCE,
        window: int = WINDOW,
        noise: Any = None,
    ) -> MarketState:
        """The stationary state at alignment level q (every lab's q held there).

        The market can have more than one stationary state (e.g. a top lab that defends and
        diverts attackers to an open rival, or one that gives up and is saturated). To land in
        the one the simulation reaches, the expected dynamics are first run for ``warmup`` steps
        from the simulation's initial state (:meth:`_transient`); the fixed-point iteration then
        polishes the state it arrives at. It stops unconverged after ``max_iter`` iterations, or
        once ``patience`` iterations pass without a new smallest residual (a cycle; None: never).
        With ``channel_grid`` > 0 under Roth–Erev the propensity distribution is solved instead
        (:meth:`_solve_distribution`): ``warmup`` steps, then the mean over ``window`` steps;
        ``max_iter``, ``tol`` and ``patience`` do not apply to it.

        With ``state="give_up"`` (set on the theory; the distribution option only) the top lab's
        defence spending is held at the mandate's floor over steps ``give_up_steps`` (default
        :data:`GIVE_UP_STEPS`) of the warm-up and then released: where the market has a
        stationary state in which that lab gives up, this can reach it (docs/theory.md §4.2,
        §4.6).

        ``noise`` (the distribution option only; a seed for :func:`numpy.random.default_rng`)
        makes the path stochastic: each step the attempts each lab sees and the successes that
        compromise it are drawn from their predicted distributions (:meth:`_counts`) instead of
        taken at their means, so a path can leave one stationary state for another as a run
        can (docs/theory.md §4.9). ``None`` (the default) is the deterministic path.
        """
        if self.follows_path:
            return self._solve_distribution(q, structure, coupling, warmup, window, noise)
        if noise is not None:
            raise ValueError(
                "noise needs the distribution option (channel_grid > 0, Roth–Erev adversaries): "
                "the point theory solves a fixed point, not a path"
            )
        if structure is not None and structure.opened_at is not None:
            raise ValueError(
                "dated leaks (MarketStructure.opened_at) need the distribution option "
                "(channel_grid > 0, Roth–Erev adversaries): the point solve is stationary"
            )
        m = self.cfg.model
        ctx, x = self._setup(q, structure, coupling)
        weights, a_lab, stake, investable = ctx.weights, ctx.a_lab, ctx.stake, ctx.investable
        access, c = ctx.access, ctx.c
        adversary = self.adversary_strategy
        if warmup > 0:
            x = self._transient(ctx, x, warmup)
        if not (self.lab_strategy.best_responds or self.lab_strategy.imitates):
            x.defence = self._initial_defence(investable)
        converged, residual, it = False, np.inf, 0
        step, last = 0.5, np.inf
        best, best_it = np.inf, 0
        lab_target = None
        for it in range(1, max_iter + 1):
            v = self._evaluate(ctx, x)
            new_effort = v["br_effort"] if adversary.best_responds else x.effort
            new_knowledge = self._knowledge(x.knowledge, v["success_ch"], weights, c)
            if adversary.reinforces_channels:
                new_probs = self._roth_erev(x.probs, v["reward"], access)
            else:
                new_probs = x.probs
            rho = m.compromise_persistence
            new_phi = v["fresh"] / (1.0 - rho + rho * v["fresh"])
            # The labs' best response is the costly part; between full evaluations the last
            # target is kept (the fixed point is the same: convergence is only declared on an
            # iteration that evaluated it).
            fresh_target = self.lab_strategy.best_responds and (it <= 40 or it % 4 == 0)
            if fresh_target:
                lab_target = self._lab_defence(
                    v["attempts"], v["strength"], a_lab, stake * (1.0 - rho * new_phi), investable
                )
            new_defence = x.defence if lab_target is None else lab_target
            # damped update (the averaging of fictitious play)
            changes = [
                _rel(new_effort, x.effort),
                _rel(new_knowledge, x.knowledge),
                _rel(new_probs, x.probs),
                _rel(new_phi, x.phi),
                _rel(new_defence, x.defence),
            ]
            residual = max(changes)
            # shrink the step when the iteration overshoots, let it grow back when it settles
            step = max(step * 0.5, 0.01) if residual > 1.3 * last else min(step * 1.1, 0.5)
            last = residual
            x.effort = x.effort + step * (new_effort - x.effort)
            x.knowledge = x.knowledge + step * (new_knowledge - x.knowledge)
            x.probs = x.probs + step * (new_probs - x.probs)
            x.phi = x.phi + step * (new_phi - x.phi)
            x.defence = x.defence + step * (new_defence - x.defence)
            if residual < tol and (fresh_target or not self.lab_strategy.best_responds):
                converged = True
                break
            if residual < best:
                best, best_it = residual, it
            elif patience is not None and it - best_it > patience:
                break  # cycling: no new smallest residual for `patience` iterations
        v = self._evaluate(ctx, x)
        effort, knowledge, probs_ch, phi, defence = x.effort, x.knowledge, x.probs, x.phi, x.defence
        attempts, strength, u = v["attempts"], v["strength"], v["u"]
        success = np.divide(
            _expected_successes(self.cfg.model.n_adversaries * weights * u, v),
            attempts,
            out=np.zeros_like(attempts),
            where=attempts > 0,
        )
        return MarketState(
            q=float(q),
            clarity=float(c),
            reach=self.reach,
            phi=phi,
            defence=defence,
            attempts=attempts,
            strength=strength,
            success_prob=success,
            effort=effort,
            knowledge=knowledge,
            channel_probs=probs_ch,
            type_weights=weights,
            converged=converged,
            iterations=it,
            residual=float(residual),
        )

    def _setup(
        self, q: float, structure: MarketStructure | None, coupling: float | None
    ) -> tuple[_Context, _Vars]:
        """What stays fixed at level q, and the simulation's initial state."""
        m, pol = self.cfg.model, self.cfg.policy
        acfg = self.cfg.learning.adversary
        structure = structure or self.expected_structure()
        kappa = m.coupling if coupling is None else coupling
        n_labs = m.n_labs
        w = self.reach
        c = kappa * q**m.clarity_exponent  # rules.clarity for a scalar q (Python's pow)
        a_lab = rules.attackability(np.array([c]), self.base, self.gain, self.elasticity)[0]  # 3
        damage = q * (1.0 + c)
        stake = m.defender_value * self.stake_factor * w * damage  # lab's loss scale
        open_w = np.asarray(structure.open_weights, dtype=float)
        budget = (
            np.full(n_labs, m.lab_budget_mean)
            if structure.budget is None
            else np.asarray(structure.budget, dtype=float)
        )
        investable = budget * (1.0 - pol.decoupling_share)
        api = pol.api_access_share if structure.api_share is None else structure.api_share

        budgets, access_api, weights = self._adversary_types(structure, api)
        keep = weights > 0
        budgets, access_api, weights = budgets[keep], access_api[keep], weights[keep]
        n_types = budgets.size
        # access[t, i, k]: probability type t can reach lab i through channel k
        access = np.empty((n_types, n_labs, 3))
        access[:, :, 0] = open_w[None, :]
        access[:, :, 1] = np.maximum(open_w[None, :], access_api[:, None])
        access[:, :, 2] = 1.0

        ctx = _Context(
            q=q, c=c, a_lab=a_lab, stake=stake, prize=m.attacker_value * w * damage,
            investable=investable, budgets=budgets, weights=weights, access=access,
            active=1.0 / (1.0 + pol.detection_probability * pol.deterrence_steps)
            if pol.deterrence_steps > 0 else 1.0,
            kappa=float(kappa),
        )  # fmt: skip
        k0 = self.channels.initial_knowledge
        x = _Vars(
            effort=acfg.effort_share * budgets,
            knowledge=np.tile(k0, (n_types, 1)),  # end-of-step knowledge
            probs=np.full((n_types, 3), 1.0 / 3.0),
            phi=np.zeros(n_labs),
            defence=np.full((n_labs, 3), m.initial_defence),
        )
        return ctx, x

    def _adversary_types(
        self, structure: MarketStructure, api: float
    ) -> tuple[Float, Float, Float]:
        """Adversary types: budgets, query access (1 or 0) and weights (some may be 0).

        Budget nodes are the configured lognormal's, or a run's own draw cut into
        ``sample_groups`` quantile groups (``structure.adversary_budget``), once for the
        adversaries with query access (share ``api``) and once for those without. Given
        ``structure.adversary_access``, each of the two groups is the drawn adversaries who
        have (or lack) access, with its share of all adversaries.
        """
        if structure.adversary_budget is None:
            parts = [(self.budget_nodes, self.budget_weights)] * 2
        else:
            m = self.cfg.model
            drawn = np.asarray(structure.adversary_budget, dtype=float)
            if drawn.shape != (m.n_adversaries,):
                raise ValueError(
                    f"adversary_budget needs one budget per adversary (model.n_adversaries = "
                    f"{m.n_adversaries}), got shape {drawn.shape}"
                )
            has = structure.adversary_access
            if has is None:
                parts = [sample_nodes(drawn, self.sample_groups)] * 2
            else:
                has = np.asarray(has)
                if has.shape != drawn.shape or has.dtype != bool:
                    raise ValueError(
                        f"adversary_access needs one True/False per adversary (shape "
                        f"{drawn.shape}), got {has.dtype} of shape {has.shape}"
                    )
                parts = [self._sample_or_none(drawn[has]), self._sample_or_none(drawn[~has])]
                api = float(np.mean(has))
        (nodes_in, w_in), (nodes_out, w_out) = parts
        return (
            np.concatenate([nodes_in, nodes_out]),
            np.concatenate([np.ones(nodes_in.size), np.zeros(nodes_out.size)]),
            np.concatenate([w_in * api, w_out * (1.0 - api)]),
        )

    def _sample_or_none(self, part: Float) -> tuple[Float, Float]:
        """:func:`sample_nodes` of ``part``, or no nodes when it is empty."""
        if part.size == 0:
            return np.empty(0), np.empty(0)
        return sample_nodes(part, self.sample_groups)

    def _evaluate(self, ctx: _Context, x: _Vars) -> dict[str, Float]:
        """Targeting, contests and what the labs face, at the current variables."""
        m, pol, acfg = self.cfg.model, self.cfg.policy, self.cfg.learning.adversary
        k_pub = x.knowledge + pol.publication_rate * np.maximum(ctx.c - x.knowledge, 0.0)
        prize = ctx.prize * (1.0 - x.phi) if self.congestion else ctx.prize
        y = x.defence + m.defence_floor  # N x 3
        z = k_pub[:, None, :] * ctx.a_lab[None, None, :] * x.effort[:, None, None]  # T x N x 3
        p = rules.contest_probability(z, y[None, :, :], m.decisiveness)
        target = self._targeting(p, prize, x.effort, ctx.access, x.probs, acfg.rationality,
                                 self.adversary_strategy.reinforces_channels)  # fmt: skip
        u = np.where(x.effort > 0, ctx.active, 0.0)
        out = {"k_pub": k_pub, "p": p, "target": target, "u": u, "prize": prize}
        if self.adversary_strategy.best_responds:
            # the capped best response, averaged over the targets chosen
            eff = np.broadcast_to(k_pub[:, None, :] * ctx.a_lab[None, None, :], p.shape)
            br = self.best_response.effort(
                np.broadcast_to(prize[None, :, None], p.shape),
                eff,
                np.broadcast_to(y[None, :, :], p.shape),
                np.broadcast_to(ctx.budgets[:, None, None], p.shape),
            )
            out["br_effort"] = np.einsum("tik,tik->t", target, br)
        out["success_ch"] = u[:, None] * np.einsum("tik,tik->tk", target, p)
        if self.adversary_strategy.reinforces_channels:
            within = _within_channel(target)
            out["reward"] = np.einsum("tik,tik,i->tk", within, p, prize)
            if self.channel_grid:  # success chance per attempt (the distribution's jumps)
                out["win_ch"] = np.einsum("tik,tik->tk", within, p)
        n_adv = m.n_adversaries
        flow = n_adv * ctx.weights * u  # attempting mass per type
        attempts = np.einsum("t,tik->ik", flow, target)
        strength_sum = np.einsum("t,tik,tk->ik", flow * x.effort, target, k_pub)
        out["attempts"] = attempts
        out["strength"] = np.divide(
            strength_sum, attempts, out=np.zeros_like(attempts), where=attempts > 0
        )
        hit = np.einsum("tik,tik->ti", target, p)  # per-attempt success chance on lab i
        log_surv = (n_adv * ctx.weights)[:, None] * np.log1p(
            -np.minimum(u[:, None] * m.compromise_share * hit, 1.0 - 1e-15)
        )
        out["fresh"] = -np.expm1(log_surv.sum(axis=0))
        return out

    def _transient(self, ctx: _Context, x: _Vars, steps: int) -> _Vars:
        """The expected step map of the market from the simulation's initial state.

        Each step follows the simulation's order and its adjustment rates: defence capital
        decays and receives the labs' spending, adversaries target and fight, compromise
        persists and accrues, effort moves η_x of the way to the best response, Roth–Erev
        propensities forget and reinforce, knowledge decays, learns and diffuses, and labs
        smooth what they saw and move their spending η_s of the way to the best response.
        """
        m = self.cfg.model
        acfg = self.cfg.learning.adversary
        rho = m.compromise_persistence
        labs = self._labs_initial(ctx, x)
        propensity = np.ones_like(x.probs)
        eps = acfg.experimentation
        for _ in range(steps):
            x.defence = (1.0 - m.defence_decay) * x.defence + labs["spend"]
            v = self._evaluate(ctx, x)
            x.phi = rho * x.phi + (1.0 - rho * x.phi) * v["fresh"]
            if self.adversary_strategy.best_responds:
                x.effort = x.effort + acfg.effort_adjustment * (v["br_effort"] - x.effort)
            if self.adversary_strategy.reinforces_channels:
                g = x.probs * v["reward"]
                reinforce = (1.0 - 1.5 * eps) * g + (eps / 2.0) * g.sum(axis=1, keepdims=True)
                play = v["u"][:, None]  # only adversaries that attempted update
                propensity = propensity * (1.0 - acfg.forgetting * play) + play * reinforce
                total = propensity.sum(axis=1, keepdims=True)
                x.probs = np.where(total > 0, propensity / np.maximum(total, 1e-300), x.probs)
            k_pub = v["k_pub"]
            kept = (1.0 - m.knowledge_decay) * k_pub
            learned = kept + m.knowledge_gain * (1.0 - kept) * np.minimum(v["success_ch"], 1.0)
            if m.diffusion_rate > 0 and m.network.topology != "none":
                gap = np.maximum(learned[None, :, :] - learned[:, None, :], 0.0)
                learned = learned + m.diffusion_rate * np.einsum("u,tuk->tk", ctx.weights, gap)
            x.knowledge = learned
            self._labs_step(ctx, x, v, labs)
        return x

    def check_warmup(self, warmup: int) -> None:
        """Refuse a warm-up that ``state="give_up"``'s hold would outlast: the hold must end
        before the averaged window (``paradox validate`` checks its burn-in with this)."""
        first, last = self.give_up_steps
        if self.state == "give_up" and warmup <= last:
            raise ValueError(
                f"state='give_up' holds the top lab's defence over steps {first}-{last} of the "
                f"expected dynamics, which must end before the window: it needs warmup > {last}, "
                f"got {warmup}"
            )

    def _push(self, ctx: _Context, labs: dict, step: int) -> None:
        """With ``state="give_up"``: over ``give_up_steps`` the top lab (largest reach) spends
        only what the mandate requires on defence, split evenly."""
        first, last = self.give_up_steps
        if self.state != "give_up" or not first <= step <= last:
            return
        top = int(np.argmax(self.reach))
        floor = self.cfg.policy.defence_mandate * ctx.investable[top]
        labs["spend"][top] = floor / 3.0
        if self.lab_step == "model":  # the same spending as the rule's policy
            labs["share"][top] = 1.0 - self.cfg.policy.defence_mandate
            labs["split"][top] = 1.0 / 3.0

    def _counts(self, ctx: _Context, v: dict, rng: np.random.Generator) -> None:
        """The step's counts drawn instead of taken at their means (``solve(noise=...)``).

        Attempts on each lab and channel are Poisson with the predicted mean (the multinomial
        choices of many adversaries); successes among them are binomial with the predicted
        success chance per attempt; the fresh compromise is 1 − (1 − σ)^S of the drawn
        successes S, as the simulation's is. The labs then see the drawn attempts. Everything
        else (targeting, learning, the adversaries' distribution) stays at its expectation.
        The mean of the drawn fresh compromise, 1 − exp(−σ·E S), equals the deterministic one to
        first order in σ. Poisson counts are wider than the simulation's: there every active
        adversary makes one attempt a step, so a lab's attempts are binomial, with variance
        smaller by the factor (1 − its share of all attempts), and successes are binomial given
        them (docs/theory.md §4.9).
        """
        m = self.cfg.model
        expected = v["attempts"]
        hits = _expected_successes(m.n_adversaries * ctx.weights * v["u"], v)
        chance = np.clip(np.divide(hits, expected, out=np.zeros_like(hits),
                                   where=expected > 0), 0.0, 1.0)  # fmt: skip
        attempts = rng.poisson(expected).astype(float)
        successes = rng.binomial(attempts.astype(np.int64), chance).sum(axis=1)
        v["seen"] = attempts  # what the labs see; the state reports the expected attempts
        v["fresh"] = rules.fresh_compromise(successes, m.compromise_share)

    def _solve_distribution(
        self, q: float, structure: MarketStructure | None, coupling: float | None,
        warmup: int, window: int, noise: Any = None,
    ) -> MarketState:  # fmt: skip
        """The market with each type's channel propensities as a distribution (§4.1).

        An adversary's Roth–Erev channel probabilities P change only when it succeeds: a
        success through channel k with prize R moves P a share f = R / ((1 − φ_RE) S + R) of the
        way to v_k (1 − ε on k, ε/2 on the others), where S is its total propensity, which
        forgets at φ_RE and grows by R. Each type's population is a distribution over a grid on
        the simplex of P (:mod:`sim.simplex`); every step moves the mass of each grid point to
        where its successes through each channel send it (interpolated onto the grid) and keeps
        the rest in place. Each grid point carries the mean knowledge, effort and propensity
        total of the adversaries there, moved with them and updated by the outcome that moved
        them (a success through k teaches k), so an adversary's knowledge stays correlated
        with its specialty. This is the master equation of (P, S, K, x) closed at the first
        moment of (S, K, x) given P, iterated from the simulation's initial state; the state is
        averaged over steps warmup+1 .. warmup+window, as the simulation is.
        """
        if window < 1 or warmup < 0:
            raise ValueError(f"need window >= 1 and warmup >= 0, got {window} and {warmup}")
        self.check_warmup(warmup)
        m, acfg = self.cfg.model, self.cfg.learning.adversary
        n = self.channel_grid
        ctx, x0 = self._setup(q, structure, coupling)
        pts = simplex.points(n)
        n_grid, n_types = pts.shape[0], ctx.budgets.size
        n_sub = n_types * n_grid
        owner = np.repeat(np.arange(n_types), n_grid)  # sub-population -> type
        mass = np.zeros(n_sub)
        mass[np.arange(n_types) * n_grid + simplex.index(np.array(n // 3), np.array(n // 3), n)] = 1
        type_w = ctx.weights
        sub = replace(
            ctx,
            budgets=ctx.budgets[owner],
            weights=type_w[owner] * mass,
            access=ctx.access[owner],
        )
        x = _Vars(
            effort=x0.effort[owner],
            knowledge=x0.knowledge[owner],
            probs=np.tile(pts, (n_types, 1)),
            phi=x0.phi,
            defence=x0.defence,
        )
        total = np.full(n_sub, 3.0)  # propensity sums: every propensity starts at 1
        labs = self._labs_initial(sub, x)
        opened_at = None if structure is None else structure.opened_at
        if opened_at is not None:
            opened_at = np.asarray(opened_at, dtype=float)
            closed_at_start = np.asarray(structure.open_weights, dtype=float) < 1.0
        eps, forget = acfg.experimentation, acfg.forgetting
        towards = np.full((3, 3), eps / 2.0)  # row k: where a success through k pulls P
        np.fill_diagonal(towards, 1.0 - eps)
        rho = m.compromise_persistence
        diffuse = m.diffusion_rate > 0 and m.network.topology != "none"
        rng = None if noise is None else np.random.default_rng(noise)
        acc: dict[str, Float] = {}
        halves: dict[str, Float] = {}
        trace: list[float] = []  # Φ_t over the window (its spread; a stochastic path's settling)
        for step in range(1, warmup + window + 1):
            if opened_at is not None:  # the run's leaks, at the start of their step
                leaks = np.flatnonzero(closed_at_start & (opened_at == step))
                sub.access[:, leaks, 0] = 1.0  # weights, and with them queries
                sub.access[:, leaks, 1] = 1.0
            x.defence = (1.0 - m.defence_decay) * x.defence + labs["spend"]
            v = self._evaluate(sub, x)
            if rng is not None:
                self._counts(sub, v, rng)
            x.phi = rho * x.phi + (1.0 - rho * x.phi) * v["fresh"]
            if self.adversary_strategy.best_responds:
                x.effort = x.effort + acfg.effort_adjustment * (v["br_effort"] - x.effort)
            # the step's outcomes per sub-population: a success through k (chance succ_k), or not
            u = v["u"]
            succ = np.minimum(v["success_ch"], 1.0)
            stay = np.maximum(1.0 - succ.sum(axis=1), 0.0)
            kept = (1.0 - m.knowledge_decay) * v["k_pub"]
            learned = kept + m.knowledge_gain * (1.0 - kept)
            failed = u - succ.sum(axis=1)  # attempted without success: propensities forget
            total_stay = np.divide(
                ((1.0 - u) + (1.0 - forget) * np.maximum(failed, 0.0)) * total,
                stay, out=total.copy(), where=stay > 0,
            )  # fmt: skip
            prize = np.divide(v["reward"], v["win_ch"], out=np.zeros_like(succ),
                              where=v["win_ch"] > 0)  # fmt: skip
            total_win = (1.0 - forget) * total[:, None] + prize  # S x 3
            f = np.divide(prize, total_win, out=np.zeros_like(prize), where=total_win > 0)
            dest = (1.0 - f)[..., None] * x.probs[:, None, :] + f[..., None] * towards[None]
            verts, share = simplex.interpolate(dest, n)  # S x 3 (channel) x 3 (vertex)
            # knowledge carried by a success through k: kept, with channel k learned
            k_win = np.repeat(kept[:, None, :], 3, axis=1)
            diag = np.arange(3)
            k_win[:, diag, diag] = learned
            where_to = np.concatenate(
                [np.arange(n_sub), ((owner * n_grid)[:, None, None] + verts).ravel()]
            )
            amount = np.concatenate(
                [mass * stay, (mass[:, None, None] * succ[:, :, None] * share).ravel()]
            )
            mass = np.bincount(where_to, amount, minlength=n_sub)

            def carried(at_stay: Float, at_win: Float, old: Float) -> Float:
                """Mass-weighted mean of what arrives at each grid point: ``at_stay`` from the
                mass that stayed, ``at_win[s, k]`` from a success through k (``old`` where no
                mass is)."""
                flat = np.concatenate([at_stay, np.repeat(at_win, 3, axis=1).reshape(-1)])
                moved = np.bincount(where_to, amount * flat, minlength=n_sub)  # noqa: B023
                return np.divide(moved, mass, out=old.copy(), where=mass > 0)  # noqa: B023

            eff = x.effort
            x.effort = carried(eff, np.repeat(eff[:, None], 3, axis=1), eff)
            total = carried(total_stay, total_win, total)
            x.knowledge = np.column_stack(
                [carried(kept[:, c], k_win[:, :, c], kept[:, c]) for c in range(3)]
            )
            sub.weights = type_w[owner] * mass
            if diffuse:
                x.knowledge = x.knowledge + m.diffusion_rate * _above(x.knowledge, sub.weights)
            self._labs_step(sub, x, v, labs)
            self._push(sub, labs, step)
            if step > warmup:
                half = "late" if step > warmup + window // 2 else "early"
                halves[half] = halves.get(half, 0.0) + x.phi
                trace.append(float(self.reach @ x.phi))
                flow = m.n_adversaries * sub.weights * u

                def by_type(values: Float) -> Float:  # weight-summed over each type's grid
                    w = sub.weights.reshape(n_types, n_grid, *([1] * (values.ndim - 1)))
                    return (w * values.reshape(n_types, n_grid, *values.shape[1:])).sum(axis=1)

                seen = {
                    "phi": x.phi,
                    "defence": x.defence,
                    "attempts": v["attempts"],
                    "strength": v["attempts"] * v["strength"],
                    "success": _expected_successes(flow, v),
                    "effort": by_type(x.effort),
                    "knowledge": by_type(x.knowledge),
                    "probs": by_type(x.probs),
                    "probs_sq": by_type(x.probs**2),
                }
                for key, value in seen.items():
                    acc[key] = acc.get(key, 0.0) + value / window
        # settled: the window's two halves agree (a cycle or a drift shows as a difference)
        late = halves["late"] / (window - window // 2)
        early = halves["early"] / (window // 2) if window >= 2 else late
        residual = float(np.max(np.abs(late - early)))
        settled = residual < SETTLED
        if rng is not None:
            # The halves differ by noise too. One test, on the reach-weighted share Φ (what N
            # depends on; a test per lab would flag some lab by chance): settled when the
            # halves' Φ differ by less than three batch-means SEs of their gap, or 10⁻³.
            gap = abs(float(self.reach @ (late - early)))
            settled = gap < max(SETTLED, 3.0 * _half_gap_se(trace))
        attempts = acc["attempts"]
        per_type = np.maximum(type_w, 1e-300)[:, None]
        probs = acc["probs"] / per_type
        # SD of the channel probabilities among the adversaries of each type (not across types)
        spread = np.sqrt(np.maximum(acc["probs_sq"] / per_type - probs**2, 0.0))
        return MarketState(
            q=float(q),
            clarity=float(ctx.c),
            reach=self.reach,
            phi=acc["phi"],
            defence=acc["defence"],
            attempts=attempts,
            strength=np.divide(acc["strength"], attempts, out=np.zeros_like(attempts),
                               where=attempts > 0),
            success_prob=np.divide(acc["success"], attempts, out=np.zeros_like(attempts),
                                   where=attempts > 0),
            effort=acc["effort"] / type_w,
            knowledge=acc["knowledge"] / per_type,
            channel_probs=probs,
            type_weights=type_w,
            converged=bool(settled),
            iterations=warmup + window,
            residual=float(residual),
            # the SD over the window's steps of Φ_t (0 on a settled deterministic path)
            info={"channel_probs_sd": spread, "Phi_sd": float(np.std(trace))},
        )  # fmt: skip

    def _labs_initial(self, ctx: _Context, x: _Vars) -> dict[str, Float]:
        """The labs' initial spending per step and their (empty) memory of attacks."""
        pol, lcfg = self.cfg.policy, self.cfg.learning.lab
        split = np.array(
            [lcfg.defence_split.weights, lcfg.defence_split.prompt, lcfg.defence_split.output]
        )
        s0 = min(lcfg.alignment_share, 1.0 - pol.defence_mandate)
        spend = ((1.0 - s0) * ctx.investable)[:, None] * (split / split.sum())[None, :]
        labs = {"spend": spend, "n": np.zeros_like(x.defence), "s": np.zeros_like(x.defence)}
        if self.lab_step == "model":  # the simulation's policy state, as it starts
            labs["share"] = np.full(ctx.investable.size, s0)
            labs["split"] = np.tile(split / split.sum(), (ctx.investable.size, 1))
        return labs

    def _labs_step(self, ctx: _Context, x: _Vars, v: dict, labs: dict) -> None:
        """Best-responding labs smooth the attacks they saw and move their spending η_s of the
        way to the myopic best response (within budget and mandate); ``labs`` is updated."""
        if not self.lab_strategy.best_responds:
            return
        m, pol, lcfg = self.cfg.model, self.cfg.policy, self.cfg.learning.lab
        rho = m.compromise_persistence
        seen_n, seen_s, spend = labs["n"], labs["s"], labs["spend"]
        attempts = v.get("seen", v["attempts"])  # drawn on a stochastic path (_counts)
        seen = attempts > 0
        seen_n += lcfg.memory * (attempts - seen_n)
        seen_s += lcfg.memory * (np.where(seen, v["strength"], seen_s) - seen_s)
        if self.lab_step == "model":
            self._labs_model_step(ctx, x, labs)
            return
        best = self._lab_defence(seen_n, seen_s, ctx.a_lab, ctx.stake * (1.0 - rho * x.phi),
                                 ctx.investable, rounds=self.lab_rounds)  # fmt: skip
        wanted = np.maximum(best - (1.0 - m.defence_decay) * x.defence, 0.0)
        total = wanted.sum(axis=1, keepdims=True)
        cap = ctx.investable[:, None]
        floor = pol.defence_mandate * cap
        wanted = np.where(total > cap, wanted * cap / np.maximum(total, 1e-300), wanted)
        short = total < floor
        wanted = np.where(short, wanted + (floor - total) / 3.0, wanted)
        labs["spend"] = spend + lcfg.step_size * (wanted - spend)

    def _labs_model_step(self, ctx: _Context, x: _Vars, labs: dict) -> None:
        """``lab_step="model"``: the simulation's own step of the labs' policy
        (:func:`sim.kernels.lab_best_response`, the function the model calls) on the attacks
        the labs saw; ``labs`` gets the new share, split and next step's spending.

        The objective reads the compromised share through its sum over channels (the carried
        part ρ φ) and per channel only for the liability term, which the theory does not cover
        (:func:`coverage`); so the lab's share φ stands in one column. q is the level solved
        at, so alignment capital does not enter.
        """
        n_labs = ctx.investable.size
        compromised = np.zeros((n_labs, 3))
        compromised[:, 0] = x.phi
        constants = self.lab_constants._replace(fixed_alignment=float(ctx.q))
        labs["share"], labs["split"] = kn.lab_best_response(
            labs["share"],
            np.ascontiguousarray(labs["split"]),
            np.zeros(n_labs),
            np.ascontiguousarray(ctx.investable, dtype=float),
            np.ascontiguousarray(x.defence),
            compromised,
            np.ascontiguousarray(labs["n"]),
            np.ascontiguousarray(labs["s"]),
            self.reach,
            ctx.kappa,
            self.base,
            self.gain,
            self.elasticity,
            self.channels.severity,
            float(self.cfg.policy.liability),
            constants,
            self.lab_scale,
            self.lab_search,
        )
        labs["spend"] = ((1.0 - labs["share"]) * ctx.investable)[:, None] * labs["split"]

    def _initial_defence(self, investable: Float) -> Float:
        """Defence of the labs' initial policy held forever (the fixed rule's stationary D)."""
        m, pol, lab = self.cfg.model, self.cfg.policy, self.cfg.learning.lab
        split = np.array(
            [lab.defence_split.weights, lab.defence_split.prompt, lab.defence_split.output]
        )
        split = split / split.sum()
        s0 = min(lab.alignment_share, 1.0 - pol.defence_mandate)
        decay = max(m.defence_decay, 1e-12)
        return ((1.0 - s0) * investable)[:, None] * split[None, :] / decay

    def _targeting(self, p, prize, effort, access, probs_ch, lam, reinforce) -> Float:
        """P(lab i, channel k) per type: the simulation's logit, with Roth–Erev's channel stage.

        Access probabilities (a lab open in some draws, closed in others) enter as log-weights,
        which is exact for a share of identical labs and the expectation of the indicator
        otherwise.
        """
        util = lam * (p * prize[None, :, None] - effort[:, None, None])
        with np.errstate(divide="ignore"):
            logits = util + np.log(access)
        if reinforce:
            top = np.max(logits, axis=1, keepdims=True)
            ok = np.isfinite(top[:, 0, :])
            safe = np.where(np.isfinite(top), top, 0.0)
            within = np.exp(logits - safe)
            total = within.sum(axis=1, keepdims=True)
            within = np.divide(within, total, out=np.zeros_like(within), where=total > 0)
            pk = probs_ch * ok
            pk = pk / np.maximum(pk.sum(axis=1, keepdims=True), 1e-300)
            return within * pk[:, None, :]
        flat = logits.reshape(logits.shape[0], -1)
        top = flat.max(axis=1, keepdims=True)
        ex = np.exp(flat - top)
        return (ex / ex.sum(axis=1, keepdims=True)).reshape(logits.shape)

    def _knowledge(self, knowledge: Float, success_ch: Float, weights: Float, c: float) -> Float:
        """Stationary end-of-step knowledge for the given per-step success chances.

        One step publishes (K ← K + π max(0, c̄ − K)), decays (× (1 − δ_K)), learns from success
        (+ η_K (1 − K) per success) and diffuses. Without diffusion the stationary point is in
        closed form; diffusion is taken in the mean field of the network (a neighbour is of
        type t' with probability equal to its weight, and K moves η_diff × E[max(0, K_t' − K_t)]:
        zero for identical adversaries, positive otherwise), iterated from the closed form.
        """
        m, pol = self.cfg.model, self.cfg.policy
        s = np.minimum(success_ch, 1.0)
        a = (1.0 - m.knowledge_decay) * (1.0 - m.knowledge_gain * s)
        gain = m.knowledge_gain * s
        pi = pol.publication_rate
        below = (a * pi * c + gain) / np.maximum(1.0 - a * (1.0 - pi), 1e-12)
        above = gain / np.maximum(1.0 - a, 1e-12)
        k = np.where(below < c, below, np.maximum(above, c))
        k = np.clip(k, 0.0, 1.0)
        if m.diffusion_rate == 0 or m.network.topology == "none" or weights.size < 2:
            return k
        k = np.maximum(k, knowledge)  # diffusion only raises knowledge: warm start from above
        for _ in range(30):
            k_pub = k + pi * np.maximum(c - k, 0.0)
            learned = a * k_pub + gain
            gap = np.maximum(learned[None, :, :] - learned[:, None, :], 0.0)  # t, t', k
            k = learned + m.diffusion_rate * np.einsum("u,tuk->tk", weights, gap)
        return k

    def _roth_erev(self, probs: Float, reward: Float, access: Float) -> Float:
        """Stationary channel probabilities of Roth–Erev reinforcement.

        The expected reinforcement of channel k is r_k = (1 − 3ε/2) g_k P_k + (ε/2) Σ_l g_l P_l
        (the chosen channel gets (1 − ε) of the reward, each other ε/2), with g_k the expected
        reward of an attempt through k. Stationary propensities are proportional to r, so P is
        the Perron vector of M = diag(ok) ((1 − 3ε/2) diag(g) + (ε/2) 1 gᵀ) over the channels
        the type can reach.
        """
        eps = self.cfg.learning.adversary.experimentation
        ok = (access.max(axis=1) > 0).astype(float)  # T x 3
        n_types = reward.shape[0]
        mat = (1.0 - 1.5 * eps) * reward[:, :, None] * np.eye(3)[None, :, :] + (eps / 2.0) * (
            np.ones((3, 1))[None, :, :] * reward[:, None, :]
        )
        mat = ok[:, :, None] * mat
        out = probs.copy()
        vals, vecs = np.linalg.eig(mat)
        for t in range(n_types):
            if not reward[t].any():
                continue
            j = int(np.argmax(vals[t].real))
            v = np.abs(vecs[t][:, j].real) * ok[t]
            if v.sum() > 0:
                out[t] = v / v.sum()
        return out

    def _lab_defence(
        self, attempts, strength, a_lab, stake, investable, rounds: int = POLISH_ROUNDS
    ) -> Float:
        """Each lab's stationary best-response defence (docs/theory.md §4.1).

        The myopic lab picks next step's defence D' to minimise
        stake·(1 − e^{L(D')}) + Σ_k D'_k with L = Σ_k n_k log(1 − σ p(s̄_k a_k, D'_k + d0)), for
        the attack counts n and mean strengths s̄ it observes, subject to its budget
        (δ_D Σ D ≤ b) and the mandate (δ_D Σ D ≥ m b). Every optimum equalises the marginal
        value across defended channels, so it lies on the one-parameter path D(Λ) on which
        g_k(D_k) = 1/Λ; the objective is minimised along that path (a grid, then golden
        section), which finds the global optimum even where the objective is not convex.
        ``rounds`` golden-section steps refine the grid's best point, and as many bisection
        steps find where a budget or mandate binds; 0 keeps the grid's best point.
        """
        m, pol = self.cfg.model, self.cfg.policy
        sigma, mu, floor = m.compromise_share, m.decisiveness, m.defence_floor
        n_labs = attempts.shape[0]
        z = strength * a_lab[None, :]  # N x 3 attack strength the lab expects
        if mu == 1.0:
            # Closed form: with p = z / (z + Y), g(Y) = n σ z / ((Y + z)(Y + (1 − σ) z)) falls
            # in Y, and g(Y) = 1/Λ is a quadratic whose positive root is the path.
            nsz = attempts * sigma * z

            def path(lam_: Float) -> Float:
                """D(Λ) per lab (rows of lam_) and channel."""
                zz, c1 = z[:, None, :], nsz[:, None, :]
                disc = (zz * sigma) ** 2 + 4.0 * lam_[:, :, None] * c1
                y = 0.5 * (-zz * (2.0 - sigma) + np.sqrt(disc))
                return np.where(c1 > 0, np.maximum(y - floor, 0.0), 0.0)

        else:
            path = self._path_tabulated(attempts, z, investable)

        def objective(d: Float) -> Float:
            pp = rules.contest_probability(z[:, None, :], d + floor, mu)
            logs = attempts[:, None, :] * np.log1p(-np.minimum(sigma * pp, 1.0 - 1e-15))
            return stake[:, None] * -np.expm1(logs.sum(axis=2)) + d.sum(axis=2)

        grid = np.geomspace(1e-10, 1.0, 61)[None, :] * np.maximum(stake, 1e-300)[:, None]
        d = path(grid)  # N x L x 3
        total = m.defence_decay * d.sum(axis=2)
        feasible = (total <= investable[:, None] * (1 + 1e-9)) & (
            total >= pol.defence_mandate * investable[:, None] * (1 - 1e-9)
        )
        values = np.where(feasible, objective(d), np.inf)
        best = np.argmin(values, axis=1)
        rows = np.arange(n_labs)
        out = d[rows, best]
        none_feasible = ~np.isfinite(values[rows, best])
        if rounds > 0:
            # refine between the neighbours of the best grid point (golden section in log Λ)
            lo_i = np.log(grid[rows, np.maximum(best - 1, 0)])
            hi_i = np.log(grid[rows, np.minimum(best + 1, grid.shape[1] - 1)])
            for _ in range(rounds):
                a1 = hi_i - rules.GOLDEN * (hi_i - lo_i)
                a2 = lo_i + rules.GOLDEN * (hi_i - lo_i)
                both = path(np.exp(np.stack([a1, a2], axis=1)))  # N x 2 x 3, one call
                vals = np.where(_feasible(both, investable, m, pol), objective(both), np.inf)
                left = vals[:, 0] <= vals[:, 1]
                hi_i = np.where(left, a2, hi_i)
                lo_i = np.where(left, lo_i, a1)
            cand = path(np.exp(0.5 * (lo_i + hi_i))[:, None])
            vc = np.where(_feasible(cand, investable, m, pol), objective(cand), np.inf)[:, 0]
            better = vc <= values[rows, best]
            out = np.where(better[:, None], cand[:, 0], out)
        # Where the budget (or the mandate) binds, the optimum is the point of the path whose
        # spending is exactly at the bound: find it by bisection (spending rises along the
        # path) and keep it if it beats the interior candidate.
        best_value = objective(out[:, None, :])[:, 0]
        best_value = np.where(_feasible(out[:, None, :], investable, m, pol)[:, 0], best_value,
                              np.inf)  # fmt: skip
        log_lo, log_hi = np.log(grid[:, 0]), np.log(grid[:, -1])
        bounds = [(investable, True)]
        if pol.defence_mandate > 0:
            bounds.append((pol.defence_mandate * investable, False))
        for bound, is_cap in bounds if rounds > 0 else ():
            lo_b, hi_b = log_lo.copy(), log_hi.copy()
            for _ in range(rounds):
                mid = 0.5 * (lo_b + hi_b)
                spent = m.defence_decay * path(np.exp(mid)[:, None])[:, 0].sum(axis=1)
                under = spent <= bound
                lo_b = np.where(under, mid, lo_b)
                hi_b = np.where(under, hi_b, mid)
            cand = path(np.exp(lo_b if is_cap else hi_b)[:, None])
            ok = _feasible(cand, investable, m, pol)[:, 0]
            value = np.where(ok, objective(cand)[:, 0], np.inf)
            better = value < best_value
            out = np.where(better[:, None], cand[:, 0], out)
            best_value = np.where(better, value, best_value)
        # the bounds leave no point of the path feasible: spend exactly at the bound
        for i in np.flatnonzero(none_feasible & ~np.isfinite(best_value)):
            out[i] = _at_total(d[i], total[i], investable[i], pol.defence_mandate)
        # Unattacked channels need no defence: the path gives 0 there already.
        return out

    def _path_tabulated(self, attempts: Float, z: Float, investable: Float):
        """D(Λ) for μ ≠ 1, where g need not fall everywhere: tabulated on a defence grid."""
        m = self.cfg.model
        sigma, mu, floor = m.compromise_share, m.decisiveness, m.defence_floor
        # Defence grid (per lab and channel): y from d0 to far beyond any sensible level.
        lo = max(floor, 1e-9)
        hi = max(1e3 * (z.max() + 1.0), 10.0 * investable.max() / max(m.defence_decay, 1e-3))
        ys = np.geomspace(lo, hi, 400)
        pg = rules.contest_probability(z[:, :, None], ys[None, None, :], mu)  # N x 3 x G
        g = (
            attempts[:, :, None]
            * sigma
            * mu
            * pg
            * (1.0 - pg)
            / (ys[None, None, :] * np.maximum(1.0 - sigma * pg, 1e-15))
        )

        # On the branch beyond its peak g falls with y; the optimum is there (second-order
        # condition), so D(Λ) inverts g on that branch: count the grid points past the peak
        # where g ≥ 1/Λ, then interpolate in logs between that point and the next.
        with np.errstate(divide="ignore"):
            log_g = np.log(g)
        peak = g.argmax(axis=2)
        past_peak = np.arange(ys.size)[None, None, :] >= peak[:, :, None]
        log_g = np.where(past_peak, log_g, np.inf)  # before the peak: never the answer
        log_y = np.log(ys)
        top = np.take_along_axis(log_g, peak[:, :, None], axis=2)[:, :, 0]  # N x 3

        def path(lam_: Float) -> Float:
            """D(Λ) per lab (rows of lam_) and channel: the largest y with g(y) ≥ 1/Λ."""
            need = -np.log(lam_)[:, :, None, None]  # N x L x 1 x 1
            count = (log_g[:, None, :, :] >= need).sum(axis=3)  # N x L x 3
            j = np.clip(count - 1, 0, ys.size - 2)
            lg = log_g[:, None, :, :]
            g0 = np.take_along_axis(np.broadcast_to(lg, (*count.shape, ys.size)), j[..., None], 3)[
                ..., 0
            ]
            g1 = np.take_along_axis(
                np.broadcast_to(lg, (*count.shape, ys.size)), (j + 1)[..., None], 3
            )[..., 0]
            n = need[..., 0]
            with np.errstate(invalid="ignore"):
                frac = np.clip(np.where(g1 < g0, (g0 - n) / (g0 - g1), 0.0), 0.0, 1.0)
            y = np.exp(log_y[j] + frac * (log_y[j + 1] - log_y[j]))
            defended = (n <= top[:, None, :]) & np.isfinite(top[:, None, :])
            return np.where(defended, np.maximum(y - floor, 0.0), 0.0)

        return path


def _expected_successes(flow: Float, v: dict) -> Float:
    """Expected successes per lab and channel in a step: ``flow`` (attempting mass per type or
    sub-population) times each one's targeting and contest chances in ``v``."""
    return np.einsum("s,sik,sik->ik", flow, v["target"], v["p"])


#: Batches per half of a stochastic path's window in its settled test (:func:`_half_gap_se`).
HALF_BATCHES = 5


def _half_gap_se(trace: list[float]) -> float:
    """Standard error of (mean of the second half − mean of the first) of an autocorrelated
    series: each half's batch-means SE (:func:`sim.stats.batch_means_se`, ``HALF_BATCHES``
    batches, so the halves' own spread and not the gap between them), combined as for
    independent halves. Infinite when a half has fewer than two steps per batch: nothing can
    be judged."""
    values = np.asarray(trace, dtype=float)
    half = values.size // 2
    if half < 2 * HALF_BATCHES:
        return float("inf")
    return float(np.hypot(S.batch_means_se(values[:half], HALF_BATCHES),
                          S.batch_means_se(values[half:], HALF_BATCHES)))  # fmt: skip


def _feasible(d: Float, investable: Float, m: Any, pol: Any) -> Float:
    total = m.defence_decay * d.sum(axis=2)
    return (total <= investable[:, None] * (1 + 1e-9)) & (
        total >= pol.defence_mandate * investable[:, None] * (1 - 1e-9)
    )


def _at_total(path_d: Float, total: Float, investable: float, mandate: float) -> Float:
    """The point of a lab's path whose spending is nearest the binding bound."""
    goal = investable if total.min() > investable else mandate * investable
    j = int(np.argmin(np.abs(total - goal)))
    scale = goal / total[j] if total[j] > 0 else 0.0
    return path_d[j] * scale


def _within_channel(target: Float) -> Float:
    """P(lab i | channel k) from P(lab i, channel k)."""
    pk = target.sum(axis=1, keepdims=True)
    return np.divide(target, pk, out=np.zeros_like(target), where=pk > 0)


def _above(values: Float, weights: Float) -> Float:
    """E[max(0, K' − K)] per row and column, K' drawn from the rows with probability ∝ weights.

    The mean-field diffusion gain of each sub-population, by sorting (O(S log S), not S²).
    """
    out = np.empty_like(values)
    w = weights / max(weights.sum(), 1e-300)
    for c in range(values.shape[1]):
        order = np.argsort(values[:, c], kind="stable")
        k, ws = values[order, c], w[order]
        tail_w = np.append(np.cumsum(ws[::-1])[::-1], 0.0)
        tail_kw = np.append(np.cumsum((ws * k)[::-1])[::-1], 0.0)
        first_above = np.searchsorted(k, k, side="right")
        out[order, c] = tail_kw[first_above] - k * tail_w[first_above]
    return np.maximum(out, 0.0)


def _rel(new: Float, old: Float) -> float:
    new, old = np.asarray(new, dtype=float), np.asarray(old, dtype=float)
    if new.size == 0:
        return 0.0
    return float(np.max(np.abs(new - old) / np.maximum(np.abs(old), 1.0)))


def sample_nodes(values: Float, n: int) -> tuple[Float, Float]:
    """A drawn sample as ``n`` quadrature nodes: sorted, cut into ``n`` groups of (nearly)
    equal size, each at its mean with weight its share of the sample (the sample itself when
    it has at most ``n`` values). The nodes' weighted mean is the sample's mean exactly."""
    x = np.sort(np.asarray(values, dtype=float).ravel())
    if x.size == 0 or not np.all(np.isfinite(x)) or x[0] < 0.0:
        raise ValueError("a drawn budget sample must be non-empty, finite and non-negative")
    groups = np.array_split(x, min(max(int(n), 1), x.size))
    nodes = np.array([g.mean() for g in groups])
    weights = np.array([g.size for g in groups], dtype=float) / x.size
    return nodes, weights


def _lognormal_nodes(mean: float, sd_log: float, n: int) -> tuple[Float, Float]:
    """Gauss–Hermite nodes and weights of a mean-preserving lognormal (probabilists' form)."""
    if sd_log == 0.0 or n <= 1:
        return np.array([float(mean)]), np.array([1.0])
    z, wz = np.polynomial.hermite_e.hermegauss(n)
    wz = wz / wz.sum()
    return np.exp(np.log(mean) - 0.5 * sd_log**2 + sd_log * z), wz


# ---------------------------------------------------------------------------------------------
# Curves, decomposition, thresholds
# ---------------------------------------------------------------------------------------------


def decompose(q1: float, n1: dict, q2: float, n2: dict) -> dict[str, float]:
    """Split the secant slope of N between two levels into 1 − deeper − easier, exactly.

    With N = q − Φ X and X = q (1 + c): Φ₂X₂ − Φ₁X₁ = Φ̄ ΔX + X̄ ΔΦ (midpoint means), so
    (N₂ − N₁)/Δq = 1 − Φ̄ ΔX/Δq − X̄ ΔΦ/Δq. *deeper* is the first term (compromised use is
    inverted more deeply), *easier* the second (attacks compromise more). ``n1``/``n2`` carry
    ``Phi`` and ``clarity`` at each level.
    """
    dq = q2 - q1
    x1, x2 = q1 * (1.0 + n1["clarity"]), q2 * (1.0 + n2["clarity"])
    phi_bar = 0.5 * (n1["Phi"] + n2["Phi"])
    x_bar = 0.5 * (x1 + x2)
    deeper = phi_bar * (x2 - x1) / dq
    easier = x_bar * (n2["Phi"] - n1["Phi"]) / dq
    return {"slope": 1.0 - deeper - easier, "deeper": deeper, "easier": easier}


def decompose_curve(
    table: pd.DataFrame, q: str = "q", phi: str = "Phi", clarity: str = "clarity"
) -> pd.DataFrame:
    """Add the local decomposition dN/dq = 1 − deeper − easier to a curve (one row per level).

    deeper = Φ dX/dq and easier = X dΦ/dq with X = q (1 + c), the derivatives by centred
    differences (one-sided at the ends). Works on the theory's curve and, given the simulated
    means of the compromised share and clarity per level, on a simulated one.
    """
    out = table.sort_values(q).reset_index(drop=True).copy()
    qs = out[q].to_numpy(float)
    x = qs * (1.0 + out[clarity].to_numpy(float))
    p = out[phi].to_numpy(float)
    if qs.size >= 2:
        dx, dphi = np.gradient(x, qs), np.gradient(p, qs)
    else:
        dx = dphi = np.full(qs.size, np.nan)
    out["deeper"] = p * dx
    out["easier"] = x * dphi
    out["dN_dq"] = 1.0 - out["deeper"] - out["easier"]
    return out


@dataclass
class MarketCurve:
    """The market theory averaged over structures (open-weights draws) at each level."""

    theory: MarketTheory
    structures: list[MarketStructure]
    _cache: dict = field(default_factory=dict, repr=False)

    def level(self, q: float, coupling: float | None = None) -> dict[str, float]:
        kappa = self.theory.cfg.model.coupling if coupling is None else coupling
        key = (round(float(q), 12), round(float(kappa), 12))
        if key not in self._cache:
            self._cache[key] = self._level(q, coupling)
        return self._cache[key]

    def _level(self, q: float, coupling: float | None) -> dict[str, float]:
        states = [self.theory.solve(q, s, coupling=coupling) for s in self.structures]
        phi = float(np.mean([s.Phi for s in states]))
        top = states[0].reach.argmax()
        return {
            "q": float(q),
            "clarity": states[0].clarity,
            "Phi": phi,
            "N": float(np.mean([s.net_alignment for s in states])),
            "top_lab_phi": float(np.mean([s.phi[top] for s in states])),
            "top_lab_attack_share": float(
                np.mean([s.attempts[top].sum() / max(s.attempts.sum(), 1e-300) for s in states])
            ),
            "attempts": float(np.mean([s.attempts.sum() for s in states])),
            "converged": bool(all(s.converged for s in states)),
            "residual": float(max(s.residual for s in states)),
        }

    def secant(self, coupling: float | None = None, levels=SECANT) -> dict[str, float]:
        lo, hi = (self.level(q, coupling) for q in levels)
        out = decompose(levels[0], lo, levels[1], hi)
        out.update(N_lo=lo["N"], N_hi=hi["N"], converged=lo["converged"] and hi["converged"])
        return out

    def table(self, levels, coupling: float | None = None) -> pd.DataFrame:
        """One row per level: N, Φ and the local decomposition of dN/dq (centred differences)."""
        return decompose_curve(pd.DataFrame([self.level(q, coupling) for q in levels]))


def optimum(table: pd.DataFrame) -> float | None:
    """q* of a curve table: the level of highest N if it is interior, else None."""
    i = int(table["N"].to_numpy().argmax())
    return float(table["q"].iloc[i]) if 0 < i < len(table) - 1 else None


def kappa_threshold(
    curve: MarketCurve, *, levels=SECANT, scan: int = 11, tol: float = 0.01
) -> float | None:
    """Secant κ*: the smallest κ in [0, 1] with a negative secant slope over ``levels``.

    Scans κ on ``scan`` points, then bisects the first sign change to ``tol``. None when the
    slope is positive at every scanned κ.
    """
    return _first_negative(lambda k: curve.secant(k, levels)["slope"], scan, tol)


def local_kappa_threshold(
    curve: MarketCurve, levels, *, scan: int = 11, tol: float = 0.01
) -> float | None:
    """Local κ*: the smallest κ at which dN/dq < 0 somewhere on ``levels``."""

    def min_slope(k: float) -> float:
        return float(curve.table(levels, coupling=float(k))["dN_dq"].min())

    return _first_negative(min_slope, scan, tol)


def _first_negative(slope: Any, scan: int, tol: float) -> float | None:
    """The smallest κ in [0, 1] where ``slope(κ)`` < 0: a scan on ``scan`` points, then
    bisection of the first sign change to ``tol``; None when no scanned κ is negative."""
    ks = np.linspace(0.0, 1.0, scan)
    first = next((i for i, k in enumerate(ks) if slope(float(k)) < 0), None)
    if first is None:
        return None
    if first == 0:
        return 0.0
    lo, hi = float(ks[first - 1]), float(ks[first])
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if slope(mid) < 0 else (mid, hi)
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------
# Overlays for the sweeps' figures and the `paradox theory` outputs
# ---------------------------------------------------------------------------------------------

#: Open-weights draws averaged when the configuration leaves them to chance.
DRAWS = 4

#: The curve `paradox theory` writes: 0.1 … 0.9 in steps of 0.1, and 0.75 and 0.95.
CURVE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95)

#: Levels on which `paradox theory` looks for a negative local slope (the local κ*).
LOCAL_LEVELS = (0.75, 0.85, 0.95)


def structures_for(
    theory: MarketTheory,
    cfg: Config,
    *,
    draws: int = DRAWS,
    start: int = 1,
    stop: int | None = None,
) -> list[MarketStructure]:
    """The open-weights draws a configuration's runs would see over [start, stop].

    Deterministic selections without leaks need one structure; otherwise ``draws`` are taken
    from a generator seeded by the configuration's seed, so every level and coupling averages
    over the same draws (common random numbers, as the sweeps do).
    """
    stop = cfg.steps if stop is None else stop
    chance = cfg.policy.open_weights_selection.startswith("random")
    chance = chance or cfg.policy.leak_probability > 0
    rng = np.random.default_rng([cfg.seed, 2024])
    return theory.draw_structures(rng, draws if chance else 1, start, stop)


def _with(cfg: Config, **model_values: float) -> Config:
    return replace(cfg, model=replace(cfg.model, **model_values))


def _map(function: Any, tasks: list, workers: int | None, progress: Any, what: str) -> list:
    """``function`` over ``tasks`` in worker processes (one per core by default), in order."""
    workers = workers or min(len(tasks), len(os.sched_getaffinity(0)))
    if workers <= 1 or len(tasks) <= 1:
        out = []
        for task in tasks:
            if progress:
                progress(f"market theory, {what} {task[-1]:g}")
            out.append(function(*task))
        return out
    if progress:
        progress(f"market theory, {what} " + ", ".join(f"{t[-1]:g}" for t in tasks)
                 + f" ({workers} processes)")  # fmt: skip
    with pools.fresh_pool(workers) as pool:  # workers end with this process (sim.pools)
        return list(pool.map(function, *zip(*tasks, strict=True)))


def _curve_at(cfg: Config, qs: list[float], draws: int, start: int, kappa: float) -> pd.DataFrame:
    theory = MarketTheory(cfg)
    structures = structures_for(theory, cfg, draws=draws, start=start)
    curve = MarketCurve(MarketTheory(_with(cfg, coupling=float(kappa))), structures)
    table = curve.table(qs)
    q_star = optimum(table)
    return pd.DataFrame(
        {
            "kappa": float(kappa),
            "q": table["q"],
            "N": table["N"],
            "Phi": table["Phi"],
            "deeper": table["deeper"],
            "easier": table["easier"],
            "q_star": np.nan if q_star is None else q_star,
            "converged": table["converged"],
        }
    )


def market_curves(
    cfg: Config,
    couplings: list[float],
    qs: list[float],
    *,
    draws: int = 2,
    start: int = 1,
    workers: int | None = None,
    progress: Any = None,
) -> pd.DataFrame:
    """The market theory's N(q) per coupling, in the form of the mean-field overlay.

    Columns ``kappa``, ``q``, ``N``, ``Phi``, ``deeper``, ``easier`` (the local decomposition
    of dN/dq) and ``q_star`` (the level of highest N when it is interior, else NaN). Every
    coupling averages over the same open-weights draws; couplings run in parallel processes.
    """
    qs = sorted(float(q) for q in qs)
    tasks = [(cfg, qs, draws, start, float(k)) for k in couplings]
    frames = _map(_curve_at, tasks, workers, progress, "paradox curve at κ =")
    return pd.concat(frames, ignore_index=True)


def _threshold_at(
    cfg: Config, name: str, draws: int, start: int, scan: int, tol: float, level: float
) -> float:
    level_cfg = _with(cfg, **{name: type(getattr(cfg.model, name))(level)})
    theory = MarketTheory(level_cfg)
    curve = MarketCurve(theory, structures_for(theory, level_cfg, draws=draws, start=start))
    k = kappa_threshold(curve, scan=scan + 1, tol=tol)
    converged = all(level["converged"] for level in curve._cache.values())
    return (np.nan if k is None else k), converged


def market_threshold(
    cfg: Config,
    y: str,
    levels: list[float],
    *,
    draws: int = 2,
    start: int = 1,
    scan: int = 8,
    tol: float = 1 / 64,
    workers: int | None = None,
    progress: Any = None,
) -> pd.DataFrame:
    """Per level of the model key ``y`` (e.g. ``model.adversary_budget_mean``): the market
    theory's secant κ* over :data:`SECANT`. Columns ``y`` and ``kappa_star`` (NaN: none).
    Levels run in parallel processes."""
    name = y.split(".", 1)[1]
    tasks = [(cfg, name, draws, start, scan, tol, float(level)) for level in levels]
    found = _map(_threshold_at, tasks, workers, progress, f"threshold κ* at {y} =")
    return pd.DataFrame(
        {
            "y": [float(v) for v in levels],
            "kappa_star": [k for k, _ in found],
            "converged": [c for _, c in found],
        }
    )


def market_summary(
    cfg: Config, *, draws: int = 2, progress: Any = None
) -> tuple[dict, pd.DataFrame]:
    """What `paradox theory` reports of the market: the curve and the ``market`` block."""
    reasons = coverage(cfg)
    if reasons:
        return {"covered": False, "reasons": reasons}, pd.DataFrame()
    theory = MarketTheory(cfg)
    structures = structures_for(theory, cfg, draws=draws)
    curve = MarketCurve(theory, structures)
    if progress:
        progress("market theory: the curve over q")
    table = curve.table(list(CURVE_LEVELS))
    secant = curve.secant()
    if progress:
        progress("market theory: the thresholds κ*")
    kappa_secant = kappa_threshold(curve, scan=6, tol=1 / 32)
    coarse = list(LOCAL_LEVELS)
    kappa_local = local_kappa_threshold(curve, coarse, scan=6, tol=1 / 32)
    q_star = optimum(table)
    block = {
        "covered": True,
        "secant_levels": list(SECANT),
        "secant_slope": secant["slope"],
        "deeper": secant["deeper"],
        "easier": secant["easier"],
        "N_at_levels": [secant["N_lo"], secant["N_hi"]],
        "q_star": q_star,
        "kappa_star_secant": kappa_secant,
        "kappa_star_local": kappa_local,
        "kappa_star_local_levels": coarse,
        "structures": len(structures),
        "converged": bool(table["converged"].all() and secant["converged"]),
        "assumptions": "alignment held at an exogenous q by every lab; stationary state reached "
        "from the simulation's initial state by the expected dynamics; open weights as the "
        "configuration draws them (with leaks), averaged over the draws (docs/theory.md §4)",
    }
    return block, table


# ---------------------------------------------------------------------------------------------
# The decomposition of simulated curves and regime maps (what `paradox plot` and the report draw)
# ---------------------------------------------------------------------------------------------


def simulated_curve_decomposition(
    runs: pd.DataFrame, *, x: str = "model.fixed_alignment", group: str = "model.coupling"
) -> pd.DataFrame:
    """Per group and level, the simulated Φ, clarity and N (run means), and the local split of
    dN/dq into deeper and easier (:func:`decompose_curve`)."""
    frames = []
    for kappa, sub in runs.groupby(group, sort=True):
        means = (
            sub.groupby(x)[["mean_compromised_share", "mean_mean_clarity", "mean_net_alignment"]]
            .mean()
            .reset_index()
            .rename(columns={x: "q", "mean_compromised_share": "Phi",
                             "mean_mean_clarity": "clarity", "mean_net_alignment": "N"})
        )  # fmt: skip
        table = decompose_curve(means)
        table.insert(0, "kappa", float(kappa))
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def simulated_secant_decomposition(
    runs: pd.DataFrame,
    *,
    x: str = "model.coupling",
    y: str = "model.adversary_budget_mean",
    q: str = "model.fixed_alignment",
) -> pd.DataFrame:
    """Per (x, y) cell of a regime map, the secant slope between the lowest and highest level of
    ``q`` split into deeper and easier (:func:`decompose`, from the cell's run means)."""
    q_lo, q_hi = float(runs[q].min()), float(runs[q].max())
    rows = []
    for (xv, yv), cell in runs.groupby([x, y], sort=True):
        at = {}
        for level in (q_lo, q_hi):
            part = cell[np.isclose(cell[q], level)]
            if not len(part):
                break
            at[level] = {"Phi": float(part["mean_compromised_share"].mean()),
                         "clarity": float(part["mean_mean_clarity"].mean())}  # fmt: skip
        if len(at) < 2:
            rows.append({x: xv, y: yv, "slope": np.nan, "deeper": np.nan, "easier": np.nan})
            continue
        parts = decompose(q_lo, at[q_lo], q_hi, at[q_hi])
        rows.append({x: xv, y: yv, **parts})
    return pd.DataFrame(rows)


def mechanism_text(deeper: float, easier: float) -> str:
    """Words for a fall in net alignment by its two parts (docs/theory.md §4.3)."""
    if not (np.isfinite(deeper) and np.isfinite(easier)):
        return "its parts were not estimated"
    if easier <= 0:
        return (f"all of it deeper inversion of compromised use (deeper {deeper:.2f}); attacks "
                f"did not get easier (easier {easier:+.2f})")  # fmt: skip
    share = easier / (deeper + easier)
    if share < 0.25:
        kind = "mostly deeper inversion of compromised use, not easier attacks"
    elif share > 0.75:
        kind = "mostly easier attacks, the paradox of the article"
    else:
        kind = "both deeper inversion and easier attacks"
    return f"{kind} (deeper {deeper:.2f}, easier {easier:.2f})"
