"""The static limit of the model (docs/ODD.md §7.8): a two-player Tullock contest and the
paradox curve.

One lab, one adversary, one channel, alignment q held fixed, knowledge K = 1 and no defence
floor (d0 = 0). The adversary's effectiveness is a(q) = α + θ c(q)^ε with c(q) = κ q^γ. The
adversary spends x to win a prize V_a with probability p = (a x)^μ / ((a x)^μ + y^μ); the lab
spends y to avoid losing V_d. With prize and loss proportional to the damage q (1 + c)
(docs/ODD.md §3),

    V_a = v_a q (1 + c),    V_d = σ v_d q (1 + c),

where σ is the share of use a success compromises (σ = 1 in the original formulation; the lab's
stake is the net alignment it would lose). The derivation is in ``docs/theory.md``; the results:

    r = a V_a / V_d,   p* = r^μ / (1 + r^μ),   x* = μ V_a p*(1 − p*),   y* = μ V_d p*(1 − p*),

an interior pure-strategy equilibrium for μ ≤ 1 (and for μ > 1 while both players' participation
constraints hold, :func:`equilibrium` reports which). Since V_a / V_d = v_a / (σ v_d) does not
depend on q, p* depends on q only through a(q), and the expected net alignment is

    N(q) = q (1 − σ p*(q) (1 + c(q))).

:func:`curve`, :func:`optimum`, :func:`paradox_region` and :func:`threshold` compute the curve,
its interior optimum q*, the region where it falls, and the coupling κ* above which it has one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq, minimize_scalar

from sim import rules
from sim.config import CHANNELS, Config

Array = NDArray[np.float64]


@dataclass(frozen=True)
class StaticGame:
    """Parameters of the one-lab, one-adversary, one-channel contest."""

    coupling: float  # κ
    clarity_exponent: float  # γ
    base_vulnerability: float  # α
    clarity_gain: float  # θ
    clarity_elasticity: float  # ε
    attacker_value: float  # v_a
    defender_value: float  # v_d
    compromise_share: float = 1.0  # σ
    decisiveness: float = 1.0  # μ

    @classmethod
    def from_config(cls, cfg: Config, channel: str) -> StaticGame:
        ch = getattr(cfg.model.channels, channel)
        return cls(
            coupling=cfg.model.coupling,
            clarity_exponent=cfg.model.clarity_exponent,
            base_vulnerability=ch.base_vulnerability,
            clarity_gain=ch.clarity_gain,
            clarity_elasticity=ch.clarity_elasticity,
            attacker_value=cfg.model.attacker_value,
            defender_value=cfg.model.defender_value,
            compromise_share=cfg.model.compromise_share,
            decisiveness=cfg.model.decisiveness,
        )

    def clarity(self, q: ArrayLike) -> Array:
        return rules.clarity(np.asarray(q, dtype=float), self.coupling, self.clarity_exponent)

    def effectiveness(self, q: ArrayLike) -> Array:
        """a(q) = α + θ c(q)^ε."""
        return self.base_vulnerability + self.clarity_gain * np.power(
            self.clarity(q), self.clarity_elasticity
        )

    def prize(self, q: ArrayLike) -> Array:
        q = np.asarray(q, dtype=float)
        return self.attacker_value * q * (1.0 + self.clarity(q))

    def loss(self, q: ArrayLike) -> Array:
        q = np.asarray(q, dtype=float)
        return self.compromise_share * self.defender_value * q * (1.0 + self.clarity(q))


@dataclass(frozen=True)
class Equilibrium:
    x: Array  # attacker effort x*
    y: Array  # defender effort y*
    p: Array  # success probability p*
    valid: Array  # both participation constraints hold (always for μ ≤ 1)


def equilibrium(a: ArrayLike, prize: ArrayLike, loss: ArrayLike, mu: float = 1.0) -> Equilibrium:
    """Closed-form Nash equilibrium of the asymmetric Tullock contest (docs/ODD.md §7.8).

    First-order conditions: V_a μ p(1 − p) / x = 1 and V_d μ p(1 − p) / y = 1, hence
    x / y = V_a / V_d, a x / y = r = a V_a / V_d, and p* = r^μ / (1 + r^μ). Participation: the
    attacker's payoff V_a p − x ≥ 0 ⇔ μ (1 − p) ≤ 1; the defender's loss V_d p + y ≤ V_d ⇔
    μ p ≤ 1. Both hold for μ ≤ 1.
    """
    a, prize, loss = (np.asarray(v, dtype=float) for v in (a, prize, loss))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(loss > 0, a * prize / np.where(loss > 0, loss, 1.0), np.inf)
        rm = np.power(r, mu)
        p = np.where(np.isinf(rm), 1.0, rm / (1.0 + rm))
    share = mu * p * (1.0 - p)
    valid = (mu * (1.0 - p) <= 1.0 + 1e-12) & (mu * p <= 1.0 + 1e-12)
    return Equilibrium(x=share * prize, y=share * loss, p=p, valid=valid)


def success_probability(game: StaticGame, q: ArrayLike) -> Array:
    """p*(q), which depends on q only through a(q)."""
    q = np.asarray(q, dtype=float)
    return equilibrium(
        game.effectiveness(q),
        game.attacker_value,
        game.compromise_share * game.defender_value,
        game.decisiveness,
    ).p


def net_alignment(game: StaticGame, q: ArrayLike) -> Array:
    """N(q) = q (1 − σ p*(q) (1 + c(q)))."""
    q = np.asarray(q, dtype=float)
    return q * (1.0 - game.compromise_share * success_probability(game, q) * (1 + game.clarity(q)))


def net_alignment_slope(game: StaticGame, q: ArrayLike) -> Array:
    """dN/dq = 1 − σ p (1 + c) − q σ (p'(1 + c) + p c'), with p' = μ p (1 − p) a'/a and
    a' = θ ε c^(ε − 1) c', c' = κ γ q^(γ − 1)."""
    q = np.maximum(np.asarray(q, dtype=float), 1e-12)
    g = game
    c = g.clarity(q)
    dc = g.coupling * g.clarity_exponent * np.power(q, g.clarity_exponent - 1.0)
    a = g.effectiveness(q)
    c_safe = np.maximum(c, 1e-300)
    da = g.clarity_gain * g.clarity_elasticity * np.power(c_safe, g.clarity_elasticity - 1.0) * dc
    p = success_probability(g, q)
    dp = g.decisiveness * p * (1.0 - p) * da / a
    s = g.compromise_share
    return 1.0 - s * p * (1.0 + c) - q * s * (dp * (1.0 + c) + p * dc)


def curve(game: StaticGame, q: ArrayLike | None = None) -> pd.DataFrame:
    """The paradox curve over a grid of q: ``q, c, a, p_star, N, dN_dq, x_star, y_star``."""
    q = np.linspace(0.0, 0.995, 200) if q is None else np.asarray(q, dtype=float)
    # p* depends on q only through a(q); efforts scale with the (q-dependent) prize and loss.
    eq = equilibrium(
        game.effectiveness(q),
        game.attacker_value,
        game.compromise_share * game.defender_value,
        game.decisiveness,
    )
    share = game.decisiveness * eq.p * (1.0 - eq.p)
    return pd.DataFrame(
        {
            "q": q,
            "c": game.clarity(q),
            "a": game.effectiveness(q),
            "p_star": eq.p,
            "N": net_alignment(game, q),
            "dN_dq": net_alignment_slope(game, q),
            "x_star": share * game.prize(q),
            "y_star": share * game.loss(q),
            "valid": eq.valid,
        }
    )


_Q_HI = 1.0 - 1e-9
_GRID = np.linspace(1e-6, _Q_HI, 4001)


def optimum(game: StaticGame) -> float | None:
    """The interior maximiser q* of N on [0, 1), or None if N is highest at q → 1."""
    n = net_alignment(game, _GRID)
    best = int(np.argmax(n))
    if best >= _GRID.size - 2:
        return None
    lo, hi = _GRID[max(best - 1, 0)], _GRID[min(best + 1, _GRID.size - 1)]
    res = minimize_scalar(
        lambda q: -float(net_alignment(game, q)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return float(res.x)


def paradox_region(game: StaticGame) -> list[tuple[float, float]]:
    """Intervals of q in (0, 1) where dN/dq < 0 (more alignment, less net alignment)."""
    neg = net_alignment_slope(game, _GRID) < 0.0
    out: list[tuple[float, float]] = []
    start = None
    for i, flag in enumerate(neg):
        if flag and start is None:
            start = i
        if (not flag or i == neg.size - 1) and start is not None:
            end = i if flag else i - 1
            lo = _refine(game, _GRID[start - 1], _GRID[start]) if start > 0 else float(_GRID[0])
            hi = _refine(game, _GRID[end], _GRID[end + 1]) if end < neg.size - 1 else 1.0
            out.append((lo, hi))
            start = None
    return out


def _refine(game: StaticGame, lo: float, hi: float) -> float:
    return float(brentq(lambda q: float(net_alignment_slope(game, q)), lo, hi, xtol=1e-12))


def _min_slope(game: StaticGame, kappa: float) -> float:
    return float(net_alignment_slope(replace(game, coupling=kappa), _GRID).min())


def threshold(game: StaticGame) -> float | None:
    """κ*: the smallest coupling in [0, 1] at which N has a region of negative slope.

    Below κ* the curve rises on all of [0, 1); None if there is no paradox even at κ = 1. Found
    by scanning κ and refining the sign change of min_q dN/dq with Brent's method.
    """
    kappas = np.linspace(0.0, 1.0, 201)
    slopes = np.array([_min_slope(game, k) for k in kappas])
    negative = np.flatnonzero(slopes < 0.0)
    if negative.size == 0:
        return None
    first = int(negative[0])
    if first == 0:
        return 0.0
    return float(
        brentq(lambda k: _min_slope(game, k), kappas[first - 1], kappas[first], xtol=1e-10)
    )


def best_response_iteration(
    a: float, prize: float, loss: float, mu: float = 1.0, steps: int = 2000, damping: float = 0.5
) -> tuple[float, float]:
    """Damped simultaneous best responses, solved numerically (a cross-check of the closed
    form): each player's best response is found by bounded scalar optimisation."""
    x, y = prize / 4, loss / 4

    def p(xx: float, yy: float) -> float:
        z = (a * xx) ** mu
        return z / (z + yy**mu) if z + yy**mu > 0 else 0.0

    for _ in range(steps):
        bx = minimize_scalar(
            lambda v, y=y: -(prize * p(v, y) - v),
            bounds=(0, prize),
            method="bounded",
            options={"xatol": 1e-12},
        ).x
        by = minimize_scalar(
            lambda v, x=x: loss * p(x, v) + v,
            bounds=(0, loss),
            method="bounded",
            options={"xatol": 1e-12},
        ).x
        nx, ny = x + damping * (bx - x), y + damping * (by - y)
        if abs(nx - x) + abs(ny - y) < 1e-12:
            return nx, ny
        x, y = nx, ny
    return x, y


def accessible_channels(cfg: Config) -> list[str]:
    """Channels an adversary can use under the configured access policy (see docs/ODD.md)."""
    pol = cfg.policy
    any_open = pol.open_weights_share > 0 and round(pol.open_weights_share * cfg.model.n_labs) > 0
    out = []
    if any_open or pol.leak_probability > 0:
        out.append("weights")
    if any_open or pol.api_access_share > 0:
        out.append("prompt")
    out.append("output")
    return [k for k in CHANNELS if k in out]


def evaluation_quality(cfg: Config) -> float:
    """The q at which efforts are reported: the fixed alignment if set, else the initial q."""
    if cfg.model.fixed_alignment is not None:
        return float(cfg.model.fixed_alignment)
    return float(-np.expm1(-cfg.model.initial_alignment / cfg.model.alignment_scale))
