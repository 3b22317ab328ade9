"""Derived tables for figures and reports: intervals, lever effects, slopes and theory overlays.

Everything here takes the tidy tables the sweep engine writes (``runs.parquet``: one row per
run, dotted parameter columns, ``mean_<outcome>`` / ``final_<outcome>`` / ``se_<outcome>``
columns, ``burn_in``, ``status``) and returns pandas tables, so that a figure, a report sentence
and a user's own notebook all read the same numbers. The mean-field overlays call
:class:`sim.meanfield.MeanField`'s expected step map (``iterate``), which is what
``mean_<outcome>`` of a simulation averages over, step for step (docs/theory.md §2).

Intervals (docs/ODD.md §4, "Observation"): a design point's mean gets the t-interval over its
replicates, which are independent runs, so the autocorrelation within each run is already in
their spread. A point with a single replicate gets the batch-means interval of that one run
(:func:`sim.stats.batch_means_se`, from its ``se_<outcome>`` column), which measures only the
noise of that run's time average, not the variation between seeds; without ``se_`` columns
(tables made before they existed) it gets no interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from sim import stats as S
from sim.config import Config, config_from_flat, flat_keys, to_flat
from sim.meanfield import MeanField

#: Outcomes summarised per scenario (time averages after each run's burn-in).
SCENARIO_OUTCOMES: tuple[str, ...] = (
    "net_alignment",
    "harm_total",
    "harm_exploitation",
    "paradox_index",
    "compromised_share",
    "success_rate_total",
)


def ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that finished (``status == "ok"``); every row when there is no status column."""
    return runs[runs["status"] == "ok"] if "status" in runs else runs


def mean_ci(values: pd.Series | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a t-based confidence interval over replicates.

    With one finite value there is no interval: the bounds are NaN (not a zero-width interval,
    which every reading would take for certainty)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if v.size < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def run_se(frame: pd.DataFrame, value: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Each run's batch-means standard error of ``value`` and its degrees of freedom.

    Only a time average ``mean_<outcome>`` has one: its ``se_<outcome>`` column, with
    b − 1 degrees of freedom for the b = :func:`sim.stats.batch_count` batches of the
    ``steps − burn_in`` steps averaged. None when the table lacks those columns.
    """
    if not value.startswith("mean_"):
        return None
    se_col = "se_" + value.removeprefix("mean_")
    if not {se_col, "burn_in", "steps"} <= set(frame.columns):
        return None
    window = (frame["steps"].astype(float) - frame["burn_in"].astype(float)).to_numpy()
    dof = np.array([S.batch_count(int(n)) - 1 if np.isfinite(n) else np.nan for n in window])
    return frame[se_col].to_numpy(float), dof


def point_ci(
    frame: pd.DataFrame, value: str, level: float = 0.95
) -> tuple[float, float, float, str]:
    """Mean of ``value`` over the runs of one design point, with a 95% interval, and its kind.

    Two or more finite values: the t-interval over replicates (:func:`mean_ci`), kind
    ``"replicates"``. One: the batch-means t-interval of that run's time average
    (:func:`run_se`), kind ``"batch means"``, when the table has its standard error; else NaN
    bounds, kind ``"none"``.
    """
    v = frame[value].to_numpy(float)
    finite = np.isfinite(v)
    if finite.sum() == 1:
        bm = run_se(frame[finite], value)
        if bm is not None:
            m = float(v[finite][0])
            lo, hi = S.t_interval(m, float(bm[0][0]), float(bm[1][0]), level)
            if np.isfinite(lo):
                return m, lo, hi, "batch means"
    m, lo, hi = mean_ci(v, level)
    return m, lo, hi, "replicates" if finite.sum() >= 2 else "none"


def grouped_ci(frame: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Per group of ``by``: mean, 95% interval (``lo``, ``hi``), count of ``value`` and the
    interval's kind (:func:`point_ci`: over replicates, or batch means for a single run)."""
    rows = []
    for key, group in frame.groupby(list(by), sort=True):
        m, lo, hi, kind = point_ci(group, value)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key, strict=True)), "mean": m, "lo": lo, "hi": hi,
                     "n": int(group[value].notna().sum()), "interval": kind})  # fmt: skip
    return pd.DataFrame(rows)


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Difference of means ``a − b`` with a Welch 95% interval (NaN bounds when either side has
    fewer than two values; zero width only when both sides are constant)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan"), float("nan")
    d = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return d, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return d, d, d
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.975, dof) * se)
    return d, d - half, d + half


def single_runs(a: pd.DataFrame, b: pd.DataFrame, value: str) -> tuple[float, float, float] | None:
    """Difference ``a − b`` of two single runs' time averages with a 95% interval from their
    batch-means standard errors: se = √(se_a² + se_b²), Welch–Satterthwaite degrees of freedom.
    None unless each side has exactly one finite value and both have a standard error.

    The two runs' within-run noise is treated as independent. Under common random numbers
    they share their seed, which usually correlates them positively, so the interval is then
    conservative; like every single-run interval it says nothing about other seeds.
    """
    av, bv = a[value].to_numpy(float), b[value].to_numpy(float)
    fa, fb = np.isfinite(av), np.isfinite(bv)
    if fa.sum() != 1 or fb.sum() != 1:
        return None
    ra, rb = run_se(a[fa], value), run_se(b[fb], value)
    if ra is None or rb is None:
        return None
    (sa, da), (sb, db) = ((float(r[0][0]), float(r[1][0])) for r in (ra, rb))
    if not (np.isfinite([sa, sb, da, db]).all() and min(da, db) >= 1):
        return None
    d = float(av[fa][0] - bv[fb][0])
    var = sa**2 + sb**2
    if var == 0:
        return d, d, d
    dof = var**2 / (sa**4 / da + sb**4 / db)
    lo, hi = S.t_interval(d, float(np.sqrt(var)), dof)
    return d, lo, hi


# ---------------------------------------------------------------------------------------------
# Scenario comparison
# ---------------------------------------------------------------------------------------------


def scenario_table(
    runs: pd.DataFrame, outcomes: Sequence[str] = SCENARIO_OUTCOMES, statistic: str = "mean"
) -> pd.DataFrame:
    """One row per (scenario, outcome): mean over replicates, 95% interval (:func:`point_ci`;
    ``interval`` says its kind), replicates, and the difference from ``baseline`` with a 95%
    interval (:func:`compare`: paired by seed when the scenario and the baseline share their
    seeds, from batch means for two single runs, Welch otherwise; ``method`` says which and
    ``paired`` whether it was paired; NaN when there is no baseline)."""
    runs = ok_runs(runs)
    base = runs[runs["scenario"] == "baseline"]
    rows = []
    for scen, sub in runs.groupby("scenario", sort=False):
        for outcome in outcomes:
            col = f"{statistic}_{outcome}"
            m, lo, hi, kind = point_ci(sub, col)
            method = ""
            if len(base) and scen != "baseline":
                d, dlo, dhi = compare(sub, base, col)
                method = compare_method(sub, base, col)
            else:
                d = dlo = dhi = float("nan")
            rows.append({"scenario": scen, "outcome": outcome, "mean": m, "lo": lo, "hi": hi,
                         "n": int(sub[col].notna().sum()), "interval": kind,
                         "diff_baseline": d, "diff_lo": dlo, "diff_hi": dhi,
                         "paired": method == "paired", "method": method})  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Policy levers
# ---------------------------------------------------------------------------------------------


def lever_effects(
    runs: pd.DataFrame,
    levers: Mapping[str, float],
    outcomes: Sequence[str],
    *,
    by: str = "scenario",
    statistic: str = "mean",
) -> pd.DataFrame:
    """Each lever's effect (on minus off) on ``outcomes`` within each ``by`` group.

    ``levers`` maps a parameter column to its "off" value; any other value counts as "on".
    Runs are matched on the values of all *other* levers (cells): within each cell with both
    on and off runs the effect is the difference of means. With several such cells (a
    factorial design) the effect is the mean difference over cells with a paired t-interval
    across cells (a main effect); with one cell (one lever at a time against all off) it is a
    Welch interval over the replicates, or, with a single run on each side, the interval from
    their batch-means standard errors (:func:`single_runs`). Columns: ``lever``, ``by`` value,
    ``outcome``, ``effect``, ``lo``, ``hi``, ``cells``.
    """
    runs = ok_runs(runs)
    names = list(levers)
    rows = []
    for group, sub in runs.groupby(by, sort=False):
        on_flags = pd.DataFrame({k: ~np.isclose(sub[k].astype(float), levers[k]) for k in names},
                                index=sub.index)  # fmt: skip
        for lever in names:
            others = [k for k in names if k != lever]
            keys = on_flags[others].astype(int).astype(str).agg("".join, axis=1) if others else (
                pd.Series("", index=sub.index))  # fmt: skip
            for outcome in outcomes:
                col = f"{statistic}_{outcome}"
                diffs, pairs = [], []
                for _, cell in sub.groupby(keys):
                    on_rows = cell[on_flags.loc[cell.index, lever]]
                    off_rows = cell[~on_flags.loc[cell.index, lever]]
                    if len(on_rows) and len(off_rows):
                        on, off = on_rows[col].to_numpy(float), off_rows[col].to_numpy(float)
                        diffs.append(on.mean() - off.mean())
                        pairs.append((on_rows, off_rows))
                if len(diffs) >= 2:
                    effect, lo, hi = mean_ci(np.array(diffs))
                elif len(diffs) == 1:
                    on_rows, off_rows = pairs[0]
                    one = single_runs(on_rows, off_rows, col)
                    effect, lo, hi = one if one is not None else welch(
                        on_rows[col].to_numpy(float), off_rows[col].to_numpy(float))  # fmt: skip
                else:
                    effect = lo = hi = float("nan")
                rows.append({"lever": lever, by: group, "outcome": outcome, "effect": effect,
                             "lo": lo, "hi": hi, "cells": len(diffs)})  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The paradox curve and the regime map
# ---------------------------------------------------------------------------------------------


def curve_table(
    runs: pd.DataFrame,
    *,
    x: str = "model.fixed_alignment",
    group: str = "model.coupling",
    value: str = "mean_net_alignment",
) -> pd.DataFrame:
    """Mean and 95% interval of ``value`` per (group, x), sorted."""
    return grouped_ci(ok_runs(runs), [group, x], value)


def paired(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two sets of runs hold the same seeds, each once (common random numbers)."""
    return bool("seed" in a and "seed" in b and len(a) >= 2 and a["seed"].is_unique
                and b["seed"].is_unique and set(a["seed"]) == set(b["seed"]))  # fmt: skip


def compare(a: pd.DataFrame, b: pd.DataFrame, value: str) -> tuple[float, float, float]:
    """Difference of ``value`` between two sets of runs, ``a − b``, with a 95% interval.

    With common random numbers (both sets hold the same seeds, once each: ``seeding: common``)
    the runs are paired by seed and the interval is the t-interval of the paired differences,
    which removes the between-seed variance. When each side is a single run, the interval comes
    from the two runs' batch-means standard errors (:func:`single_runs`). Otherwise it is
    Welch's interval. :func:`compare_method` says which applies.
    """
    if paired(a, b):
        diff = a.set_index("seed")[value] - b.set_index("seed")[value]
        return mean_ci(diff.to_numpy(float))
    one = single_runs(a, b, value)
    if one is not None:
        return one
    return welch(a[value].to_numpy(float), b[value].to_numpy(float))


def compare_method(a: pd.DataFrame, b: pd.DataFrame, value: str) -> str:
    """Which interval :func:`compare` gives: ``"paired"``, ``"batch means"`` or ``"welch"``."""
    if paired(a, b):
        return "paired"
    return "batch means" if single_runs(a, b, value) is not None else "welch"


def peak(
    runs: pd.DataFrame, x: str, value: str = "mean_net_alignment"
) -> dict[str, float | bool | str]:
    """Where one curve (the runs of one coupling) is highest, and whether that is an interior
    peak: the highest mean sits strictly between the first and the last level of ``x`` and the
    last level is lower than it by a difference whose 95% interval (:func:`compare`: paired by
    seed under common random numbers) lies below zero.

    Keys: ``x`` and ``value`` of the best level, ``position`` ("first", "interior" or "last"),
    ``interior``, ``drop`` = best minus last with ``drop_lo`` / ``drop_hi`` (0 when the best
    level is the last; NaN bounds when there is no interval, e.g. one replicate without standard
    errors), ``paired`` (whether that difference was paired by seed; False when the best level
    is the last) and ``method`` (:func:`compare_method`; "" when the best level is the last).
    """
    runs = ok_runs(runs)
    means = runs.groupby(x)[value].mean().sort_index()
    best, first, last = means.idxmax(), means.index[0], means.index[-1]
    position = "last" if best == last else "first" if best == first else "interior"
    out: dict[str, float | bool | str] = {"x": float(best), "value": float(means[best]),
                                          "position": position, "interior": False, "drop": 0.0,
                                          "drop_lo": 0.0, "drop_hi": 0.0,
                                          "paired": False, "method": ""}  # fmt: skip
    if best != last:
        at_last, at_best = runs[runs[x] == last], runs[runs[x] == best]
        d, lo, hi = compare(at_last, at_best, value)
        method = compare_method(at_last, at_best, value)
        out.update(interior=bool(position == "interior" and hi < 0), drop=-d, drop_lo=-hi,
                   drop_hi=-lo, paired=method == "paired", method=method)  # fmt: skip
    return out


def slope_table(
    runs: pd.DataFrame,
    *,
    x: str = "model.coupling",
    y: str = "model.attacker_value",
    q: str = "model.fixed_alignment",
    value: str = "mean_net_alignment",
) -> pd.DataFrame:
    """Finite-difference slope dN/dq between the lowest and highest level of ``q``, per (x, y)
    cell, with a 95% interval (:func:`compare`: paired by seed under common random numbers;
    ``method`` says which interval). A cell missing either level has NaN slope (no estimate)."""
    runs = ok_runs(runs)
    q_lo, q_hi = float(runs[q].min()), float(runs[q].max())
    if not q_hi > q_lo:
        raise ValueError(f"slope_table: {q} takes one value ({q_lo:g}); a slope needs two levels")
    step = q_hi - q_lo
    rows = []
    for (xv, yv), cell in runs.groupby([x, y], sort=True):
        top, bottom = cell[np.isclose(cell[q], q_hi)], cell[np.isclose(cell[q], q_lo)]
        d, lo, hi = compare(top, bottom, value)
        rows.append({x: xv, y: yv, "slope": d / step, "lo": lo / step, "hi": hi / step,
                     "q_lo": q_lo, "q_hi": q_hi,
                     "method": compare_method(top, bottom, value)})  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Mean-field overlays
# ---------------------------------------------------------------------------------------------

Progress = Callable[[str], None]

#: Bumped whenever the mean-field overlays below change how they are computed, so that cached
#: overlays (``paradox plot`` keeps them beside the runs) are recomputed.
MEANFIELD_OVERLAY_VERSION = 2


def with_values(cfg: Config, values: Mapping[str, float]) -> Config:
    """A copy of ``cfg`` with dotted keys (``model.coupling``) set, validated."""
    flat = to_flat(cfg)
    names = {dotted: name for name, dotted in flat_keys().items()}
    for key, value in values.items():
        flat[names[key]] = value
    return config_from_flat(**flat)


def meanfield_level(
    cfg: Config, steps: int, outcome: str = "net_alignment", burn_in: int = 0
) -> float:
    """The mean-field prediction of ``mean_<outcome>``: its average over steps burn_in+1..T,
    the window a run's time average covers after a burn-in of ``burn_in`` steps."""
    return float(MeanField(cfg).iterate(steps)[outcome].iloc[1 + burn_in :].mean())


def typical_burn_in(runs: pd.DataFrame) -> int:
    """The median burn-in of the finished runs, in whole steps (0 for a table without a
    ``burn_in`` column): the window the mean-field overlays average over, so that they compare
    with the runs' time averages."""
    if "burn_in" not in runs:
        return 0
    values = ok_runs(runs)["burn_in"].dropna()
    return int(np.floor(values.median())) if len(values) else 0


def meanfield_curves(
    cfg: Config,
    couplings: Sequence[float],
    qs: Sequence[float],
    steps: int,
    *,
    burn_in: int = 0,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Mean-field net alignment N(q) per coupling, plus each curve's optimum q*.

    N is averaged over steps burn_in+1..T (:func:`meanfield_level`). Returns columns ``kappa``,
    ``q``, ``N`` and ``q_star`` (NaN when the best level on the grid is its last one, i.e. no
    interior optimum). An interior q* is refined between the grid neighbours of the best level
    by bounded scalar optimisation (tolerance 0.005).
    """
    qs = sorted(float(q) for q in qs)
    frames = []
    for kappa in couplings:
        if progress:
            progress(f"mean-field paradox curve, κ = {kappa:g}")
        n = [meanfield_level(with_values(cfg, {"model.coupling": kappa,
                                               "model.fixed_alignment": q}), steps,
                             burn_in=burn_in)
             for q in qs]  # fmt: skip
        best = int(np.argmax(n))
        q_star = float("nan")
        if 0 < best < len(qs) - 1:
            res = optimize.minimize_scalar(
                lambda q, k=kappa: (
                    -meanfield_level(
                        with_values(cfg, {"model.coupling": k, "model.fixed_alignment": q}),
                        steps,
                        burn_in=burn_in,
                    )
                ),
                bounds=(qs[best - 1], qs[best + 1]),
                method="bounded",
                options={"xatol": 0.005},
            )
            q_star = float(res.x)
        frames.append(pd.DataFrame({"kappa": float(kappa), "q": qs, "N": n, "q_star": q_star}))
    return pd.concat(frames, ignore_index=True)


def meanfield_threshold(
    cfg: Config,
    y: str,
    levels: Sequence[float],
    q_lo: float,
    q_hi: float,
    steps: int,
    *,
    tol: float = 1 / 64,
    scan: int = 8,
    burn_in: int = 0,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Per level of ``y``: the smallest κ in [0, 1] at which the mean-field slope
    (N(q_hi) − N(q_lo)) / (q_hi − q_lo) is negative, N averaged over steps burn_in+1..T.

    The slope need not change sign only once in κ, so κ is first scanned in ``scan`` equal steps
    from 0 to 1; the first scanned κ with a negative slope and the one before it are then
    bisected to ``tol``. A negative stretch narrower than 1/``scan`` between two scanned points
    can be missed. NaN when no scanned κ has a negative slope. Columns ``y``, ``kappa_star``.
    """

    def slope(kappa: float, level: float) -> float:
        values = [meanfield_level(with_values(cfg, {y: level, "model.coupling": kappa,
                                                    "model.fixed_alignment": q}), steps,
                                  burn_in=burn_in)
                  for q in (q_lo, q_hi)]  # fmt: skip
        return (values[1] - values[0]) / (q_hi - q_lo)

    grid = np.linspace(0.0, 1.0, scan + 1)
    rows = []
    for level in levels:
        if progress:
            progress(f"mean-field threshold κ*, {y} = {level:g}")
        kappa_star = float("nan")
        first = next((i for i, k in enumerate(grid) if slope(float(k), level) < 0), None)
        if first == 0:
            kappa_star = 0.0
        elif first is not None:
            lo, hi = float(grid[first - 1]), float(grid[first])
            while hi - lo > tol:
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if slope(mid, level) < 0 else (mid, hi)
            kappa_star = (lo + hi) / 2
        rows.append({"y": float(level), "kappa_star": kappa_star})
    return pd.DataFrame(rows)
