"""Sensitivity analysis and scenario discovery: known answers through the real pipeline.

The model is swapped for test functions with known indices (a *runner* of the sweep engine, as
``paradox sensitivity`` uses the simulation): three configuration keys are mapped linearly onto
the inputs of the function, whose value becomes an outcome column. Sobol' indices are invariant
under such per-input affine maps, so the analytic values apply unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from matplotlib.figure import Figure
from SALib.sample import sobol as salib_sobol

from experiments.sensitivity import PRIMARY, register, run_sensitivity
from experiments.sweep import to_design
from sim import figures as F
from sim.config import Config, ParameterError
from sim.gsa import (
    PrimSpec,
    SensitivitySpec,
    check_spec,
    discover,
    load_prim,
    sensitivity_sweeps,
    sobol_indices,
)
from sim.outcomes import OUTCOMES
from sim.sweep import Design, Factor, SweepSpec

from .conftest import CONF, REPO, paradox

TINY = ["steps=3", "model.n_adversaries=40", "model.n_labs=3", "sweep.workers=1"]

#: Ishigami-Homma (a = 7, b = 0.1): analytic first-order and total indices (Saltelli et al. 2008).
ISHIGAMI_S1 = np.array([0.3139, 0.4424, 0.0])
ISHIGAMI_ST = np.array([0.5576, 0.4424, 0.2437])
#: Configuration keys carrying the test functions' inputs, with the ranges they are swept over.
KEYS = {
    "model.coupling": (0.0, 1.0),
    "policy.publication_rate": (0.0, 0.5),
    "policy.defence_mandate": (0.0, 0.5),
}
#: Where the planted paradox lies (in the keys' own units).
PLANTED = {"model.coupling": (0.6, 1.0), "policy.publication_rate": (0.0, 0.2)}


def _get(cfg: Config, key: str) -> float:
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return float(obj)


def _table(**outcomes: float) -> pd.DataFrame:
    """The outcome table of a one-step run (what a runner returns): the initial state (step 0,
    every outcome 0) and step 1 with the given outcomes, others 0. Step 1 is then both the final
    value and the time average (a run's average leaves out step 0)."""
    row = dict.fromkeys(OUTCOMES, 0.0) | outcomes
    return pd.DataFrame([{"step": 0, **dict.fromkeys(OUTCOMES, 0.0)}, {"step": 1, **row}])


def ishigami_runner(cfg: Config) -> pd.DataFrame:
    """Ishigami on [-π, π]³ as net alignment; a planted paradox region as the paradox index."""
    x = [-np.pi + 2 * np.pi * (_get(cfg, k) - lo) / (hi - lo) for k, (lo, hi) in KEYS.items()]
    y = np.sin(x[0]) + 7 * np.sin(x[1]) ** 2 + 0.1 * x[2] ** 4 * np.sin(x[0])
    inside = all(lo <= _get(cfg, k) <= hi for k, (lo, hi) in PLANTED.items())
    return _table(net_alignment=float(y), paradox_index=float(inside))


def ishigami_by_level_runner(cfg: Config) -> pd.DataFrame:
    """Ishigami, except that at model.attacker_value = 50 only its second input matters."""
    if cfg.model.attacker_value == 50.0:
        x2 = -np.pi + 2 * np.pi * cfg.policy.publication_rate / 0.5
        return _table(net_alignment=float(7 * np.sin(x2) ** 2))
    return ishigami_runner(cfg)


def inert_runner(cfg: Config) -> pd.DataFrame:
    """Active: coupling (linear, and with the mandate through an interaction), publication rate
    (quadratic), number of labs (an integer key). Inert: detection probability, open weights."""
    k, p, d = cfg.model.coupling, cfg.policy.publication_rate, cfg.policy.defence_mandate
    y = 4 * k + 8 * p**2 + 6 * k * d + 0.5 * cfg.model.n_labs
    return _table(harm_total=float(y))


def failing_ishigami_runner(cfg: Config) -> pd.DataFrame:
    if 0.30 < cfg.model.coupling < 0.36:
        raise RuntimeError("boom in a thin slice of coupling")
    return ishigami_runner(cfg)


def _sobol_design(samples: int, *, levels: Factor | None = None, seed: int = 0) -> Design:
    spec = SweepSpec(
        name="ishigami",
        design="sobol",
        samples=samples,
        uncertainties=[Factor(key=k, range=list(b)) for k, b in KEYS.items()],
        levers=[levels] if levels else [],
        workers=1,
        progress=False,
    )
    return Design(spec, Config(steps=1, seed=seed))


def _indices(report, outcome: str = "mean_net_alignment") -> pd.DataFrame:
    table = report.analysis.indices
    return table[table["outcome"] == outcome].set_index("parameter").loc[list(KEYS)]


# --------------------------------------------------------------------------------------------
# Sobol': the Ishigami regression
# --------------------------------------------------------------------------------------------


def test_ishigami_sobol_indices_through_the_pipeline(tmp_path):
    spec = SensitivitySpec(outcomes=["mean_net_alignment"], figures=["mean_net_alignment"])
    report = run_sensitivity(_sobol_design(256), tmp_path, spec, runner=ishigami_runner)
    assert report.ok and report.analysis.used == 256 == report.analysis.total
    got = _indices(report)
    for column, truth in (("S1", ISHIGAMI_S1), ("ST", ISHIGAMI_ST)):
        error = np.abs(got[column].to_numpy() - truth)
        assert error.max() < 0.15, (column, got[column].to_numpy())
        # the analytic value lies within the reported 95% interval (a little slack for N = 256)
        assert (error <= got[f"{column}_conf"].to_numpy() + 0.03).all(), (column, got)
    # the ranking a reader takes from the table
    assert got["ST"].idxmax() == "model.coupling"
    assert got["S1"].idxmax() == "policy.publication_rate"
    assert got.loc["policy.defence_mandate", "ST"] > got.loc["policy.defence_mandate", "S1"] + 0.1
    table = pd.read_csv(tmp_path / "sobol_indices.csv")
    assert list(table.columns) == ["outcome", "parameter", "S1", "S1_conf", "ST", "ST_conf",
                                   "n_base"]  # fmt: skip
    for ext in ("pdf", "png", "txt"):
        assert (tmp_path / "figures" / f"sobol_mean_net_alignment.{ext}").stat().st_size > 0
    summary = json.loads((tmp_path / "sensitivity.json").read_text())
    assert summary["base_samples"] == {"used": 256, "design": 256}
    assert summary["top"]["mean_net_alignment"][0]["parameter"] == "model.coupling"


@pytest.mark.slow
def test_ishigami_sobol_indices_converge_through_the_pipeline(tmp_path):
    spec = SensitivitySpec(outcomes=["mean_net_alignment"], figures=[], discovery="off")
    report = run_sensitivity(_sobol_design(2048), tmp_path, spec, runner=ishigami_runner)
    got = _indices(report)
    np.testing.assert_allclose(got["S1"], ISHIGAMI_S1, atol=0.03)
    np.testing.assert_allclose(got["ST"], ISHIGAMI_ST, atol=0.03)


def test_sobol_estimator_on_ishigami_and_dropping_incomplete_blocks():
    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-np.pi, np.pi]] * 3}
    x = salib_sobol.sample(problem, 4096, calc_second_order=False, seed=3)
    y = np.sin(x[:, 0]) + 7 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])
    table, pairs, n = sobol_indices(problem, y, num_resamples=200, seed=1)
    assert n == 4096 and pairs is None
    np.testing.assert_allclose(table["S1"], ISHIGAMI_S1, atol=0.03)
    np.testing.assert_allclose(table["ST"], ISHIGAMI_ST, atol=0.03)
    # A failed point removes its whole Saltelli block (k + 2 = 5 rows), nothing else.
    holes = y.copy()
    holes[[7, 8, 5 * 100 + 2, 5 * 4095 + 4]] = np.nan
    table2, _, n2 = sobol_indices(problem, holes, num_resamples=200, seed=1)
    assert n2 == 4096 - 3
    kept = np.delete(y.reshape(-1, 5), [1, 100, 4095], axis=0).ravel()
    expected, _, _ = sobol_indices(problem, kept, num_resamples=200, seed=1)
    np.testing.assert_allclose(table2[["S1", "ST"]], expected[["S1", "ST"]])
    # A constant output has no variance to share out: NaN, not a division warning.
    flat, _, _ = sobol_indices(problem, np.ones_like(y), num_resamples=10, seed=1)
    assert flat[["S1", "ST"]].isna().all().all()


def test_levels_get_their_own_indices(tmp_path):
    levels = Factor(key="model.attacker_value", levels=[30.0, 50.0])
    spec = SensitivitySpec(outcomes=["mean_net_alignment"], figures=["mean_net_alignment"],
                           discovery="off")  # fmt: skip
    report = run_sensitivity(_sobol_design(128, levels=levels), tmp_path, spec,
                             runner=ishigami_by_level_runner)  # fmt: skip
    table = pd.read_csv(tmp_path / "sobol_indices.csv")
    assert list(table.columns[:3]) == ["model.attacker_value", "outcome", "parameter"]
    only_x2 = table[table["model.attacker_value"] == 50.0].set_index("parameter")
    assert only_x2.loc["policy.publication_rate", "S1"] == pytest.approx(1.0, abs=0.05)
    assert (only_x2.loc[["model.coupling", "policy.defence_mandate"], "ST"].abs() < 0.05).all()
    full = table[table["model.attacker_value"] == 30.0].set_index("parameter")
    assert full.loc["model.coupling", "ST"] == pytest.approx(ISHIGAMI_ST[0], abs=0.2)
    drawn = sorted(p.name for p in (tmp_path / "figures").glob("*.pdf"))
    assert drawn == [
        "sobol_mean_net_alignment__attacker_value-30.pdf",
        "sobol_mean_net_alignment__attacker_value-50.pdf",
    ]
    assert set(report.summary["top"]) == {
        "mean_net_alignment (model.attacker_value=30)",
        "mean_net_alignment (model.attacker_value=50)",
    }


def noisy_ishigami_runner(cfg: Config) -> pd.DataFrame:
    """Ishigami plus seed noise (a stochastic model)."""
    table = ishigami_runner(cfg)
    table["net_alignment"] += np.random.default_rng(cfg.seed).normal(0.0, 1.0)
    return table


def test_replicates_are_averaged_per_point_in_salibs_order(tmp_path):
    design = _sobol_design(16)
    design = Design(SweepSpec(**{**design.spec.__dict__, "replicates": 3}), design.base)
    spec = SensitivitySpec(outcomes=["mean_net_alignment"], figures=[], discovery="off")
    run_sensitivity(design, tmp_path, spec, runner=noisy_ishigami_runner)
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert runs.groupby("point_id")["seed"].nunique().eq(3).all()
    points = pd.read_parquet(tmp_path / "points.parquet").set_index("point_id")
    expected = runs.groupby("point_id")["mean_net_alignment"].mean()
    np.testing.assert_allclose(points["mean_net_alignment"], expected)
    # design point p is row p of SALib's sample: the order SALib's analysers expect
    np.testing.assert_array_equal(points[list(KEYS)].to_numpy(), design.salib_sample())


def test_failed_runs_are_reported_and_their_blocks_left_out(tmp_path):
    design = _sobol_design(64)
    spec = SensitivitySpec(outcomes=["mean_net_alignment"], figures=[], discovery="off")
    report = run_sensitivity(design, tmp_path, spec, runner=failing_ishigami_runner)
    failed = report.analysis.points.failed
    assert not report.ok and report.result.failed == int(failed.sum()) > 0
    # exactly the points whose coupling fell in the failing slice
    coupling = np.array([design.point(p)["model.coupling"] for p in range(design.n_points)])
    np.testing.assert_array_equal(failed, (coupling > 0.30) & (coupling < 0.36))
    blocks = failed.reshape(-1, 5).any(axis=1)
    assert report.analysis.used == 64 - int(blocks.sum()) < 64
    summary = json.loads((tmp_path / "sensitivity.json").read_text())
    assert summary["failed"]["points"] == np.flatnonzero(failed).tolist()
    assert "boom in a thin slice" in summary["failed"]["first_error"]
    # the indices are those of the complete blocks alone
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    y = runs.sort_values("point_id")["mean_net_alignment"].to_numpy().reshape(-1, 5)
    expected, _, _ = sobol_indices(
        design.salib_problem(), y[~blocks].ravel(), num_resamples=1000,
        seed=_bootstrap(design),
    )  # fmt: skip
    np.testing.assert_allclose(_indices(report)["S1"], expected["S1"])


def _bootstrap(design: Design) -> int:
    from sim.gsa import bootstrap_seed

    return bootstrap_seed(design)


# --------------------------------------------------------------------------------------------
# Morris: inert inputs
# --------------------------------------------------------------------------------------------


def test_morris_finds_the_inert_inputs(tmp_path):
    active = ["model.coupling", "policy.publication_rate", "policy.defence_mandate", "model.n_labs"]
    inert = ["policy.detection_probability", "policy.open_weights_share"]
    ranges = {**KEYS, "model.n_labs": (2, 9), "policy.detection_probability": (0.0, 0.3),
              "policy.open_weights_share": (0.0, 0.6)}  # fmt: skip
    spec = SweepSpec(
        design="morris",
        samples=20,
        uncertainties=[Factor(key=k, range=list(b)) for k, b in ranges.items()],
        workers=1,
        progress=False,
    )
    design = Design(spec, Config(steps=1))
    options = SensitivitySpec(outcomes=["mean_harm_total"], figures=["mean_harm_total"],
                              discovery="off")  # fmt: skip
    report = run_sensitivity(design, tmp_path, options, runner=inert_runner)
    table = pd.read_csv(tmp_path / "morris_indices.csv").set_index("parameter")
    assert list(table.columns) == ["outcome", "mu", "mu_star", "mu_star_conf", "sigma",
                                   "n_trajectories"]  # fmt: skip
    assert (table.loc[inert, ["mu_star", "sigma"]].abs() < 1e-9).all().all()
    assert (table.loc[active, "mu_star"] > 0.5).all(), table
    # a linear effect alone has sigma 0; interactions and curvature give sigma > 0
    assert table.loc["model.coupling", "sigma"] > 0.1
    assert table.loc["policy.publication_rate", "sigma"] > 0.1
    assert report.analysis.used == 20
    assert (tmp_path / "figures" / "morris_mean_harm_total.png").stat().st_size > 10_000


# --------------------------------------------------------------------------------------------
# PRIM: a planted box
# --------------------------------------------------------------------------------------------


def test_prim_recovers_a_planted_box():
    rng = np.random.default_rng(11)
    n = 2000
    x = pd.DataFrame(rng.uniform(0, 1, size=(n, 4)), columns=["a", "b", "c", "d"])
    x["scenario"] = rng.choice(["calm", "escalation", "no_paradox"], size=n)
    planted = x["a"].between(0.3, 0.7) & (x["b"] > 0.6) & (x["scenario"] != "no_paradox")
    noise = rng.uniform(size=n) < 0.02
    interesting = (planted ^ noise).to_numpy()
    bounds = {c: (0.0, 1.0) for c in "abcd"}
    boxes, trajectory = discover(x, interesting, bounds=bounds, max_boxes=1)
    box = boxes[boxes["box"] == 1].set_index("parameter")
    assert set(box.index) == {"a", "b", "scenario"}, box
    assert box.loc["a", "lower"] == pytest.approx(0.3, abs=0.04)
    assert box.loc["a", "upper"] == pytest.approx(0.7, abs=0.04)
    assert box.loc["b", "lower"] == pytest.approx(0.6, abs=0.04)
    assert box.loc["b", "upper"] == 1.0, "an unrestricted side reports the declared bound"
    assert np.isnan(box.loc["b", "qp_upper"]) and box.loc["b", "qp_lower"] < 1e-6
    assert box.loc["scenario", "levels"] == "calm, escalation"
    # 2% of the points are flipped: those outside the box cap the coverage near 0.9
    assert box["coverage"].iloc[0] > 0.8 and box["density"].iloc[0] > 0.9
    inside = (
        x["a"].between(box.loc["a", "lower"], box.loc["a", "upper"])
        & x["b"].between(box.loc["b", "lower"], box.loc["b", "upper"])
        & x["scenario"].isin(["calm", "escalation"])
    )
    assert (inside & planted).sum() > 0.9 * planted.sum(), "the box holds the planted one"
    chosen = trajectory[trajectory["selected"]]
    assert len(chosen) == 1 and chosen["density"].item() >= 0.8


def test_prim_drops_restrictions_that_are_not_significant():
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.uniform(0, 1, size=(300, 5)), columns=list("abcde"))
    planted = x["a"].between(0.3, 0.7) & (x["b"] > 0.6)
    y = (planted ^ (rng.uniform(size=300) < 0.1)).to_numpy()  # 10% noise: PRIM overfits
    every, _ = discover(x, y, max_boxes=1, max_qp=1.0)
    assert {"c", "e"} <= set(every["parameter"]), "without the test, noise dimensions stay"
    kept, trajectory = discover(x, y, max_boxes=1)
    assert set(kept["parameter"]) == {"a", "b"}
    assert (kept[["qp_lower", "qp_upper"]].min(axis=1) <= 0.05).all()
    # each drop is a step on the trajectory, and the final one is the box reported
    assert trajectory["selected"].iloc[-1] and trajectory["res_dim"].iloc[-1] == 2


def test_scenario_discovery_through_the_pipeline(tmp_path):
    spec = SensitivitySpec(outcomes=["mean_paradox_index"], figures=[],
                           prim=PrimSpec(outcome="mean_paradox_index", threshold=0.5))  # fmt: skip
    report = run_sensitivity(_sobol_design(64), tmp_path, spec, runner=ishigami_runner)
    boxes = pd.read_csv(tmp_path / "prim_boxes.csv")
    first = boxes[boxes["box"] == 1].set_index("parameter")
    assert set(first.index) == set(PLANTED)
    assert first.loc["model.coupling", "lower"] == pytest.approx(0.6, abs=0.06)
    assert first.loc["model.coupling", "upper"] == 1.0
    assert first.loc["policy.publication_rate", "upper"] == pytest.approx(0.2, abs=0.03)
    assert first["coverage"].iloc[0] > 0.9 and first["density"].iloc[0] > 0.9
    assert report.discovery is not None and report.discovery.rule == "mean_paradox_index > 0.5"
    trajectory = pd.read_csv(tmp_path / "prim_trajectory.csv")
    assert trajectory["selected"].sum() == boxes["box"].nunique()
    for name in ("prim_boxes", "prim_tradeoff"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 10_000


def test_missing_ema_workbench_is_named_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ema_workbench", None)
    monkeypatch.setitem(sys.modules, "ema_workbench.analysis", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[discovery\]'"):
        load_prim()


# --------------------------------------------------------------------------------------------
# Options, the named sweep, figures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"outcomes": ["net_alignmnt"]}, "sensitivity.outcomes"),
        ({"figures": ["mean_nope"]}, "sensitivity.figures"),
        ({"conf_level": 1.5}, "sensitivity.conf_level"),
        ({"discovery": "maybe"}, "sensitivity.discovery"),
        ({"prim": PrimSpec(direction="up")}, "sensitivity.prim.direction"),
        ({"prim": PrimSpec(outcome="paradox_index")}, "sensitivity.prim.outcome"),
    ],
)
def test_bad_options_are_refused_naming_the_key(changes, key):
    with pytest.raises(ParameterError, match=f"'{key}'"):
        check_spec(SensitivitySpec(**changes))


def test_outcomes_default_to_every_summary_column_and_accept_bare_names():
    every = check_spec(SensitivitySpec(figures=[]))
    assert len(every) == 2 * len(OUTCOMES)
    assert check_spec(SensitivitySpec(outcomes=["net_alignment"], figures=[])) == [
        "mean_net_alignment",
        "final_net_alignment",
    ]


def test_morris_screen_is_a_named_sweep_with_its_question_and_size():
    text = (CONF / "sweep" / "morris_screen.yaml").read_text()
    lines = text.splitlines()
    assert lines[0] == "# @package _global_"
    header = " ".join(ln for ln in lines[1:8] if ln.startswith("#"))
    assert "?" in header and "Default size" in header
    assert yaml.safe_load(text)["sweep"]["name"] == "morris_screen"
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=PRIMARY, overrides=["sweep=morris_screen"])
        design = to_design(cfg, [], PRIMARY)
    assert design.n_runs == 240 and {f.role for f in design.factors} == {"uncertainty", "lever"}
    sobol = yaml.safe_load((CONF / "sweep" / "sobol_screen.yaml").read_text())["sweep"]
    same = [f["key"] for f in sobol["uncertainties"] + sobol["levers"]]
    assert design.varied == same, "the Morris screen covers the Sobol' screen's factors"


def test_salib_sample_is_the_sample_the_runs_use_before_flooring():
    spec = SweepSpec(
        design="morris",
        samples=4,
        uncertainties=[
            Factor(key="model.n_labs", range=[2, 9]),
            Factor(key="model.coupling", range=[0, 1]),
        ],
    )
    design = Design(spec, Config(steps=1))
    raw = design.salib_sample()
    points = np.array([list(design.point(p).values()) for p in range(design.n_points)])
    np.testing.assert_array_equal(points[:, 1], raw[:, 1])
    np.testing.assert_array_equal(points[:, 0], np.clip(np.floor(raw[:, 0]), 2, 9))
    assert design.salib_problem()["bounds"] == [[2.0, 10.0], [0, 1]]


def _check_figure(fig: Figure, tmp_path: Path, name: str) -> None:
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes and all(ax.get_xlabel() and ax.has_data() for ax in axes)
    written = F.save(fig, tmp_path / name, f"Caption of {name}.")
    assert all(p.stat().st_size > 0 for p in written)
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def test_morris_and_prim_figures_render(tmp_path):
    indices = pd.DataFrame({
        "outcome": "mean_net_alignment",
        "parameter": ["model.coupling", "policy.publication_rate", "policy.defence_mandate"],
        "mu_star": [0.4, 0.1, 0.0], "mu_star_conf": [0.05, 0.04, 0.0], "sigma": [0.5, 0.02, 0.0],
    })  # fmt: skip
    _check_figure(F.morris_screen(indices, "mean_net_alignment"), tmp_path, "morris")
    boxes = pd.DataFrame({
        "box": [1, 1, 2], "parameter": ["model.coupling", "scenario", "policy.publication_rate"],
        "lower": [0.6, np.nan, 0.0], "upper": [1.0, np.nan, 0.2], "levels": ["", "baseline", ""],
        "coverage": [0.8, 0.8, 0.1], "density": [0.9, 0.9, 0.85], "n": [40, 40, 6],
    })  # fmt: skip
    bounds = {"model.coupling": (0.0, 1.0), "policy.publication_rate": (0.0, 0.5)}
    _check_figure(F.prim_boxes(boxes, bounds), tmp_path, "boxes")
    trajectory = pd.DataFrame({
        "box": [1, 1, 1, 2, 2], "coverage": [1.0, 0.9, 0.7, 0.2, 0.1],
        "density": [0.3, 0.8, 0.95, 0.5, 0.85], "selected": [False, True, False, False, True],
    })  # fmt: skip
    _check_figure(F.prim_tradeoff(trajectory), tmp_path, "tradeoff")
    assert F.outcome_label("final_harm_total") == "total harm per step (final step)"


def scattered_runner(cfg: Config) -> pd.DataFrame:
    """A paradox index above 0.5 at a few points scattered over the space, in no box."""
    k, p = cfg.model.coupling, cfg.policy.publication_rate
    return _table(paradox_index=float((k * 7919 + p * 104729) % 1.0 < 0.03))


def test_a_meaningless_prim_box_is_warned_on_stderr(tmp_path, capsys):
    spec = SensitivitySpec(outcomes=["mean_paradox_index"], figures=[],
                           prim=PrimSpec(outcome="mean_paradox_index", threshold=0.5))  # fmt: skip
    report = run_sensitivity(_sobol_design(32), tmp_path, spec, runner=scattered_runner)
    found = report.discovery
    assert found is not None and not found.boxes.empty, "PRIM still reports its densest box"
    assert found.boxes["density"].iloc[0] < 0.5 and found.n_interest < 10
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 1, err
    assert "PRIM box 1 for mean_paradox_index > 0.5 is not meaningful" in lines[0]
    assert "most of its" in lines[0] and "point(s) of interest, fewer than 10" in lines[0]
    summary = json.loads((tmp_path / "sensitivity.json").read_text())
    assert summary["discovery"]["warning"] == found.warning


def test_a_dense_prim_box_is_not_warned(tmp_path, capsys):
    spec = SensitivitySpec(outcomes=["mean_paradox_index"], figures=[],
                           prim=PrimSpec(outcome="mean_paradox_index", threshold=0.5))  # fmt: skip
    report = run_sensitivity(_sobol_design(64), tmp_path, spec, runner=ishigami_runner)
    assert report.discovery is not None and report.discovery.warning is None
    assert "warning" not in capsys.readouterr().err


def test_plot_redraws_the_morris_and_prim_figures_of_a_sensitivity_folder(tmp_path):
    from experiments.plot import plot_folder

    factors = [Factor(key=k, range=list(b)) for k, b in KEYS.items()]
    morris = SweepSpec(design="morris", samples=6, uncertainties=factors, workers=1, progress=False)
    options = SensitivitySpec(outcomes=["mean_harm_total"], figures=[], discovery="off")
    run_sensitivity(Design(morris, Config(steps=1)), tmp_path / "morris", options,
                    runner=inert_runner)  # fmt: skip
    names = {p.name for p in plot_folder(tmp_path / "morris", tmp_path / "m")[0].files}
    assert names == {f"morris_mean_harm_total.{x}" for x in ("pdf", "png", "txt")}
    assert (tmp_path / "m" / "morris_mean_harm_total.png").stat().st_size > 10_000

    spec = SensitivitySpec(outcomes=["mean_paradox_index"], figures=[],
                           prim=PrimSpec(outcome="mean_paradox_index", threshold=0.5))  # fmt: skip
    run_sensitivity(_sobol_design(64), tmp_path / "sobol", spec, runner=ishigami_runner)
    panels = {p.name: p for p in plot_folder(tmp_path / "sobol", tmp_path / "s")}
    assert {"prim_boxes", "prim_tradeoff"} <= set(panels)
    for name in ("prim_boxes", "prim_tradeoff"):
        assert (tmp_path / "s" / f"{name}.png").stat().st_size > 10_000
    assert "mean_paradox_index > 0.5" in panels["prim_boxes"].caption


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def test_sensitivity_command_end_to_end(tmp_path):
    out = tmp_path / "screen"
    proc = paradox(
        "sensitivity", "sweep=sobol_screen", "sweep.samples=4", *TINY,
        "sensitivity.outcomes=[net_alignment,harm_total]",
        "sensitivity.prim.outcome=mean_harm_total", "sensitivity.prim.threshold=0",
        f"hydra.run.dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert "52 ok, 0 failed" in proc.stdout and "Sobol' indices of 5 outcome columns" in proc.stdout
    assert "Traceback" not in proc.stderr and "INFO" not in proc.stderr
    table = pd.read_csv(out / "sobol_indices.csv")
    # the outcomes asked for, both statistics, plus the default figures' (mean_) columns
    assert set(table["outcome"]) == {
        *(f"{s}_{o}" for s in ("mean", "final") for o in ("net_alignment", "harm_total")),
        "mean_paradox_index",
    }
    assert len(table) == 5 * 11
    assert (out / "prim_boxes.csv").exists() and (out / "points.parquet").exists()
    assert (out / "figures" / "sobol_mean_net_alignment.pdf").exists()
    summary = json.loads((out / "sensitivity.json").read_text())
    assert summary["discovery"]["ran"] and summary["discovery"]["rule"] == "mean_harm_total > 0"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["sensitivity"]["method"] == "sobol" and prov["sweep"]["ran"] == 52
    # Rerun on the folder: nothing runs again, the analysis is redone with the new options.
    again = paradox(
        "sensitivity", "sweep=sobol_screen", "sweep.samples=4", *TINY,
        "sensitivity.outcomes=[net_alignment]", "sensitivity.figures=[]",
        "sensitivity.discovery=off", f"hydra.run.dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "0 run now, 52 already done" in again.stdout
    assert not (out / "prim_boxes.csv").exists() and not list((out / "figures").glob("*"))
    assert set(pd.read_csv(out / "sobol_indices.csv")["outcome"]) == {
        "mean_net_alignment", "final_net_alignment"}  # fmt: skip


def test_morris_command_works_without_the_discovery_group(tmp_path):
    fake = tmp_path / "no_ema"
    (fake / "ema_workbench").mkdir(parents=True)
    (fake / "ema_workbench" / "__init__.py").write_text(
        "raise ImportError('simulated: EMA Workbench is not installed')\n"
    )
    out = tmp_path / "morris"
    proc = paradox(
        "sensitivity", "sweep=morris_screen", "sweep.samples=2", *TINY,
        "sensitivity.outcomes=[net_alignment]", f"hydra.run.dir={out}",
        cwd=tmp_path, pythonpath=f"{fake}:{REPO}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "scenario discovery skipped: EMA Workbench is not installed" in proc.stdout
    assert "pip install -e '.[discovery]'" in proc.stdout
    table = pd.read_csv(out / "morris_indices.csv")
    assert {"mu_star", "mu_star_conf", "sigma"} <= set(table.columns)
    assert not (out / "prim_boxes.csv").exists()
    # Requiring discovery without the group is bad input: exit 2, one line, no folder.
    bad = tmp_path / "bad"
    proc = paradox(
        "sensitivity", "sweep=morris_screen", *TINY, "sensitivity.discovery=on",
        f"hydra.run.dir={bad}", cwd=tmp_path, pythonpath=f"{fake}:{REPO}",
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "paradox sensitivity: invalid value for 'sensitivity.discovery': 'on'; allowed: auto or "
        "off, or install EMA Workbench for PRIM: pip install -e '.[discovery]'"
    )
    assert not bad.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["sweep=nonexistent"],
            "paradox sensitivity: invalid value for 'sweep': 'nonexistent'; allowed: a sweep in "
            f"conf/sweep/ with design sobol or morris: {', '.join(sensitivity_sweeps())}",
        ),
        (
            ["sweep=paradox_curve"],
            "paradox sensitivity: invalid value for 'sweep.design': 'grid'; allowed: sobol "
            "(Sobol' indices) or morris (Morris screening) for paradox sensitivity; sweeps with "
            f"such a design: {', '.join(sensitivity_sweeps())}",
        ),
        (
            ["sensitivity.outcomes=[net_alignmnt]"],
            "paradox sensitivity: invalid value for 'sensitivity.outcomes': 'net_alignmnt'; "
            "allowed: an outcome of docs/ODD.md §5 such as net_alignment, or a runs.parquet "
            "column mean_<outcome> or final_<outcome> (did you mean net_alignment, "
            "mean_net_alignment, final_net_alignment?)",
        ),
        (
            ["sensitivity.prim.direction=up"],
            "paradox sensitivity: invalid value for 'sensitivity.prim.direction': 'up'; "
            "allowed: above or below",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, overrides, message):
    out = tmp_path / "bad"
    proc = paradox("sensitivity", *TINY, *overrides, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == message
    assert proc.stdout == "" and not out.exists()
