"""Derived tables: intervals, lever effects, curve peaks, slopes and the mean-field overlays."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from sim import analysis as A
from sim.config import Config


def test_mean_ci_is_the_t_interval():
    m, lo, hi = A.mean_ci(np.array([1.0, 2.0, 3.0]))
    half = 4.302653 / np.sqrt(3)  # t(0.975, 2) · s / √n with s = 1
    assert m == 2.0 and lo == pytest.approx(2 - half, rel=1e-5) and hi == pytest.approx(2 + half)
    assert all(np.isnan(A.mean_ci([])))


def test_one_value_gives_no_interval_not_a_zero_width_one():
    m, lo, hi = A.mean_ci([5.0])
    assert m == 5.0 and np.isnan(lo) and np.isnan(hi)
    d, lo, hi = A.welch(np.array([2.0]), np.array([1.0, 1.2]))
    assert d == pytest.approx(0.9) and np.isnan(lo) and np.isnan(hi)
    # constant samples on both sides are exact: a zero-width interval is the truth there
    assert A.welch(np.array([2.0, 2.0]), np.array([1.0, 1.0])) == (1.0, 1.0, 1.0)


def test_welch_interval_matches_scipy():
    from scipy import stats

    a, b = np.array([1.0, 2.0, 4.0, 3.0]), np.array([0.0, 1.0, 0.5])
    d, lo, hi = A.welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(a.mean() - b.mean())
    assert (lo, hi) == pytest.approx((ref.low, ref.high))


def _factorial(rng: np.random.Generator, noise: float) -> pd.DataFrame:
    """2^3 factorial in two worlds: lever a lowers harm by 0.1, b by 0.05 only in 'hard',
    c does nothing; one run per cell."""
    rows = []
    for world in ("easy", "hard"):
        for a, b, c in itertools.product((0.0, 1.0), repeat=3):
            harm = 1.0 - 0.1 * a - (0.05 * b if world == "hard" else 0.0)
            rows.append({"scenario": world, "p.a": a, "p.b": b * 0.6, "p.c": 1.0 - c,
                         "mean_harm_total": harm + rng.normal(0, noise)})  # fmt: skip
    return pd.DataFrame(rows)


def test_lever_effects_recover_planted_main_effects():
    runs = _factorial(np.random.default_rng(0), noise=0.005)
    eff = A.lever_effects(runs, {"p.a": 0.0, "p.b": 0.0, "p.c": 1.0}, ["harm_total"])
    get = eff.set_index(["scenario", "lever"])
    assert get.loc[("easy", "p.a"), "effect"] == pytest.approx(-0.1, abs=0.01)
    assert get.loc[("hard", "p.b"), "effect"] == pytest.approx(-0.05, abs=0.01)
    assert get.loc[("easy", "p.b"), "lo"] < 0 < get.loc[("easy", "p.b"), "hi"]
    assert get.loc[("hard", "p.c"), "lo"] < 0 < get.loc[("hard", "p.c"), "hi"]
    assert (eff["cells"] == 4).all()  # matched on the other two levers


def test_lever_effects_one_at_a_time_uses_replicates():
    rng = np.random.default_rng(1)
    rows = [{"scenario": "w", "p.a": a, "p.b": b, "mean_x": 0.3 * a + rng.normal(0, 0.01)}
            for a, b in ((0, 0), (1, 0), (0, 1)) for _ in range(5)]  # fmt: skip
    eff = A.lever_effects(pd.DataFrame(rows), {"p.a": 0, "p.b": 0}, ["x"]).set_index("lever")
    assert eff.loc["p.a", "cells"] == 1
    assert eff.loc["p.a", "lo"] < 0.3 < eff.loc["p.a", "hi"]
    assert eff.loc["p.b", "lo"] < 0 < eff.loc["p.b", "hi"]


def test_failed_runs_are_left_out():
    runs = pd.DataFrame({"scenario": ["baseline"] * 3, "status": ["ok", "ok", "failed"],
                         "mean_harm_total": [1.0, 3.0, np.nan]})  # fmt: skip
    table = A.scenario_table(runs, outcomes=["harm_total"])
    assert table["n"].item() == 2 and table["mean"].item() == 2.0


def test_scenario_table_differences_from_baseline():
    runs = pd.DataFrame({"scenario": ["baseline"] * 3 + ["other"] * 3,
                         "mean_harm_total": [1.0, 1.1, 0.9, 2.0, 2.1, 1.9]})  # fmt: skip
    table = A.scenario_table(runs, outcomes=["harm_total"]).set_index("scenario")
    assert np.isnan(table.loc["baseline", "diff_baseline"])
    assert table.loc["other", "diff_baseline"] == pytest.approx(1.0)
    assert table.loc["other", "diff_lo"] > 0
    assert not table.loc["other", "paired"]  # no seed column: Welch


def test_scenario_table_pairs_scenarios_by_seed():
    rng = np.random.default_rng(5)
    offsets = rng.normal(0, 0.5, 6)  # a seed effect much larger than the scenario difference
    runs = pd.DataFrame(
        {
            "scenario": ["baseline"] * 6 + ["other"] * 6,
            "seed": [*range(6)] * 2,
            "mean_harm_total": [*(1.0 + offsets), *(1.05 + offsets + rng.normal(0, 0.001, 6))],
        }
    )
    row = A.scenario_table(runs, outcomes=["harm_total"]).set_index("scenario").loc["other"]
    assert row["paired"] and 0 < row["diff_lo"] < 0.05 < row["diff_hi"]


def _curve_runs(values: list[float], noise: float, seeds_shared: bool) -> pd.DataFrame:
    """Ten replicates per level; each seed adds the same offset at every level (a seed effect
    much larger than the within-seed noise), as with common random numbers."""
    rng = np.random.default_rng(3)
    offsets = rng.normal(0, 0.2, 10)
    rows = []
    for i, (q, v) in enumerate(zip((0.2, 0.5, 0.8), values, strict=True)):
        for r in range(10):
            seed = r if seeds_shared else 100 * i + r
            rows.append({"q": q, "seed": seed, "replicate": r,
                         "mean_net_alignment": v + offsets[r] + rng.normal(0, noise)})  # fmt: skip
    return pd.DataFrame(rows)


def test_peak_is_interior_only_when_the_end_is_clearly_lower():
    p = A.peak(_curve_runs([0.1, 0.3, 0.27], 0.005, seeds_shared=True), "q")
    assert p["x"] == 0.5 and p["interior"]  # paired by seed: the seed effect cancels
    assert p["drop_lo"] < 0.03 < p["drop_hi"]
    unpaired = A.peak(_curve_runs([0.1, 0.3, 0.27], 0.005, seeds_shared=False), "q")
    assert not unpaired["interior"]  # the same fall is lost in the between-seed variance
    assert p["paired"] and not unpaired["paired"]  # and peak says which comparison it made
    rising = A.peak(_curve_runs([0.1, 0.2, 0.3], 0.005, seeds_shared=True), "q")
    assert rising["x"] == 0.8 and not rising["interior"] and rising["position"] == "last"
    assert not rising["paired"]  # no fall, no comparison


def test_peak_at_the_first_level_is_not_interior():
    falling = A.peak(_curve_runs([0.3, 0.2, 0.1], 0.005, seeds_shared=True), "q")
    assert falling["x"] == 0.2 and falling["position"] == "first" and not falling["interior"]
    assert falling["drop_lo"] < 0.2 < falling["drop_hi"]  # the fall is still measured


def test_compare_pairs_only_matching_seeds():
    a = pd.DataFrame({"seed": [1, 2, 3], "v": [1.0, 2.0, 3.0]})
    b = pd.DataFrame({"seed": [3, 1, 2], "v": [2.5, 0.5, 1.5]})
    assert A.paired(a, b) and A.compare(a, b, "v") == (0.5, 0.5, 0.5)  # identical differences
    c = b.assign(seed=[4, 5, 6])
    welch = A.welch(a["v"].to_numpy(), c["v"].to_numpy())
    assert not A.paired(a, c) and A.compare(a, c, "v") == pytest.approx(welch)


def test_slope_table_finite_difference():
    rows = [{"model.coupling": k, "model.attacker_value": 10.0, "model.fixed_alignment": q,
             "mean_net_alignment": q * (1 - k * q)} for k in (0.0, 1.0) for q in (0.5, 0.9)
            for _ in range(2)]  # fmt: skip
    slopes = A.slope_table(pd.DataFrame(rows)).set_index("model.coupling")["slope"]
    # N(q) = q - k q²: the secant slope between 0.5 and 0.9 is 1 - k (0.5 + 0.9)
    assert slopes.loc[0.0] == pytest.approx(1.0) and slopes.loc[1.0] == pytest.approx(-0.4)


def test_slope_table_needs_two_levels_and_marks_missing_cells():
    rows = [{"model.coupling": k, "model.attacker_value": 10.0, "model.fixed_alignment": q,
             "mean_net_alignment": q, "seed": r} for k in (0.0, 1.0) for q in (0.5, 0.9)
            for r in range(2) if not (k == 1.0 and q == 0.9)]  # fmt: skip
    slopes = A.slope_table(pd.DataFrame(rows)).set_index("model.coupling")
    assert slopes.loc[0.0, "slope"] == pytest.approx(1.0)
    assert np.isnan(slopes.loc[1.0, "slope"])  # the q = 0.9 runs of this cell are missing
    one_level = pd.DataFrame(rows)[lambda f: f["model.fixed_alignment"] == 0.5]
    with pytest.raises(ValueError, match=r"model\.fixed_alignment takes one value"):
        A.slope_table(one_level)


def _small() -> Config:
    cfg = Config()
    cfg.model.n_labs, cfg.model.n_adversaries = 8, 300
    cfg.model.attacker_value, cfg.model.adversary_budget_mean = 80.0, 1.0
    return cfg


def test_meanfield_curves_rise_without_coupling_and_peak_with_it():
    curves = A.meanfield_curves(_small(), [0.0, 1.0], [0.3, 0.5, 0.7, 0.85, 0.95], steps=60)
    flat = curves[curves["kappa"] == 0.0]
    assert np.all(np.diff(flat["N"]) > 0) and flat["q_star"].isna().all()
    strong = curves[curves["kappa"] == 1.0]
    q_star = strong["q_star"].iloc[0]
    assert 0.5 < q_star < 0.95  # interior optimum, refined between grid neighbours


def test_meanfield_threshold_brackets_the_sign_change():
    cfg = _small()
    out = A.meanfield_threshold(cfg, "model.attacker_value", [80.0], 0.75, 0.95, steps=60)
    kappa_star = out["kappa_star"].item()
    assert 0 < kappa_star < 1

    def slope(kappa):
        n = [A.meanfield_level(A.with_values(cfg, {"model.coupling": kappa,
                                                   "model.fixed_alignment": q}), 60)
             for q in (0.75, 0.95)]  # fmt: skip
        return n[1] - n[0]

    assert slope(kappa_star - 0.03) > 0 > slope(kappa_star + 0.03)


def test_meanfield_threshold_finds_the_first_negative_stretch(monkeypatch):
    """A slope negative only for 0.3 < κ < 0.5 and positive again at κ = 1: the scan finds it
    (bisection from [0, 1] alone would have reported no threshold)."""

    def fake_level(cfg, steps, outcome="net_alignment", burn_in=0):
        kappa, q = cfg.model.coupling, cfg.model.fixed_alignment
        return q * (-1.0 if 0.3 < kappa < 0.5 else 1.0)

    monkeypatch.setattr(A, "meanfield_level", fake_level)
    out = A.meanfield_threshold(Config(), "model.attacker_value", [10.0], 0.5, 0.9, steps=5)
    assert out["kappa_star"].item() == pytest.approx(0.3, abs=1 / 64)
    monkeypatch.setattr(A, "meanfield_level", lambda cfg, *_, **__: -cfg.model.fixed_alignment)
    out = A.meanfield_threshold(Config(), "model.attacker_value", [10.0], 0.5, 0.9, steps=5)
    assert out["kappa_star"].item() == 0.0  # negative everywhere: the threshold is κ = 0


def _single_runs() -> pd.DataFrame:
    """One run per level (mean, batch-means SE): levels 0.2 and 0.8, 150 steps, burn-in 50."""
    return pd.DataFrame({"q": [0.2, 0.8], "seed": [1, 2], "steps": [150, 150],
                         "burn_in": [50, 50], "mean_net_alignment": [0.30, 0.25],
                         "se_net_alignment": [0.01, 0.02]})  # fmt: skip


def test_a_single_replicate_gets_the_batch_means_interval_of_its_run():
    from scipy import stats

    runs = _single_runs()
    table = A.grouped_ci(runs, ["q"], "mean_net_alignment").set_index("q")
    t9 = stats.t.ppf(0.975, 9)  # 100 steps averaged: 10 batches, 9 degrees of freedom
    assert table.loc[0.2, "lo"] == pytest.approx(0.30 - t9 * 0.01)
    assert table.loc[0.8, "hi"] == pytest.approx(0.25 + t9 * 0.02)
    assert (table["interval"] == "batch means").all()
    # two runs of a point: the interval over replicates, as before
    two = pd.concat([runs, runs.assign(seed=[3, 4], mean_net_alignment=[0.32, 0.27])])
    table = A.grouped_ci(two, ["q"], "mean_net_alignment")
    assert (table["interval"] == "replicates").all()
    _, lo, hi = A.mean_ci([0.30, 0.32])
    assert (table["lo"].iloc[0], table["hi"].iloc[0]) == pytest.approx((lo, hi))
    # a table without standard errors (or a final value) has no interval for one run
    plain = A.grouped_ci(runs.drop(columns="se_net_alignment"), ["q"], "mean_net_alignment")
    assert plain["lo"].isna().all() and (plain["interval"] == "none").all()
    runs["final_net_alignment"] = runs["mean_net_alignment"]
    assert A.grouped_ci(runs, ["q"], "final_net_alignment")["lo"].isna().all()


def test_two_single_runs_are_compared_by_their_batch_means():
    from scipy import stats

    runs = _single_runs()
    a, b = runs[runs["q"] == 0.8], runs[runs["q"] == 0.2]
    d, lo, hi = A.compare(a, b, "mean_net_alignment")
    var = 0.01**2 + 0.02**2
    dof = var**2 / (0.01**4 / 9 + 0.02**4 / 9)  # Welch–Satterthwaite
    half = stats.t.ppf(0.975, dof) * np.sqrt(var)
    assert d == pytest.approx(-0.05) and (lo, hi) == pytest.approx((d - half, d + half))
    assert A.compare_method(a, b, "mean_net_alignment") == "batch means"
    slopes = A.slope_table(runs.assign(x=0.0, y=0.0), x="x", y="y", q="q")
    assert slopes["method"].item() == "batch means"
    assert slopes["lo"].item() == pytest.approx(lo / 0.6)
    p = A.peak(runs, "q")
    assert p["position"] == "first" and p["method"] == "batch means"
    assert p["drop_lo"] == pytest.approx(-hi)
