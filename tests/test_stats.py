"""Output analysis of one run (sim/stats.py) against analytic cases, and the run summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.signal import lfilter

from sim import stats as S
from sim.outcomes import OUTCOMES, summarize


def ar1(phi: float, n: int, rng: np.random.Generator, rows: int | None = None) -> np.ndarray:
    """x_t = φ x_{t−1} + ε_t, ε ~ N(0, 1), started from its stationary distribution."""
    shape = (n,) if rows is None else (rows, n)
    e = rng.normal(size=shape)
    x0 = rng.normal(0.0, 1 / np.sqrt(1 - phi**2), size=() if rows is None else (rows, 1))
    x = lfilter([1.0], [1.0, -phi], e, axis=-1)
    return x + x0 * phi ** np.arange(1, n + 1)


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_integrated_autocorrelation_time_of_ar1(phi):
    x = ar1(phi, 200_000, np.random.default_rng(7))
    tau = (1 + phi) / (1 - phi)
    assert S.integrated_autocorrelation_time(x) == pytest.approx(tau, rel=0.1)
    assert S.effective_sample_size(x) == pytest.approx(x.size / tau, rel=0.1)


def test_white_noise_has_tau_one_and_a_constant_series_has_none():
    x = np.random.default_rng(8).normal(size=100_000)
    assert S.integrated_autocorrelation_time(x) == pytest.approx(1.0, abs=0.05)
    assert np.isnan(S.integrated_autocorrelation_time(np.ones(50)))
    assert np.isnan(S.integrated_autocorrelation_time([1.0]))


def test_batch_means_se_matches_the_ar1_standard_error_of_the_mean():
    phi, n = 0.8, 4000
    x = ar1(phi, n, np.random.default_rng(9), rows=400)
    # exact SD of the mean of n stationary AR(1) values (innovation variance 1)
    k = np.arange(1, n)
    exact = np.sqrt((1 + 2 * np.sum((1 - k / n) * phi**k)) / (1 - phi**2) / n)
    se = np.array([S.batch_means_se(row) for row in x])
    assert np.sqrt(np.mean(se**2)) == pytest.approx(exact, rel=0.08)
    assert x.mean(axis=1).std() == pytest.approx(exact, rel=0.1)  # the simulation agrees
    # the t-interval with b − 1 = 9 degrees of freedom covers the true mean 0 about 95% of
    # the time (batches of 400 ≫ τ_int = 9)
    half = sps.t.ppf(0.975, S.N_BATCHES - 1) * se
    covered = np.abs(x.mean(axis=1)) <= half
    assert 0.91 <= covered.mean() <= 0.99


def test_batch_means_se_of_white_noise_and_edge_cases():
    x = np.random.default_rng(10).normal(size=10_000)
    assert S.batch_means_se(x) == pytest.approx(1 / np.sqrt(x.size), rel=0.4)
    assert S.batch_means_se(np.full(30, 2.0)) == 0.0
    assert np.isnan(S.batch_means_se([1.0])) and np.isnan(S.batch_means_se([]))
    assert np.isnan(S.batch_means_se([1.0, np.nan, 2.0]))
    # fewer values than batches: batches of one, the ordinary standard error
    v = np.array([1.0, 2.0, 4.0])
    assert S.batch_means_se(v) == pytest.approx(v.std(ddof=1) / np.sqrt(3))
    assert S.batch_count(3) == 3 and S.batch_count(150) == S.N_BATCHES


def _transient(seed: int, n: int = 1000, scale: float = 40.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 3.0 * np.exp(-t / scale) + rng.normal(0.0, 0.3, n)


@pytest.mark.parametrize("seed", range(5))
def test_mser5_finds_the_end_of_an_exponential_transient(seed):
    x = _transient(seed)
    d = S.mser_burn_in(x)
    # the transient 3 e^{−t/40} falls below the noise SD (0.3) at t ≈ 92 and below a tenth of
    # the standard error of the mean of the rest (≈ 0.001) after ≈ 320 steps
    assert 60 <= d <= 320 and d % 5 == 0
    # truncating there removes the bias the transient puts into the mean
    assert abs(x[d:].mean()) < 3 * 0.3 / np.sqrt(x.size - d) + 0.01
    assert abs(x.mean()) > 0.1


def test_mser5_keeps_a_stationary_series_whole():
    # MSER's minimum is a noisy statistic: on a stationary series it truncates nothing most of
    # the time and a few batches now and then (a loss of data, not a bias)
    rng = np.random.default_rng(100)
    for series in (lambda: rng.normal(size=1000), lambda: ar1(0.5, 1000, rng)):
        d = np.array([S.mser_burn_in(series()) for _ in range(300)])
        assert np.median(d) == 0 and (d == 0).mean() > 0.5
        assert np.percentile(d, 90) <= 30 and d.mean() <= 15  # within 3% and 1.5% of n


def test_mser5_searches_the_first_half_only_and_handles_short_series():
    # a series that only settles in its second half: the truncation stops at half the batches
    x = np.r_[np.linspace(5.0, 0.0, 80), np.zeros(20)]
    assert S.mser_burn_in(x) == 50
    assert S.mser_burn_in(np.arange(9.0)) == 0  # one batch
    assert S.mser_burn_in([]) == 0 and S.mser_burn_in([1.0, np.inf] * 10) == 0
    assert S.mser_burn_in(np.ones(200)) == 0  # ties go to no truncation
    stat = S.mser_statistic(np.arange(20.0))
    assert stat.shape == (4,) and stat[-1] == 0.0


def test_replicates_for_width_is_the_smallest_n():
    for sd, width in ((1.0, 1.0), (0.05, 0.02), (0.3, 0.5)):
        n = S.replicates_for_width(sd, width)
        full = [2 * sps.t.ppf(0.975, m - 1) * sd / np.sqrt(m) for m in (n - 1, n)]
        assert full[1] <= width and (n == 2 or full[0] > width)
    assert S.replicates_for_width(1.0, 1.0) == 18
    assert S.replicates_for_width(0.0, 0.1) == 2
    with pytest.raises(ValueError):
        S.replicates_for_width(1.0, 0.0)


def test_t_interval():
    lo, hi = S.t_interval(1.0, 0.5, 9)
    assert (lo, hi) == pytest.approx((1 - 2.262157 * 0.5, 1 + 2.262157 * 0.5))
    assert all(np.isnan(S.t_interval(1.0, np.nan, 9)))


# ---------------------------------------------------------------------------------------------
# The run summary
# ---------------------------------------------------------------------------------------------


def _table(steps: int, seed: int = 0) -> pd.DataFrame:
    """A per-step table: net alignment with a transient, every other outcome stationary."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps + 1)
    data = {name: rng.normal(1.0, 0.1, steps + 1) for name in OUTCOMES}
    data["net_alignment"] = 0.3 + 0.5 * np.exp(-t / 10) + rng.normal(0, 0.01, steps + 1)
    return pd.DataFrame({"step": t, **data})


def test_summary_takes_the_mser5_burn_in_on_net_alignment_for_every_outcome():
    table = _table(200)
    s = summarize(table)
    d = s["burn_in"]
    assert s["burn_in_rule"] == "auto" and d == S.mser_burn_in(table["net_alignment"].iloc[1:])
    assert 20 <= d <= 100
    assert s["time_average_over"].startswith(f"steps {d + 1}..200")
    for name in ("net_alignment", "harm_total"):
        window = table[name].iloc[1 + d :]
        out = s["outcomes"][name]
        assert out["mean"] == pytest.approx(window.mean())
        assert out["se"] == pytest.approx(S.batch_means_se(window.to_numpy()))
        assert out["final"] == table[name].iloc[-1]


def test_summary_with_a_set_burn_in_and_without_steps_to_average():
    table = _table(50)
    s = summarize(table, burn_in=0)  # the average over steps 1..T
    assert s["burn_in"] == 0 and s["burn_in_rule"] == "set"
    assert s["outcomes"]["net_alignment"]["mean"] == pytest.approx(
        table["net_alignment"][1:].mean()
    )
    s = summarize(table, burn_in=30)
    assert s["outcomes"]["mean_alignment"]["mean"] == pytest.approx(
        table["mean_alignment"].iloc[31:].mean()
    )
    # a run of 0 steps has no time average (not its initial state) and no standard error
    s = summarize(_table(0))
    assert s["burn_in"] == 0 and s["time_average_over"].startswith("none")
    out = s["outcomes"]["net_alignment"]
    assert out["final"] == _table(0)["net_alignment"].iloc[0]
    assert np.isnan(out["mean"]) and np.isnan(out["se"])
    with pytest.raises(ValueError, match="burn_in"):
        summarize(table, burn_in="mser")
