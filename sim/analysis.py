"""Derived tables for figures and reports: intervals, lever effects, slopes and theory overlays.

Everything here takes the tidy tables the sweep engine writes (``runs.parquet``: one row per
run, dotted parameter columns, ``mean_<outcome>`` / ``final_<outcome>`` columns, ``status``) and
returns pandas tables, so that a figure, a report sentence and a user's own notebook all read
the same numbers. The mean-field overlays call :class:`sim.meanfield.MeanField`'s expected step
map (``iterate``), which is what ``mean_<outcome>`` of a simulation averages over, step for
step (docs/theory.md §2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from sim.config import Config, config_from_flat, flat_keys, to_flat
from sim.meanfield import MeanField

#: Outcomes summarised per scenario (time averages over steps 1..T of each run).
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


def grouped_ci(frame: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Per group of ``by``: mean, 95% t-interval (``lo``, ``hi``) and count of ``value``."""
    rows = []
    for key, group in frame.groupby(list(by), sort=True):
        m, lo, hi = mean_ci(group[value])
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key, strict=True)), "mean": m, "lo": lo, "hi": hi,
                     "n": int(group[value].notna().sum())})  # fmt: skip
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


# ---------------------------------------------------------------------------------------------
# Scenario comparison
# ---------------------------------------------------------------------------------------------


def scenario_table(
    runs: pd.DataFrame, outcomes: Sequence[str] = SCENARIO_OUTCOMES, statistic: str = "mean"
) -> pd.DataFrame:
    """One row per (scenario, outcome): mean over replicates, 95% interval, replicates, and the
    difference from ``baseline`` with a 95% interval (:func:`compare`: paired by seed when the
    scenario and the baseline share their seeds, Welch otherwise; ``paired`` says which; NaN
    when there is no baseline)."""
    runs = ok_runs(runs)
    base = runs[runs["scenario"] == "baseline"]
    rows = []
    for scen, sub in runs.groupby("scenario", sort=False):
        for outcome in outcomes:
            col = f"{statistic}_{outcome}"
            m, lo, hi = mean_ci(sub[col])
            pair = False
            if len(base) and scen != "baseline":
                d, dlo, dhi = compare(sub, base, col)
                pair = paired(sub, base)
            else:
                d = dlo = dhi = float("nan")
            rows.append({"scenario": scen, "outcome": outcome, "mean": m, "lo": lo, "hi": hi,
                         "n": int(sub[col].notna().sum()), "diff_baseline": d,
                         "diff_lo": dlo, "diff_hi": dhi, "paired": pair})  # fmt: skip
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
    Welch interval over the replicates. Columns: ``lever``, ``by`` value, ``outcome``,
    ``effect``, ``lo``, ``hi``, ``cells``.
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
                    on = cell.loc[on_flags.loc[cell.index, lever], col].to_numpy(float)
                    off = cell.loc[~on_flags.loc[cell.index, lever], col].to_numpy(float)
                    if on.size and off.size:
                        diffs.append(on.mean() - off.mean())
                        pairs.append((on, off))
                if len(diffs) >= 2:
                    effect, lo, hi = mean_ci(np.array(diffs))
                elif len(diffs) == 1:
                    effect, lo, hi = welch(*pairs[0])
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
    which removes the between-seed variance; otherwise it is Welch's interval.
    """
    if paired(a, b):
        diff = a.set_index("seed")[value] - b.set_index("seed")[value]
        return mean_ci(diff.to_numpy(float))
    return welch(a[value].to_numpy(float), b[value].to_numpy(float))


def peak(
    runs: pd.DataFrame, x: str, value: str = "mean_net_alignment"
) -> dict[str, float | bool | str]:
    """Where one curve (the runs of one coupling) is highest, and whether that is an interior
    peak: the highest mean sits strictly between the first and the last level of ``x`` and the
    last level is lower than it by a difference whose 95% interval (:func:`compare`: paired by
    seed under common random numbers) lies below zero.

    Keys: ``x`` and ``value`` of the best level, ``position`` ("first", "interior" or "last"),
    ``interior``, ``drop`` = best minus last with ``drop_lo`` / ``drop_hi`` (0 when the best
    level is the last; NaN bounds when there is no interval, e.g. one replicate), and ``paired``
    (whether that difference was paired by seed; False when the best level is the last).
    """
    runs = ok_runs(runs)
    means = runs.groupby(x)[value].mean().sort_index()
    best, first, last = means.idxmax(), means.index[0], means.index[-1]
    position = "last" if best == last else "first" if best == first else "interior"
    out: dict[str, float | bool | str] = {"x": float(best), "value": float(means[best]),
                                          "position": position, "interior": False, "drop": 0.0,
                                          "drop_lo": 0.0, "drop_hi": 0.0,
                                          "paired": False}  # fmt: skip
    if best != last:
        at_last, at_best = runs[runs[x] == last], runs[runs[x] == best]
        d, lo, hi = compare(at_last, at_best, value)
        out.update(interior=bool(position == "interior" and hi < 0), drop=-d, drop_lo=-hi,
                   drop_hi=-lo, paired=paired(at_last, at_best))  # fmt: skip
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
    cell, with a 95% interval (:func:`compare`: paired by seed under common random numbers).
    A cell missing either level has NaN slope (no estimate)."""
    runs = ok_runs(runs)
    q_lo, q_hi = float(runs[q].min()), float(runs[q].max())
    if not q_hi > q_lo:
        raise ValueError(f"slope_table: {q} takes one value ({q_lo:g}); a slope needs two levels")
    step = q_hi - q_lo
    rows = []
    for (xv, yv), cell in runs.groupby([x, y], sort=True):
        d, lo, hi = compare(cell[np.isclose(cell[q], q_hi)], cell[np.isclose(cell[q], q_lo)],
                            value)  # fmt: skip
        rows.append({x: xv, y: yv, "slope": d / step, "lo": lo / step, "hi": hi / step,
                     "q_lo": q_lo, "q_hi": q_hi})  # fmt: skip
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


def meanfield_level(cfg: Config, steps: int, outcome: str = "net_alignment") -> float:
    """The mean-field prediction of ``mean_<outcome>`` (average over steps 1..T)."""
    return float(MeanField(cfg).iterate(steps)[outcome].iloc[1:].mean())


def meanfield_curves(
    cfg: Config,
    couplings: Sequence[float],
    qs: Sequence[float],
    steps: int,
    *,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Mean-field net alignment N(q) per coupling, plus each curve's optimum q*.

    Returns columns ``kappa``, ``q``, ``N`` and ``q_star`` (NaN when the best level on the grid
    is its last one, i.e. no interior optimum). An interior q* is refined between the grid
    neighbours of the best level by bounded scalar optimisation (tolerance 0.005).
    """
    qs = sorted(float(q) for q in qs)
    frames = []
    for kappa in couplings:
        if progress:
            progress(f"mean-field paradox curve, κ = {kappa:g}")
        n = [meanfield_level(with_values(cfg, {"model.coupling": kappa,
                                               "model.fixed_alignment": q}), steps)
             for q in qs]  # fmt: skip
        best = int(np.argmax(n))
        q_star = float("nan")
        if 0 < best < len(qs) - 1:
            res = optimize.minimize_scalar(
                lambda q, k=kappa: (
                    -meanfield_level(
                        with_values(cfg, {"model.coupling": k, "model.fixed_alignment": q}), steps
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
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Per level of ``y``: the smallest κ in [0, 1] at which the mean-field slope
    (N(q_hi) − N(q_lo)) / (q_hi − q_lo) is negative.

    The slope need not change sign only once in κ, so κ is first scanned in ``scan`` equal steps
    from 0 to 1; the first scanned κ with a negative slope and the one before it are then
    bisected to ``tol``. A negative stretch narrower than 1/``scan`` between two scanned points
    can be missed. NaN when no scanned κ has a negative slope. Columns ``y``, ``kappa_star``.
    """

    def slope(kappa: float, level: float) -> float:
        values = [meanfield_level(with_values(cfg, {y: level, "model.coupling": kappa,
                                                    "model.fixed_alignment": q}), steps)
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
