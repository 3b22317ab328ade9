"""Every rule of the model once, in plain numpy: the specification the engine is tested against.

Each function states one rule of ``docs/ODD.md`` over whole arrays, with its equation in the
docstring and the section (§n of ``docs/ODD.md``) that gives its reason. The rules are used by
three layers:

- the engine (:mod:`sim.model`) calls the cheap ones directly, and runs the hot ones (targeting,
  the contest, the adversaries' adaptation, the labs' best response) in the compiled twins of
  :mod:`sim.kernels`, each tested against its rule here (``tests/test_engine.py``);
- the theories (:mod:`sim.meanfield`, :mod:`sim.market`, :mod:`sim.static_game`) evaluate the same
  rules in expectation;
- the learning strategies (:mod:`sim.strategies`) name which rules an agent follows.

Nothing here touches Mesa, global state or numba; a function that draws takes a
``numpy.random.Generator``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from sim.config import CHANNELS

Array = NDArray[np.float64]
Float = Array
Bool = NDArray[np.bool_]

#: The golden ratio conjugate (√5 − 1)/2, the interval ratio of golden-section search.
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0

#: A best-responding adversary for which attacking does not pay, and whose adjusted effort is
#: below this share of its budget, stops attacking (effort 0) instead of creeping toward zero.
MIN_EFFORT_SHARE = 0.01


#: Values of q and c are floored here before raising them to a power below one, so that slopes
#: stay finite at zero (they are multiplied by exactly zero when the coupling κ is zero).
_TINY = 1e-12


class ChannelParameters(NamedTuple):
    """The per-channel constants of §2, one array of three (weights, prompt, output) each."""

    base: Array  # α_k, base vulnerability
    gain: Array  # θ_k, how much clarity adds
    elasticity: Array  # ε_k, how sharply it adds
    severity: Array  # h_k, harm per unit of compromised use
    initial_knowledge: Array  # mean K_k at t = 0

    @classmethod
    def from_model(cls, model_cfg: Any) -> ChannelParameters:
        """From ``config.model`` (its ``channels`` block, in the order of ``CHANNELS``)."""
        ch = [getattr(model_cfg.channels, name) for name in CHANNELS]
        return cls(
            np.array([c.base_vulnerability for c in ch]),
            np.array([c.clarity_gain for c in ch]),
            np.array([c.clarity_elasticity for c in ch]),
            np.array([c.severity for c in ch]),
            np.array([c.initial_knowledge for c in ch]),
        )


# ---------------------------------------------------------------------------------------------
# Alignment, clarity and the attack effectiveness they imply (§2)
# ---------------------------------------------------------------------------------------------


def alignment_quality(capital: Array, scale: float) -> Array:
    """q = 1 − exp(−A / A0), in [0, 1)."""
    return -np.expm1(-np.asarray(capital, dtype=float) / scale)


def clarity(quality: Array, coupling: float, exponent: float) -> Array:
    """Value-direction clarity c = κ q^γ, in [0, κ]."""
    return coupling * np.power(quality, exponent)


def clarity_slope(quality: Array, coupling: float, exponent: float) -> Array:
    """dc/dq = κ γ q^(γ−1); exactly zero when κ = 0."""
    q = np.maximum(quality, _TINY)
    return coupling * exponent * np.power(q, exponent - 1.0)


def attackability(clar: Array, base: Array, gain: Array, elasticity: Array) -> Array:
    """Per lab and channel, alpha_k + theta_k c_i^eps_k (shape N x 3).

    The attacker's effectiveness is K_jk times this (§2): clarity is the only route by which
    alignment enters it.
    """
    c = np.asarray(clar, dtype=float)[:, None]
    return base[None, :] + gain[None, :] * np.power(c, elasticity[None, :])


def attackability_slope(clar: Array, gain: Array, elasticity: Array) -> Array:
    """d(alpha + theta c^eps)/dc = theta eps c^(eps−1) (N x 3), finite at c = 0."""
    c = np.maximum(np.asarray(clar, dtype=float), _TINY)[:, None]
    return gain[None, :] * elasticity[None, :] * np.power(c, elasticity[None, :] - 1.0)


# ---------------------------------------------------------------------------------------------
# The Tullock contest (§3, step 5)
# ---------------------------------------------------------------------------------------------


def contest_probability(attack: Array, defence: Array, decisiveness: float) -> Array:
    """Success probability p = z^μ / (z^μ + Y^μ) for attack strength z = a x and defence Y = D + d0.

    Written as z / (z + Y) for μ = 1 (one division) and as 1 / (1 + (Y/z)^μ) otherwise (for
    numerical range). p = 0 when z = 0 (no attack), and p = 1 when Y = 0 < z (an undefended
    target).
    """
    z = np.asarray(attack, dtype=float)
    y = np.asarray(defence, dtype=float)
    z, y = np.broadcast_arrays(z, y)
    out = np.zeros(z.shape)
    pos = z > 0
    if decisiveness == 1.0:
        np.divide(z, z + y, out=out, where=pos)
        return out
    ratio = np.divide(y, z, out=np.zeros(z.shape), where=pos)
    np.divide(1.0, 1.0 + np.power(ratio, decisiveness), out=out, where=pos)
    return out


def contest_elasticity(prob: Array, decisiveness: float) -> Array:
    """∂p / ∂ log z = μ p (1 − p): how the success probability responds to attack strength."""
    return decisiveness * prob * (1.0 - prob)


#: Effort, as a share of the prize, put against an undefended target (see BestResponse.effort).
TOKEN_EFFORT = 1e-6


class BestResponse:
    """The attacker's myopic best response in a Tullock contest.

    With prize V, effectiveness a and defence Y, the attacker maximises V p(a x, Y) − x over x ≥ 0.
    Writing t = a x / Y and ρ = V a / Y, this is max_t ρ t^μ/(t^μ + 1) − t: the optimal ratio t*
    depends on ρ and μ only. For μ = 1 it is closed form, t* = max(0, √ρ − 1).

    For other μ the interior optimum is tabulated exactly by running the first-order condition
    backwards: ρ(t) = (t^μ + 1)² t^(1−μ) / μ gives the ρ at which t is a stationary point, and the
    branch where ρ(t) increases is the maximum. The optimum is interior where its payoff is
    positive, i.e. above a threshold ρ_c (for μ > 1 the optimum jumps there from 0 to an interior
    value); below ρ_c the best response is not to attack.
    """

    def __init__(self, decisiveness: float, n_table: int = 20_000) -> None:
        self.mu = float(decisiveness)
        self._table: tuple[Array, Array, float] | None = None
        if self.mu != 1.0:
            self._table = self._build_table(n_table)

    def _build_table(self, n: int) -> tuple[Array, Array, float]:
        mu = self.mu
        t = np.geomspace(1e-9, 1e9, n)
        log_rho = 2.0 * np.log1p(np.power(t, mu)) + (1.0 - mu) * np.log(t) - np.log(mu)
        rising = np.gradient(log_rho) > 0.0
        start = int(np.argmax(rising))  # for μ > 1, ρ(t) first falls, then rises
        t, log_rho = t[start:], log_rho[start:]
        payoff = np.exp(log_rho) * _tullock_share(t, mu) - t
        pays = np.flatnonzero(payoff >= 0.0)
        first = int(pays[0]) if pays.size else t.size - 1
        if first > 0:  # interpolate the threshold between the last losing and first paying point
            w = payoff[first] / (payoff[first] - payoff[first - 1])
            log_rho_c = log_rho[first] - w * (log_rho[first] - log_rho[first - 1])
        else:
            log_rho_c = log_rho[0]
        return log_rho[first:], t[first:], float(log_rho_c)

    def ratio(self, rho: Array) -> Array:
        """Optimal t* = a x* / Y for the given ρ = V a / Y."""
        rho = np.asarray(rho, dtype=float)
        if self._table is None:
            return np.maximum(np.sqrt(np.maximum(rho, 0.0)) - 1.0, 0.0)
        log_rho, table, log_rho_c = self._table
        with np.errstate(divide="ignore"):
            lr = np.log(np.maximum(rho, 1e-300))
        out = np.interp(lr, log_rho, table)
        high = lr > log_rho[-1]
        if high.any():
            # beyond the table the optimum grows like ρ^(1/(μ+1))
            out[high] = table[-1] * np.exp((lr[high] - log_rho[-1]) / (self.mu + 1.0))
        out[lr < log_rho_c] = 0.0
        return out

    def effort(self, prize: Array, effectiveness: Array, defence: Array, cap: Array) -> Array:
        """x* = t* Y / a, clipped to [0, cap]; zero where the attack has no effectiveness.

        Against no defence at all (Y = 0) any positive effort wins and no best effort exists;
        the attacker then puts in a token effort of 10⁻⁶ V, so that it keeps attacking.
        """
        a = np.asarray(effectiveness, dtype=float)
        y = np.asarray(defence, dtype=float)
        v = np.asarray(prize, dtype=float)
        pos = a > 0
        safe_a = np.where(pos, a, 1.0)
        rho = np.where(pos, v * safe_a / np.maximum(y, 1e-300), 0.0)
        x = np.where(pos, self.ratio(rho) * y / safe_a, 0.0)
        x = np.where(pos & (y <= 0.0) & (v > 0.0), TOKEN_EFFORT * v, x)
        if np.isscalar(cap) or np.ndim(cap) == 0:
            return np.clip(x, 0.0, float(cap))
        return np.clip(x, 0.0, cap)


def _tullock_share(t: Array, mu: float) -> Array:
    tm = np.power(t, mu)
    return tm / (tm + 1.0)


# ---------------------------------------------------------------------------------------------
# Value, compromise, harm and net alignment (§3, steps 4 and 6; §5)
# ---------------------------------------------------------------------------------------------


def damage_value(reach: Array, quality: Array, clar: Array, scale: float) -> Array:
    """Prize or stake scale · w_i · q_i · (1 + c_i): a cleanly inverted, widely used model."""
    return scale * reach * quality * (1.0 + clar)


def net_alignment(quality: Array, clar: Array, compromised: Array) -> Array:
    """n_i = q_i (1 − φ_i (1 + c_i)): clean use scores q, compromised use scores −c q."""
    return quality * (1.0 - compromised * (1.0 + clar))


def fresh_compromise(successes: Array, share: float) -> Array:
    """Share of (not yet compromised) use compromised by this many independent successes."""
    return -np.expm1(np.asarray(successes, dtype=float) * np.log1p(-min(share, 1.0 - 1e-15)))


def update_compromise(
    compromised: Array, successes: Array, share: float, persistence: float
) -> Array:
    """Compromised share per lab and channel (N x 3) after one step.

    A share ρ of last step's compromised use is still compromised; the successes of this step
    compromise a share 1 − (1 − σ)^S of the rest, attributed to channels in proportion to their
    successes.
    """
    carried = persistence * compromised
    total_carried = carried.sum(axis=1)
    s_total = successes.sum(axis=1)
    fresh = (1.0 - total_carried) * fresh_compromise(s_total, share)
    split = np.divide(
        successes, s_total[:, None], out=np.zeros_like(carried), where=s_total[:, None] > 0
    )
    return carried + fresh[:, None] * split


def residual_harm(reach: Array, quality: Array, severity: float) -> float:
    """Σ_i w_i (1 − q_i) h0: the harm alignment exists to prevent, every step."""
    return float(np.sum(reach * (1.0 - quality)) * severity)


def exploitation_harm(
    reach: Array, quality: Array, clar: Array, compromised: Array, severity: Array
) -> Array:
    """Per lab and channel, w_i q_i (1 + c_i) h_k φ_ik (N x 3)."""
    scale = reach * quality * (1.0 + clar)
    return scale[:, None] * compromised * severity[None, :]


# ---------------------------------------------------------------------------------------------
# Marginal return on alignment (§5, §7.4)
# ---------------------------------------------------------------------------------------------


def expected_compromise(carried: Array, log_survival: Array) -> Array:
    """E[φ_i] = ρφ_prev + (1 − ρφ_prev)(1 − Π_j (1 − σ p_ij)); ``log_survival`` = Σ log(1 − σp)."""
    return carried + (1.0 - carried) * (-np.expm1(log_survival))


def marginal_return(
    *,
    quality: Array,
    clar: Array,
    clar_slope: Array,
    carried: Array,
    attack_lab: NDArray[np.intp],
    attack_channel: NDArray[np.intp],
    attack_prob: Array,
    attack_base: Array,
    attack_gain_slope: Array,
    share: float,
    decisiveness: float,
) -> tuple[Array, Array]:
    """∂E[n_i]/∂q_i with attack efforts, targets, defences and knowledge held at their values.

    ``attack_*`` describe this step's attempts: target lab and channel, success probability p,
    and the attempt's clarity-free factor A_ik = alpha_k + theta_k c_i^eps_k (the attack's
    effectiveness is K_jk A_ik). ``attack_gain_slope`` is dA_ik/dc at the attempt's target.

    Exact from the contest function: dp/dq = μ p (1 − p) (dA/dc / A) (dc/dq). Returns the
    marginal return and E[n_i] (both length N).
    """
    n = quality.shape[0]
    one_minus = np.maximum(1.0 - share * attack_prob, 1e-300)
    log_surv = np.bincount(attack_lab, weights=np.log(one_minus), minlength=n)
    dlogp_dc = np.divide(
        attack_gain_slope, attack_base, out=np.zeros_like(attack_base), where=attack_base > 0
    )
    dp_dq = contest_elasticity(attack_prob, decisiveness) * dlogp_dc * clar_slope[attack_lab]
    dlog_surv = np.bincount(attack_lab, weights=-share * dp_dq / one_minus, minlength=n)
    del attack_channel  # channels enter through attack_base and attack_gain_slope
    return marginal_return_from_sums(quality, clar, clar_slope, carried, log_surv, dlog_surv)


def marginal_return_from_sums(
    quality: Array, clar: Array, clar_slope: Array, carried: Array, log_surv: Array,
    dlog_surv: Array,
) -> tuple[Array, Array]:  # fmt: skip
    """The lab-level part of :func:`marginal_return`, from the per-lab sums over attempts of
    log(1 − σ p) (``log_surv``) and of −σ (∂p/∂q) / (1 − σ p) (``dlog_surv``)."""
    e_phi = expected_compromise(carried, log_surv)
    de_phi = -(1.0 - carried) * np.exp(log_surv) * dlog_surv
    e_n = quality * (1.0 - e_phi * (1.0 + clar))
    slope = 1.0 - e_phi * (1.0 + clar) - quality * (de_phi * (1.0 + clar) + e_phi * clar_slope)
    return slope, e_n


# ---------------------------------------------------------------------------------------------
# Choice, knowledge and small helpers
# ---------------------------------------------------------------------------------------------


def sample_logits(logits: Array, uniforms: Array) -> NDArray[np.intp]:
    """One categorical draw per row from unnormalised log-probabilities (−inf = unavailable).

    Inverse-CDF sampling with one uniform per row; returns −1 for rows with no option.
    """
    top = logits.max(axis=1)
    has = np.isfinite(top)
    w = np.exp(logits - np.where(has, top, 0.0)[:, None])
    cum = np.cumsum(w, axis=1)
    threshold = uniforms * cum[:, -1]
    idx = (cum <= threshold[:, None]).sum(axis=1)
    idx = np.minimum(idx, logits.shape[1] - 1)
    return np.where(has, idx, -1)


def diffuse_knowledge(
    knowledge: Array, src: NDArray[np.intp], dst: NDArray[np.intp], degree: Array, rate: float
) -> Array:
    """Each adversary moves toward better-informed neighbours (Jacobi update, all at once).

    K_j ← K_j + η (1/deg_j) Σ_{l ∈ N(j)} max(0, K_l − K_j). Knowledge only ever rises, and
    never past the best-informed neighbour's (the update is a convex combination since η ≤ 1).
    """
    if src.size == 0 or rate == 0.0:
        return knowledge
    gap = np.maximum(knowledge[dst] - knowledge[src], 0.0)
    out = knowledge.copy()
    inv_deg = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    for k in range(knowledge.shape[1]):
        pull = np.bincount(src, weights=gap[:, k], minlength=knowledge.shape[0])
        out[:, k] += rate * pull * inv_deg
    return out


def reach_weights(n: int, exponent: float) -> Array:
    """Zipf reach w_i ∝ i^−ζ, summing to 1 (heavy-tailed deployment shares)."""
    w = np.power(np.arange(1, n + 1, dtype=float), -exponent)
    return w / w.sum()


def open_weights(
    n: int, share: float, selection: str, rng: np.random.Generator | None
) -> NDArray[np.bool_]:
    """Which of n labs (largest reach first) publish open weights at t = 0 (§2, §6).

    round(share · n) labs: the largest (``largest``), the smallest (``smallest``), or a uniform
    random set drawn with ``rng`` (``random``; with ``rng=None`` the expected indicator
    ``n_open / n`` per lab is returned instead, as floats). ``random_top_open`` and
    ``random_top_closed`` are the two strata of ``random`` by the largest lab's access: it is
    open (closed) and the other open labs are a uniform random set of the rest. Blocked sweep
    replicates use them in the proportion n_open / n (ODD §7.1, docs/sweeps.md).
    """
    n_open = round(share * n)
    out = np.zeros(n, dtype=bool)
    if selection == "largest":
        out[:n_open] = True
    elif selection == "smallest":
        out[n - n_open :] = True
    elif rng is None:
        if selection == "random":
            return np.full(n, n_open / n)
        top = selection == "random_top_open"
        rest = (n_open - top) / (n - 1) if n > 1 else 0.0
        return np.array([float(top)] + [rest] * (n - 1))
    elif selection == "random":
        out[rng.choice(n, size=n_open, replace=False)] = True
    else:
        top = selection == "random_top_open"
        if not 0 <= n_open - top <= n - 1:
            raise ValueError(f"{selection} needs 0 < round(share x n) < n (n={n}, share={share})")
        out[0] = top
        out[1 + rng.choice(n - 1, size=n_open - top, replace=False)] = True
    return out


#: The strata of ``random`` open-weights selection that blocked replicates run (top lab open,
#: top lab closed): replicate-level draws, like the seed, not different design points.
OPEN_STRATA = ("random_top_open", "random_top_closed")


def unblocked(selection: str) -> str:
    """The selection a blocked replicate's stratum stands for (``random``); others unchanged."""
    return "random" if selection in OPEN_STRATA else selection


def top_lab_open(replicate: int, n: int, share: float) -> bool | None:
    """Whether replicate ``replicate`` of a blocked sweep has the largest lab open.

    Replicate r is in the top-open stratum when ⌊(r+1)·k/n⌋ − ⌊r·k/n⌋ = 1, k = round(share·n):
    every run of consecutive replicates holds the stratum in proportion k/n to within one run,
    as an unblocked random draw does only on average. None where there is nothing to block
    (no lab open, or every lab open).
    """
    k = round(share * n)
    if not 0 < k < n:
        return None
    return (replicate + 1) * k // n - replicate * k // n == 1


def lognormal(rng: np.random.Generator, n: int, mean: float, sd_log: float) -> Array:
    """Mean-preserving lognormal draws (σ = 0 gives the mean exactly)."""
    if sd_log == 0.0:
        return np.full(n, float(mean))
    return rng.lognormal(np.log(mean) - 0.5 * sd_log**2, sd_log, size=n)


def project_simplex(v: Array) -> Array:
    """Euclidean projection of each row of v onto the probability simplex (Duchi et al. 2008)."""
    v = np.atleast_2d(v)
    u = -np.sort(-v, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    ind = np.arange(1, v.shape[1] + 1)
    cond = u - css / ind > 0
    rho = v.shape[1] - 1 - np.argmax(cond[:, ::-1], axis=1)
    theta = css[np.arange(v.shape[0]), rho] / (rho + 1.0)
    return np.maximum(v - theta[:, None], 0.0)


def fermi(delta: Array, intensity: float) -> Array:
    """Fermi imitation probability 1 / (1 + exp(−β Δπ)) (Szabó & Tőke 1998)."""
    return 0.5 * (1.0 + np.tanh(0.5 * intensity * np.asarray(delta, dtype=float)))


# ---------------------------------------------------------------------------------------------
# Targeting and the labs' policy (§3, steps 4 and 7; §7.1)
# ---------------------------------------------------------------------------------------------


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
    p = contest_probability(strength, defence[None, :, :], decisiveness)
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
    c, d = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    fc, fd = objective(c, split), objective(d, split)
    for _ in range(rounds):
        left = fc >= fd  # the maximum lies in [lo, d]
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
        c_new, d_new = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
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
    on_simplex: bool = False,
) -> tuple[Float, Float]:
    """One myopic best-response step of every lab on its policy (s, ω).

    The alignment share moves a share ``step_size`` of the way to its best response
    (:func:`best_share`). The defence split then takes a Newton step on each channel's
    coordinate: g_k / h_k, with g_k and the curvature H_k by central differences, h_k = −H_k
    where the objective is concave in ω_k and ``scale`` (a gradient step) where it is not, all
    scaled by ``step_size``.

    - ``on_simplex=False`` (``learning.lab.split_step=per_channel``): each channel's step is
      capped at :data:`MAX_SPLIT_STEP` and the split projected onto the simplex. When every
      channel wants more defence by more than the cap, the capped steps are equal and the
      projection takes them back: the split does not move.
    - ``on_simplex=True`` (``simplex``): the Newton step with the constraints Σ_k ω_k = 1 and
      ω_k ≥ 0, i.e. (g_k − λ) / h_k on the free channels and −ω_k on a channel that this would
      take below zero, with λ = (Σ_free g_k / h_k − Σ_clipped ω_k / η) / Σ_free 1 / h_k, so the
      steps sum to zero and move defence toward the channels where it is worth more. The step
      is shrunk as a whole so no channel moves more than :data:`MAX_SPLIT_STEP` (the projection
      onto the simplex then only removes rounding). Its fixed points are the splits where the
      marginal value of defence is equal across the defended channels and no higher on an
      undefended one (the Karush–Kuhn–Tucker conditions): the best split, which the market
      theory assumes (docs/theory.md §4.1).
    """
    new_share = share + step_size * (best_share(objective, share, split, ceiling) - share)
    h = 1e-5
    base = objective(new_share, split)
    grads = np.empty_like(split)
    stiff = np.empty_like(split)
    for k in range(split.shape[1]):
        e = np.zeros(split.shape[1])
        e[k] = h
        up, down = objective(new_share, split + e), objective(new_share, split - e)
        grad = (up - down) / (2 * h)
        curv = (up - 2 * base + down) / h**2
        concave = curv < -1e-9 * np.maximum(np.abs(base), 1.0)
        grads[:, k] = grad
        stiff[:, k] = np.where(concave, -curv, scale)
    if on_simplex:
        # λ over the channels that stay free: a channel whose move would take it below zero
        # gives up what it has (move −ω_k) and leaves the average. Clipping only raises λ, so
        # a clipped channel stays clipped and at most one pass per channel settles it.
        inv = 1.0 / stiff
        free = np.ones(split.shape, dtype=bool)
        for _ in range(split.shape[1]):
            lam = ((grads * inv * free).sum(axis=1) - (split * ~free).sum(axis=1) / step_size) / (
                inv * free
            ).sum(axis=1)
            moves = np.where(free, step_size * (grads - lam[:, None]) * inv, -split)
            below = free & (moves < -split)
            if not below.any():
                break
            free &= ~below
        biggest = np.abs(moves).max(axis=1, keepdims=True)
        moves = moves * np.minimum(1.0, MAX_SPLIT_STEP / np.maximum(biggest, 1e-300))
    else:
        moves = np.clip(step_size * (grads / stiff), -MAX_SPLIT_STEP, MAX_SPLIT_STEP)
    return new_share, project_simplex(split + moves)


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
        q = alignment_quality(cap, m.alignment_scale)
    else:
        q = np.full_like(capital, m.fixed_alignment)
    c = clarity(q, coupling, m.clarity_exponent)
    spend_d = ((1.0 - share) * investable)[:, None] * split
    d = np.maximum((1.0 - m.defence_decay) * defence + spend_d, 0.0)
    a = attackability(c, base, gain, elasticity)
    p = contest_probability(seen_strength * a, d + m.defence_floor, m.decisiveness)
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


# ---------------------------------------------------------------------------------------------
# Adversary adaptation (§3, step 7; §4)
# ---------------------------------------------------------------------------------------------


def adversary_effort_step(target: Array, effort: Array, budget: Array, adjustment: float) -> Array:
    """Partial adjustment toward the myopic best response: x ← x + η_x (x* − x).

    Partial adjustment never reaches zero by itself; when attacking does not pay at all
    (x* = 0) and the adjusted effort is below :data:`MIN_EFFORT_SHARE` of the budget, the
    adversary stops (effort 0, no attempt) until a target is worth attacking (§4).
    """
    new = effort + adjustment * (target - effort)
    floor = MIN_EFFORT_SHARE * budget
    return np.where((target == 0.0) & (new < floor), 0.0, new)


def roth_erev_update(
    propensity: Array, channel: NDArray[np.intp], reward: Array, forgetting: float,
    experimentation: float,
) -> Array:  # fmt: skip
    """Roth & Erev (1995) reinforcement of channel propensities, with forgetting φ and
    experimentation ε (§4): every propensity decays by (1 − φ); the chosen channel gets
    (1 − ε) of the payoff and the other two ε/2 each. A row whose propensities sum to zero is
    reset to ones. ``propensity`` holds the rows of the adversaries that attempted, ``channel``
    and ``reward`` (success × prize) their attempt's."""
    prop = propensity * (1.0 - forgetting)
    spill = experimentation * reward / 2.0
    prop += spill[:, None]
    prop[np.arange(channel.size), channel] += (1.0 - experimentation) * reward - spill
    dead = prop.sum(axis=1) <= 0.0
    prop[dead] = 1.0
    return prop
