"""`paradox plot` and `paradox report`: golden CLI behaviour, a tiny end-to-end report, and
readings that follow the numbers."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from experiments import report as R
from experiments.plot import Panel
from sim import analysis as A

from .conftest import paradox

TINY = ["steps=3", "model.n_labs=3", "model.n_adversaries=30", "sweep.replicates=2"]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("report")
    out = cwd / "rep"
    # five parts and three market-theory overlays: minutes on two loaded cores
    proc = paradox("report", "--out", str(out), *TINY, cwd=cwd, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return cwd, out, proc


def test_report_announces_its_runs_before_running(tmp_path):
    designs, _ = R.compose_designs(["scenarios", "policy_grid"], ["sweep.replicates=20"])
    plans = R.plan_parts(designs, tmp_path)
    lines = R.format_plan(designs, plans)
    assert lines[0] == "7,900 runs in 2 parts:", lines
    assert lines[1].startswith("  scenarios: ") and "= 220 runs, up to 200 steps" in lines[1]
    assert lines[2].startswith("  policy_grid: ") and "x 20 replicates = 7680 runs" in lines[2]
    assert lines[-1].startswith("time: no estimate before a part has run")
    # After the first part: the rest from its measured speed, scaled by agent-steps per run.
    first = R.SweepResult(tmp_path, 220, 0, 220, 0, 0, None, 44.0, 2)
    line = R.estimate_rest(plans, {"scenarios": first})
    expected = 44.0 / (220 * plans["scenarios"].work) * 7680 * plans["policy_grid"].work
    assert line is not None and "the remaining 1 part (7,680 runs) should take" in line
    assert f"about {expected / 60:.0f} min" in line and "5 runs/s" in line
    assert R.estimate_rest(plans, {"scenarios": first, "policy_grid": first}) is None


def test_report_prints_run_counts_first_and_an_estimate_after_a_part(tmp_path):
    out = tmp_path / "rep"
    tiny = ["steps=3", "model.n_labs=3", "model.n_adversaries=30", "sweep.replicates=1"]
    proc = paradox("report", "--out", str(out), *tiny, "--parts", "scenarios,policy_grid",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "paradox report: 395 runs in 2 parts:" in err, err
    assert err.index(" runs in ") < err.index("[1/"), "the counts come before any run"
    assert re.search(r"paradox report: the remaining 1 part \(384 runs\) should take about", err)


def test_report_writes_one_folder_with_everything(tiny_report):
    _, out, proc = tiny_report
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    for part in R.PARTS:
        assert (out / "sweeps" / part / "runs.parquet").exists()
        assert f"] {part}:" in proc.stderr  # progress per part
    figures = {
        "scenario_dynamics",
        "arms_race",
        "paradox_curve",
        "regime_map",
        "policy_forest",
        "paradox_decomposition",
        "regime_decomposition",
        "regime_map_reach",
        "regime_decomposition_reach",
    }
    md = (out / "report.md").read_text()
    for name in figures:
        for ext in ("pdf", "png", "txt"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 0
        assert f"(figures/{name}.png)" in md
    for table in ("scenarios", "paradox_curve", "paradox_curve_theory", "regime_map",
                  "regime_map_theory", "policy_effects", "paradox_curve_decomposition",
                  "regime_map_decomposition", "regime_map_reach", "regime_map_reach_theory",
                  "regime_map_reach_decomposition"):  # fmt: skip
        assert len(pd.read_csv(out / "tables" / f"{table}.csv")) > 0
    assert (out / "provenance.json").exists()
    # the regime structure leads: where, (mechanism,) and how far theory and simulation agree
    brief = md.split("## In brief", 1)[1].split("\n## ", 1)[0]
    assert md.index("## In brief") < md.index("## Scenarios")
    assert "**Where.**" in brief and "**Theory.**" in brief and "**Reach.**" in brief
    assert "| Sweep | Design | Steps | Seeds |" in md
    assert (
        "| `scenarios` | full grid over 1 factor: 11 points x 2 replicates = 22 runs | 3 | "
        "common, base seed 0 |" in md
    )
    regime = (out / "figures" / "regime_map.txt").read_text()
    assert "over 2 replicates, over the paradox coupling" in regime and "interval" not in regime
    policy = (out / "figures" / "policy_forest.txt").read_text()
    assert "Every cell ran the same 2 seeds (common random numbers)" in policy


def test_reach_map_is_drawn_over_the_top_labs_reach(tiny_report):
    """The regime map over ζ is drawn, read and tabled over w₁ = reach of the largest lab."""
    from sim.rules import reach_weights

    _, out, _ = tiny_report
    table = pd.read_csv(out / "tables" / "regime_map_reach.csv")
    expected = [reach_weights(3, z)[0] for z in table["model.reach_exponent"]]
    assert np.allclose(table["top_lab_reach"], expected)
    assert table["model.reach_exponent"].nunique() == 5 and table["model.coupling"].nunique() == 5
    caption = (out / "figures" / "regime_map_reach.txt").read_text()
    assert "the reach of the largest lab w₁ (set by the reach exponent ζ, 3 labs)" in caption
    md = (out / "report.md").read_text()
    section = md.split("## The regime map over the top lab's reach", 1)[1].split("\n## ", 1)[0]
    first = table.sort_values("model.reach_exponent").iloc[0]
    assert f"{first['model.reach_exponent']:g} (w₁ = {first['top_lab_reach']:.2f}):" in section
    assert "(figures/regime_map_reach.png)" in section


def test_report_scenario_table_and_latex_agree(tiny_report):
    _, out, _ = tiny_report
    table = pd.read_csv(out / "tables" / "scenarios.csv")
    assert table["scenario"].nunique() == 11 and (table["n"] == 2).all()
    tex = (out / "tables" / "scenarios.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrrrrr}"):
        assert rule in tex
    row = table[(table["scenario"] == "escalation") & (table["outcome"] == "harm_total")].iloc[0]
    line = next(ln for ln in tex.splitlines() if ln.startswith("escalation &"))
    assert f"${row['mean']:.3f} \\pm {(row['hi'] - row['lo']) / 2:.3f}$" in line
    net = table[table["outcome"] == "net_alignment"].set_index("scenario")["mean"]
    md = (out / "report.md").read_text()
    best = net.idxmax().replace("_", " ")
    assert f"Net alignment is highest in *{best}* ({net.max():.3f})" in md


def test_report_resumes_and_plot_redraws(tiny_report):
    cwd, out, _ = tiny_report
    again = paradox("report", "--out", str(out), *TINY, "--parts", "paradox_curve", cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert re.search(r"0 run now, \d+ already done", again.stderr)
    md = (out / "report.md").read_text()  # rebuilt from every part in --out, not just this one
    for section in ("## Scenarios", "## The paradox curve", "## The regime map", "## Policy"):
        assert section in md
    assert "Warnings" not in md
    plot = paradox("plot", str(out / "sweeps" / "regime_map"), cwd=cwd)
    assert plot.returncode == 0, plot.stderr
    assert plot.stdout.strip().splitlines()[-1] == str(out / "sweeps" / "regime_map" / "figures")
    assert (out / "sweeps" / "regime_map" / "figures" / "regime_map.png").exists()


def test_plot_a_whole_report_folder(tiny_report, tmp_path):
    cwd, out, _ = tiny_report
    plot = paradox("plot", str(out), "--out", str(tmp_path / "figs"), cwd=cwd)
    assert plot.returncode == 0, plot.stderr
    # the report's own theory overlays are reused (read, not written), not computed again
    assert "market theory, " not in plot.stderr and "mean-field " not in plot.stderr
    assert (tmp_path / "figs" / "market_threshold.csv").exists()
    for name in ("scenario_dynamics", "arms_race", "paradox_curve", "regime_map", "policy_forest"):
        assert (tmp_path / "figs" / f"{name}.png").stat().st_size > 0


def test_report_with_failed_runs_warns_and_exits_1(tiny_report, tmp_path):
    cwd, out, _ = tiny_report
    copy = tmp_path / "rep"
    shutil.copytree(out, copy)
    # the policy grid: it has no theory overlay to recompute for the runs that remain
    path = copy / "sweeps" / "policy_grid" / "runs.parquet"
    runs = pd.read_parquet(path)
    runs.loc[runs.index[:3], "status"] = "failed"
    runs.to_parquet(path)
    proc = paradox("report", "--out", str(copy), *TINY, "--parts", "scenarios", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert f"warning: policy_grid: 3 of {len(runs)} runs failed" in proc.stderr
    md = (copy / "report.md").read_text()
    assert "**Warnings**" in md and "policy_grid: 3 of" in md
    assert "## Policy levers" in md  # drawn from the runs that finished


def test_report_with_a_part_whose_runs_all_failed(tiny_report, tmp_path):
    cwd, out, _ = tiny_report
    copy = tmp_path / "rep"
    shutil.copytree(out, copy)
    folder = copy / "sweeps" / "scenarios"
    runs = pd.read_parquet(folder / "runs.parquet")
    runs["status"] = "failed"
    outcome_columns = [c for c in runs if c.startswith(("mean_", "final_"))]
    runs[outcome_columns] = np.nan  # as a failed run's row is written
    runs.to_parquet(folder / "runs.parquet")
    ts = pd.read_parquet(folder / "timeseries.parquet")
    ts.iloc[:0].to_parquet(folder / "timeseries.parquet")  # failed runs leave no per-step rows
    for drawn in (copy / "figures").glob("*.p[dn][fg]"):  # the figures, not the theory overlays
        drawn.unlink()
    proc = paradox("report", "--out", str(copy), *TINY, "--parts", "paradox_curve", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"scenarios: {len(runs)} of {len(runs)} runs failed" in proc.stderr
    assert "scenarios: no figure drawn (no per-step rows" in proc.stderr
    md = (copy / "report.md").read_text()
    assert "## Scenarios" not in md and "## The paradox curve" in md
    assert not (copy / "figures" / "scenario_dynamics.png").exists()
    plot = paradox("plot", str(folder), cwd=cwd)
    assert plot.returncode == 1 and "nothing to draw" in plot.stderr, plot.stderr


def test_report_checks_every_part_before_running_any(tiny_report, tmp_path):
    cwd, out, _ = tiny_report
    copy = tmp_path / "rep"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "sweeps" / "scenarios")  # the first part would run...
    manifest = copy / "sweeps" / "policy_grid" / "sweep.json"  # ...but the last one mismatches
    spec = json.loads(manifest.read_text())
    spec["fingerprint"] = "0" * 16
    manifest.write_text(json.dumps(spec))
    proc = paradox("report", "--out", str(copy), *TINY, cwd=cwd)
    assert proc.returncode == 2, proc.stderr
    assert "policy_grid already holds a different sweep" in proc.stderr
    assert not (copy / "sweeps" / "scenarios").exists()  # nothing ran


def test_report_refuses_a_folder_of_a_different_report(tiny_report, tmp_path):
    cwd, out, _ = tiny_report
    before = sorted(p.name for p in (out / "sweeps").iterdir())
    proc = paradox("report", "--out", str(out), *TINY, "steps=4", cwd=cwd)
    assert proc.returncode == 2, proc.stderr
    assert "already holds a different sweep" in proc.stderr and "give a new --out" in proc.stderr
    assert "hydra.run.dir" not in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in (out / "sweeps").iterdir()) == before  # nothing touched


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["model.coupling=2"], "model.coupling"),
        (["model.no_such_key=1"], "no_such_key"),
        (["--parts", "scenarios,bogus"], "bogus"),
        (["sweep.replicates=0"], "sweep.replicates"),
    ],
)
def test_report_bad_input_exits_2_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "rep"
    proc = paradox("report", "--out", str(out), *TINY, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_plot_rejects_missing_and_empty_folders(tmp_path):
    missing = paradox("plot", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = paradox("plot", str(tmp_path / "empty"), cwd=tmp_path)
    assert empty.returncode == 1 and "nothing to draw" in empty.stderr


def test_plot_a_single_run_folder(tmp_path):
    run = paradox("run", "steps=4", "model.n_labs=3", "model.n_adversaries=30",
                  f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    plot = paradox("plot", str(tmp_path / "run"), cwd=tmp_path)
    assert plot.returncode == 0, plot.stderr
    for name in ("scenario_dynamics", "arms_race"):
        assert (tmp_path / "run" / "figures" / f"{name}.png").stat().st_size > 10_000


def test_plot_a_run_of_zero_steps_skips_the_arms_race(tmp_path):
    run = paradox("run", "steps=0", "model.n_labs=3", "model.n_adversaries=30",
                  f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    plot = paradox("plot", str(tmp_path / "run"), cwd=tmp_path)
    assert plot.returncode == 0 and "Traceback" not in plot.stderr, plot.stderr
    assert "arms_race: not drawn (no steps after step 0)" in plot.stderr
    assert (tmp_path / "run" / "figures" / "scenario_dynamics.png").exists()
    assert not (tmp_path / "run" / "figures" / "arms_race.png").exists()


def test_plot_does_not_pool_design_points_as_replicates(tiny_report, tmp_path):
    cwd, out, _ = tiny_report
    folder = tmp_path / "scenarios"
    shutil.copytree(out / "sweeps" / "scenarios", folder)
    shutil.rmtree(folder / "figures", ignore_errors=True)
    runs = pd.read_parquet(folder / "runs.parquet")
    base = runs["scenario"] == "baseline"
    runs.loc[base, "model.coupling"] = np.linspace(0.0, 1.0, int(base.sum()))
    runs.to_parquet(folder / "runs.parquet")
    plot = paradox("plot", str(folder), cwd=cwd)
    assert "runs of one scenario differ in model.coupling (they are not replicates" in plot.stderr
    assert not (folder / "figures" / "scenario_dynamics.png").exists()


# ---------------------------------------------------------------------------------------------
# Readings follow the numbers (no canned sentences)
# ---------------------------------------------------------------------------------------------


def _curve_panel(peak_at: float | None) -> Panel:
    rows, theory = [], []
    for kappa in (0.0, 1.0):
        for q in (0.2, 0.5, 0.8):
            value = q if (kappa == 0 or peak_at is None) else 0.5 - abs(q - peak_at)
            for seed in range(5):
                rows.append(
                    {
                        "model.coupling": kappa,
                        "model.fixed_alignment": q,
                        "seed": seed,
                        "mean_net_alignment": value + 0.1 * seed + 0.001 * (q == 0.2),
                    }
                )
            theory.append({"kappa": kappa, "q": q, "N": value,
                           "q_star": peak_at if kappa and peak_at else np.nan})  # fmt: skip
    return Panel("paradox_curve", [], "", {"runs": pd.DataFrame(rows),
                                           "theory": pd.DataFrame(theory)})  # fmt: skip


def test_paradox_curve_reading_reports_the_peak():
    text = R.read_paradox_curve(_curve_panel(0.5))
    assert "At κ = 0 simulated net alignment rises at every level" in text
    assert "At κ = 1 simulated net alignment peaks at q = 0.5 (N = 0.700) and falls by 0.300" in (
        text
    )
    assert "q* at 0.50" in text and "Falls are paired by seed" in text
    rising = R.read_paradox_curve(_curve_panel(None))
    assert "peaks" not in rising and "Falls" not in rising  # no fall reported: no method note
    panel = _curve_panel(0.5)
    runs = panel.data["runs"]
    runs.loc[runs["model.fixed_alignment"] == 0.8, "seed"] += 100  # levels no longer share seeds
    assert "Falls are compared by Welch's 95% interval" in R.read_paradox_curve(panel)


def test_paradox_curve_reading_edge_shapes():
    panel = _curve_panel(None)
    runs = panel.data["runs"]
    # κ = 1: highest at the top but dipping in the middle (not monotone, not a peak)
    dip = (runs["model.coupling"] == 1.0) & (runs["model.fixed_alignment"] == 0.5)
    runs.loc[dip, "mean_net_alignment"] -= 0.4
    text = R.read_paradox_curve(panel)
    assert "At κ = 1 simulated net alignment is highest at the top of the range, q = 0.8" in text
    # κ = 1 falling from the first level: reported as such, never as an interior peak
    top = runs["model.coupling"] == 1.0
    runs.loc[top, "mean_net_alignment"] = (
        1 - runs.loc[top, "model.fixed_alignment"] + 0.01 * (runs.loc[top, "seed"])
    )
    text = R.read_paradox_curve(panel)
    assert "is highest at the lowest level, q = 0.2, and lower by 0.600" in text
    assert "peaks" not in text
    # no mean-field row for a coupling: said, not read as "no interior optimum"
    panel.data["theory"] = panel.data["theory"][lambda t: t["kappa"] == 0.0]
    assert "the mean field was not computed for this coupling" in R.read_paradox_curve(panel)


def test_readings_with_one_replicate_claim_no_interval():
    runs = _curve_panel(0.5).data["runs"]
    one = Panel(
        "paradox_curve",
        [],
        "",
        {"runs": runs[runs["seed"] == 0], "theory": _curve_panel(0.5).data["theory"]},
    )
    text = R.read_paradox_curve(one)
    assert "(too few runs for an interval)" in text and "peaks" not in text
    table = pd.DataFrame([
        {"scenario": s, "outcome": o, "mean": m, "lo": np.nan, "hi": np.nan, "n": 1,
         "diff_baseline": m - 1.0 if s != "baseline" else np.nan, "diff_lo": np.nan,
         "diff_hi": np.nan, "paired": False}
        for s, m in (("baseline", 1.0), ("other", 1.5)) for o in ("net_alignment", "harm_total")
    ])  # fmt: skip
    text = R.read_scenarios(table)
    assert "without an interval in 1 (too few runs)" in text
    assert "higher in" not in text and "out of 1 scenario)" in text
    assert "1.500 (no interval)" in R.scenario_markdown(table)
    tex = R.scenario_latex(table, "1", 50)
    assert "$1.500$ (n/a)" in tex and "one replicate" in tex


def test_policy_reading_names_the_levers_with_clear_effects():
    effects = pd.DataFrame([
        {"lever": "policy.defence_mandate", "scenario": "baseline", "outcome": "harm_total",
         "effect": -0.05, "lo": -0.06, "hi": -0.04},
        {"lever": "policy.liability", "scenario": "baseline", "outcome": "harm_total",
         "effect": 0.01, "lo": -0.01, "hi": 0.03},
        {"lever": "policy.defence_mandate", "scenario": "baseline", "outcome": "net_alignment",
         "effect": 0.02, "lo": 0.01, "hi": 0.03},
        {"lever": "policy.liability", "scenario": "baseline", "outcome": "net_alignment",
         "effect": 0.0, "lo": -0.01, "hi": 0.01},
    ]).assign(cells=4)  # fmt: skip
    text = R.read_policy(Panel("policy_forest", [], "", {"effects": effects}))
    assert "lower total harm: defence mandate -0.050 [-0.060, -0.040]" in text
    assert "liability" not in text  # its interval covers 0
    assert "largest gain in net alignment comes from defence mandate" in text


def test_regime_reading_counts_cells():
    slopes = pd.DataFrame({"model.coupling": [0.0, 1.0, 0.0, 1.0],
                           "model.adversary_budget_mean": [0.1, 0.1, 1.0, 1.0],
                           "slope": [0.5, 0.1, 0.4, -0.2], "lo": [0.4, -0.1, 0.3, -0.3],
                           "hi": [0.6, 0.3, 0.5, -0.1]})  # fmt: skip
    boundary = pd.DataFrame({"y": [0.1, 1.0], "kappa_star": [np.nan, 0.7]})
    strength = pd.DataFrame({"key": ["model.adversary_budget_mean"]})
    panel = Panel("regime_map", [], "", {"slopes": slopes, "boundary": boundary,
                                         "strength": strength})  # fmt: skip
    text = R.read_regime_map(panel)
    assert "Of 4 cells, the slope is clearly below zero" in text
    assert "below 0) in 1, clearly above zero in 2, and within noise in 1." in text
    assert "0.1: none up to 1 (mean field none up to 1); 1: 1 (mean field 0.70)" in text


def test_regime_reading_counts_missing_cells_apart():
    slopes = pd.DataFrame({"model.coupling": [0.0, 1.0, 0.0, 1.0],
                           "model.adversary_budget_mean": [0.1, 0.1, 1.0, 1.0],
                           "slope": [0.5, np.nan, 0.4, -0.2], "lo": [0.4, np.nan, np.nan, -0.3],
                           "hi": [0.6, np.nan, np.nan, -0.1]})  # fmt: skip
    panel = Panel("regime_map", [], "", {
        "slopes": slopes, "boundary": pd.DataFrame({"y": [0.1], "kappa_star": [0.5]}),
        "strength": pd.DataFrame({"key": ["model.adversary_budget_mean"]})})  # fmt: skip
    text = R.read_regime_map(panel)
    assert "in 1, clearly above zero in 1, within noise in 0, without an interval" in text
    assert "(too few runs) in 1, and not estimated" in text and "failed runs) in 1." in text
    assert "1: 1 (mean field not computed)" in text


def test_meanfield_overlay_cache_is_reused_only_for_the_same_key(tmp_path, monkeypatch):
    from experiments.plot import _cached

    calls = []

    def make(value):
        def inner():
            calls.append(value)
            return pd.DataFrame({"kappa": [value]})

        return inner

    path = tmp_path / "meanfield_curve.csv"
    key = {"config": {"n_labs": 8}, "couplings": [0.0, 1.0], "steps": 50}
    assert _cached(path, key, make(1.0))["kappa"].item() == 1.0
    assert _cached(path, key, make(2.0))["kappa"].item() == 1.0 and calls == [1.0]
    changed = {**key, "couplings": [0.0, 0.5, 1.0]}
    assert _cached(path, changed, make(3.0))["kappa"].item() == 3.0 and calls == [1.0, 3.0]
    path.with_suffix(".key").unlink()  # an overlay without its fingerprint is not trusted
    assert _cached(path, changed, make(4.0))["kappa"].item() == 4.0
    monkeypatch.setattr(A, "MEANFIELD_OVERLAY_VERSION", A.MEANFIELD_OVERLAY_VERSION + 1)
    assert _cached(path, changed, make(5.0))["kappa"].item() == 5.0  # the method changed


def test_scenario_reading_says_which_differences_are_paired():
    rows = []
    for s, m, lo, paired in (("baseline", 1.0, 0.9, False), ("crn", 1.5, 1.4, True),
                             ("indep", 0.5, 0.4, False)):  # fmt: skip
        for o in ("net_alignment", "harm_total"):
            d = m - 1.0 if s != "baseline" else np.nan
            rows.append({"scenario": s, "outcome": o, "mean": m, "lo": lo, "hi": 2 * m - lo,
                         "n": 3, "diff_baseline": d, "diff_lo": d - 0.1, "diff_hi": d + 0.1,
                         "paired": paired})  # fmt: skip
    table = pd.DataFrame(rows)
    table.loc[table["scenario"] == "baseline", ["diff_lo", "diff_hi"]] = np.nan
    text = R.read_scenarios(table)
    assert "paired by seed for 1 (the seeds match the baseline's), Welch for 1" in text
    table["paired"] = table["scenario"] != "baseline"
    assert "differences paired by seed (common random numbers)" in R.read_scenarios(table)
    table["paired"] = False
    assert "Welch 95% interval, out of 2 scenarios" in R.read_scenarios(table)


def test_policy_reading_tells_no_estimate_from_no_interval():
    effects = pd.DataFrame([
        {"lever": "policy.liability", "scenario": "baseline", "outcome": o, "effect": e,
         "lo": np.nan, "hi": np.nan, "cells": c}
        for o in ("harm_total", "net_alignment")
        for e, c in ((np.nan, 0),)
    ] + [
        {"lever": "policy.defence_mandate", "scenario": "baseline", "outcome": o,
         "effect": 0.01, "lo": np.nan, "hi": np.nan, "cells": 1}
        for o in ("harm_total", "net_alignment")
    ])  # fmt: skip
    text = R.read_policy(Panel("policy_forest", [], "", {"effects": effects}))
    assert "1 lever without an interval (too few runs in its only matched cell)" in text
    assert "1 lever not estimated (no cell with both on and off runs)" in text


def test_readings_print_no_negative_zero_and_no_nan():
    assert R._interval(-1e-6, -0.01, 0.01) == "+0.000 [-0.010, +0.010]"
    assert R._fmt(-1e-6, np.nan, np.nan) == "0.000 (no interval)"
    table = pd.DataFrame([
        {"scenario": s, "outcome": o, "mean": m, "lo": m - 0.01, "hi": m + 0.01, "n": 3,
         "diff_baseline": np.nan, "diff_lo": np.nan, "diff_hi": np.nan, "paired": False}
        for s, m in (("flat", -1e-6), ("up", 0.5)) for o in ("net_alignment", "harm_total")
    ])  # fmt: skip
    table.loc[(table["scenario"] == "up") & (table["outcome"] == "harm_total"), "mean"] = np.nan
    text = R.read_scenarios(table)
    assert "lowest in *flat* (0.000)" in text and "-0.000" not in text
    assert "from 0.000 (*flat*)" in text
    tex = R.scenario_latex(table, "3", 50)
    assert "-0.000" not in tex and "$0.000 \\pm 0.010$" in tex
    assert "nan" not in tex and "& n/a" in tex
    md = R.scenario_markdown(table)
    assert "n/a (not estimated)" in md and "nan" not in md
    panel = _curve_panel(0.5)
    panel.data["runs"]["mean_net_alignment"] -= 0.7  # the peak's mean becomes -1e-16-ish
    assert "(N = -0.000)" not in R.read_paradox_curve(panel)


def test_policy_reading_pluralises_the_missing_intervals():
    effects = pd.DataFrame([
        {"lever": f"policy.{name}", "scenario": "baseline", "outcome": o, "effect": 0.01,
         "lo": np.nan, "hi": np.nan, "cells": cells}
        for name, cells in (("liability", 1), ("defence_mandate", 1), ("publication_rate", 4))
        for o in ("harm_total", "net_alignment")
    ])  # fmt: skip
    text = R.read_policy(Panel("policy_forest", [], "", {"effects": effects}))
    assert "2 levers without an interval (too few runs in their only matched cell)" in text
    assert "1 lever without an interval (fewer than two finite differences" in text


def test_plot_follows_links_once_and_survives_a_loop(tiny_report, tmp_path):
    cwd, out, _ = tiny_report
    top = tmp_path / "results"
    top.mkdir()
    (top / "report").symlink_to(out / "sweeps")  # a link to a folder elsewhere: followed
    (top / "loop").symlink_to(top)  # a link back up the tree: not followed again
    plot = paradox("plot", str(top), "--out", str(tmp_path / "figs"), cwd=cwd)
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "figs" / "regime_map.png").stat().st_size > 0
    assert plot.stderr.count("regime_map: regime_map.pdf") == 1


def test_regime_map_of_slopes_uses_the_diverging_scale(tiny_report, tmp_path, monkeypatch):
    from experiments import plot as P

    _, out, _ = tiny_report
    folder = out / "sweeps" / "regime_map"
    seen = {}
    real = P.F.regime_map

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        seen["cmap"] = fig.axes[0].collections[0].get_cmap().name
        return fig

    monkeypatch.setattr(P.F, "regime_map", spy)
    runs = P.read_runs(folder)
    runs["mean_net_alignment"] += runs["model.fixed_alignment"]  # every slope now positive
    P.plot_regime_map(folder, runs, "model.adversary_budget_mean", tmp_path)
    assert seen["cmap"] == "PuOr"  # the caption's orange/purple, even with no negative cell


def test_single_runs_are_read_with_their_batch_means_intervals():
    rows = []
    for s, m in (("baseline", 1.0), ("other", 1.5)):
        for o in ("net_alignment", "harm_total"):
            d = m - 1.0 if s != "baseline" else np.nan
            rows.append({"scenario": s, "outcome": o, "mean": m, "lo": m - 0.02, "hi": m + 0.02,
                         "n": 1, "interval": "batch means", "diff_baseline": d,
                         "diff_lo": d - 0.03, "diff_hi": d + 0.03, "paired": False,
                         "method": "batch means" if s != "baseline" else ""})  # fmt: skip
    table = pd.DataFrame(rows)
    text = R.read_scenarios(table)
    assert "batch-means standard errors (one run each: within-run noise only)" in text
    tex = R.scenario_latex(table, "1", 150, "over steps 51–150 (a burn-in of 50 steps left out)")
    assert "batch-means interval" in tex and "over steps 51--150" in tex
    assert "$1.500 \\pm 0.020$" in tex


def test_report_writes_the_static_explorer(tiny_report):
    _, out, _ = tiny_report
    page = (out / "explorer.html").read_text()
    assert "[explorer.html](explorer.html)" in (out / "report.md").read_text()
    data = json.loads(re.search(r'id="explorer-data">(.*?)</script>', page, flags=re.S).group(1))
    assert [p["name"] for p in data["parts"]] == list(R.PARTS)
    assert not re.search(r"https?://", page.replace("http://www.w3.org/2000/svg", ""))


def test_plot_writes_nothing_into_the_folder_it_reads(tiny_report, tmp_path):
    """Archived or read-only results plot: the theory overlay's cache goes under --out
    (issue 18, item 15)."""
    cwd, out, _ = tiny_report
    folder = tmp_path / "archived"
    shutil.copytree(out / "sweeps" / "paradox_curve", folder)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    proc = paradox("plot", str(folder), "--out", str(tmp_path / "figs"), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert (tmp_path / "figs" / "paradox_curve.png").exists()
    assert list((tmp_path / "figs").glob("*_curve.csv"))  # the overlay, cached beside them
