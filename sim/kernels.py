"""Pure numpy kernels of the alignment-paradox model.

Every function here takes arrays (and, where it draws, a ``numpy.random.Generator``) and returns
arrays; none touches Mesa or global state. The Mesa model in :mod:`sim.model` is a thin layer that
calls these in the order of a step (``docs/ODD.md`` §3). Section references (§n) are to
``docs/ODD.md``, which specifies the model.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

Array = NDArray[np.float64]

#: Values of q and c are floored here before raising them to a power below one, so that slopes
#: stay finite at zero (they are multiplied by exactly zero when the coupling κ is zero).
_TINY = 1e-12


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
# Compiled kernels (numba): the per-adversary hot paths, one pass each, no temporaries
# ---------------------------------------------------------------------------------------------
#
# The numpy functions above state each rule over whole arrays; the kernels below compute the
# same rules adversary by adversary in compiled loops, which is what makes large populations
# affordable (benchmarks/README.md has the profile that motivated each one). They are compiled
# without fastmath (no reassociation, no fused multiply-add), single-threaded, and every
# adversary's arithmetic runs in a fixed order, so a seed gives the same bits on every run.
# ``tests/test_engine.py`` checks each against its numpy statement. Compiled code is cached on
# disk (``cache=True``), so only the first import on a machine pays for compilation.


@njit(cache=True, inline="always", error_model="numpy")
def _contest_p(z: float, y: float, mu: float) -> float:
    """Scalar :func:`contest_probability`: z / (z + Y) or 1 / (1 + (Y/z)^μ) for z > 0, else 0."""
    if z > 0.0:
        if mu == 1.0:
            return z / (z + y)
        return 1.0 / (1.0 + (y / z) ** mu)
    return 0.0


# exp(d) for d <= 0 by Cody–Waite range reduction, d = n ln 2 + r with |r| <= ln 2 / 2, and the
# degree-13 Taylor polynomial of exp(r) (truncation error below 1e-17); 2^n is assembled from its
# exponent bits. Within one ulp of the C library's exp, and, unlike a call into it, vectorised
# by the compiler. Pure IEEE arithmetic without fastmath: the same bits on every x86-64 machine.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: exp is evaluated at max(d, _EXP_FLOOR); below it the caller's weights are treated as 0.
_EXP_FLOOR = -708.0
#: 1/12!, 1/11!, ..., 1/1!, 1/0!: Horner's scheme from the highest degree (1/13! starts it).
_EXP_COEFFS = (
    1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
    1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0,
)  # fmt: skip


@njit(cache=True, inline="always", error_model="numpy")
def _exp_parts(d: float) -> tuple[float, int]:
    """exp(d) = poly · 2^n for d in [_EXP_FLOOR, 0]: returns poly and the bits of 2^n."""
    d = max(d, _EXP_FLOOR)
    n = np.floor(d * _LOG2E + 0.5)
    r = (d - n * _LN2_HI) - n * _LN2_LO
    poly = 1.0 / 6227020800.0
    for c in _EXP_COEFFS:
        poly = c + r * poly
    return poly, (np.int64(n) + 1023) << 52


@njit(cache=True, error_model="numpy")
def fast_exp(d: Array) -> Array:
    """exp(d) for an array of d <= 0 (d < −708 gives exp(−708)), as the targeting kernel
    computes it: within one ulp of ``np.exp`` (``tests/test_engine.py``)."""
    out = np.empty(d.size)
    bits = np.empty(d.size, dtype=np.int64)
    for t in range(d.size):
        out[t], bits[t] = _exp_parts(d[t])
    scale = bits.view(np.float64)
    for t in range(d.size):
        out[t] *= scale[t]
    return out


@njit(cache=True, error_model="numpy")
def _choose_all(knowledge, effort, api_access, active, attack, defence, prize, open_weights,
                rationality, decisiveness, propensity, use_propensity, uniforms, target_lab,
                target_channel, out_who, out_effort, out_knowledge, out_base, out_prob,
                block):  # fmt: skip
    """Targets of all adversaries (see :func:`choose_targets`), ``block`` at a time.

    Every adversary's arithmetic is done in the same order as one adversary alone would do it
    (option by option in (lab, channel) order), so results do not depend on the blocking. The
    choosers are appended to the ``out_*`` arrays in adversary order; returns their number.
    """
    start, stop = 0, effort.size
    count = 0
    n_lab = attack.shape[0]
    n_opt = 3 * n_lab
    width = max(1, min(block, stop - start))
    w = np.empty((n_opt, width))  # utilities, then weights, then cumulative weights
    bits = np.empty((n_opt, width), dtype=np.int64)
    scale = bits.view(np.float64)
    xs = np.empty(width)
    sk = np.empty((3, width))
    api = np.empty(width, dtype=np.bool_)
    top = np.empty((3, width))
    mass = np.empty((3, width))
    fac = np.empty((3, width))
    cum = np.empty(width)
    mu_one = decisiveness == 1.0
    for first in range(start, stop, width):
        nb = min(width, stop - first)
        for b in range(nb):
            j = first + b
            xs[b] = effort[j]
            api[b] = api_access[j]
            for k in range(3):
                sk[k, b] = knowledge[j, k]
                top[k, b] = -np.inf
                mass[k, b] = 0.0
            cum[b] = 0.0
        # utility λ (p̂ V_a − x) of each accessible pair (−inf elsewhere), and channel maxima
        for i in range(n_lab):
            v = prize[i]
            ow = open_weights[i]
            for k in range(3):
                a, y = attack[i, k], defence[i, k]
                wo, tk, s = w[3 * i + k], top[k], sk[k]
                if k == 0 and not ow:  # closed weights: nobody in the block can use them
                    wo[:nb] = -np.inf
                    continue
                for b in range(nb):
                    x = xs[b]
                    z = s[b] * a * x
                    if mu_one:
                        p = z / (z + y) if z > 0.0 else 0.0
                    else:
                        p = 1.0 / (1.0 + (y / z) ** decisiveness) if z > 0.0 else 0.0
                    u = rationality * (p * v - x)
                    u = u if (k == 2 or ow or (k == 1 and api[b])) else -np.inf
                    wo[b] = u
                    tk[b] = u if u > tk[b] else tk[b]
        for b in range(nb):
            if not use_propensity:  # one logit over all accessible pairs
                t = max(top[0, b], max(top[1, b], top[2, b]))
                top[0, b] = top[1, b] = top[2, b] = t
            for k in range(3):
                if top[k, b] == -np.inf:  # no accessible lab in this channel
                    top[k, b] = 0.0
        # weights exp(u − max) (0 where inaccessible), summed per channel
        for o in range(n_opt):
            k = o % 3
            wo, bo, so, tk, mk = w[o], bits[o], scale[o], top[k], mass[k]
            if k == 0 and not open_weights[o // 3]:
                wo[:nb] = 0.0
                continue
            for b in range(nb):
                u = wo[b]
                poly, bo[b] = _exp_parts(u - tk[b])
                wo[b] = poly if u > -np.inf else 0.0
            for b in range(nb):
                e = wo[b] * so[b]
                wo[b] = e
                mk[b] += e
        # Roth–Erev: the channel in proportion to its propensity, the lab within it by logit
        for b in range(nb):
            if use_propensity:
                j = first + b
                m0, m1, m2 = mass[0, b], mass[1, b], mass[2, b]
                p0 = propensity[j, 0] if m0 > 0.0 else 0.0
                p1 = propensity[j, 1] if m1 > 0.0 else 0.0
                p2 = propensity[j, 2] if m2 > 0.0 else 0.0
                total = p0 + p1 + p2
                fac[0, b] = p0 / total / m0 if m0 > 0.0 else 0.0
                fac[1, b] = p1 / total / m1 if m1 > 0.0 else 0.0
                fac[2, b] = p2 / total / m2 if m2 > 0.0 else 0.0
            else:
                fac[0, b] = fac[1, b] = fac[2, b] = 1.0
        for o in range(n_opt):
            wo, fk = w[o], fac[o % 3]
            for b in range(nb):
                c = cum[b] + wo[b] * fk[b]
                cum[b] = c
                wo[b] = c
        # inverse CDF: the first pair whose cumulative weight exceeds u · total
        for b in range(nb):
            j = first + b
            target_lab[j] = -1
            target_channel[j] = -1
            if not active[j] or not cum[b] > 0.0:
                continue
            threshold = uniforms[j] * cum[b]
            lo, hi = 0, n_opt - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if w[mid, b] > threshold:
                    hi = mid
                else:
                    lo = mid + 1
            while lo > 0 and w[lo, b] == w[lo - 1, b]:
                lo -= 1  # u · total rounded up to the total: the last pair with weight
            i, k = lo // 3, lo % 3
            target_lab[j] = i
            target_channel[j] = k
            out_who[count] = j
            out_effort[count] = xs[b]
            out_knowledge[count] = sk[k, b]
            out_base[count] = attack[i, k]
            out_prob[count] = _contest_p(sk[k, b] * attack[i, k] * xs[b], defence[i, k],
                                         decisiveness)  # fmt: skip
            count += 1
    return count


def choose_targets(
    *,
    knowledge: Array,
    effort: Array,
    api_access: NDArray[np.bool_],
    active: NDArray[np.bool_],
    attackability: Array,
    defence: Array,
    prize: Array,
    open_weights: NDArray[np.bool_],
    rationality: float,
    decisiveness: float,
    propensity: Array | None,
    uniforms: Array,
    target_lab: NDArray[np.intp],
    target_channel: NDArray[np.intp],
    block: int = 128,
) -> dict[str, np.ndarray]:
    """Each active adversary's target (lab, channel), drawn from one uniform, and the contest.

    The compiled form of :func:`sim.model.target_logits` followed by :func:`sample_logits`:
    utility λ (p̂ V_a(i) − x_j) for every accessible pair (−∞ elsewhere), then either one logit
    over all pairs or, with Roth–Erev ``propensity``, the channel in proportion to the
    propensities of channels with an accessible lab and the lab within it by logit; the draw is
    by inverse CDF over the pairs in (lab, channel) order. ``defence`` is D + d0. Writes the
    choice into ``target_lab`` and ``target_channel`` (−1: none) and returns, for the adversaries
    that chose (in increasing order), ``who``, ``effort`` and ``knowledge`` (as fought), ``base``
    (α_k + θ_k c_i^ε_k of the target) and ``prob`` (the contest probability).

    Adversaries are evaluated ``block`` at a time, side by side: the loops run over the block
    for each (lab, channel), which the compiler vectorises (SIMD across agents), and each
    adversary's arithmetic is the same whatever the block.
    """
    n = effort.size
    use_prop = propensity is not None
    prop = propensity if use_prop else np.ones((1, 3))
    out = {
        "who": np.empty(n, dtype=np.intp),
        "effort": np.empty(n),
        "knowledge": np.empty(n),
        "base": np.empty(n),
        "prob": np.empty(n),
    }
    count = _choose_all(
        np.ascontiguousarray(knowledge),
        effort,
        api_access,
        active,
        np.ascontiguousarray(attackability),
        np.ascontiguousarray(defence),
        prize,
        open_weights,
        float(rationality),
        float(decisiveness),
        np.ascontiguousarray(prop),
        use_prop,
        uniforms,
        target_lab,
        target_channel,
        out["who"],
        out["effort"],
        out["knowledge"],
        out["base"],
        out["prob"],
        int(block),
    )
    return {key: value[:count] for key, value in out.items()}


@njit(cache=True, error_model="numpy")
def _diffuse_rows(start, stop, knowledge, indptr, dst, degree, rate, out):  # fmt: skip
    for j in range(start, stop):
        d = degree[j]
        inv = 1.0 / d if d > 0 else 0.0
        own0, own1, own2 = knowledge[j, 0], knowledge[j, 1], knowledge[j, 2]
        pull0 = pull1 = pull2 = 0.0
        for e in range(indptr[j], indptr[j + 1]):
            nb = dst[e]
            gap0 = knowledge[nb, 0] - own0
            gap1 = knowledge[nb, 1] - own1
            gap2 = knowledge[nb, 2] - own2
            pull0 += gap0 if gap0 > 0.0 else 0.0
            pull1 += gap1 if gap1 > 0.0 else 0.0
            pull2 += gap2 if gap2 > 0.0 else 0.0
        out[j, 0] = own0 + rate * pull0 * inv
        out[j, 1] = own1 + rate * pull1 * inv
        out[j, 2] = own2 + rate * pull2 * inv


@njit(cache=True, error_model="numpy")
def _diffuse_serial(knowledge, indptr, dst, degree, rate, out):  # fmt: skip
    _diffuse_rows(0, knowledge.shape[0], knowledge, indptr, dst, degree, rate, out)


def diffuse_knowledge_csr(
    knowledge: Array, indptr: NDArray[np.int64], dst: NDArray, degree: Array, rate: float
) -> Array:
    """:func:`diffuse_knowledge` over a CSR adjacency (neighbours of j: ``dst[indptr[j]:
    indptr[j + 1]]``), compiled, with no per-edge temporaries; same sums in the same order."""
    if dst.size == 0 or rate == 0.0:
        return knowledge
    out = np.empty_like(knowledge)
    args = (np.ascontiguousarray(knowledge), indptr, dst, degree, float(rate), out)
    _diffuse_serial(*args)
    return out


# ---------------------------------------------------------------------------------------------
# Compiled lab best response (the same rule as sim.model.lab_policy_step on lab_objective)
# ---------------------------------------------------------------------------------------------

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


@njit(cache=True, error_model="numpy")
def _lab_value(i, share, w0, w1, w2, capital, investable, defence, compromised, seen_attempts,
               seen_strength, reach, coupling, base, gain, elasticity, severity, liability,
               prm):  # fmt: skip
    """:func:`sim.model.lab_objective` for lab i at share s and split (w0, w1, w2).

    ``prm`` packs the model constants: fixed alignment (NaN: none), δ_A, A0, γ, δ_D, d0, μ,
    σ, ρ, v_d and, optionally, the foresight factor F that weights the terms compromise drives
    (:func:`sim.model.foresight_factor`; 1, the myopic lab, when ``prm`` has only ten entries).
    """
    fixed, decay_a, scale, gamma, decay_d, floor, mu, sigma, rho, v_d = (
        prm[0], prm[1], prm[2], prm[3], prm[4], prm[5], prm[6], prm[7], prm[8], prm[9]
    )  # fmt: skip
    stake = prm[10] if prm.size > 10 else 1.0
    spend_a = share * investable[i]
    if np.isnan(fixed):
        q = -np.expm1(-((1.0 - decay_a) * capital[i] + spend_a) / scale)
    else:
        q = fixed
    c = coupling * q**gamma
    spend_d = (1.0 - share) * investable[i]
    log_surv0 = log_surv1 = log_surv2 = 0.0
    for k in range(3):
        wk = w0 if k == 0 else (w1 if k == 1 else w2)
        d = max((1.0 - decay_d) * defence[i, k] + spend_d * wk, 0.0)
        a = base[k] + gain[k] * c ** elasticity[k]
        p = _contest_p(seen_strength[i, k] * a, d + floor, mu)
        ls = seen_attempts[i, k] * np.log1p(-min(sigma * p, 1.0 - 1e-15))
        if k == 0:
            log_surv0 = ls
        elif k == 1:
            log_surv1 = ls
        else:
            log_surv2 = ls
    total_log = log_surv0 + log_surv1 + log_surv2
    carried_ch0 = rho * compromised[i, 0]
    carried_ch1 = rho * compromised[i, 1]
    carried_ch2 = rho * compromised[i, 2]
    carried = carried_ch0 + carried_ch1 + carried_ch2
    fresh = (1.0 - carried) * -np.expm1(total_log)
    phi = carried + fresh
    value = v_d * reach[i] * q * (1.0 - stake * phi * (1.0 + c))
    if liability != 0.0:
        attacked = total_log < 0.0
        f0 = log_surv0 / total_log if attacked else 0.0
        f1 = log_surv1 / total_log if attacked else 0.0
        f2 = log_surv2 / total_log if attacked else 0.0
        harm_rate = (
            (carried_ch0 + fresh * f0) * severity[0]
            + (carried_ch1 + fresh * f1) * severity[1]
            + (carried_ch2 + fresh * f2) * severity[2]
        )
        value = value - liability * (reach[i] * q * (1.0 + c) * (stake * harm_rate))
    if not np.isnan(fixed):
        value += spend_a
    return value


@njit(cache=True)
def _project_simplex_row(v):  # fmt: skip
    """Row form of :func:`project_simplex` (Duchi et al. 2008)."""
    u = -np.sort(-v)
    css = np.cumsum(u) - 1.0
    rho = 0
    for r in range(v.size):
        if u[r] - css[r] / (r + 1.0) > 0:
            rho = r
    theta = css[rho] / (rho + 1.0)
    return np.maximum(v - theta, 0.0)


@njit(cache=True, error_model="numpy")
def lab_best_response(share, split, capital, investable, defence, compromised, seen_attempts,
                      seen_strength, reach, coupling, base, gain, elasticity, severity, liability,
                      prm, step_size, scale, ceiling, max_split_step, grid, rounds):  # fmt: skip
    """Compiled :func:`sim.model.lab_policy_step` on :func:`sim.model.lab_objective`: per lab, a
    grid over [0, ceiling] brackets the best share, golden-section search refines it, the share
    moves ``step_size`` of the way; then a Newton step per channel on the split, projected onto
    the simplex. Returns the new shares and splits."""
    n = share.size
    new_share = np.empty(n)
    new_split = np.empty_like(split)
    points = np.linspace(0.0, ceiling, grid)
    values = np.empty(grid)
    args = (capital, investable, defence, compromised, seen_attempts, seen_strength, reach,
            coupling, base, gain, elasticity, severity, liability, prm)  # fmt: skip
    h = 1e-5
    for i in range(n):
        w0, w1, w2 = split[i, 0], split[i, 1], split[i, 2]
        for g in range(grid):
            values[g] = _lab_value(i, points[g], w0, w1, w2, *args)
        best = np.argmax(values)
        lo, hi = points[max(best - 1, 0)], points[min(best + 1, grid - 1)]
        c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        fc, fd = _lab_value(i, c, w0, w1, w2, *args), _lab_value(i, d, w0, w1, w2, *args)
        for _ in range(rounds):
            if fc >= fd:  # the maximum lies in [lo, d]
                hi = d
                c_new = hi - _GOLDEN * (hi - lo)
                fd = fc
                fc = _lab_value(i, c_new, w0, w1, w2, *args)
                d = c
                c = c_new
            else:
                lo = c
                d_new = lo + _GOLDEN * (hi - lo)
                fc = fd
                fd = _lab_value(i, d_new, w0, w1, w2, *args)
                c = d
                d = d_new
        candidate = 0.5 * (lo + hi)
        if not (_lab_value(i, candidate, w0, w1, w2, *args) >= values[best]):
            candidate = points[best]
        s = share[i] + step_size * (candidate - share[i])
        new_share[i] = s
        base_v = _lab_value(i, s, w0, w1, w2, *args)
        for k in range(3):
            if k == 0:
                up = _lab_value(i, s, w0 + h, w1, w2, *args)
                down = _lab_value(i, s, w0 - h, w1, w2, *args)
            elif k == 1:
                up = _lab_value(i, s, w0, w1 + h, w2, *args)
                down = _lab_value(i, s, w0, w1 - h, w2, *args)
            else:
                up = _lab_value(i, s, w0, w1, w2 + h, *args)
                down = _lab_value(i, s, w0, w1, w2 - h, *args)
            grad = (up - down) / (2 * h)
            curv = (up - 2 * base_v + down) / h**2
            if curv < -1e-9 * max(abs(base_v), 1.0):
                step = -grad / curv
            else:
                step = grad / scale[i]
            move = step_size * step
            new_split[i, k] = split[i, k] + min(max(move, -max_split_step), max_split_step)
        new_split[i] = _project_simplex_row(new_split[i])
    return new_share, new_split


# ---------------------------------------------------------------------------------------------
# Compiled contest outcomes and adversary adaptation (one pass over this step's choosers)
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def contest_outcomes(who, lab, channel, effort, knowledge, base, prob, u_success, u_detect,
                     detection, deterred_until, deter_to, n_labs, share, decisiveness,
                     gain_slope, clar_slope):  # fmt: skip
    """This step's contests, one pass over the choosers in adversary order.

    An attempt (positive effort) succeeds when its uniform is below p and is detected when its
    other uniform is below ψ; a detected adversary is deterred until ``deter_to``. Returns the
    success flags of the choosers; per lab and channel (N x 3) the attempts, the successes and
    the summed strength K x of the attempts (what the labs observe); per lab the sums that
    :func:`marginal_return_from_sums` needs (as :func:`marginal_return` forms them); and the
    effort spent on attempts.
    """
    success = np.zeros(who.size, dtype=np.bool_)
    attempts = np.zeros((n_labs, 3), dtype=np.int64)
    successes = np.zeros((n_labs, 3), dtype=np.int64)
    strength = np.zeros((n_labs, 3))
    log_surv = np.zeros(n_labs)
    dlog_surv = np.zeros(n_labs)
    spent = 0.0
    for c in range(who.size):
        if not effort[c] > 0.0:
            continue
        i, k, p = lab[c], channel[c], prob[c]
        spent += effort[c]
        attempts[i, k] += 1
        strength[i, k] += knowledge[c] * effort[c]
        if u_success[c] < p:
            success[c] = True
            successes[i, k] += 1
        if u_detect[c] < detection:
            deterred_until[who[c]] = deter_to
        one_minus = max(1.0 - share * p, 1e-300)
        log_surv[i] += np.log(one_minus)
        dlogp_dc = gain_slope[i, k] / base[c] if base[c] > 0 else 0.0
        dp_dq = decisiveness * p * (1.0 - p) * dlogp_dc * clar_slope[i]
        dlog_surv[i] += -share * dp_dq / one_minus
    return success, attempts, successes, strength, log_surv, dlog_surv, spent


@njit(cache=True, error_model="numpy")
def adapt_adversaries(who, lab, channel, effort_fought, knowledge_fought, success, prize,
                      attackability, defence, budget, targets, effort, propensity, knowledge,
                      best_respond, reinforce, effort_adjustment, min_effort_share, forgetting,
                      experimentation, knowledge_decay, knowledge_gain):  # fmt: skip
    """The adversaries' adaptation after the contests, in the model's order (``docs/ODD.md``
    §3, step 7): effort toward the myopic best response (``best_respond``), Roth–Erev reinforcement
    of channel propensities (``reinforce``), then knowledge decay and learning from success.

    ``targets`` holds precomputed best-response efforts per chooser (:meth:`BestResponse.effort`)
    or is empty, in which case the μ = 1 closed form x* = max(0, √(V a / Y) − 1) Y / a is used
    (with the token effort against no defence), clipped to the budget.
    """
    closed_form = targets.size == 0
    for c in range(who.size):
        j = who[c]
        i, k = lab[c], channel[c]
        x = effort_fought[c]
        if best_respond:
            cap = budget[j]
            if closed_form:
                a = knowledge_fought[c] * attackability[i, k]
                y = defence[i, k]
                v = prize[i]
                target = 0.0
                if a > 0.0:
                    rho = v * a / max(y, 1e-300)
                    t_star = max(np.sqrt(max(rho, 0.0)) - 1.0, 0.0)
                    target = t_star * y / a
                    if y <= 0.0 and v > 0.0:
                        target = TOKEN_EFFORT * v
                target = min(max(target, 0.0), cap)
            else:
                target = targets[c]
            new = x + effort_adjustment * (target - x)
            if target == 0.0 and new < min_effort_share * cap:
                new = 0.0
            effort[j] = new
        if reinforce and x > 0.0:
            reward = prize[i] if success[c] else 0.0
            spill = experimentation * reward / 2.0
            total = 0.0
            for kk in range(3):
                r = propensity[j, kk] * (1.0 - forgetting) + spill
                if kk == k:
                    r += (1.0 - experimentation) * reward - spill
                propensity[j, kk] = r
                total += r
            if total <= 0.0:
                propensity[j, :] = 1.0
    if knowledge_decay > 0.0:
        keep = 1.0 - knowledge_decay
        for j in range(knowledge.shape[0]):
            for kk in range(3):
                knowledge[j, kk] *= keep
    for c in range(who.size):
        if success[c]:
            j, k = who[c], channel[c]
            knowledge[j, k] += knowledge_gain * (1.0 - knowledge[j, k])


@njit(cache=True, error_model="numpy")
def adversary_summary(knowledge, deterred_until, step):  # fmt: skip
    """Mean knowledge per channel and the number of adversaries free to attack after ``step``
    (one pass, for the outcomes)."""
    n = knowledge.shape[0]
    k0 = k1 = k2 = 0.0
    active = 0
    for j in range(n):
        k0 += knowledge[j, 0]
        k1 += knowledge[j, 1]
        k2 += knowledge[j, 2]
        if deterred_until[j] <= step:
            active += 1
    inv = 1.0 / n if n > 0 else 0.0
    return k0 * inv, k1 * inv, k2 * inv, active
