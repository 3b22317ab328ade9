"""``paradox report``: the main job. Runs the default experiment set and writes one folder.

The set is five named sweeps (``conf/sweep/``), each run by the sweep engine into
``<out>/sweeps/<name>/`` (parallel and resumable: rerunning with the same ``--out`` finishes a
stopped report):

- ``scenarios``: every named scenario with replicates and per-step tables;
- ``paradox_curve``: net alignment against the exogenous alignment level for four couplings;
- ``regime_map``: the slope dN/dq at the top of the alignment range over coupling × adversary
  budget;
- ``regime_map_reach``: the same slope over coupling × the largest lab's reach w₁;
- ``policy_grid``: seven policy levers on/off in every combination in three worlds.

Then it draws every figure (``<out>/figures/``, via ``paradox plot``), writes the tables
(``<out>/tables/``: CSV, and the scenario comparison as a booktabs LaTeX table) and
``<out>/report.md``, which embeds the figures with a reading of each computed from the tables.
Hydra-style overrides (``key=value``) apply to every sweep, e.g. ``steps=50`` or
``sweep.replicates=5`` or ``sweep.workers=2``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments import outputs
from experiments.explorer import write_explorer
from experiments.plot import TOP_REACH, Panel, note, plot_folder, window_text
from sim import analysis as A
from sim import market as M
from sim.config import ParameterError
from sim.sweep import (
    Design,
    SweepAborted,
    SweepMismatch,
    SweepResult,
    describe_manifest,
    done_runs,
    format_result,
    run_sources,
    run_sweep,
)
from sim.sweep.guard import check_folder

#: The default experiment set, in the order it runs.
PARTS: tuple[str, ...] = (
    "scenarios",
    "paradox_curve",
    "regime_map",
    "regime_map_reach",
    "policy_grid",
)
#: Columns of the scenario table: outcome → heading.
TABLE_COLUMNS: dict[str, str] = {
    "net_alignment": "Net alignment",
    "harm_total": "Total harm",
    "harm_exploitation": "Exploitation harm",
    "paradox_index": "Paradox index",
    "compromised_share": "Compromised share",
}


class ReportError(ValueError):
    """Bad input to the report (names what is wrong and what is allowed)."""


# ---------------------------------------------------------------------------------------------
# Designs
# ---------------------------------------------------------------------------------------------


def compose_designs(
    parts: Sequence[str], overrides: Sequence[str]
) -> tuple[dict[str, Design], dict[str, str]]:
    """Compose and validate every part's design before anything runs (raises ParameterError or
    ReportError naming the offending key). Also returns each part's resolved YAML."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from experiments.sweep import CONF, PRIMARY, register, to_design

    register()
    designs, yamls = {}, {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="report"):
        for part in parts:
            args = [f"sweep={part}", *overrides]
            try:
                cfg = compose(config_name=PRIMARY, overrides=args)
            except (HydraException, OmegaConfBaseException) as err:
                from experiments.hydra_errors import explain

                first = explain(err, "report") or str(err).strip().splitlines()[0]
                raise ReportError(f"{part}: {first}") from None
            design = to_design(cfg, args)
            design.spec.name = part
            designs[part] = design
            yamls[part] = OmegaConf.to_yaml(cfg, resolve=True)
    return designs, yamls


def run_parts(
    designs: dict[str, Design], yamls: dict[str, str], out: Path
) -> dict[str, SweepResult]:
    """Run (or resume) each part into ``out/sweeps/<part>/``; check every folder first, so a
    mismatch stops the report before anything runs."""
    for part, design in designs.items():
        check_folder(out / "sweeps" / part, design, new_folder="give a new --out")
    plans = plan_parts(designs, out)
    for line in format_plan(designs, plans):
        print(f"paradox report: {line}", file=sys.stderr, flush=True)
    results = {}
    for i, (part, design) in enumerate(designs.items(), start=1):
        folder = out / "sweeps" / part
        print(f"[{i}/{len(designs)}] {part}: {design.describe()}", file=sys.stderr, flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        outputs.write_text(folder / "config.yaml", yamls[part])
        results[part] = result = run_sweep(design, folder)
        for line in format_result(design, result).splitlines()[1:]:
            note(line)
        line = estimate_rest(plans, results)
        if line:
            print(f"paradox report: {line}", file=sys.stderr, flush=True)
    return results


@dataclass
class PartPlan:
    """How many runs a part has, how many of them are already in its folder, and the mean
    cost of one of its runs in agent-steps (steps x (labs + adversaries))."""

    runs: int
    done: int
    work: float

    @property
    def todo(self) -> int:
        return self.runs - self.done


#: A model step costs about as much as this many agents on top of its labs and adversaries
#: (fitted on 2 cores, 2026-12-05: 200-step runs of 1,020 agents took 3.0 times as long as
#: 150-step runs of 308, not the 4.4 times their agent-steps alone would say).
STEP_OVERHEAD_AGENTS = 250


def run_work(design: Design, samples: int = 64) -> float:
    """Mean cost of a run of ``design`` in agent-steps, steps x (labs + adversaries +
    :data:`STEP_OVERHEAD_AGENTS`), over up to ``samples`` evenly spaced runs (a scenario or a
    factor may change the steps and the populations)."""
    ids = design.shard_range()
    picks = np.unique(np.linspace(ids.start, ids.stop - 1, min(len(ids), samples)).astype(int))
    configs = [design.config(int(rid)) for rid in picks]
    agents = [c.model.n_labs + c.model.n_adversaries + STEP_OVERHEAD_AGENTS for c in configs]
    return float(np.mean([c.steps * a for c, a in zip(configs, agents, strict=True)]))


def plan_parts(designs: dict[str, Design], out: Path) -> dict[str, PartPlan]:
    """Every part's run count, runs already done (a resumed report) and cost per run."""
    plans = {}
    for part, design in designs.items():
        ids, folder = design.shard_range(), out / "sweeps" / part
        try:
            done = int(done_runs(run_sources(folder), ids).sum()) if folder.is_dir() else 0
        except Exception:  # a damaged part file: the sweep sets it aside and reruns its runs
            done = 0
        plans[part] = PartPlan(len(ids), done, run_work(design))
    return plans


def format_plan(designs: dict[str, Design], plans: dict[str, PartPlan]) -> list[str]:
    """The lines printed before anything runs: runs per part and in all, and what is known of
    the time (nothing yet: parts differ in steps and populations, and the machine's speed is
    measured on the first part)."""
    total = sum(p.runs for p in plans.values())
    done = sum(p.done for p in plans.values())
    head = f"{total:,} runs in {_plural(len(plans), 'part')}"
    head += f" ({total - done:,} to run, {done:,} already done)" if done else ""
    lines = [head + ":"]
    for part, plan in plans.items():
        steps = designs[part].max_steps()
        already = f"; {plan.done:,} already done" if plan.done else ""
        lines.append(f"  {part}: {designs[part].describe()}, up to {steps} steps{already}")
    if done < total:
        lines.append(
            "time: no estimate before a part has run (the machine's speed is measured on it); "
            "one follows each part"
        )
    return lines


def estimate_rest(plans: dict[str, PartPlan], results: dict[str, SweepResult]) -> str | None:
    """An estimate of the time the parts not yet run will take, from the speed measured on the
    parts run so far (agent-steps per second, so that parts with longer runs or larger
    populations weigh more), or None when nothing remains or nothing was measured."""
    left = {part: plan for part, plan in plans.items() if part not in results and plan.todo}
    ran = [(plans[part], r) for part, r in results.items() if r.ran > 0 and r.seconds > 0]
    if not left or not ran:
        return None
    speed = sum(plan.work * r.ran for plan, r in ran) / sum(r.seconds for _, r in ran)
    seconds = sum(plan.work * plan.todo for plan in left.values()) / speed
    runs = sum(plan.todo for plan in left.values())
    rate = sum(r.ran for _, r in ran) / sum(r.seconds for _, r in ran)
    return (
        f"the remaining {_plural(len(left), 'part')} ({runs:,} runs) should take "
        f"{_duration(seconds)}: extrapolated from the {rate:.3g} runs/s measured so far, "
        "scaled by each part's steps x agents per run (the figures come after)"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds / 10) * 10):.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"about {minutes:.0f} min"
    return f"about {minutes / 60:.1f} h"


# Tables
# ---------------------------------------------------------------------------------------------


def _has_interval(lo: float, hi: float) -> bool:
    return bool(np.isfinite(lo) and np.isfinite(hi))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _f(x: float, spec: str = ".3f") -> str:
    """``x`` formatted by ``spec``, "n/a" when it is not finite, and never a negative zero
    ("-0.000" for a value that rounds to zero prints as "0.000", or "+0.000" with a sign)."""
    if not np.isfinite(x):
        return "n/a"
    text = format(float(x), spec)
    if not text.strip("+-0.,"):  # only zeros: drop the minus of a tiny negative value
        text = format(0.0, spec)
    return text


def _fmt(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "n/a (not estimated)"
    if not _has_interval(lo, hi):
        return f"{_f(mean)} (no interval)"
    return f"{_f(mean)} ± {_f((hi - lo) / 2)}"


def replicate_text(counts: pd.Series) -> str:
    """Replicates per group: "10", or "9–10" when groups differ (e.g. after failed runs)."""
    lo, hi = int(counts.min()), int(counts.max())
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _batch_means(table: pd.DataFrame) -> bool:
    """Whether the scenario table's intervals are single runs' batch-means intervals."""
    return "interval" in table and bool((table["interval"] == "batch means").any())


def scenario_latex(table: pd.DataFrame, reps: str, steps: int, window: str | None = None) -> str:
    """The scenario comparison as a booktabs table: mean ± 95% half-width per cell (the mean
    alone, marked n/a, where one replicate gives no interval). ``window`` says which steps a
    run's time average covers (:func:`experiments.plot.window_text`; default steps 1..T)."""
    wide = table.set_index(["scenario", "outcome"])
    cols = [c for c in TABLE_COLUMNS if c in set(table["outcome"])]
    if reps != "1":
        over = f"{reps} replicates $\\pm$ the half-width of its 95\\% $t$-interval"
    elif _batch_means(table):
        over = ("one replicate $\\pm$ the half-width of the 95\\% batch-means interval of its "
                "time average (within-run noise only)")  # fmt: skip
    else:
        over = "one replicate (no intervals: n/a)"
    window = (window or f"over steps 1–{steps}").replace("–", "--")
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\caption{Scenario comparison: each outcome averaged "
        + f"{window} of a run, mean over "
        + f"{over}.}}",
        r"\label{tab:scenarios}",
        r"\begin{tabular}{l" + "r" * len(cols) + "}",
        r"\toprule",
        "Scenario & " + " & ".join(TABLE_COLUMNS[c] for c in cols) + r" \\",
        r"\midrule",
    ]
    for scen in dict.fromkeys(table["scenario"]):
        cells = []
        for c in cols:
            m, lo, hi = wide.loc[(scen, c), ["mean", "lo", "hi"]]
            cells.append("n/a" if not np.isfinite(m) else
                         f"${_f(m)} \\pm {_f((hi - lo) / 2)}$" if _has_interval(lo, hi)
                         else f"${_f(m)}$ (n/a)")  # fmt: skip
        lines.append(scen.replace("_", " ") + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def scenario_markdown(table: pd.DataFrame) -> str:
    cols = [c for c in TABLE_COLUMNS if c in set(table["outcome"])]
    wide = table.set_index(["scenario", "outcome"])
    lines = ["| Scenario | " + " | ".join(TABLE_COLUMNS[c] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]  # fmt: skip
    for scen in dict.fromkeys(table["scenario"]):
        row = [_fmt(*wide.loc[(scen, c), ["mean", "lo", "hi"]]) for c in cols]
        lines.append(f"| {scen.replace('_', ' ')} | " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Readings: sentences computed from the tables
# ---------------------------------------------------------------------------------------------


def _interval(d: float, lo: float, hi: float) -> str:
    if not _has_interval(lo, hi):
        return f"{_f(d, '+.3f')} (no interval)"
    return f"{_f(d, '+.3f')} [{_f(lo, '+.3f')}, {_f(hi, '+.3f')}]"


def _sign_counts(lo: pd.Series, hi: pd.Series) -> dict[str, pd.Series]:
    """Masks: interval below zero, above zero, straddling zero, and no interval at all."""
    known = lo.notna() & hi.notna()
    below, above = known & (hi < 0), known & (lo > 0)
    return {"below": below, "above": above, "noise": known & ~below & ~above, "none": ~known}


def read_scenarios(table: pd.DataFrame) -> str:
    net = table[table["outcome"] == "net_alignment"].set_index("scenario")
    harm = table[table["outcome"] == "harm_total"].set_index("scenario")
    best, worst = net["mean"].idxmax(), net["mean"].idxmin()
    text = [
        f"Net alignment is highest in *{best.replace('_', ' ')}* ({_f(net.loc[best, 'mean'])}) "
        f"and lowest in *{worst.replace('_', ' ')}* ({_f(net.loc[worst, 'mean'])}); total harm "
        f"ranges from {_f(harm['mean'].min())} (*{harm['mean'].idxmin().replace('_', ' ')}*) "
        f"to {_f(harm['mean'].max())} (*{harm['mean'].idxmax().replace('_', ' ')}*)."
    ]
    if "baseline" in net.index and len(net) > 1:
        clauses = []
        for outcome, frame in (("total harm", harm), ("net alignment", net)):
            others = frame.drop(index="baseline")
            masks = _sign_counts(others["diff_lo"], others["diff_hi"])
            parts = []
            for word, key in (("lower", "below"), ("higher", "above")):
                sub = others[masks[key]]
                if len(sub):
                    items = ", ".join(
                        f"{s.replace('_', ' ')} "
                        f"{_interval(r['diff_baseline'], r['diff_lo'], r['diff_hi'])}"
                        for s, r in sub.sort_values("diff_baseline").iterrows()
                    )
                    parts.append(f"{word} in {len(sub)} ({items})")
            if masks["noise"].any():
                parts.append(f"within noise in {int(masks['noise'].sum())}")
            none = masks["none"] & others["diff_baseline"].notna()
            if none.any():
                parts.append(f"without an interval in {int(none.sum())} (too few runs)")
            if others["diff_baseline"].isna().any():
                parts.append(
                    f"not estimated in {int(others['diff_baseline'].isna().sum())} "
                    "(no finite values)"
                )
            clauses.append(f"{outcome} is " + ", ".join(parts))
        others = net.drop(index="baseline")
        with_interval = others[others["diff_lo"].notna() & others["diff_hi"].notna()]
        if "method" in with_interval:
            kinds = with_interval["method"]
        elif "paired" in with_interval:
            kinds = with_interval["paired"].map({True: "paired", False: "welch"})
        else:
            kinds = pd.Series("welch", index=with_interval.index)
        n_paired, n_batch = int((kinds == "paired").sum()), int((kinds == "batch means").sum())
        n_welch = len(with_interval) - n_paired - n_batch
        if not len(with_interval):
            method = ""
        elif n_paired == len(with_interval):
            method = ", 95% t-interval of the differences paired by seed (common random numbers)"
        elif n_welch == len(with_interval):
            method = ", Welch 95% interval"
        elif n_batch == len(with_interval):
            method = (", 95% interval from the two runs' batch-means standard errors (one run "
                      "each: within-run noise only)")  # fmt: skip
        elif not n_batch:
            method = (
                f", 95% interval paired by seed for {n_paired} (the seeds match the baseline's), "
                f"Welch for {n_welch}"
            )
        else:
            parts = [f"paired by seed for {n_paired}" if n_paired else "",
                     f"from single runs' batch means for {n_batch}",
                     f"Welch for {n_welch}" if n_welch else ""]  # fmt: skip
            method = ", 95% interval " + ", ".join(p for p in parts if p)
        text.append(
            f"Against the baseline (difference of means{method}, out of "
            f"{_plural(len(net) - 1, 'scenario')}): " + "; ".join(clauses) + "."
        )
    return " ".join(text)


def read_arms_race(ts: pd.DataFrame) -> str:
    last = ts[ts["step"] == ts["step"].max()]
    spend = last.groupby("scenario")[["spend_attack", "spend_defence"]].mean()
    ratio = (spend["spend_attack"] / spend["spend_defence"].replace(0, np.nan)).dropna()
    text = []
    if len(ratio):
        text.append(
            f"In the last step attack spending is {ratio.min():.2f}–{ratio.max():.2f} times "
            f"defence spending across scenarios (highest in *{ratio.idxmax().replace('_', ' ')}*, "
            f"lowest in *{ratio.idxmin().replace('_', ' ')}*)."
        )
    scen = "baseline" if "baseline" in set(ts["scenario"]) else sorted(ts["scenario"])[0]
    cols = ["attempts_weights", "attempts_prompt", "attempts_output"]
    sub = ts[(ts["scenario"] == scen) & (ts["step"] >= 1)].groupby("step")[cols].mean()
    total = sub.sum(axis=1).replace(0, np.nan)
    first, final = (sub.iloc[0] / total.iloc[0]), (sub.iloc[-1] / total.iloc[-1])
    if np.isfinite(final).all() and np.isfinite(first).all():
        top = final.idxmax().removeprefix("attempts_")
        text.append(
            f"In *{scen.replace('_', ' ')}* the {top} channel carries {final.max():.0%} of attack "
            f"attempts by the last step (it carried {first[f'attempts_{top}']:.0%} in step 1)."
        )
    return " ".join(text)


def _curve_shape(p: dict, means: np.ndarray, q_max: float) -> str:
    """How one simulated curve runs, from :func:`sim.analysis.peak`."""
    drop = (f"{_f(p['drop'])} [{_f(p['drop_lo'])}, {_f(p['drop_hi'])}]"
            if _has_interval(p["drop_lo"], p["drop_hi"]) else _f(p["drop"]))  # fmt: skip
    if p["interior"]:
        return (f"peaks at q = {p['x']:g} (N = {_f(p['value'])}) and falls by {drop} "
                f"to q = {q_max:g}")  # fmt: skip
    if np.all(np.diff(means) > 0):
        return "rises at every level"
    if p["position"] == "last":
        return (f"is highest at the top of the range, q = {q_max:g}, though it does not rise "
                "at every level")  # fmt: skip
    if not _has_interval(p["drop_lo"], p["drop_hi"]):
        where = (f"at the lowest level, q = {p['x']:g}," if p["position"] == "first" else
                 f"at q = {p['x']:g}")  # fmt: skip
        return (f"is highest {where} and {drop} lower at q = {q_max:g} "
                "(too few runs for an interval)")  # fmt: skip
    if p["position"] == "first":
        fall = "a fall clearly above zero" if p["drop_lo"] > 0 else "not clearly above zero"
        return (f"is highest at the lowest level, q = {p['x']:g}, and lower by {drop} at "
                f"q = {q_max:g} ({fall})")  # fmt: skip
    return (f"is highest at q = {p['x']:g}, but its fall to q = {q_max:g}, {drop}, is not "
            "clearly above zero")  # fmt: skip


def _theory_name(panel: Panel) -> str:
    frame = panel.data.get("theory_name")
    return "mean field" if frame is None else str(frame["name"].iloc[0])


def _fall_mechanism(sub: pd.DataFrame, x: str, q_lo: float, q_hi: float) -> str:
    """Which paradox a simulated fall from q_lo to q_hi is (docs/theory.md §4.3), in words."""
    at = {}
    for level in (q_lo, q_hi):
        rows = sub[np.isclose(sub[x], level)]
        at[level] = {"Phi": float(rows["mean_compromised_share"].mean()),
                     "clarity": float(rows["mean_mean_clarity"].mean())}  # fmt: skip
    parts = M.decompose(q_lo, at[q_lo], q_hi, at[q_hi])
    mechanism = M.mechanism_text(parts["deeper"], parts["easier"])
    return f"Its fall from q = {q_lo:g} to {q_hi:g} is {mechanism}."


def read_paradox_curve(panel: Panel) -> str:
    runs, theory = panel.data["runs"], panel.data["theory"]
    name = _theory_name(panel)
    x = "model.fixed_alignment"
    text = []
    falls = []  # (κ, method) for each curve whose fall is reported with an interval
    for kappa, sub in runs.groupby("model.coupling"):
        p = A.peak(sub, x)
        if p["position"] != "last" and _has_interval(p["drop_lo"], p["drop_hi"]):
            falls.append((kappa, p.get("method") or ("paired" if p["paired"] else "welch")))
        means = sub.groupby(x)["mean_net_alignment"].mean().sort_index().to_numpy()
        mf = theory[np.isclose(theory["kappa"], kappa)]
        if not len(mf):
            mf_text = f"the {name} was not computed for this coupling"
        elif np.isfinite(q_star := float(mf["q_star"].iloc[0])):
            mf_text = f"the {name} puts q* at {q_star:.2f}"
        else:
            mf_text = f"the {name} has no interior optimum on this grid"
        shape = _curve_shape(p, means, float(sub[x].max()))
        text.append(f"At κ = {kappa:g} simulated net alignment {shape}; {mf_text}.")
        if p["interior"] and {"mean_compromised_share", "mean_mean_clarity"} <= set(sub.columns):
            text.append(_fall_mechanism(sub, x, float(p["x"]), float(sub[x].max())))
    paired = [k for k, method in falls if method == "paired"]
    batch = [k for k, method in falls if method == "batch means"]
    if falls and len(paired) == len(falls):
        text.append("Falls are paired by seed (replicates share seeds across levels), with "
                    "95% t-intervals.")  # fmt: skip
    elif falls and len(batch) == len(falls):
        text.append("Falls are compared by the 95% batch-means intervals of single runs "
                    "(within-run noise only: one run per level, so they say nothing about "
                    "other seeds).")  # fmt: skip
    elif paired or batch:
        where = []
        if paired:
            where.append("paired by seed at κ = " + ", ".join(f"{k:g}" for k in paired)
                         + " (95% t-intervals)")  # fmt: skip
        if batch:
            where.append("compared by single runs' batch-means intervals at κ = "
                         + ", ".join(f"{k:g}" for k in batch))  # fmt: skip
        welch_too = len(paired) + len(batch) < len(falls)
        rest = " and compared by Welch's interval elsewhere" if welch_too else ""
        text.append("Falls are " + "; ".join(where) + rest + ".")
    elif falls:
        text.append("Falls are compared by Welch's 95% interval (the levels do not share "
                    "seeds).")  # fmt: skip
    return " ".join(t for t in text if t)


def read_regime_map(panel: Panel) -> str:
    slopes, boundary = panel.data["slopes"], panel.data["boundary"]
    name = _theory_name(panel)
    y = panel.data["strength"]["key"].item()
    estimated = slopes["slope"].notna()
    masks = _sign_counts(slopes["lo"].where(estimated), slopes["hi"].where(estimated))
    counts = {k: int(v.sum()) for k, v in masks.items()}
    no_interval = int((estimated & masks["none"]).sum())
    missing = int((~estimated).sum())
    clauses = [
        f"clearly below zero (the paradox: 95% interval below 0) in {counts['below']}",
        f"clearly above zero in {counts['above']}",
        f"within noise in {counts['noise']}",
    ]
    if no_interval:
        clauses.append(f"without an interval (too few runs) in {no_interval}")
    if missing:
        clauses.append(f"not estimated (a level of q missing, e.g. failed runs) in {missing}")
    text = [f"Of {_plural(len(slopes), 'cell')}, the slope is " + ", ".join(clauses[:-1])
            + f", and {clauses[-1]}."]  # fmt: skip
    rows = []
    for level, sub in slopes.groupby(y):
        negative = sub[sub["slope"] < 0]["model.coupling"]
        sim_k = f"{negative.min():g}" if len(negative) else "none up to 1"
        b = boundary[np.isclose(boundary["y"], level)]["kappa_star"]
        mf_k = ("not computed" if not len(b) else
                f"{b.item():.2f}" if np.isfinite(b.item()) else "none up to 1")  # fmt: skip
        reach = f" (w₁ = {sub[TOP_REACH].iloc[0]:.2f})" if TOP_REACH in sub else ""
        rows.append(f"{level:g}{reach}: {sim_k} ({name} {mf_k})")
    text.append(
        "Smallest coupling on the grid with a negative mean slope, per "
        f"{y.split('.')[-1].replace('_', ' ')}: " + "; ".join(rows) + "."
    )
    parts = panel.data.get("decomposition")
    if parts is not None and len(parts):
        falling = parts[parts["slope"] < 0]
        if len(falling):
            text.append(
                f"Where the mean slope is negative ({_plural(len(falling), 'cell')}), the fall is "
                + M.mechanism_text(float(falling["deeper"].mean()),
                                   float(falling["easier"].mean()))
                + " on average."
            )  # fmt: skip
    return " ".join(text)


def read_reach(panel: Panel) -> str:
    """The reach map in one line: at the top coupling, the w₁ where the slope is clearly
    negative and where clearly positive, and the theory's κ* at the smallest and largest w₁."""
    slopes, boundary = panel.data["slopes"], panel.data["boundary"]
    strength = panel.data["strength"]["key"].item()
    top = slopes["model.coupling"].max()
    at = slopes[np.isclose(slopes["model.coupling"], top)].sort_values(TOP_REACH)
    masks = _sign_counts(at["lo"], at["hi"])
    parts = []
    for kind, words in (("below", "clearly negative (the paradox)"),
                        ("above", "clearly positive"), ("noise", "within noise")):  # fmt: skip
        if masks[kind].any():
            parts.append(f"{words} at w₁ = {_values(at[TOP_REACH][masks[kind]])}")
    found = "; ".join(parts) if parts else "not estimated"
    text = (
        f"**Reach.** At κ = {top:g} the slope is {found} (w₁ is the largest lab's reach "
        "share, set by the reach exponent ζ)."
    )
    known = boundary.dropna(subset=["kappa_star"]).sort_values("y")
    if len(known):
        name = _theory_name(panel)
        reach_of = at.set_index(strength)[TOP_REACH]
        ends = []
        for _, row in known.iloc[[0, -1]].drop_duplicates().iterrows():
            w1 = reach_of.get(row["y"], np.nan)
            kappa = f"{row['kappa_star']:.2f}" if np.isfinite(row["kappa_star"]) else "above 1"
            ends.append(f"{kappa} at w₁ = {w1:.2f}")
        text += f" The {name}'s κ* is " + " and ".join(ends) + "."
    return text


def _values(values: pd.Series) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _span(values: pd.Series) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"


def in_brief(panels: dict[str, Panel]) -> list[str]:
    """The regime structure first: where the paradox lives, which mechanism drives it, and how
    far the theory and the simulation agree (each computed from the tables below)."""
    p = panels["regime_map"]
    slopes, boundary = p.data["slopes"], p.data["boundary"]
    y = p.data["strength"]["key"].item()
    y_name = y.split(".")[-1].replace("_", " ")
    masks = _sign_counts(slopes["lo"], slopes["hi"])
    below = slopes[masks["below"]]
    lines = []
    if len(below):
        lines.append(
            f"**Where.** More alignment clearly lowers net alignment (the paradox) in "
            f"{_plural(len(below), 'cell')} of {len(slopes)} of the regime map: κ "
            f"{_span(below['model.coupling'])}, {y_name} {_span(below[y])}; it is clearly absent "
            "in "
            f"{int(masks['above'].sum())} and within noise in {int(masks['noise'].sum())}."
        )
    else:
        lines.append(
            f"**Where.** No cell of the regime map has a slope clearly below zero "
            f"({int(masks['above'].sum())} of {len(slopes)} are clearly above it)."
        )
    parts = p.data.get("decomposition")
    if parts is not None and len(parts) and (parts["slope"] < 0).any():
        falling = parts[parts["slope"] < 0]
        clear = "" if len(below) else " (none of them clearly so)"
        lines.append(
            f"**Mechanism.** Where the mean slope is negative{clear}, the fall is "
            + M.mechanism_text(float(falling["deeper"].mean()), float(falling["easier"].mean()))
            + " (docs/theory.md §4.3)."
        )
    name = _theory_name(p)
    agree, compared = 0, 0
    grid = np.sort(slopes["model.coupling"].unique())
    step = float(np.median(np.diff(grid))) if grid.size > 2 else float("nan")
    for level, sub in slopes.groupby(y):
        if not np.isfinite(step) or sub["slope"].isna().all():
            continue  # one or two couplings, or nothing estimated: no threshold to compare
        negative = sub[sub["slope"] < 0]["model.coupling"]
        b = boundary[np.isclose(boundary["y"], level)]["kappa_star"]
        if not len(b):
            continue
        compared += 1
        theory_k = b.item()
        if not len(negative):
            # no negative slope up to the grid's top: agreement if the theory's κ* is beyond it
            agree += int(not np.isfinite(theory_k) or theory_k > grid.max())
        elif np.isfinite(theory_k):
            # the simulated threshold lies between the last positive and first negative level
            first = negative.min()
            below_first = grid[grid < first]
            lo = below_first.max() if below_first.size else 0.0
            agree += int(lo - step / 2 <= theory_k <= first + step / 2)
    if compared:
        lines.append(
            f"**Theory.** The {name}'s κ* falls in the simulation's bracket (between the last "
            "coupling with a positive mean slope and the first with a negative one, widened by "
            f"half a grid step, {step / 2:g}) at {agree} of {compared} levels of {y_name}."
        )
    reach = panels.get("regime_map_reach")
    if reach is not None and "slopes" in reach.data and TOP_REACH in reach.data["slopes"]:
        lines.append(read_reach(reach))
    if "paradox_curve" in panels:
        runs = panels["paradox_curve"].data["runs"]
        top = runs["model.coupling"].max()
        peak = A.peak(runs[np.isclose(runs["model.coupling"], top)], "model.fixed_alignment")
        if peak["interior"]:
            lines.append(
                f"**Paradox curve.** At κ = {top:g} net alignment peaks at q = {peak['x']:g} "
                "and falls clearly beyond it (95% interval of the fall above zero)."
            )
    return lines


def read_policy(panel: Panel) -> str:
    effects = panel.data["effects"]
    text = []
    for world, sub in effects.groupby("scenario", sort=False):
        harm = sub[sub["outcome"] == "harm_total"]
        masks = _sign_counts(harm["lo"], harm["hi"])
        down = harm[masks["below"]].sort_values("effect")
        up = harm[masks["above"]].sort_values("effect", ascending=False)

        def names(frame: pd.DataFrame) -> str:
            return ", ".join(f"{r['lever'].split('.')[-1].replace('_', ' ')} "
                             f"{_interval(r['effect'], r['lo'], r['hi'])}"
                             for _, r in frame.iterrows())  # fmt: skip

        parts = []
        if len(down):
            parts.append(f"lower total harm: {names(down)}")
        if len(up):
            parts.append(f"raise it: {names(up)}")
        net = sub[sub["outcome"] == "net_alignment"]
        best = net.loc[net["effect"].idxmax()] if net["effect"].notna().any() else None
        tail = ""
        if best is not None and best["lo"] > 0:
            tail = (f"; the largest gain in net alignment comes from "
                    f"{best['lever'].split('.')[-1].replace('_', ' ')} "
                    f"{_interval(best['effect'], best['lo'], best['hi'])}")  # fmt: skip
        one_cell = masks["none"] & (harm["cells"] == 1)
        if one_cell.any():
            n = int(one_cell.sum())
            tail += (f"; {_plural(n, 'lever')} without an interval (too few runs in "
                     f"{'its' if n == 1 else 'their'} only matched cell)")  # fmt: skip
        many = masks["none"] & (harm["cells"] >= 2)
        if many.any():
            tail += (f"; {_plural(int(many.sum()), 'lever')} without an interval (fewer than two "
                     "finite differences across cells)")  # fmt: skip
        if (harm["cells"] == 0).any():
            tail += (f"; {_plural(int((harm['cells'] == 0).sum()), 'lever')} not estimated "
                     "(no cell with both on and off runs)")  # fmt: skip
        text.append(f"In *{world.replace('_', ' ')}*, levers that "
                    + ("; that ".join(parts) if parts else "change total harm: none clearly")
                    + tail + ".")  # fmt: skip
    return " ".join(text)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

#: The figures each part should give; a part that gives none of them is reported as not drawn.
PART_FIGURES: dict[str, tuple[str, ...]] = {
    "scenarios": ("scenario_dynamics", "arms_race"),
    "paradox_curve": ("paradox_curve",),
    "regime_map": ("regime_map",),
    "regime_map_reach": ("regime_map_reach",),
    "policy_grid": ("policy_forest",),
}


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    outputs.atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _figure_md(panel: Panel, out: Path) -> str:
    png = next(p for p in panel.files if p.suffix == ".png")
    pdf = next(p for p in panel.files if p.suffix == ".pdf")
    return (f"![{panel.name}]({png.relative_to(out).as_posix()})\n\n"
            f"*{panel.caption}* ([PDF]({pdf.relative_to(out).as_posix()}))")  # fmt: skip


def found_parts(out: Path) -> dict[str, Path]:
    """The parts of the default set whose runs are in ``out/sweeps/`` (from this call or an
    earlier one with the same ``--out``), in report order."""
    return {part: out / "sweeps" / part for part in PARTS
            if (out / "sweeps" / part / "runs.parquet").exists()}  # fmt: skip


def failed_runs(folder: Path) -> tuple[int, int]:
    """(failed, total) runs in a sweep folder's ``runs.parquet``."""
    status = pd.read_parquet(folder / "runs.parquet", columns=["status"])["status"]
    return int((status != "ok").sum()), len(status)


def write_report(out: Path, command: str) -> tuple[Path, list[str]]:
    """Figures, tables and ``report.md`` from every part found under ``out/sweeps/``. Returns
    the report's path and one warning per problem (failed runs, a part with no figure)."""
    folders = found_parts(out)
    figures, tables = out / "figures", out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    panels: dict[str, Panel] = {}
    warnings: list[str] = []
    for part, folder in folders.items():
        print(f"figures: {part}", file=sys.stderr, flush=True)
        drawn = plot_folder(folder, figures)
        panels.update((panel.name, panel) for panel in drawn)
        if not any(panel.name in PART_FIGURES[part] for panel in drawn):
            why = ("no per-step rows in its timeseries.parquet: sweep.save_timeseries=false, "
                   "or every run failed" if part == "scenarios" else
                   "its runs.parquet does not vary the factors the figure needs, or every run "
                   "failed")  # fmt: skip
            warnings.append(f"{part}: no figure drawn ({why})")
        failed, total = failed_runs(folder)
        if failed:
            warnings.append(f"{part}: {failed} of {total} runs failed (status 'failed', error "
                            f"in sweeps/{part}/runs.parquet); they are left out")  # fmt: skip
    sections = ["# Report: the AI alignment paradox simulation", ""]
    sections.append(
        f"Made by `paradox report` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Each sweep's runs "
        "are in `sweeps/<name>/runs.parquet` (one row per run), the tables in `tables/`, the "
        "figures in `figures/` (PDF and 300-dpi PNG, caption in the `.txt` beside each). "
        "All outcomes are averages over the steps of a run after its burn-in (docs/ODD.md §4) "
        "unless said otherwise."
    )
    explorer = write_explorer(out, folders)  # every sweep's design points, sliders over them
    if explorer is not None:
        link = f"[{explorer.name}]({explorer.name})"
        sections += ["", f"Explore the sweeps interactively: {link} (one self-contained page; "
                     "opens from this folder, no server needed)."]  # fmt: skip
    if warnings:
        sections += ["", "**Warnings**", "", *[f"- {w}" for w in warnings]]
    if "regime_map" in panels and "slopes" in panels["regime_map"].data:
        sections += ["", "## In brief", "", *[f"- {line}" for line in in_brief(panels)]]
    if "scenarios" in folders:
        runs = A.ok_runs(pd.read_parquet(folders["scenarios"] / "runs.parquet"))
        if len(runs):
            table = A.scenario_table(runs)
            write_csv(tables / "scenarios.csv", table)
            reps, steps = replicate_text(runs.groupby("scenario").size()), int(runs["steps"].max())
            window = window_text(runs)
            outputs.write_text(tables / "scenarios.tex",
                               scenario_latex(table, reps, steps, window))  # fmt: skip
            if reps != "1":
                over = f"Mean over {reps} replicates ± half-width of the 95% t-interval"
            elif _batch_means(table):
                over = ("One replicate per scenario ± half-width of the 95% batch-means interval "
                        "of its time average (within-run noise only)")  # fmt: skip
            else:
                over = "One replicate per scenario: no intervals"
            over += f"; each run averaged {window}"
            sections += ["", "## Scenarios", "", scenario_markdown(table), "",
                         f"{over}; LaTeX: `tables/scenarios.tex`.", "",
                         read_scenarios(table)]  # fmt: skip
        if "scenario_dynamics" in panels:
            sections += ["", _figure_md(panels["scenario_dynamics"], out)]
        if "arms_race" in panels:
            ts = panels["arms_race"].data["timeseries"]
            sections += ["", "## The arms race", "", read_arms_race(ts), "",
                         _figure_md(panels["arms_race"], out)]  # fmt: skip
    if "paradox_curve" in panels:
        p = panels["paradox_curve"]
        for key, name in (("curve", "paradox_curve"), ("harm", "paradox_curve_harm"),
                          ("theory", "paradox_curve_theory")):  # fmt: skip
            write_csv(tables / f"{name}.csv", p.data[key])
        sections += ["", "## The paradox curve", "", read_paradox_curve(p), "", _figure_md(p, out)]
        if "paradox_decomposition" in panels:
            d = panels["paradox_decomposition"]
            write_csv(tables / "paradox_curve_decomposition.csv", d.data["decomposition"])
            sections += ["", _figure_md(d, out)]
    for suffix, title in (("", "The regime map"),
                          ("_reach", "The regime map over the top lab's reach")):  # fmt: skip
        name = f"regime_map{suffix}"
        if name not in panels or "slopes" not in panels[name].data:
            continue
        p = panels[name]
        strength = p.data["strength"]["key"].item()
        write_csv(tables / f"{name}.csv", p.data["slopes"])
        write_csv(tables / f"{name}_theory.csv",
                  p.data["boundary"].rename(columns={"y": strength}))  # fmt: skip
        sections += ["", f"## {title}", "", read_regime_map(p), "", _figure_md(p, out)]
        if f"regime_decomposition{suffix}" in panels:
            d = panels[f"regime_decomposition{suffix}"]
            write_csv(tables / f"{name}_decomposition.csv", d.data["decomposition"])
            sections += ["", _figure_md(d, out)]
    if "policy_forest" in panels:
        p = panels["policy_forest"]
        write_csv(tables / "policy_effects.csv", p.data["effects"])
        sections += ["", "## Policy levers", "", read_policy(p), "", _figure_md(p, out)]
    sections += ["", "## Settings", "", "| Sweep | Design | Steps | Seeds |", "|---|---|---:|---|"]
    for part, folder in folders.items():  # parts may come from different calls: each its own
        manifest = json.loads((folder / "sweep.json").read_text())
        seeds = f"{manifest.get('seeding', '?')}, base seed {manifest.get('base_seed', '?')}"
        steps, top = manifest.get("steps", "?"), manifest.get("max_steps")
        steps = f"{steps} (up to {top})" if top not in (None, steps) else f"{steps}"
        sections.append(f"| `{part}` | {describe_manifest(manifest)} | {steps} | {seeds} |")
    sections += ["", f"Reproduce: `{command}` (this call; each sweep's composed settings are "
                 "in `sweeps/<name>/config.yaml`; provenance: `provenance.json`).", ""]  # fmt: skip
    path = out / "report.md"
    outputs.write_text(path, "\n".join(sections))
    return path, warnings


def default_out() -> Path:
    return Path("results/reports") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paradox report",
        description="Run the default experiment set and write figures, tables and report.md.",
        epilog="Overrides (key=value) apply to every sweep, e.g. steps=100 sweep.replicates=5 "
        "sweep.workers=2 model.n_adversaries=500. Rerun with the same --out to resume; the "
        "report covers every part found in --out, including ones run by earlier calls. Exit "
        "status: 0 done, 1 runs failed or the sweep stopped, 2 bad input.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every sweep")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: results/reports/<date>/<time>)",
    )
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {', '.join(PARTS)}")  # fmt: skip
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        print(f"paradox report: --parts: unknown part {', '.join(bad) or '(none)'}; allowed: "
              f"{', '.join(PARTS)}", file=sys.stderr)  # fmt: skip
        return 2
    started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    try:
        designs, yamls = compose_designs(parts, args.overrides)
    except (ParameterError, ReportError) as err:
        print(f"paradox report: {err}", file=sys.stderr)
        return 2
    out = args.out or default_out()
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    print(f"paradox report -> {out}", file=sys.stderr)
    try:
        results = run_parts(designs, yamls, out)
    except SweepMismatch as err:
        print(f"paradox report: {err}", file=sys.stderr)
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
        return 2
    except SweepAborted as err:
        print(f"paradox report: {err} (with --out {out})", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (experiments.signals)
        from experiments import signals

        print(f"paradox report: {signals.describe(err)}; finished runs are saved: rerun with "
              f"--out {out} to resume", file=sys.stderr)  # fmt: skip
        return signals.exit_status(err)
    base = next(iter(designs.values())).base
    argv_used = sys.argv[1:] if argv is None else list(argv)
    report, warnings = write_report(out, shlex.join(["paradox", "report", *argv_used]))
    outputs.write_provenance(out / "provenance.json", outputs.provenance(
        seed=base.seed, overrides=list(args.overrides), started=started,
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - t0, 2)))  # fmt: skip
    for warning in warnings:
        print(f"paradox report: warning: {warning}", file=sys.stderr)
    note(f"{report.name} written in {time.perf_counter() - t0:.0f} s")
    print(out)
    incomplete = any(r.failed or r.missing for r in results.values())
    return 1 if incomplete or any("runs failed" in w for w in warnings) else 0


if __name__ == "__main__":
    raise SystemExit(main())
