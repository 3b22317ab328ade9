"""Output analysis of one run's time series: burn-in, standard errors, autocorrelation, precision.

Small pure functions on 1-D numpy arrays, used by :func:`sim.outcomes.summarize` (every run's
summary) and :mod:`sim.analysis` (intervals when a design point has a single replicate), and by
anyone reading a ``timeseries.parquet``:

- :func:`mser_burn_in`: the MSER-5 truncation point (White 1997; White, Cobb & Spratt 2000),
  searched over the first half of the series only;
- :func:`batch_means_se`: the standard error of a time average by non-overlapping batch means
  (Schmeiser 1982), :data:`N_BATCHES` batches;
- :func:`integrated_autocorrelation_time` and :func:`effective_sample_size`: Sokal's
  automatic-window estimator (Madras & Sokal 1988; Sokal 1997), window constant c = 5;
- :func:`replicates_for_width`: how many independent replicates a t-interval of a given full
  width needs (a planning aid; docs/sweeps.md has a table).

References
----------
- Hoad, K., Robinson, S. & Davies, R. (2010). Automating warm-up length estimation. *Journal of
  the Operational Research Society* 61, 1389–1403.
- Madras, N. & Sokal, A. D. (1988). The pivot algorithm: a highly efficient Monte Carlo method for
  the self-avoiding walk. *Journal of Statistical Physics* 50, 109–186 (appendix C: the
  automatic windowing of the integrated autocorrelation time).
- Schmeiser, B. (1982). Batch size effects in the analysis of simulation output. *Operations
  Research* 30, 556–568.
- Sokal, A. D. (1997). Monte Carlo methods in statistical mechanics: foundations and new
  algorithms. In DeWitt-Morette, Cartier & Folacci (eds.), *Functional Integration: Basics and
  Applications*, NATO ASI Series B 361, 131–192.
- White, K. P., Jr. (1997). An effective truncation heuristic for bias reduction in simulation
  output. *Simulation* 69, 323–334.
- White, K. P., Jr., Cobb, M. J. & Spratt, S. C. (2000). A comparison of five steady-state
  truncation heuristics for simulation. *Proceedings of the 2000 Winter Simulation Conference*,
  755–760.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

#: Batches of the batch-means standard error. Schmeiser (1982) shows that with a fixed run
#: length, 10 to 30 batches lose little precision against the optimum while keeping the batches
#: long (so their means are nearly independent); the project's runs are short (150–200 steps)
#: against integrated autocorrelation times of up to ~130 steps, so the long-batch end, 10, is
#: chosen. The interval then has 9 degrees of freedom.
N_BATCHES = 10
#: Batch size of MSER-5 (White, Cobb & Spratt 2000: batching in means of 5 smooths the statistic).
MSER_BATCH = 5
#: Sokal's window constant c: the window M is the smallest with M ≥ c τ_int(M).
SOKAL_C = 5.0


def _series(x: ArrayLike) -> np.ndarray:
    v = np.asarray(x, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"expected a 1-D series, got an array of shape {v.shape}")
    return v


def mser_statistic(x: ArrayLike, batch: int = MSER_BATCH) -> np.ndarray:
    """The MSER statistic of the batch means of ``x`` for every truncation d (in batches).

    With k = ⌊n / batch⌋ batch means Z_1..Z_k (a trailing incomplete batch is dropped),
    ``MSER(d) = Σ_{j>d} (Z_j − Z̄_d)² / (k − d)²``, where Z̄_d is the mean of the batches after
    the first d (White 1997; White, Cobb & Spratt 2000). Entry d of the result is MSER(d), for
    d = 0..k − 1 (the last is 0: one batch has no spread). Empty when k = 0.
    """
    v = _series(x)
    if batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch}")
    k = v.size // batch
    if k == 0:
        return np.zeros(0)
    z = v[: k * batch].reshape(k, batch).mean(axis=1)
    z = z - z.mean()  # centred: the running sums below lose less to cancellation
    count = np.arange(k, 0, -1, dtype=float)  # batches kept after truncating d = 0..k-1
    s1 = np.cumsum(z[::-1])[::-1]
    s2 = np.cumsum((z * z)[::-1])[::-1]
    ss = np.maximum(s2 - s1 * s1 / count, 0.0)
    return ss / count**2


def mser_burn_in(x: ArrayLike, batch: int = MSER_BATCH) -> int:
    """MSER-5 truncation point of ``x``, in observations (steps): MSER-``batch`` in general.

    The series is batched in means of ``batch`` (5: MSER-5) and the truncation d (in batches)
    minimises :func:`mser_statistic`, the squared standard error of the truncated mean
    (White 1997; White, Cobb & Spratt 2000). As usual (e.g. Hoad, Robinson & Davies 2010) d is
    searched over the first half of the batches only, d ≤ ⌊k/2⌋, and at least two batches are
    kept: a minimum late in the series means the run is too short to show a steady state, not a
    late warm-up. Ties go to the smallest d. Returns ``d × batch``: the first ``d × batch``
    observations are the burn-in, and the mean is taken over the rest (the trailing incomplete
    batch included). 0 when there are fewer than two batches, or any value is not finite.
    """
    v = _series(x)
    if not np.isfinite(v).all():
        return 0
    mser = mser_statistic(v, batch)
    k = mser.size
    if k < 2:
        return 0
    last = min(k // 2, k - 2)
    return int(np.argmin(mser[: last + 1])) * batch


def batch_count(n: int, n_batches: int = N_BATCHES) -> int:
    """Batches :func:`batch_means_se` uses for a series of ``n`` values: ``min(n_batches, n)``
    (batches of one value when the series is shorter than ``n_batches``)."""
    return max(0, min(int(n_batches), int(n)))


def batch_means_se(x: ArrayLike, n_batches: int = N_BATCHES) -> float:
    """Standard error of the mean of ``x`` by non-overlapping batch means (Schmeiser 1982).

    With b = :func:`batch_count` batches of m = ⌊n / b⌋ consecutive values (the first n − b·m
    values, those nearest the burn-in, are left out of the batches), the batch means Z_j have
    sample variance s²_Z, and ``se = s_Z √(m / n)``: for batches long against the
    autocorrelation time, Var(Z) ≈ σ² τ_int / m and Var(mean of n) ≈ σ² τ_int / n. A
    t-interval for the mean uses b − 1 degrees of freedom. NaN with fewer than two values or a
    value that is not finite; 0 for a constant series.
    """
    v = _series(x)
    b = batch_count(v.size, n_batches)
    if b < 2 or not np.isfinite(v).all():
        return float("nan")
    m = v.size // b
    z = v[v.size - b * m :].reshape(b, m).mean(axis=1)
    return float(z.std(ddof=1) * math.sqrt(m / v.size))


def t_interval(mean: float, se: float, dof: float, level: float = 0.95) -> tuple[float, float]:
    """``mean ± t_{dof, (1+level)/2} × se``; NaN bounds when ``se`` or ``dof`` is unusable."""
    if not (np.isfinite(mean) and np.isfinite(se) and np.isfinite(dof) and dof >= 1 and se >= 0):
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    return float(mean - half), float(mean + half)


def autocorrelation(x: ArrayLike) -> np.ndarray:
    """Normalised sample autocorrelation ρ(t), t = 0..n − 1 (FFT, biased estimator
    Σ (x_s − x̄)(x_{s+t} − x̄) / Σ (x_s − x̄)², the one Sokal's windowing is defined for).
    All NaN for a constant series."""
    v = _series(x)
    n = v.size
    if n == 0:
        return np.zeros(0)
    d = v - v.mean()
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(d, size)
    acov = np.fft.irfft(f * np.conj(f), size)[:n]
    if not acov[0] > 0:
        return np.full(n, np.nan)
    return acov / acov[0]


def integrated_autocorrelation_time(x: ArrayLike, c: float = SOKAL_C) -> float:
    """Integrated autocorrelation time τ_int = 1 + 2 Σ_{t≥1} ρ(t) with Sokal's automatic window.

    The sum is cut at the smallest window M with M ≥ c τ_int(M), where
    τ_int(M) = 1 + 2 Σ_{t=1}^{M} ρ(t) (Madras & Sokal 1988, appendix C; Sokal 1997; c = 5 as
    in Sokal's notes). In this convention white noise has τ_int = 1 and an AR(1) process with
    coefficient φ has τ_int = (1 + φ)/(1 − φ), and Var(x̄) ≈ Var(x) τ_int / n. When no window
    satisfies the condition (a series shorter than about c τ_int) the value at the largest
    window is returned, an underestimate. NaN for fewer than two values or a constant series.
    """
    rho = autocorrelation(x)
    if rho.size < 2 or not np.isfinite(rho).all():
        return float("nan")
    taus = 1.0 + 2.0 * np.cumsum(rho[1:])  # τ_int(M) for M = 1..n-1
    windows = np.arange(1, rho.size)
    ok = windows >= c * taus
    m = int(np.argmax(ok)) if ok.any() else taus.size - 1
    return float(taus[m])


def effective_sample_size(x: ArrayLike, c: float = SOKAL_C) -> float:
    """Effective number of independent values in ``x``: n / τ_int
    (:func:`integrated_autocorrelation_time`). NaN where τ_int is."""
    n = _series(x).size
    return float(n / integrated_autocorrelation_time(x, c))


def replicates_for_width(sd: float, width: float, level: float = 0.95) -> int:
    """Smallest number n ≥ 2 of independent replicates whose t-interval for a mean has full
    width ``2 t_{n−1, (1+level)/2} sd / √n`` at most ``width``, with ``sd`` the per-replicate
    standard deviation (a planning value, e.g. measured in a pilot sweep). For a difference of
    paired runs, ``sd`` is the SD of the per-seed differences."""
    if not (sd >= 0 and width > 0 and 0 < level < 1):
        raise ValueError(f"need sd >= 0, width > 0 and 0 < level < 1; got {sd}, {width}, {level}")
    if sd == 0:
        return 2
    q = 0.5 + level / 2

    def wide(n: int) -> bool:
        return 2 * stats.t.ppf(q, n - 1) * sd / math.sqrt(n) > width

    # The z-based size is a lower bound for the t-based one; step up from there.
    n = max(2, math.ceil((2 * stats.norm.ppf(q) * sd / width) ** 2))
    while wide(n):
        n += 1
    return n
