"""Compiled twins (numba) of the hot rules in :mod:`sim.rules`.

The numpy functions of :mod:`sim.rules` state each rule over whole arrays; the kernels here
compute the same rules adversary by adversary (or lab by lab) in compiled loops, which is what
makes large populations affordable. Nothing else lives here: ``tests/test_engine.py`` checks
every kernel against its rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from sim.rules import GOLDEN, MAX_SPLIT_STEP, MIN_EFFORT_SHARE, TOKEN_EFFORT, foresight_factor

if TYPE_CHECKING:
    from sim.config import Config

Array = NDArray[np.float64]


# ---------------------------------------------------------------------------------------------
# Typed parameters: the constants each kernel reads, named and built once per model
# ---------------------------------------------------------------------------------------------


class LabConstants(NamedTuple):
    """What the labs' objective (:func:`sim.rules.lab_objective`) reads from the configuration."""

    fixed_alignment: float  # NaN: q follows alignment capital
    alignment_decay: float  # δ_A
    alignment_scale: float  # A0
    clarity_exponent: float  # γ
    defence_decay: float  # δ_D
    defence_floor: float  # d0
    decisiveness: float  # μ
    compromise_share: float  # σ
    compromise_persistence: float  # ρ
    defender_value: float  # v_d
    stake_factor: float  # F, the foresight factor (1: the myopic lab)

    @classmethod
    def from_config(cls, cfg: Config) -> LabConstants:
        m = cfg.model
        return cls(
            np.nan if m.fixed_alignment is None else float(m.fixed_alignment),
            float(m.alignment_decay),
            float(m.alignment_scale),
            float(m.clarity_exponent),
            float(m.defence_decay),
            float(m.defence_floor),
            float(m.decisiveness),
            float(m.compromise_share),
            float(m.compromise_persistence),
            float(m.defender_value),
            foresight_factor(cfg.learning.lab.foresight, m.defence_decay, m.compromise_persistence),
        )


class LabSearch(NamedTuple):
    """How the labs' best response searches (:func:`sim.rules.lab_policy_step`)."""

    step_size: float  # share of the way to the best share moved per step
    ceiling: float  # largest alignment share, 1 − the defence mandate
    max_split_step: float = MAX_SPLIT_STEP
    grid: int = 9  # grid points that bracket the best share
    rounds: int = 20  # golden-section rounds that refine it
    on_simplex: bool = False  # the split's Newton step: per channel (False) or on the simplex

    @classmethod
    def from_config(cls, cfg: Config) -> LabSearch:
        return cls(
            float(cfg.learning.lab.step_size),
            1.0 - float(cfg.policy.defence_mandate),
            on_simplex=cfg.learning.lab.split_step == "simplex",
        )


class AdversaryLearning(NamedTuple):
    """What the adversaries' adaptation reads (:func:`adapt_adversaries`)."""

    best_respond: bool  # effort moves toward the myopic best response
    reinforce: bool  # Roth–Erev reinforcement of channel propensities
    effort_adjustment: float  # η_x
    min_effort_share: float
    forgetting: float  # φ
    experimentation: float  # ε
    knowledge_decay: float
    knowledge_gain: float

    @classmethod
    def from_config(cls, cfg: Config, *, best_respond: bool, reinforce: bool) -> AdversaryLearning:
        a, m = cfg.learning.adversary, cfg.model
        return cls(
            bool(best_respond),
            bool(reinforce),
            float(a.effort_adjustment),
            MIN_EFFORT_SHARE,
            float(a.forgetting),
            float(a.experimentation),
            float(m.knowledge_decay),
            float(m.knowledge_gain),
        )


class ContestSettings(NamedTuple):
    """What the contests read (:func:`contest_outcomes`)."""

    n_labs: int
    compromise_share: float  # σ
    decisiveness: float  # μ
    detection: float  # ψ, the chance an attempt is detected

    @classmethod
    def from_config(cls, cfg: Config) -> ContestSettings:
        m = cfg.model
        return cls(
            int(m.n_labs),
            float(m.compromise_share),
            float(m.decisiveness),
            float(cfg.policy.detection_probability),
        )


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
    """Scalar :func:`sim.rules.contest_probability`: z / (z + Y) or 1 / (1 + (Y/z)^μ) for z > 0,
    else 0."""
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

    The compiled form of :func:`sim.rules.target_logits` then :func:`sim.rules.sample_logits`:
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
    """:func:`sim.rules.diffuse_knowledge` over a CSR adjacency (neighbours of j: ``dst[indptr[j]:
    indptr[j + 1]]``), compiled, with no per-edge temporaries; same sums in the same order."""
    if dst.size == 0 or rate == 0.0:
        return knowledge
    out = np.empty_like(knowledge)
    args = (np.ascontiguousarray(knowledge), indptr, dst, degree, float(rate), out)
    _diffuse_serial(*args)
    return out


# ---------------------------------------------------------------------------------------------
# Compiled lab best response (the same rule as sim.rules.lab_policy_step on lab_objective)
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _lab_value(i, share, w0, w1, w2, capital, investable, defence, compromised, seen_attempts,
               seen_strength, reach, coupling, base, gain, elasticity, severity, liability,
               prm):  # fmt: skip
    """:func:`sim.rules.lab_objective` for lab i at share s and split (w0, w1, w2);
    ``prm`` is a :class:`LabConstants`."""
    fixed, decay_a, scale, gamma, decay_d = (
        prm.fixed_alignment, prm.alignment_decay, prm.alignment_scale, prm.clarity_exponent,
        prm.defence_decay,
    )  # fmt: skip
    floor, mu, sigma, rho, v_d = (
        prm.defence_floor, prm.decisiveness, prm.compromise_share, prm.compromise_persistence,
        prm.defender_value,
    )  # fmt: skip
    stake = prm.stake_factor
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
    """Row form of :func:`sim.rules.project_simplex` (Duchi et al. 2008)."""
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
                      prm, scale, search):  # fmt: skip
    """Compiled :func:`sim.rules.lab_policy_step` on :func:`sim.rules.lab_objective`: per lab, a
    grid over [0, ceiling] brackets the best share, golden-section search refines it, the share
    moves ``step_size`` of the way; then a Newton step on the split (per channel or on the
    simplex, ``search.on_simplex``), projected onto the simplex. ``prm`` is a
    :class:`LabConstants`, ``search`` a :class:`LabSearch`. Returns the new shares and splits."""
    step_size, ceiling, max_split_step = search.step_size, search.ceiling, search.max_split_step
    on_simplex = search.on_simplex
    grads, stiff, moves = np.empty(3), np.empty(3), np.empty(3)
    free = np.ones(3, dtype=np.bool_)
    grid, rounds = search.grid, search.rounds
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
        c, d = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
        fc, fd = _lab_value(i, c, w0, w1, w2, *args), _lab_value(i, d, w0, w1, w2, *args)
        for _ in range(rounds):
            if fc >= fd:  # the maximum lies in [lo, d]
                hi = d
                c_new = hi - GOLDEN * (hi - lo)
                fd = fc
                fc = _lab_value(i, c_new, w0, w1, w2, *args)
                d = c
                c = c_new
            else:
                lo = c
                d_new = lo + GOLDEN * (hi - lo)
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
            grads[k] = (up - down) / (2 * h)
            curv = (up - 2 * base_v + down) / h**2
            stiff[k] = -curv if curv < -1e-9 * max(abs(base_v), 1.0) else scale[i]
        if on_simplex:  # λ over the channels that stay free (sim.rules.lab_policy_step)
            for k in range(3):
                free[k] = True
            for _ in range(3):
                num, den, given = 0.0, 0.0, 0.0
                for k in range(3):
                    if free[k]:
                        num += grads[k] * (1.0 / stiff[k])
                        den += 1.0 / stiff[k]
                    else:
                        given += split[i, k]
                lam = (num - given / step_size) / den
                clipped = False
                for k in range(3):
                    if free[k]:
                        moves[k] = step_size * (grads[k] - lam) * (1.0 / stiff[k])
                        if moves[k] < -split[i, k]:
                            clipped = True
                    else:
                        moves[k] = -split[i, k]
                if not clipped:
                    break
                for k in range(3):
                    if free[k] and moves[k] < -split[i, k]:
                        free[k] = False
                        moves[k] = -split[i, k]
            biggest = 0.0
            for k in range(3):
                biggest = max(biggest, abs(moves[k]))
            shrink = min(1.0, max_split_step / max(biggest, 1e-300))
            for k in range(3):
                new_split[i, k] = split[i, k] + moves[k] * shrink
        else:
            for k in range(3):
                move = step_size * (grads[k] / stiff[k])
                new_split[i, k] = split[i, k] + min(max(move, -max_split_step), max_split_step)
        new_split[i] = _project_simplex_row(new_split[i])
    return new_share, new_split


# ---------------------------------------------------------------------------------------------
# Compiled contest outcomes and adversary adaptation (one pass over this step's choosers)
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def contest_outcomes(who, lab, channel, effort, knowledge, base, prob, u_success, u_detect,
                     deterred_until, deter_to, settings, gain_slope, clar_slope):  # fmt: skip
    """This step's contests, one pass over the choosers in adversary order.

    An attempt (positive effort) succeeds when its uniform is below p and is detected when its
    other uniform is below ψ; a detected adversary is deterred until ``deter_to``. Returns the
    success flags of the choosers; per lab and channel (N x 3) the attempts, the successes and
    the summed strength K x of the attempts (what the labs observe); per lab the sums that
    :func:`sim.rules.marginal_return_from_sums` needs (as :func:`sim.rules.marginal_return` forms
    them); and the effort spent on attempts. ``settings`` is a :class:`ContestSettings`.
    """
    n_labs, share = settings.n_labs, settings.compromise_share
    decisiveness, detection = settings.decisiveness, settings.detection
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
                      learning):  # fmt: skip
    """The adversaries' adaptation after the contests, in the model's order (``docs/ODD.md``
    §3, step 7): effort toward the myopic best response (``best_respond``), Roth–Erev reinforcement
    of channel propensities (``reinforce``), then knowledge decay and learning from success.

    ``targets`` holds precomputed best-response efforts per chooser
    (:meth:`sim.rules.BestResponse.effort`) or is empty, in which case the μ = 1 closed form
    x* = max(0, √(V a / Y) − 1) Y / a is used
    (with the token effort against no defence), clipped to the budget. ``learning`` is an
    :class:`AdversaryLearning`.
    """
    best_respond, reinforce = learning.best_respond, learning.reinforce
    effort_adjustment, min_effort_share = learning.effort_adjustment, learning.min_effort_share
    forgetting, experimentation = learning.forgetting, learning.experimentation
    knowledge_decay, knowledge_gain = learning.knowledge_decay, learning.knowledge_gain
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
