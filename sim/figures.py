"""Publication figures from result tables.

Every function takes tidy pandas tables (as written by ``paradox run``, ``paradox sweep`` and
``paradox theory``) and returns a matplotlib ``Figure``; :func:`save` writes it as PDF and PNG
(300 dpi) with a caption file beside it. One style throughout: the Okabe–Ito colour-blind-safe
palette (Okabe & Ito 2008), labelled axes with symbols, legends outside the data where possible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sim.analysis import grouped_ci as _grouped_ci

#: Okabe & Ito (2008) colour-blind-safe palette.
PALETTE = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#999999",
)  # fmt: skip

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "lines.linewidth": 1.3,
    "figure.constrained_layout.use": True,
    "pdf.fonttype": 42,
}

#: Axis labels (with symbols and units) for outcomes and parameters.
LABELS: dict[str, str] = {
    "net_alignment": "net alignment $\\bar n$",
    "harm_total": "total harm per step",
    "harm_exploitation": "exploitation harm per step",
    "harm_residual": "residual harm per step",
    "paradox_index": "paradox index (reach share)",
    "marginal_return": "marginal return ∂E[n]/∂q",
    "mean_alignment": "mean alignment $\\bar q$",
    "mean_clarity": "mean clarity $\\bar c$",
    "success_rate_total": "attack success rate",
    "spend_attack": "attack spending per step (budget units)",
    "spend_defence": "defence spending per step (budget units)",
    "compromised_share": "compromised share of use $\\bar\\varphi$",
    "step": "step t",
    "model.coupling": "paradox coupling κ",
    "model.fixed_alignment": "alignment level q (exogenous)",
    "model.attacker_value": "adversary prize scale $v_a$",
    "model.adversary_budget_mean": "mean adversary budget $\\bar e$",
    "model.reach_exponent": "reach exponent ζ",
    "top_lab_reach": "reach of the largest lab $w_1$",
}


#: Outcomes with known bounds: confidence bands are clipped to them.
BOUNDS: dict[str, tuple[float, float]] = {
    "net_alignment": (-1.0, 1.0),
    "paradox_index": (0.0, 1.0),
    "compromised_share": (0.0, 1.0),
    "mean_alignment": (0.0, 1.0),
    "mean_clarity": (0.0, 1.0),
    "success_rate_total": (0.0, 1.0),
}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def save(fig: Figure, path: Path | str, caption: str) -> list[Path]:
    """Write ``path``.pdf and ``path``.png (300 dpi) and the caption as ``path``.txt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in ("pdf", "png"):
        out = path.with_suffix(f".{ext}")
        fig.savefig(out, dpi=300, bbox_inches="tight")
        written.append(out)
    caption_path = path.with_suffix(".txt")
    caption_path.write_text(caption.strip() + "\n")
    written.append(caption_path)
    plt.close(fig)
    return written


# ---------------------------------------------------------------------------------------------
# 1. Scenario dynamics
# ---------------------------------------------------------------------------------------------


def scenario_dynamics(
    timeseries: pd.DataFrame,
    outcomes: Sequence[str] = ("net_alignment", "harm_total", "paradox_index", "spend_attack"),
    scenarios: Sequence[str] | None = None,
) -> Figure:
    """Key outcomes over time per scenario: mean over replicates with a 95% band.

    ``timeseries`` is long: one row per (scenario, replicate, step) with the outcome columns.
    """
    scenarios = list(scenarios or sorted(timeseries["scenario"].unique()))
    with plt.rc_context(STYLE):
        ncols = 2
        nrows = int(np.ceil(len(outcomes) / ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=(7.0, 2.3 * nrows), squeeze=False)
        for ax, outcome in zip(axes.flat, outcomes, strict=False):
            for i, scen in enumerate(scenarios):
                sub = timeseries[timeseries["scenario"] == scen]
                ci = _grouped_ci(sub, ["step"], outcome)
                lo_b, hi_b = BOUNDS.get(outcome, (-np.inf, np.inf))
                ci["lo"], ci["hi"] = ci["lo"].clip(lo_b, hi_b), ci["hi"].clip(lo_b, hi_b)
                colour = PALETTE[i % len(PALETTE)]
                ax.plot(ci["step"], ci["mean"], color=colour, label=scen.replace("_", " "))
                ax.fill_between(ci["step"], ci["lo"], ci["hi"], color=colour, alpha=0.18, lw=0)
            ax.set_xlabel(label("step"))
            ax.set_ylabel(label(outcome))
        for ax in list(axes.flat)[len(outcomes) :]:
            ax.set_visible(False)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(5, len(scenarios)),
                   frameon=False)  # fmt: skip
    return fig


# ---------------------------------------------------------------------------------------------
# 2. The paradox curve
# ---------------------------------------------------------------------------------------------


def paradox_curve(
    runs: pd.DataFrame,
    *,
    x: str = "model.fixed_alignment",
    group: str = "model.coupling",
    theory: pd.DataFrame | None = None,
    theory_name: str = "mean field",
) -> Figure:
    """Net alignment and exploitation harm against alignment for several couplings κ.

    ``runs`` has one row per run with the columns ``x``, ``group``, ``mean_net_alignment`` and
    ``mean_harm_exploitation``. ``theory`` (as :func:`sim.analysis.meanfield_curves` returns)
    has columns ``kappa``, ``q``, ``N`` (a theoretical curve per κ, drawn dashed) and
    ``q_star`` (its optimum, marked with a triangle; NaN when there is none).
    """
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.8))
        for i, (kappa, sub) in enumerate(sorted(runs.groupby(group), key=lambda kv: kv[0])):
            colour = PALETTE[(i + 1) % len(PALETTE)]
            for ax, column in ((left, "mean_net_alignment"), (right, "mean_harm_exploitation")):
                ci = _grouped_ci(sub, [x], column)
                ax.errorbar(ci[x], ci["mean"], yerr=[ci["mean"] - ci["lo"], ci["hi"] - ci["mean"]],
                            color=colour, marker="o", ms=3, capsize=2,
                            label=f"κ = {kappa:g}")  # fmt: skip
            th = None if theory is None else theory[np.isclose(theory["kappa"], kappa)]
            if th is not None and len(th):
                th = th.sort_values("q")
                left.plot(th["q"], th["N"], ls="--", color=colour, lw=1.0)
                q_star = float(th["q_star"].iloc[0])
                if np.isfinite(q_star):
                    n_star = float(np.interp(q_star, th["q"], th["N"]))
                    left.plot([q_star], [n_star], marker="v", color=colour, ms=6, ls="none")
        left.axhline(0.0, color="#999999", lw=0.6)
        left.set_xlabel(label(x))
        left.set_ylabel(label("net_alignment"))
        right.set_xlabel(label(x))
        right.set_ylabel(label("harm_exploitation"))
        handles, labels = left.get_legend_handles_labels()
        if theory is not None and len(theory):
            handles += [
                Line2D([], [], ls="--", color="#555555", lw=1.0),
                Line2D([], [], marker="v", color="#555555", ls="none", ms=6),
            ]
            labels += [theory_name, f"{theory_name} $q^*$"]
        left.legend(handles, labels, frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# 3. The regime map
# ---------------------------------------------------------------------------------------------


def regime_map(
    runs: pd.DataFrame,
    *,
    x: str = "model.coupling",
    y: str = "model.attacker_value",
    value: str = "mean_paradox_index",
    boundary: pd.DataFrame | None = None,
    boundary_label: str = "theory κ*",
    value_label: str | None = None,
    signed: bool | None = None,
) -> Figure:
    """Heatmap of ``value`` (mean over rows) over two parameters, with a boundary curve.

    A non-negative ``value`` (a paradox index) is drawn on a sequential scale from 0; a signed
    one (a slope dN/dq) on a diverging scale centred on 0 (orange below, purple above), so that
    the sign reads at a glance. ``signed`` forces the diverging scale (a slope that happens to be
    positive everywhere) or the sequential one; by default negative values choose it.
    ``boundary`` has columns ``y`` and ``kappa_star`` (drawn as a line of κ* against y);
    ``boundary_label`` names it in the legend.
    """
    grid = runs.groupby([y, x])[value].mean().unstack(x).sort_index()
    values = grid.to_numpy(float)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if (lo < 0) if signed is None else signed:
        bound = max(abs(lo), abs(hi), 1e-9)
        scale = {"cmap": "PuOr", "norm": TwoSlopeNorm(0.0, -bound, bound)}
    else:
        scale = {"cmap": "cividis", "vmin": 0.0, "vmax": max(1e-9, hi)}
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 3.2))
        xs, ys = grid.columns.to_numpy(float), grid.index.to_numpy(float)
        log_y = ys.size > 2 and ys.min() > 0 and ys.max() / ys.min() >= 20
        y_edges = np.exp(_edges(np.log(ys))) if log_y else _edges(ys)
        mesh = ax.pcolormesh(_edges(xs), y_edges, values, shading="flat", **scale)
        cbar = fig.colorbar(mesh, ax=ax)
        cbar.set_label(value_label or label(value.removeprefix("mean_")))
        if boundary is not None and len(boundary):
            b = boundary.dropna().sort_values("y")
            ax.plot(b["kappa_star"], b["y"], color=PALETTE[0], lw=1.4, marker="o", ms=3,
                    label=boundary_label)  # fmt: skip
            ax.legend(frameon=False, loc="upper right")
        ax.set_xlabel(label(x))
        ax.set_ylabel(label(y))
        ax.set_xlim(_edges(xs)[0], _edges(xs)[-1])
        if log_y:
            ax.set_yscale("log")
            ax.set_yticks(ys, [f"{v:g}" for v in ys])
            ax.minorticks_off()
        ax.set_ylim(y_edges[0], y_edges[-1])
    return fig


def _edges(centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


# ---------------------------------------------------------------------------------------------
# 4. Policy comparison (forest plot)
# ---------------------------------------------------------------------------------------------


def _lever_name(key: str) -> str:
    """``policy.defence_mandate`` → ``defence mandate``."""
    return key.rsplit(".", 1)[-1].replace("_", " ")


def policy_forest(effects: pd.DataFrame) -> Figure:
    """Each lever's effect against the baseline, with 95% intervals, across scenarios.

    ``effects`` has columns ``lever``, ``scenario``, ``outcome`` (e.g. ``harm_total``,
    ``net_alignment``), ``effect``, ``lo``, ``hi`` (lever on minus lever off).
    """
    outcomes = list(dict.fromkeys(effects["outcome"]))
    levers = list(dict.fromkeys(effects["lever"]))
    scenarios = list(dict.fromkeys(effects["scenario"]))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(outcomes), figsize=(7.0, 0.35 * len(levers) + 1.2),
                                 sharey=True, squeeze=False)  # fmt: skip
        offsets = np.linspace(-0.25, 0.25, len(scenarios)) if len(scenarios) > 1 else [0.0]
        for ax, outcome in zip(axes[0], outcomes, strict=True):
            sub = effects[effects["outcome"] == outcome]
            for j, scen in enumerate(scenarios):
                rows = sub[sub["scenario"] == scen].set_index("lever").reindex(levers)
                ypos = np.arange(len(levers)) + offsets[j]
                ax.errorbar(rows["effect"], ypos,
                            xerr=[rows["effect"] - rows["lo"], rows["hi"] - rows["effect"]],
                            fmt="o", ms=3, capsize=2, color=PALETTE[(j + 1) % len(PALETTE)],
                            label=scen.replace("_", " "))  # fmt: skip
            ax.axvline(0.0, color="#999999", lw=0.6)
            ax.set_xlabel(f"Δ {label(outcome)}\n(lever on − off)")
        axes[0][0].set_yticks(np.arange(len(levers)), [_lever_name(lv) for lv in levers])
        axes[0][0].invert_yaxis()
        axes[0][-1].legend(frameon=False, loc="best")
    return fig


# ---------------------------------------------------------------------------------------------
# 5. The arms race
# ---------------------------------------------------------------------------------------------


#: An axis whose positive values span this ratio (two decades) or more is drawn on a log scale.
LOG_AXIS_SPAN = 100.0


def spans_decades(values: pd.Series | np.ndarray, ratio: float = LOG_AXIS_SPAN) -> bool:
    """Whether the positive finite ``values`` span ``ratio`` or more (max / min)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return bool(v.size) and float(v.max() / v.min()) >= ratio


def arms_race(timeseries: pd.DataFrame, scenarios: Sequence[str] | None = None) -> Figure:
    """Left: defence against attack spending over time (phase portrait, mean over replicates).
    Right: the channel mix of attack attempts over time (shares, first scenario)."""
    scenarios = list(scenarios or sorted(timeseries["scenario"].unique()))
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.9))
        for i, scen in enumerate(scenarios):
            sub = timeseries[(timeseries["scenario"] == scen) & (timeseries["step"] >= 1)]
            path = sub.groupby("step")[["spend_attack", "spend_defence"]].mean()
            colour = PALETTE[i % len(PALETTE)]
            left.plot(path["spend_attack"], path["spend_defence"], color=colour,
                      label=scen.replace("_", " "))  # fmt: skip
            left.plot(path["spend_attack"].iloc[[0]], path["spend_defence"].iloc[[0]],
                      marker="o", color=colour, ms=3)  # fmt: skip
            left.plot(path["spend_attack"].iloc[[-1]], path["spend_defence"].iloc[[-1]],
                      marker="s", color=colour, ms=4)  # fmt: skip
        left.set_xlabel(label("spend_attack"))
        left.set_ylabel(label("spend_defence"))
        # Spending can span decades (a defence mandate next to a lab that barely defends): a
        # linear axis would flatten all but the largest path, so such an axis is logarithmic.
        for scale, column in ((left.set_xscale, "spend_attack"),
                              (left.set_yscale, "spend_defence")):  # fmt: skip
            if spans_decades(timeseries.loc[timeseries["step"] >= 1, column]):
                scale("log", nonpositive="mask")
        left.legend(frameon=False, fontsize=6)
        first = timeseries[(timeseries["scenario"] == scenarios[0]) & (timeseries["step"] >= 1)]
        mix = first.groupby("step")[["attempts_weights", "attempts_prompt", "attempts_output"]]
        mix = mix.mean()
        shares = mix.div(mix.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
        right.stackplot(shares.index, shares.T.to_numpy(), labels=["weights", "prompt", "output"],
                        colors=[PALETTE[5], PALETTE[1], PALETTE[3]], alpha=0.85)  # fmt: skip
        right.set_xlabel(label("step"))
        right.set_ylabel(f"share of attempts ({scenarios[0].replace('_', ' ')})")
        right.set_ylim(0, 1)
        right.legend(frameon=False, loc="upper right")
    return fig


# ---------------------------------------------------------------------------------------------
# 6. Sensitivity
# ---------------------------------------------------------------------------------------------


def sensitivity_bars(indices: pd.DataFrame, outcome: str) -> Figure:
    """Sobol first-order (S1) and total (ST) indices with confidence intervals for one outcome.

    ``indices`` has columns ``outcome``, ``parameter``, ``S1``, ``S1_conf``, ``ST``, ``ST_conf``.
    """
    sub = indices[indices["outcome"] == outcome].sort_values("ST", ascending=True)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5, 0.3 * len(sub) + 1.0))
        y = np.arange(len(sub))
        ax.barh(y - 0.2, sub["S1"], height=0.38, xerr=sub["S1_conf"], color=PALETTE[5],
                label="first order $S_1$", capsize=2)  # fmt: skip
        ax.barh(y + 0.2, sub["ST"], height=0.38, xerr=sub["ST_conf"], color=PALETTE[1],
                label="total $S_T$", capsize=2)  # fmt: skip
        ax.set_yticks(y, sub["parameter"])
        ax.set_xlabel(f"Sobol index of {label(outcome)}")
        ax.legend(frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# 7. Morris screening and scenario discovery (PRIM boxes)
# ---------------------------------------------------------------------------------------------

#: σ/μ* ratios separating linear (below 0.1), monotonic (0.1-0.5), almost monotonic (0.5-1) and
#: non-linear, non-monotonic or interacting effects (above 1): Garcia Sanchez et al. (2014).
MORRIS_RATIOS: tuple[float, ...] = (0.1, 0.5, 1.0)


def outcome_label(column: str) -> str:
    """Axis text for a ``runs.parquet`` outcome column: ``mean_x`` is x's time average."""
    for prefix, what in (("mean_", "time average"), ("final_", "final step")):
        if column.startswith(prefix):
            return f"{label(column.removeprefix(prefix))} ({what})"
    return label(column)


def morris_screen(indices: pd.DataFrame, outcome: str) -> Figure:
    """Morris screening of one outcome: σ against μ* per parameter, μ* with its interval.

    ``indices`` has columns ``outcome``, ``parameter``, ``mu_star``, ``mu_star_conf`` and
    ``sigma``. Parameters near the origin are inert; far right, influential; above the dotted
    σ/μ* lines, their effect is non-linear or interacts with other parameters.
    """
    sub = indices[indices["outcome"] == outcome].dropna(subset=["mu_star", "sigma"])
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        right = float(np.nanmax((sub["mu_star"] + sub["mu_star_conf"].fillna(0)).to_numpy(float),
                                initial=0.0)) * 1.12 or 1.0  # fmt: skip
        top = float(np.nanmax(sub["sigma"].to_numpy(float), initial=0.0)) * 1.15 or right
        for ratio in MORRIS_RATIOS:
            end = min(right, top / ratio)
            ax.plot([0, end], [0, ratio * end], ls=":", color=PALETTE[8], lw=0.8)
            ax.annotate(f"σ/μ* = {ratio:g}", (end, ratio * end), xytext=(-2, 2),
                        textcoords="offset points", ha="right", fontsize=6,
                        color=PALETTE[8])  # fmt: skip
        ax.errorbar(sub["mu_star"], sub["sigma"], xerr=sub["mu_star_conf"], fmt="o", ms=4,
                    capsize=2, color=PALETTE[5], ecolor=PALETTE[5])  # fmt: skip
        # Labels in order of σ, each pushed up to clear the one below (points of similar σ
        # would otherwise print their names on top of each other); a hairline joins a moved
        # label to its point.
        gap, last = 0.045 * top, -np.inf
        for _, row in sub.sort_values("sigma").iterrows():
            y = max(float(row["sigma"]), last + gap)
            last = y
            ax.annotate(str(row["parameter"]), (row["mu_star"], row["sigma"]),
                        xytext=(row["mu_star"], y), textcoords="data", fontsize=6,
                        ha="left", va="bottom",
                        arrowprops=None if y == row["sigma"] else
                        {"arrowstyle": "-", "lw": 0.4, "color": PALETTE[8]})  # fmt: skip
        ax.set_xlim(0, right)
        ax.set_ylim(0, top)
        ax.set_xlabel(f"μ*: mean |elementary effect| on {outcome_label(outcome)}")
        ax.set_ylabel("σ: standard deviation of the elementary effects")
    return fig


def prim_boxes(boxes: pd.DataFrame, bounds: dict[str, Sequence[float]] | None = None) -> Figure:
    """Each PRIM box: where its limits sit within every restricted parameter's declared range.

    ``boxes`` has the columns of ``prim_boxes.csv`` (``box``, ``parameter``, ``lower``,
    ``upper``, ``levels``, ``coverage``, ``density``, ``n``); ``bounds`` maps a numeric
    parameter to its declared range. One panel per box: a grey bar spans the range (scaled to
    0-1), a blue bar the box's limits, with their values; categorical parameters list the
    levels kept. The panel title gives the box's coverage, density and number of points.
    """
    bounds = bounds or {}
    ids = list(dict.fromkeys(boxes["box"]))
    heights = [int((boxes["box"] == b).sum()) for b in ids]
    with plt.rc_context(STYLE):
        size = (5.2, sum(0.38 * h + 0.9 for h in heights))
        fig, axes = plt.subplots(len(ids), 1, figsize=size, squeeze=False,
                                 height_ratios=[h + 1.5 for h in heights])  # fmt: skip
        for ax, b in zip(axes[:, 0], ids, strict=True):
            sub = boxes[boxes["box"] == b].reset_index(drop=True)
            ypos = np.arange(len(sub))[::-1]  # the first parameter on top
            for y, (_, row) in zip(ypos, sub.iterrows(), strict=True):
                ax.plot([0, 1], [y, y], color="#DDDDDD", lw=6, solid_capstyle="butt")
                if isinstance(row["levels"], str) and row["levels"]:
                    ax.text(0.5, y, row["levels"], ha="center", va="center", fontsize=6)
                    continue
                lo, hi = bounds.get(row["parameter"], (row["lower"], row["upper"]))
                span = (hi - lo) or 1.0
                a, c = (row["lower"] - lo) / span, (row["upper"] - lo) / span
                ax.plot([a, c], [y, y], color=PALETTE[5], lw=6, solid_capstyle="butt")
                for x, value, ha in ((a, row["lower"], "right"), (c, row["upper"], "left")):
                    ax.annotate(f"{value:.3g}", (x, y), xytext=(-3 if ha == "right" else 3, 5),
                                textcoords="offset points", ha=ha, fontsize=6)  # fmt: skip
            ax.set_yticks(ypos, sub["parameter"])
            ax.set_xlim(-0.12, 1.12)
            ax.set_ylim(-0.8, len(sub) - 0.2)
            first = sub.iloc[0]
            title = f"box {b}: coverage {first['coverage']:.2f}, density {first['density']:.2f}"
            ax.set_title(f"{title}, {int(first['n'])} points", loc="left")
            ax.set_xlabel("position in the declared range (0: lower bound, 1: upper bound)")
    return fig


def prim_tradeoff(trajectory: pd.DataFrame) -> Figure:
    """Coverage against density along each PRIM peeling trajectory; chosen boxes as stars.

    ``trajectory`` has the columns of ``prim_trajectory.csv`` (``box``, ``coverage``,
    ``density``, ``selected``). Peeling moves right to left: each step trades coverage for
    density.
    """
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.2, 3.2))
        for i, (b, sub) in enumerate(trajectory.groupby("box", sort=True)):
            colour = PALETTE[(5 + 2 * i) % len(PALETTE)]
            ax.plot(sub["coverage"], sub["density"], marker="o", ms=2, lw=0.9, color=colour,
                    label=f"box {b}")  # fmt: skip
            chosen = sub[sub["selected"].astype(bool)]
            ax.plot(chosen["coverage"], chosen["density"], marker="*", ms=10, ls="none",
                    color=colour)  # fmt: skip
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("coverage (share of the points of interest inside the box)")
        ax.set_ylabel("density (share of the box's points of interest)")
        ax.legend(frameon=False, loc="lower left")
    return fig


# ---------------------------------------------------------------------------------------------
# Theory against simulation (paradox validate)
# ---------------------------------------------------------------------------------------------


def validation_scatter(table: pd.DataFrame, summary: dict) -> tuple[Figure, str]:
    """Predicted against simulated secant slope per market, with 2-SE bars and the tolerance."""
    markers = {"random": "o", "largest": "s", "smallest": "^"}
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.4, 3.4))
        lo = float(min(table["sim_slope"].min(), table["theory_slope"].min())) - 0.1
        hi = float(max(table["sim_slope"].max(), table["theory_slope"].max())) + 0.1
        line = np.linspace(lo, hi, 2)
        ax.plot(line, line, color=PALETTE[8], lw=0.8, zorder=0)
        ax.fill_between(line, line - 0.03, line + 0.03, color=PALETTE[8], alpha=0.2, lw=0)
        ax.axhline(0, color=PALETTE[8], lw=0.5, ls=":")
        ax.axvline(0, color=PALETTE[8], lw=0.5, ls=":")
        for sel, group in table.groupby("policy.open_weights_selection"):
            for within, colour in ((True, PALETTE[5]), (False, PALETTE[6])):
                part = group[group["within"] == within]
                if part.empty:
                    continue
                ax.errorbar(
                    part["sim_slope"],
                    part["theory_slope"],
                    xerr=2 * part["sim_se"],
                    fmt=markers.get(sel, "o"),
                    ms=3.5,
                    color=colour,
                    elinewidth=0.7,
                    capsize=1.5,
                    label=f"{sel}, {'within' if within else 'outside'} tolerance",
                )
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("simulated secant slope dN/dq (q 0.75→0.95)")
        ax.set_ylabel("market theory's secant slope")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    design = summary["design"]
    agree = summary["sign_agreement_where_clear"]
    caption = (
        f"The market theory (docs/theory.md §4) against the simulation on {summary['markets']} "
        f"markets drawn by Latin hypercube (design seed {design['design_seed']}). Each point is a "
        f"market: the simulated secant slope (N(0.95) − N(0.75))/0.2 averaged over "
        f"{design['seeds']} paired seeds, {design['steps']} steps with the first "
        f"{design['burn_in']} left out, with bars of ±2 standard errors across seeds, against "
        "the theory solved for each seed's open-weights draw and averaged the same way. The "
        "grey band is ±0.03 around equality; marker shape is the open-weights selection, blue "
        "within the tolerance max(0.03, 2 SE), vermilion outside. "
        f"{summary['within_tolerance']} of {summary['markets']} markets are within tolerance"
        + (
            f"; where the simulated sign is clear ({summary['sign_clear_markets']} markets) the "
            f"signs agree in {agree:.0%}."
            if agree is not None
            else "."
        )
    )
    return fig, caption


def regime_boundary(table: pd.DataFrame, summary: dict) -> tuple[Figure, str]:
    """The paradox boundary in the (κ, top-lab reach w₁) plane: the simulated κ* with ±2 SE
    bars (censored ends as arrows), the market theory's κ* and the mean field's."""
    design = summary["design"]
    k_lo, k_hi = design["kappa"]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.8, 3.3))
        inside = table[table["censored"] == ""]
        ax.errorbar(
            inside["kappa_star"],
            inside["top_lab_reach"],
            xerr=2 * inside["kappa_star_se"],
            fmt="o",
            ms=4,
            color=PALETTE[0],
            elinewidth=0.8,
            capsize=2,
            label=f"simulation (bisection, {design['seeds']} paired seeds)",
            zorder=3,
        )
        for side, marker, x in (("below", "<", k_lo), ("above", ">", k_hi)):
            part = table[table["censored"] == side]
            if len(part):
                sign = "<" if side == "below" else ">"
                ax.plot(np.full(len(part), x), part["top_lab_reach"], marker, ms=5,
                        color=PALETTE[0], ls="none",
                        label=f"simulation: κ* {sign} {x:g}")  # fmt: skip
        theory = table.dropna(subset=["theory_kappa_star"])
        ax.plot(theory["theory_kappa_star"], theory["top_lab_reach"], "-s", ms=3,
                color=PALETTE[5], label="market theory (§4)")  # fmt: skip
        if "meanfield_kappa_star" in table:
            mf = table.dropna(subset=["meanfield_kappa_star"])
            ax.plot(mf["meanfield_kappa_star"], mf["top_lab_reach"], "--", color=PALETTE[6],
                    label="mean field (§2, identical labs)")  # fmt: skip
        ax.set_xlim(max(0.0, k_lo - 0.05), min(1.0, k_hi) + 0.05)
        ax.set_xlabel("paradox coupling κ")
        ax.set_ylabel("top lab's reach $w_1$")
        beyond = table[table["theory_kappa_star"].isna()]
        if len(beyond):
            ax.plot(np.full(len(beyond), min(1.0, k_hi) + 0.02), beyond["top_lab_reach"], ">",
                    ms=4, color=PALETTE[5], ls="none",
                    label="market theory: no κ* ≤ 1")  # fmt: skip
        ax.set_title("left of a boundary: no paradox; right: N falls as q rises", loc="left",
                     fontsize=7, color=PALETTE[8])  # fmt: skip
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    mae = summary.get("theory_mean_abs_error")
    mf_mae = summary.get("meanfield_mean_abs_error")
    caption = (
        "Where the paradox begins: the smallest coupling κ at which raising alignment from "
        "q = 0.75 to 0.95 lowers net alignment, against the top lab's reach w₁ (set by the reach "
        f"exponent ζ). Black: the simulation's boundary, found by {design['rounds']} rounds of "
        f"bisection in κ from [{k_lo:g}, {k_hi:g}] on the sign of the secant slope averaged over "
        f"{design['seeds']} paired seeds ({design['steps']} steps, the first {design['burn_in']} "
        "left out), with ±2 standard errors from the slopes at the final bracket; arrows mark a "
        "boundary outside the range. Blue: the market theory's κ* (docs/theory.md §4)"
        + (f", mean absolute error {mae:.3f}" if mae is not None else "")
        + ". Vermilion dashed: the mean field's κ*, which treats the labs as identical and so "
        "cannot depend on w₁"
        + (f" (mean absolute error {mf_mae:.3f})" if mf_mae is not None else "")
        + "."
    )
    return fig, caption


# ---------------------------------------------------------------------------------------------
# Which paradox: the deeper/easier decomposition (docs/theory.md §4.3)
# ---------------------------------------------------------------------------------------------


def curve_decomposition(simulated: pd.DataFrame, theory: pd.DataFrame | None = None) -> Figure:
    """The local split dN/dq = 1 − deeper − easier against q, one colour per coupling κ.

    ``simulated`` and ``theory`` have columns ``kappa``, ``q``, ``deeper`` and ``easier``
    (:func:`sim.market.simulated_curve_decomposition`, :func:`sim.market.market_curves`);
    simulated values are points joined by lines, the theory's dashed.
    """
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.6), sharey=True)
        kappas = sorted(simulated["kappa"].unique())
        for i, kappa in enumerate(kappas):
            colour = PALETTE[(i + 1) % len(PALETTE)]
            sim = simulated[np.isclose(simulated["kappa"], kappa)].sort_values("q")
            th = None
            if theory is not None and "deeper" in theory:
                th = theory[np.isclose(theory["kappa"], kappa)].sort_values("q")
            for ax, part in ((left, "deeper"), (right, "easier")):
                ax.plot(sim["q"], sim[part], color=colour, marker="o", ms=3,
                        label=f"κ = {kappa:g}")  # fmt: skip
                if th is not None and len(th):
                    ax.plot(th["q"], th[part], color=colour, ls="--", lw=1.0)
        for ax, title in ((left, "deeper: Φ · d[q(1+c)]/dq"), (right, "easier: q(1+c) · dΦ/dq")):
            ax.axhline(0.0, color="#999999", lw=0.6)
            ax.set_xlabel(label("model.fixed_alignment"))
            ax.set_title(title)
        left.set_ylabel("part of the fall in dN/dq")
        handles, labels = left.get_legend_handles_labels()
        if theory is not None and len(theory):
            handles.append(Line2D([], [], ls="--", color="#555555", lw=1.0))
            labels.append("market theory")
        left.legend(handles, labels, frameon=False)
    return fig


def regime_decomposition(
    table: pd.DataFrame, *, x: str = "model.coupling", y: str = "model.adversary_budget_mean"
) -> Figure:
    """Two heatmaps over a regime map's cells: the deeper and the easier part of the secant
    slope's fall (both on one diverging scale centred on 0)."""
    parts = ("deeper", "easier")
    grids = {p: table.groupby([y, x])[p].mean().unstack(x).sort_index() for p in parts}
    bound = max(float(np.nanmax(np.abs(g.to_numpy(float)))) for g in grids.values())
    norm = TwoSlopeNorm(0.0, -max(bound, 1e-9), max(bound, 1e-9))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.9), sharey=True)
        for ax, part in zip(axes, parts, strict=True):
            grid = grids[part]
            xs, ys = grid.columns.to_numpy(float), grid.index.to_numpy(float)
            log_y = ys.size > 2 and ys.min() > 0 and ys.max() / ys.min() >= 20
            y_edges = np.exp(_edges(np.log(ys))) if log_y else _edges(ys)
            mesh = ax.pcolormesh(_edges(xs), y_edges, grid.to_numpy(float), shading="flat",
                                 cmap="PuOr_r", norm=norm)  # fmt: skip
            ax.set_title(part)
            ax.set_xlabel(label(x))
            if log_y:
                ax.set_yscale("log")
                ax.set_yticks(ys, [f"{v:g}" for v in ys])
                ax.minorticks_off()
        axes[0].set_ylabel(label(y))
        cbar = fig.colorbar(mesh, ax=list(axes))
        cbar.set_label("part of 1 − slope")
    return fig
