"""Mean-field dynamics of the arms race: an ODE for population averages (docs/theory.md §2).

The state is that of a representative lab (alignment capital A, defence D_k, compromised shares
φ_k, and its policy s, ω_k when labs best-respond) and of the adversary population (mean effort
x, mean knowledge K_k, Roth–Erev propensities R_k, the active share u), plus the coupling κ and
the share of labs with open weights. Its right-hand side is the *expected one-step increment* of
the simulation's step map, taken at the population means, so the ODE dX/dt = E[X_{t+1}] − X_t
shares its fixed points with the simulation's expected dynamics and approximates their
transients. It is solved with ``scipy.integrate.solve_ivp``.

What it neglects (see ``docs/theory.md``): heterogeneity of reach, budgets and initial knowledge
(everything is evaluated at means, so Jensen gaps remain where outcomes are nonlinear in them);
the split of labs into open-weights and closed types beyond where weights attacks land (they
compromise only open labs; targeting averages access over labs); covariance
between an adversary's knowledge and its success; knowledge diffusion on G (zero for identical
adversaries); the fixed deterrence delay T (replaced by an exponential return at rate 1/T);
imitation (it does not move the mean of identical agents); and time discretisation (one step is
one unit of continuous time). For identical labs and adversaries with fixed strategies and no
knowledge gain from success, the expected step map is exact, and seed-averaged simulations
converge to it as N and M grow. For markets that differ in reach, budgets or access, use the
market theory of :mod:`sim.market` (docs/theory.md §4), which keeps every lab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

from sim import rules, strategies
from sim.config import CHANNELS, Config
from sim.rules import foresight_factor, lab_objective, lab_policy_step


@dataclass(frozen=True)
class _Layout:
    """Positions of the state variables in the ODE vector."""

    names: tuple[str, ...] = (
        "A", "D_w", "D_p", "D_o", "phi_w", "phi_p", "phi_o", "s", "om_w", "om_p", "om_o",
        "x", "K_w", "K_p", "K_o", "R_w", "R_p", "R_o", "u", "kappa", "open",
    )  # fmt: skip

    def index(self, name: str) -> int:
        return self.names.index(name)


LAYOUT = _Layout()
_A, _D, _PHI, _S, _OM, _X, _K, _R, _U, _KAPPA, _OPEN = (
    0, slice(1, 4), slice(4, 7), 7, slice(8, 11), 11, slice(12, 15), slice(15, 18), 18, 19, 20,
)  # fmt: skip


class _NotSmooth(Exception):
    """Raised inside the integrator when the right-hand side needs too many evaluations."""


class MeanField:
    """The mean-field ODE for a configuration (the same :class:`Config` a run uses)."""

    def __init__(self, config: Config) -> None:
        self.cfg = config
        m = config.model
        channels = rules.ChannelParameters.from_model(m)
        self.base, self.gain, self.elasticity = channels.base, channels.gain, channels.elasticity
        self.severity, self.k0 = channels.severity, channels.initial_knowledge
        self.best_response = rules.BestResponse(m.decisiveness)
        self.adversary_strategy = strategies.for_adversaries(config.learning.adversary.rule)
        self.lab_strategy = strategies.for_labs(config.learning.lab.rule)

    # ------------------------------------------------------------------ state

    def initial_state(self) -> np.ndarray:
        m, pol, lab, adv = (
            self.cfg.model, self.cfg.policy, self.cfg.learning.lab, self.cfg.learning.adversary,
        )  # fmt: skip
        split = np.array([lab.defence_split.weights, lab.defence_split.prompt,
                          lab.defence_split.output])  # fmt: skip
        n_open = round(pol.open_weights_share * m.n_labs)
        state = np.zeros(len(LAYOUT.names))
        state[_A] = m.initial_alignment
        state[_D] = m.initial_defence
        state[_S] = min(lab.alignment_share, 1.0 - pol.defence_mandate)
        state[_OM] = split / split.sum()
        state[_X] = adv.effort_share * m.adversary_budget_mean
        state[_K] = self.k0
        state[_R] = 1.0
        state[_U] = 1.0
        state[_KAPPA] = m.coupling
        state[_OPEN] = n_open / m.n_labs
        return state

    # ------------------------------------------------------------------ derived quantities

    def _quality(self, capital: float) -> float:
        m = self.cfg.model
        if m.fixed_alignment is not None:
            return float(m.fixed_alignment)
        return float(rules.alignment_quality(capital, m.alignment_scale))

    def _attack_view(self, state: np.ndarray) -> dict[str, np.ndarray | float]:
        """Targeting and contest quantities at the current state."""
        m, pol, acfg = self.cfg.model, self.cfg.policy, self.cfg.learning.adversary
        n_labs, n_adv = m.n_labs, m.n_adversaries
        q = self._quality(state[_A])
        kappa = state[_KAPPA]
        c = kappa * q**m.clarity_exponent  # rules.clarity for a scalar q (Python's pow)
        a_lab = rules.attackability(np.array([c]), self.base, self.gain, self.elasticity)[0]
        defence = state[_D] + m.defence_floor
        x = state[_X]
        knowledge = state[_K]
        p = rules.contest_probability(knowledge * a_lab * x, defence, m.decisiveness)
        prize = m.attacker_value * (1.0 / n_labs) * q * (1.0 + c)
        open_share = state[_OPEN]
        # Share of labs accessible per channel, for adversaries with and without query access.
        access_api = np.array([open_share, 1.0, 1.0])
        access_none = np.array([open_share, open_share, 1.0])
        util = acfg.rationality * (p * prize - x)
        shares = np.zeros(3)
        for weight, acc in (
            (pol.api_access_share, access_api),
            (1 - pol.api_access_share, access_none),
        ):
            if weight <= 0:
                continue
            if self.adversary_strategy.reinforces_channels:
                r = state[_R] * (acc > 0)
                probs = r / r.sum() if r.sum() > 0 else acc / acc.sum()
            else:
                logits = np.where(acc > 0, util + np.log(np.maximum(acc, 1e-300)), -np.inf)
                logits -= logits.max()
                probs = np.exp(logits) / np.exp(logits).sum()
            shares += weight * probs
        attempting = state[_U] * (1.0 if x > 0 else 0.0)
        per_lab = attempting * n_adv * shares / n_labs  # expected attempts per lab and channel
        return {
            "q": q, "c": c, "a_lab": a_lab, "defence": defence, "p": p, "prize": prize,
            "shares": shares, "per_lab": per_lab, "attempting": attempting, "open": open_share,
        }  # fmt: skip

    def _fresh(self, view: dict, carried: float) -> tuple[float, np.ndarray]:
        """Expected fresh compromise per lab, and its split over channels.

        With M independent adversaries each landing on this lab's channel k with probability
        P_k / N, E[Π_k (1 − σ p_k)^n_k] = (1 − Σ_k (P_k / N) σ p_k)^(uM) exactly (multinomial).
        """
        m = self.cfg.model
        hit = view["shares"] / m.n_labs * m.compromise_share * view["p"]
        exponent = view["attempting"] * m.n_adversaries
        open_share = view["open"]
        if 0.0 < open_share < 1.0:
            # Weights attacks land only on the labs whose weights are open: average the
            # surviving share over open labs (all of the weights attacks, spread over fewer
            # labs) and closed ones (none of them).
            weights_hit = hit[0] / open_share
            # a single attempt cannot compromise more than all of a lab's clean use
            open_base = min(max(1.0 - weights_hit - hit[1:].sum(), 0.0), 1.0)
            closed_base = min(max(1.0 - hit[1:].sum(), 0.0), 1.0)
            survive = open_share * open_base**exponent + (1.0 - open_share) * closed_base**exponent
        else:
            survive = (1.0 - hit.sum()) ** exponent
        fresh = (1.0 - carried) * (1.0 - survive)
        weight = view["shares"] * view["p"]
        split = weight / weight.sum() if weight.sum() > 0 else np.zeros(3)
        return fresh, split

    # ------------------------------------------------------------------ dynamics

    def increment(self, state: np.ndarray) -> np.ndarray:
        """E[X_{t+1}] − X_t at the population means (the ODE's right-hand side)."""
        m, pol = self.cfg.model, self.cfg.policy
        acfg = self.cfg.learning.adversary
        d = np.zeros_like(state)
        s, omega = state[_S], state[_OM]
        budget = m.lab_budget_mean
        decoupling = pol.decoupling_share * budget
        investable = budget - decoupling
        spill = pol.publication_rate * s * investable if m.n_labs > 1 else 0.0
        d[_A] = -m.alignment_decay * state[_A] + s * investable + spill
        d[_D] = -m.defence_decay * state[_D] + (1.0 - s) * investable * omega
        d[_KAPPA] = -pol.decoupling_efficiency * decoupling * state[_KAPPA]
        d[_OPEN] = pol.leak_probability * (1.0 - state[_OPEN])

        # After leaks, investment and decoupling the step publishes, then targets.
        after = state + d
        view = self._attack_view(after)
        c_bar = view["c"]
        k_pub = after[_K] + pol.publication_rate * np.maximum(c_bar - after[_K], 0.0)
        after_pub = after.copy()
        after_pub[_K] = k_pub
        view = self._attack_view(after_pub)

        phi = state[_PHI]
        carried = m.compromise_persistence * phi.sum()
        fresh, split = self._fresh(view, carried)
        d[_PHI] = m.compromise_persistence * phi + fresh * split - phi

        success = view["attempting"] * view["shares"] * view["p"]  # per adversary, per channel
        k_decayed = (1.0 - m.knowledge_decay) * k_pub
        d[_K] = k_decayed + m.knowledge_gain * (1.0 - k_decayed) * success - state[_K]

        if self.adversary_strategy.best_responds:
            x_br = self.best_response.effort(
                np.full(3, view["prize"]),
                k_pub * view["a_lab"],
                view["defence"],
                m.adversary_budget_mean,
            )
            target = float(view["shares"] @ x_br) if view["shares"].sum() > 0 else state[_X]
            d[_X] = acfg.effort_adjustment * (target - state[_X])
        if self.adversary_strategy.reinforces_channels:
            reward = success * view["prize"]
            spill_r = acfg.experimentation * reward / 2.0
            reinforce = (1.0 - acfg.experimentation) * reward - spill_r + spill_r.sum()
            d[_R] = -acfg.forgetting * state[_R] * view["attempting"] + reinforce
        if pol.detection_probability > 0 and pol.deterrence_steps > 0:
            d[_U] = (
                -pol.detection_probability * view["attempting"]
                + (1.0 - state[_U]) / pol.deterrence_steps
            )
        if self.lab_strategy.best_responds:
            d[_S], d[_OM] = self._lab_gradient_step(state + d, view, k_pub)
        return d

    def _lab_gradient_step(self, after, view, knowledge) -> tuple[float, np.ndarray]:
        """The labs' projected gradient step, taken (as in the simulation) after this step's
        compromise, on the same one-step-ahead objective (:func:`sim.rules.lab_objective`)."""
        m, pol, lcfg = self.cfg.model, self.cfg.policy, self.cfg.learning.lab
        reach = np.array([1.0 / m.n_labs])
        stake = foresight_factor(lcfg.foresight, m.defence_decay, m.compromise_persistence)

        def objective(s: np.ndarray, om: np.ndarray) -> np.ndarray:
            return lab_objective(
                s, om,
                capital=np.array([after[_A]]),
                investable=np.array([m.lab_budget_mean * (1 - pol.decoupling_share)]),
                defence=after[_D][None, :],
                compromised=after[_PHI][None, :],
                seen_attempts=view["per_lab"][None, :],
                seen_strength=(knowledge * after[_X])[None, :],
                reach=reach, coupling=after[_KAPPA], base=self.base, gain=self.gain,
                elasticity=self.elasticity, severity=self.severity, liability=pol.liability,
                model=m, stake_factor=stake,
            )  # fmt: skip

        new_s, new_om = lab_policy_step(
            objective,
            np.array([after[_S]]),
            after[_OM][None, :],
            step_size=lcfg.step_size,
            scale=np.array([m.defender_value * stake * reach[0]]),
            ceiling=1.0 - pol.defence_mandate,
            on_simplex=lcfg.split_step == "simplex",
        )
        return float(new_s[0]) - after[_S], new_om[0] - after[_OM]

    # ------------------------------------------------------------------ solving

    def solve(
        self,
        steps: int,
        *,
        method: str = "RK45",
        rtol: float = 1e-7,
        max_evaluations: int | None = None,
        fallback: bool = True,
    ) -> pd.DataFrame:
        """Integrate the ODE from the initial state to t = steps; one row per integer t.

        The labs' best response in the right-hand side is a maximisation, so the right-hand
        side can jump (e.g. a corner solution switching sides with ``model.fixed_alignment``);
        an adaptive integrator then shrinks its step without end. After ``max_evaluations``
        right-hand-side calls (default 2,000 plus 20 per unit of time; the default
        configuration needs about 1,000 for 100 steps) the integration stops and, with
        ``fallback``, the expected step map (:meth:`iterate`) is returned instead.
        ``table.attrs["method"]`` says which was used.
        """
        limit = max_evaluations or 2000 + 20 * steps
        calls = 0

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            nonlocal calls
            calls += 1
            if calls > limit:
                raise _NotSmooth
            return self.increment(y)

        t_eval = np.arange(steps + 1, dtype=float)
        try:
            sol = solve_ivp(rhs, (0.0, float(steps)), self.initial_state(), t_eval=t_eval,
                            method=method, rtol=rtol, atol=1e-10)  # fmt: skip
        except _NotSmooth:
            if not fallback:
                raise RuntimeError(
                    f"mean-field integration needed more than {limit} evaluations "
                    "(a non-smooth right-hand side); use iterate()"
                ) from None
            table = self.iterate(steps)
            table.attrs["method"] = f"expected step map ({method} stopped after {limit} calls)"
            return table
        if not sol.success:  # pragma: no cover - reported, not expected
            raise RuntimeError(f"mean-field integration failed: {sol.message}")
        table = self.outcomes(sol.t, sol.y.T)
        table.attrs["method"] = method
        return table

    def iterate(self, steps: int) -> pd.DataFrame:
        """The expected step map X_{t+1} = X_t + increment(X_t), for comparison with the ODE."""
        states = [self.initial_state()]
        for _ in range(steps):
            states.append(states[-1] + self.increment(states[-1]))
        return self.outcomes(np.arange(steps + 1, dtype=float), np.array(states))

    def outcomes(self, times: np.ndarray, states: np.ndarray) -> pd.DataFrame:
        """Outcomes named as the simulation's (the subset the mean field describes)."""
        m = self.cfg.model
        rows = []
        for t, state in zip(times, states, strict=True):
            q = self._quality(state[_A])
            c = state[_KAPPA] * q**m.clarity_exponent  # rules.clarity, scalar q
            phi = state[_PHI]
            view = self._attack_view(state)
            investable = m.lab_budget_mean * (1 - self.cfg.policy.decoupling_share)
            row = {
                "step": t,
                "mean_alignment": q,
                "mean_clarity": c,
                "coupling": state[_KAPPA],
                "compromised_share": phi.sum(),
                "net_alignment": q * (1.0 - phi.sum() * (1.0 + c)),
                "harm_residual": (1.0 - q) * m.residual_severity,
                "harm_exploitation": q * (1.0 + c) * float(phi @ self.severity),
                "spend_defence": m.n_labs * (1.0 - state[_S]) * investable if t > 0 else 0.0,
                "spend_attack": (
                    view["attempting"] * m.n_adversaries * state[_X] if t > 0 else 0.0
                ),
                "mean_alignment_share": state[_S],
                "adversaries_active": state[_U] * m.n_adversaries,
                "open_reach": state[_OPEN],
            }
            row["harm_total"] = row["harm_residual"] + row["harm_exploitation"]
            for k, name in enumerate(CHANNELS):
                row[f"knowledge_{name}"] = state[_K][k]
                row[f"defence_{name}"] = state[_D][k]
                row[f"attack_share_{name}"] = view["shares"][k]
            rows.append(row)
        return pd.DataFrame(rows)
