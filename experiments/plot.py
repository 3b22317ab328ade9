"""``paradox plot <folder>``: every figure a results folder's tables support.

Reads what is there and draws what applies into ``<folder>/figures/`` (PDF, PNG at 300 dpi and
a caption ``.txt`` each), then prints that folder last:

- a per-step table with scenarios (a ``paradox run`` folder, or a sweep with
  ``save_timeseries``, e.g. ``sweep=scenarios``): scenario dynamics and the arms race;
- a ``runs.parquet`` varying ``model.fixed_alignment`` (3+ levels) and ``model.coupling``
  (``sweep=paradox_curve``): the paradox curve, with the mean-field curve and its q* overlaid;
- one varying ``model.coupling``, an adversary-strength key and ``model.fixed_alignment`` at two
  levels (``sweep=regime_map``): the regime map of the slope dN/dq with the mean-field κ*;
- one varying two-level ``policy.*`` levers (``sweep=policy_grid``): the policy forest plot;
- a ``sobol_indices.csv`` or ``morris_indices.csv`` (``paradox sensitivity``): Sobol' index bars
  or Morris μ*–σ plots for the headline outcomes; a ``prim_boxes.csv`` (and
  ``prim_trajectory.csv``): the PRIM boxes and their trade-off curve.

A folder holding such folders at any depth (a ``paradox report`` folder, whose runs are in
``sweeps/<part>/``) is plotted part by part. The theory overlays are written beside the figures
(never into the input folder, which may be read-only or archived) as ``market_curve.csv``,
``meanfield_curve.csv``, ``market_threshold.csv`` or ``meanfield_threshold.csv``, each with a
``.key`` fingerprint of the configuration and grid, and reused on the next call only when that
still matches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sim import analysis as A
from sim import figures as F
from sim import market as M
from sim import rules
from sim.config import Config, ParameterError, flat_keys, to_flat
from sim.gsa import FIGURE_OUTCOMES, MORRIS_COLUMNS

#: Parameters read as "adversary strength" on a regime map, in order of preference.
STRENGTH_KEYS = ("model.adversary_budget_mean", "model.attacker_value", "model.reach_exponent")
#: Open-weights selection: blocked replicates record their stratum in it (sim.rules.OPEN_STRATA).
SELECTION = "policy.open_weights_selection"
#: The y axis a regime map over the reach exponent is drawn on: the largest lab's reach w₁.
TOP_REACH = "top_lab_reach"
#: Outcomes of the policy comparison.
POLICY_OUTCOMES = ("harm_total", "net_alignment")


def note(message: str) -> None:
    """Progress on stderr (stdout carries only the result's location)."""
    print(f"  {message}", file=sys.stderr, flush=True)


@dataclass
class Panel:
    """One figure written: its name, files, caption and the tables behind it."""

    name: str
    files: list[Path]
    caption: str
    data: dict[str, pd.DataFrame] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading a folder
# ---------------------------------------------------------------------------------------------


def read_runs(folder: Path) -> pd.DataFrame | None:
    path = folder / "runs.parquet"
    return A.ok_runs(pd.read_parquet(path)) if path.exists() else None


def read_timeseries(folder: Path, runs: pd.DataFrame | None) -> pd.DataFrame | None:
    """Per-step table with a ``scenario`` column (joined from the runs table when needed)."""
    path = folder / "timeseries.parquet"
    if not path.exists():
        return None
    ts = pd.read_parquet(path)
    if "scenario" not in ts and runs is not None and "run_id" in ts:
        ts = ts.merge(runs[["run_id", "scenario"]], on="run_id")
    if ts.empty:  # every run failed (no per-step rows): nothing to draw, the report warns
        return None
    if runs is not None and "scenario" in runs:
        differ = _differ_within_scenario(runs)
        if differ:
            listed = ", ".join(differ[:3]) + (", ..." if len(differ) > 3 else "")
            note(f"scenario figures: not drawn, because runs of one scenario differ in {listed} "
                 "(they are not replicates; plot one design point's runs, or a sweep over "
                 "scenarios)")  # fmt: skip
            return None
    if "scenario" not in ts:
        summary = folder / "summary.json"
        scenario = json.loads(summary.read_text()).get("scenario") if summary.exists() else None
        if scenario is None:
            return None
        ts["scenario"] = scenario
    return ts


def _differ_within_scenario(runs: pd.DataFrame) -> list[str]:
    """Parameters other than the seed that take more than one value among the runs of one
    scenario: such runs are different design points, not replicates to average."""
    params = [k for k in flat_keys().values() if k in runs and k not in ("seed", "rng")]
    runs = runs.assign(**{SELECTION: runs[SELECTION].map(rules.unblocked)}) if (
        SELECTION in runs) else runs  # fmt: skip
    spread = runs.groupby("scenario")[params].nunique(dropna=False).max()
    return sorted(spread[spread > 1].index)


def base_config(runs: pd.DataFrame) -> Config:
    """The configuration of the first run, rebuilt from its parameter columns."""
    row = runs.iloc[0]
    values = {}
    for dotted in flat_keys().values():
        if dotted in row.index:
            v = row[dotted]
            values[dotted] = None if isinstance(v, float) and math.isnan(v) else v
    if SELECTION in values:  # a blocked replicate's stratum stands for the random selection
        values[SELECTION] = rules.unblocked(values[SELECTION])
    values = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}
    return A.with_values(Config(), values)


def design_keys(folder: Path) -> set[str] | None:
    """The factors a grid sweep's design varies (None without a ``sweep.json``; empty for a
    sampled design, whose factors vary together and are read by ``paradox sensitivity``)."""
    manifest = folder / "sweep.json"
    if not manifest.exists():
        return None
    spec = json.loads(manifest.read_text())
    if spec.get("design", "grid") != "grid":
        return set()
    return {f["key"] for f in spec.get("factors", [])}


def varies(
    runs: pd.DataFrame, key: str, at_least: int = 2, factors: set[str] | None = None
) -> bool:
    """Whether ``key`` takes ``at_least`` values, and is a design factor when ``factors`` is
    known (so that a parameter that differs between scenarios does not count)."""
    if factors is not None and key not in factors:
        return False
    return key in runs and runs[key].nunique() >= at_least


def _cached(
    path: Path, key: dict, make: Callable[[], pd.DataFrame], also: Sequence[Path] = ()
) -> pd.DataFrame:
    """``make()``, kept in ``path`` with a fingerprint of ``key`` (the configuration and grid it
    was computed for) beside it in ``<path>.key``; reused only when the fingerprint matches, so
    a folder whose runs changed gets a fresh overlay. A matching copy in one of the folders
    ``also`` (read, never written: an archived report's own figures) is reused too."""
    key = {**key, "version": A.MEANFIELD_OVERLAY_VERSION}
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def matching(candidate: Path) -> pd.DataFrame | None:
        try:
            if candidate.with_suffix(".key").read_text().strip() == fingerprint:
                return pd.read_csv(candidate)
        except (OSError, ValueError):  # missing or unreadable: not a match
            pass
        return None

    table = matching(path)
    if table is not None:
        return table
    found = (matching(folder / path.name) for folder in also)
    table = next((t for t in found if t is not None), None)
    if table is None:
        table = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    path.with_suffix(".key").write_text(fingerprint + "\n")
    return table


def _steps(runs: pd.DataFrame) -> int:
    return int(runs["steps"].iloc[0])


def window_text(runs: pd.DataFrame) -> str:
    """The steps the runs' time averages cover, for captions: "over steps 1–T" for a table
    without burn-ins, "over steps d+1–T" for one burn-in set for every run, else the range of
    the per-run burn-ins (MSER-5)."""
    steps = _steps(runs)
    d = runs["burn_in"].dropna().astype(int) if "burn_in" in runs else pd.Series(dtype=int)
    if not len(d):
        return f"over steps 1–{steps}"
    rules = set(runs["burn_in_rule"].dropna()) if "burn_in_rule" in runs else set()
    lo, hi = int(d.min()), int(d.max())
    if lo == hi and rules == {"set"}:
        return f"over steps {lo + 1}–{steps} (a burn-in of {lo} steps left out)"
    how = "chosen per run by MSER-5 on net alignment" if rules == {"auto"} else "per run"
    span = f"{lo} steps" if lo == hi else f"{lo}–{hi} steps, median {A.typical_burn_in(runs)}"
    return f"over steps d+1–{steps} after each run's burn-in d ({how}: {span})"


def _reps(runs: pd.DataFrame, by: list[str], intervals: bool = True) -> str:
    """Replicates per point: "10 replicates with 95% t-intervals", or "9–10" when points
    differ, or "one replicate" with batch-means intervals (or none, for a table without
    standard errors); without ``intervals`` (a heatmap, which shows means only) just
    "10 replicates"."""
    counts = runs.groupby(by).size()
    se = any(str(c).startswith("se_") for c in runs.columns)
    return _over(int(counts.min()), int(counts.max()), intervals, se)


def _over(lo: int, hi: int, intervals: bool = True, se: bool = False) -> str:
    if hi <= 1:
        if not intervals:
            return "one replicate"
        return ("one replicate, with the 95% batch-means interval of each run's time average "
                "(within-run noise only: it says nothing about other seeds)" if se else
                "one replicate (no intervals)")  # fmt: skip
    n = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return f"{n} replicates with 95% t-intervals" if intervals else f"{n} replicates"


# ---------------------------------------------------------------------------------------------
# One function per figure
# ---------------------------------------------------------------------------------------------


def plot_scenarios(ts: pd.DataFrame, out: Path) -> list[Panel]:
    scen = sorted(ts["scenario"].unique())
    rep_col = "run_id" if "run_id" in ts else None
    counts = ts.groupby("scenario")[rep_col].nunique() if rep_col else pd.Series([1])
    n_rep, n_max = int(counts.min()), int(counts.max())
    n_text = f"{n_rep}" if n_rep == n_max else f"{n_rep}–{n_max}"
    over = ("one replicate per scenario (lines; no intervals)" if n_max <= 1 else
            f"mean over {n_text} replicates (lines) with 95% t-intervals (bands)")  # fmt: skip
    steps = int(ts["step"].max())
    caption = (
        f"Key outcomes over time in {len(scen)} scenario(s): {over}, steps 0–{steps}. Net "
        "alignment is the reach-weighted mean of q(1 − φ(1 + c)); total harm adds exploitation "
        "harm to the residual harm of unaligned use; the paradox index is the reach share of "
        "labs whose marginal return on alignment is negative; attack spending is summed over "
        "adversaries."
    )
    panels = [Panel("scenario_dynamics", F.save(F.scenario_dynamics(ts), out /
                    "scenario_dynamics", caption), caption, {"timeseries": ts})]  # fmt: skip
    if not (ts["step"] >= 1).any():  # a run of 0 steps: no spending path to draw
        note("arms_race: not drawn (no steps after step 0)")
        return panels
    first = "baseline" if "baseline" in scen else scen[0]
    order = [first, *[s for s in scen if s != first]]
    caption = (
        "The arms race. Left: defence spending against attack spending per step ("
        + ("one replicate" if n_max <= 1 else f"mean over {n_text} replicates")
        + f"), from step 1 (circle) to step {steps} (square), one path per scenario. Right: the "
        "share of attack attempts through each channel (weights, prompt, output) over time in "
        f"the {first.replace('_', ' ')} scenario."
    )
    fig = F.arms_race(ts, scenarios=order)
    panels.append(Panel("arms_race", F.save(fig, out / "arms_race", caption), caption,
                        {"timeseries": ts}))  # fmt: skip
    return panels


def _overlay(
    cache: Path,
    name: str,
    key: dict,
    market: Callable[[], pd.DataFrame],
    meanfield: Callable[[], pd.DataFrame],
    base: Config,
    applies: bool = True,
    source: Path | None = None,
) -> tuple[pd.DataFrame, str]:
    """The theory drawn over a sweep: the market theory (docs/theory.md §4) where it covers the
    configuration (and ``applies`` to the sweep's design), else the mean field (§2). Returns
    the table and the theory's name. An overlay already computed for the sweep folder
    ``source`` (in its ``figures/``, or in its report's when it is ``<report>/sweeps/<name>``)
    is reused when it was made for the same configuration and levels."""
    source = None if source is None else source.resolve()  # a linked folder: its real report
    also = [] if source is None else [source / "figures", source.parent.parent / "figures"]
    also = [folder for folder in also if folder.resolve() != cache.resolve()]
    reasons = M.coverage(base) if applies else ["the sweep's levels are not the theory's"]
    if not reasons:
        table = _cached(cache / f"market_{name}.csv", {**key, "overlay": "market"}, market, also)
        return table, "market theory"
    note("market theory does not cover this configuration (" + "; ".join(reasons)
         + "): drawing the mean field")  # fmt: skip
    return _cached(cache / f"meanfield_{name}.csv", key, meanfield, also), "mean field"


def _unconverged(theory: pd.DataFrame) -> str:
    """A caption sentence (and a note) when some theory solves did not converge."""
    if "converged" not in theory or theory["converged"].astype(bool).all():
        return ""
    n = int((~theory["converged"].astype(bool)).sum())
    note(f"market theory: {n} of {len(theory)} overlay points did not converge (drawn anyway)")
    return (f"{n} of the theory's {len(theory)} points come from solves that did not converge "
            "(they cycle, docs/theory.md §4.2 and §4.6); read them with care. ")  # fmt: skip


def plot_paradox_curve(folder: Path, runs: pd.DataFrame, out: Path) -> list[Panel]:
    x, group = "model.fixed_alignment", "model.coupling"
    steps, burn_in = _steps(runs), A.typical_burn_in(runs)
    base = base_config(runs)
    couplings = sorted(runs[group].unique().tolist())
    qs = sorted(runs[x].unique().tolist())
    key = {"config": to_flat(base), "couplings": couplings, "qs": qs, "steps": steps,
           "burn_in": burn_in}  # fmt: skip
    theory, theory_name = _overlay(
        out, "curve", key,
        lambda: M.market_curves(base, couplings, qs, start=burn_in + 1, progress=note),
        lambda: A.meanfield_curves(base, couplings, qs, steps, burn_in=burn_in, progress=note),
        base, source=folder,
    )  # fmt: skip
    m = base.model
    unconverged = _unconverged(theory)
    theory_text = (
        "the market theory for the same configuration (docs/theory.md §4: every lab kept, "
        f"open weights averaged over 2 draws with leaks over steps {burn_in + 1}–{steps})"
        if theory_name == "market theory"
        else "the mean-field prediction for the same configuration (docs/theory.md §2), "
        f"averaged over steps {burn_in + 1}–{steps}"
    )
    caption = (
        "The paradox curve: net alignment (left) and exploitation harm (right), each averaged "
        f"{window_text(runs)}, against the exogenous alignment level q, one colour per "
        f"coupling κ; points are means over {_reps(runs, [group, x])}. Dashed: {theory_text}; "
        "triangles: its optimum q* where it is interior. "
        + unconverged
        + f"{m.n_labs} labs, {m.n_adversaries} adversaries, v_a = {m.attacker_value:g}, "
        f"mean adversary budget {m.adversary_budget_mean:g}, reach exponent "
        f"{m.reach_exponent:g}."
    )
    fig = F.paradox_curve(runs, x=x, group=group, theory=theory, theory_name=theory_name)
    curves = {
        name: A.curve_table(runs, x=x, group=group, value=f"mean_{name}")
        for name in ("net_alignment", "harm_exploitation")
    }
    panel = Panel("paradox_curve", F.save(fig, out / "paradox_curve", caption), caption,
                  {"curve": curves["net_alignment"], "harm": curves["harm_exploitation"],
                   "theory": theory, "runs": runs,
                   "theory_name": pd.DataFrame({"name": [theory_name]})})  # fmt: skip
    parts = M.simulated_curve_decomposition(runs, x=x, group=group)
    caption = (
        "Which paradox. The local slope of the paradox curve splits exactly as dN/dq = 1 − "
        "deeper − easier (docs/theory.md §4.3): deeper = Φ·d[q(1 + c)]/dq, compromised use "
        "inverted more deeply as alignment rises; easier = q(1 + c)·dΦ/dq, attacks compromising "
        "more. Points: the simulation (means of the compromised share Φ and clarity c per level, "
        "centred differences); dashed: "
        + ("the market theory." if "deeper" in theory else "no theory decomposition.")
        + " A paradox (dN/dq < 0) needs deeper + easier > 1."
    )
    fig = F.curve_decomposition(parts, theory if "deeper" in theory else None)
    decomposition = Panel("paradox_decomposition",
                          F.save(fig, out / "paradox_decomposition", caption), caption,
                          {"decomposition": parts})  # fmt: skip
    return [panel, decomposition]


def plot_regime_map(folder: Path, runs: pd.DataFrame, strength: str, out: Path) -> list[Panel]:
    x, q = "model.coupling", "model.fixed_alignment"
    steps, burn_in = _steps(runs), A.typical_burn_in(runs)
    slopes = A.slope_table(runs, x=x, y=strength, q=q)
    q_lo, q_hi = float(slopes["q_lo"].iloc[0]), float(slopes["q_hi"].iloc[0])
    base = base_config(runs)
    levels = sorted(runs[strength].unique().tolist())
    key = {"config": to_flat(base), "y": strength, "levels": levels, "q": [q_lo, q_hi],
           "steps": steps, "burn_in": burn_in}  # fmt: skip
    market_ok = (q_lo, q_hi) == M.SECANT and strength.startswith("model.")
    # Over the reach exponent the map is drawn over what it sets, the largest lab's reach w₁
    # (one number of labs); the tables keep ζ and gain a w₁ column. Its figures and cached
    # overlay get their own names, so both maps of a report keep theirs.
    reach = top_lab_reach(runs) if strength == "model.reach_exponent" else None
    suffix = "_reach" if reach is not None else ""
    boundary, theory_name = _overlay(
        out, f"threshold{suffix}", key,
        lambda: M.market_threshold(base, strength, levels, draws=2, start=burn_in + 1, scan=5,
                                   tol=1 / 32, progress=note),
        lambda: A.meanfield_threshold(base, strength, levels, q_lo, q_hi, steps,
                                      burn_in=burn_in, progress=note),
        base, applies=market_ok, source=folder,
    )  # fmt: skip
    caption = (
        f"Regime map: the slope of net alignment in alignment, (N(q = {q_hi:g}) − "
        f"N(q = {q_lo:g})) / {q_hi - q_lo:g}, with N averaged {window_text(runs)} and over "
        f"{_reps(runs, [x, strength, q], intervals=False)}, over the paradox coupling κ and "
        f"{F.label(strength)}. Orange cells: more alignment lowers net alignment (the paradox); "
        f"purple: it raises it. Line: the {theory_name}'s κ*, the smallest κ at which its "
        "slope over the same levels turns negative (no point where it stays positive up to "
        "κ = 1)"
        + (
            f"; the market theory averages 2 open-weights draws with leaks over steps "
            f"{burn_in + 1}–{steps}."
            if theory_name == "market theory"
            else f", N averaged over steps {burn_in + 1}–{steps}."
        )
        + (" " + _unconverged(boundary).strip() if theory_name == "market theory" else "")
    )
    parts = M.simulated_secant_decomposition(runs, x=x, y=strength, q=q)
    y_axis, shown = strength, boundary
    if reach is not None:
        y_axis = TOP_REACH
        for table in (slopes, parts):
            table[TOP_REACH] = table[strength].map(reach)
        shown = boundary.assign(y=boundary["y"].map(reach))
        reach_text = (f"the reach of the largest lab w₁ (set by the reach exponent ζ, "
                      f"{_n_labs(runs)} labs)")  # fmt: skip
        caption = caption.replace(f"κ and {F.label(strength)}", f"κ and {reach_text}")
    fig = F.regime_map(
        slopes,
        x=x,
        y=y_axis,
        value="slope",
        boundary=shown,
        boundary_label=f"{theory_name} κ*",
        value_label=f"slope dN/dq, q = {q_lo:g}–{q_hi:g}",
        signed=True,
    )
    name = f"regime_map{suffix}"
    panel = Panel(name, F.save(fig, out / name, caption), caption,
                  {"slopes": slopes, "boundary": boundary, "strength": pd.DataFrame(
                      {"key": [strength]}), "theory_name": pd.DataFrame(
                      {"name": [theory_name]}), "decomposition": parts})  # fmt: skip
    caption = (
        f"Which paradox, per cell of the regime map: the secant slope over q = {q_lo:g}–{q_hi:g} "
        "splits exactly as 1 − deeper − easier (docs/theory.md §4.3), from the cell's mean "
        "compromised share Φ and clarity c at the two levels. Deeper: compromised use inverted "
        "more deeply; easier: attacks compromising more (negative where labs defend more as "
        "their stake grows). Where deeper carries the fall, the paradox shown is one of "
        "inversion depth, not of alignment making attacks easier."
    )
    fig = F.regime_decomposition(parts, x=x, y=y_axis)
    name = f"regime_decomposition{suffix}"
    decomposition = Panel(name, F.save(fig, out / name, caption), caption,
                          {"decomposition": parts})  # fmt: skip
    return [panel, decomposition]


def _n_labs(runs: pd.DataFrame) -> int:
    return int(runs["model.n_labs"].iloc[0])


def top_lab_reach(runs: pd.DataFrame) -> Callable[[float], float] | None:
    """ζ ↦ w₁, the largest lab's reach share under the Zipf law (sim.rules.reach_weights), when
    every run has the same number of labs; None when the number varies (no single w₁ per ζ)."""
    if "model.n_labs" not in runs or runs["model.n_labs"].nunique() != 1:
        return None
    n = _n_labs(runs)
    return lambda zeta: float(rules.reach_weights(n, float(zeta))[0])


def plot_paradox_index_map(runs: pd.DataFrame, strength: str, out: Path) -> Panel:
    x = "model.coupling"
    caption = (
        "Regime map: the paradox index (reach share of labs whose marginal return on alignment "
        f"is negative), averaged {window_text(runs)} and over "
        f"{_reps(runs, [x, strength], intervals=False)}, over the paradox coupling κ and "
        f"{F.label(strength)}. No theory boundary: the map does not vary the alignment level."
    )
    fig = F.regime_map(runs, x=x, y=strength, value="mean_paradox_index")
    return Panel("regime_map", F.save(fig, out / "regime_map", caption), caption, {})


def policy_levers(folder: Path) -> dict[str, float]:
    """Two-level ``policy.*`` factors of a sweep, each with its first level as "off"."""
    manifest = folder / "sweep.json"
    if not manifest.exists():
        return {}
    factors = json.loads(manifest.read_text()).get("factors", [])
    return {f["key"]: float(f["levels"][0]) for f in factors
            if f["key"].startswith("policy.") and len(f.get("levels") or []) == 2}  # fmt: skip


def plot_policy(runs: pd.DataFrame, levers: dict[str, float], out: Path) -> Panel:
    by = "scenario"
    effects = A.lever_effects(runs, levers, POLICY_OUTCOMES, by=by)
    lo, hi = int(effects["cells"].min()), int(effects["cells"].max())
    matched = f"{hi} matched cells" if lo == hi else f"{lo}–{hi} matched cells"
    seeds = ""
    if "seed" in runs:
        seed_set = set(runs["seed"])
        n_seeds = len(seed_set)
        same_seeds = runs.groupby([*levers, by])["seed"].agg(
            lambda s: s.is_unique and set(s) == seed_set)  # fmt: skip
        if same_seeds.all() and lo >= 2:  # common random numbers, intervals across cells
            same = "the same seed" if n_seeds == 1 else f"the same {n_seeds} seeds"
            seeds = (f" Every cell ran {same} "
                     "(common random numbers), so the intervals measure variation across the "
                     "other levers' settings at those seeds.")  # fmt: skip
    caption = (
        "Policy comparison: each lever's effect (lever on minus off) on total harm and net "
        f"alignment, each averaged {window_text(runs)}, in each world. Runs are "
        f"matched on the other levers' settings ({matched} per lever and world); "
        "points are the mean difference over cells with a 95% t-interval across cells "
        "(a main effect; a Welch interval over replicates when only one cell exists, or the "
        "batch-means interval of the two runs when it holds one run each). Off "
        "values: "
        + ", ".join(f"{k.split('.')[-1]} = {v:g}" for k, v in levers.items())
        + "."
        + seeds
    )
    return Panel("policy_forest", F.save(F.policy_forest(effects), out / "policy_forest",
                                         caption), caption, {"effects": effects})  # fmt: skip


def plot_sensitivity(indices: pd.DataFrame, out: Path) -> list[Panel]:
    """Sobol' bars for the headline outcomes (``paradox sensitivity`` draws its own, for the
    outcomes it is asked for)."""
    panels = []
    present = list(dict.fromkeys(indices["outcome"]))
    chosen = [o for o in FIGURE_OUTCOMES if o in present] or present[:3]
    for outcome in chosen:
        caption = (
            f"Sobol' indices of {outcome.replace('_', ' ')}: first order S1 (the share of "
            "output variance due to the parameter alone) and total ST (including its "
            "interactions), with bootstrap 95% intervals."
        )
        name = f"sobol_{outcome}"
        fig = F.sensitivity_bars(indices, outcome)
        panels.append(Panel(name, F.save(fig, out / name, caption), caption,
                            {"indices": indices}))  # fmt: skip
    return panels


def _level_groups(indices: pd.DataFrame, columns: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """The table split by its leading level columns (a sweep's ``levels`` factors, e.g.
    ``scenario``, each with its own indices), with a file-name suffix per group."""
    keys = [c for c in indices.columns if c not in columns]
    if not keys:
        return [("", indices)]
    groups = []
    for values, sub in indices.groupby(keys, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        groups.append(("_" + "_".join(str(v).replace(".", "_") for v in values), sub))
    return groups


def plot_morris(indices: pd.DataFrame, out: Path) -> list[Panel]:
    """Morris μ*–σ plots for the headline outcomes of a ``morris_indices.csv``."""
    panels = []
    present = list(dict.fromkeys(indices["outcome"]))
    chosen = [o for o in FIGURE_OUTCOMES if o in present] or present[:3]
    for suffix, sub in _level_groups(indices, MORRIS_COLUMNS):
        for outcome in chosen:
            rows = sub[sub["outcome"] == outcome]
            if rows.empty or rows["mu_star"].isna().all():
                continue  # constant over the sample: nothing to draw
            caption = (
                f"Morris screening of {outcome.replace('_', ' ')}: per parameter, sigma (the "
                "standard deviation of its elementary effects) against mu* (their mean absolute "
                "value, with its bootstrap interval). Near the origin: inert; far right: "
                "influential; above the dotted lines sigma/mu* = 0.1, 0.5, 1: non-linear or "
                "interacting."
            )
            name = f"morris_{outcome}{suffix}"
            fig = F.morris_screen(rows, outcome)
            panels.append(Panel(name, F.save(fig, out / name, caption), caption,
                                {"indices": rows}))  # fmt: skip
    return panels


def plot_prim(folder: Path, out: Path) -> list[Panel]:
    """The PRIM boxes and trade-off curve of a ``paradox sensitivity`` folder, from its
    ``prim_boxes.csv`` and ``prim_trajectory.csv`` (declared ranges from ``sweep.json``)."""
    boxes_file, trajectory_file = folder / "prim_boxes.csv", folder / "prim_trajectory.csv"
    if not boxes_file.exists():
        return []
    boxes = pd.read_csv(boxes_file, dtype={"levels": str}, keep_default_na=False, na_values=[""])
    boxes["levels"] = boxes["levels"].astype(object).where(boxes["levels"].notna(), "")
    if boxes.empty:
        return []
    factors = []
    if (folder / "sweep.json").exists():
        factors = json.loads((folder / "sweep.json").read_text()).get("factors", [])
    bounds = {f["key"]: list(f["range"]) for f in factors if f.get("range")}
    rule = ""
    if (folder / "sensitivity.json").exists():
        found = json.loads((folder / "sensitivity.json").read_text()).get("discovery", {})
        rule = f" for {found['rule']}" if found.get("rule") else ""
    caption = (
        f"PRIM boxes{rule} (Friedman & Fisher 1999; EMA Workbench, Kwakkel 2017), redrawn from "
        "prim_boxes.csv. Each panel is one box: for every restricted parameter, the grey bar is "
        "its declared range scaled to 0-1 and the blue bar the box's limits. Coverage: share of "
        "all points of interest inside the box; density: share of the box's points that are of "
        "interest."
    )
    panels = [Panel("prim_boxes", F.save(F.prim_boxes(boxes, bounds), out / "prim_boxes",
                                         caption), caption, {"boxes": boxes})]  # fmt: skip
    if trajectory_file.exists():
        trajectory = pd.read_csv(trajectory_file)
        trajectory["selected"] = trajectory["selected"].astype(bool)
        caption = (
            f"PRIM peeling trajectories{rule}: coverage against density at each peeling step "
            "(right to left), then the steps that drop insignificant restrictions; stars mark "
            "the boxes in prim_boxes.csv."
        )
        fig = F.prim_tradeoff(trajectory)
        panels.append(Panel("prim_tradeoff", F.save(fig, out / "prim_tradeoff", caption),
                            caption, {"trajectory": trajectory}))  # fmt: skip
    return panels


# ---------------------------------------------------------------------------------------------
# A folder
# ---------------------------------------------------------------------------------------------


def plot_folder(
    folder: Path, out: Path | None = None, _seen: set[Path] | None = None
) -> list[Panel]:
    """Draw every figure the folder's tables support (its subfolders' too when it has none)."""
    out = out or folder / "figures"
    panels: list[Panel] = []
    runs = read_runs(folder)
    ts = read_timeseries(folder, runs)
    if ts is not None:
        panels += plot_scenarios(ts, out)
    if runs is not None and len(runs):
        factors = design_keys(folder)
        strength = next((k for k in STRENGTH_KEYS if varies(runs, k, factors=factors)), None)
        levers = policy_levers(folder)
        kappa = varies(runs, "model.coupling", factors=factors)
        n_q = runs["model.fixed_alignment"].nunique() if varies(
            runs, "model.fixed_alignment", factors=factors) else 0  # fmt: skip
        if kappa and strength and n_q == 2:
            panels.extend(plot_regime_map(folder, runs, strength, out))
        elif kappa and strength and n_q == 0:
            panels.append(plot_paradox_index_map(runs, strength, out))
        elif kappa and n_q >= 3:
            panels.extend(plot_paradox_curve(folder, runs, out))
        if levers and "scenario" in runs:
            panels.append(plot_policy(runs, levers, out))
    sobol = folder / "sobol_indices.csv"
    if sobol.exists():
        panels += plot_sensitivity(pd.read_csv(sobol), out)
    morris = folder / "morris_indices.csv"
    if morris.exists():
        panels += plot_morris(pd.read_csv(morris), out)
    panels += plot_prim(folder, out)
    if not panels and runs is None and ts is None:
        # A folder of folders (a report's ``sweeps/``, a multirun): plot each, at any depth.
        # Each real folder once: a symbolic link back up the tree would otherwise recurse
        # forever (links to folders elsewhere are followed).
        seen = _seen if _seen is not None else set()
        seen.add(folder.resolve())
        subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name != "figures"]
        for sub in subs:
            if sub.resolve() in seen:
                continue
            seen.add(sub.resolve())
            panels += plot_folder(sub, out, seen)
    return panels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paradox plot",
        description="Draw every figure a results folder's tables support (PDF, PNG, caption).",
    )
    parser.add_argument("folder", type=Path, help="a run, sweep, sensitivity or report folder")
    parser.add_argument("--out", type=Path, default=None, help="default: <folder>/figures")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.folder.is_dir():
        print(f"paradox plot: no such folder: {args.folder}", file=sys.stderr)
        return 2
    print(f"paradox plot: {args.folder}", file=sys.stderr)
    try:
        panels = plot_folder(args.folder, args.out)
    except ParameterError as err:
        print(f"paradox plot: {err}", file=sys.stderr)
        return 2
    if not panels:
        print(f"paradox plot: nothing to draw in {args.folder}: no timeseries.parquet with "
              "scenarios, and no runs.parquet varying the curve, map or policy factors "
              "(see `paradox plot --help`)", file=sys.stderr)  # fmt: skip
        return 1
    for panel in panels:
        note(f"{panel.name}: {', '.join(p.name for p in panel.files)}")
    print(args.out or args.folder / "figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
