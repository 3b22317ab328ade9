"""Every figure renders from a small table made here, with labelled axes and a caption."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim import figures as F
from sim.analysis import lever_effects
from sim.outcomes import OUTCOMES


def _timeseries() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for scen in ("baseline", "escalation"):
        for seed in range(3):
            for step in range(6):
                row = {name: float(rng.uniform(0, 1)) for name in OUTCOMES}
                rows.append({"scenario": scen, "seed": seed, "step": step, **row})
    return pd.DataFrame(rows)


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for kappa in (0.0, 0.5, 1.0):
        for q in (0.2, 0.5, 0.8):
            for v_a in (20.0, 40.0):
                for rep in range(2):
                    rows.append({"model.coupling": kappa, "model.fixed_alignment": q,
                                 "model.attacker_value": v_a, "replicate": rep,
                                 "mean_net_alignment": q * (1 - kappa * q) + rng.normal(0, .01),
                                 "mean_harm_exploitation": kappa * q + rng.normal(0, .01),
                                 "mean_paradox_index": kappa * v_a / 40})  # fmt: skip
    return pd.DataFrame(rows)


def _assert_readable(fig: Figure) -> None:
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert axes
    for ax in axes:
        if ax.get_xlabel() == "" and ax.get_ylabel() == "":
            continue  # a colorbar's axes
        assert ax.get_xlabel(), "every panel needs an x label"
        assert ax.has_data()


def _check_saved(fig: Figure, tmp_path, name: str) -> None:
    _assert_readable(fig)
    written = F.save(fig, tmp_path / name, f"Caption of {name}.")
    for path in written:
        assert path.exists() and path.stat().st_size > 0
    assert (tmp_path / f"{name}.txt").read_text().startswith("Caption")
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000  # not an empty canvas


def test_scenario_dynamics(tmp_path):
    _check_saved(F.scenario_dynamics(_timeseries()), tmp_path, "dynamics")


def test_arms_race(tmp_path):
    _check_saved(F.arms_race(_timeseries()), tmp_path, "arms")


def test_arms_race_uses_a_log_axis_where_spending_spans_two_decades(tmp_path):
    ts = _timeseries()
    left = F.arms_race(ts).axes[0]
    assert (left.get_xscale(), left.get_yscale()) == ("linear", "linear")  # uniform(0, 1)
    ts.loc[ts["scenario"] == "escalation", "spend_defence"] *= 1000  # a mandate: 3 decades
    ts.loc[ts["step"] == 0, "spend_attack"] = 1e-6  # step 0 is not drawn: no log for it
    fig = F.arms_race(ts)
    left = fig.axes[0]
    assert (left.get_xscale(), left.get_yscale()) == ("linear", "log")
    lo, hi = left.get_ylim()
    assert lo > 0 and hi / lo > 100, "both paths are visible on the log axis"
    ts.loc[ts["step"] == 1, "spend_defence"] = 0.0  # zeros are left out, not a crash
    _check_saved(F.arms_race(ts), tmp_path, "arms_log")


def test_paradox_curve_with_theory(tmp_path):
    q = np.linspace(0, 0.95, 20)
    theory = pd.concat([
        pd.DataFrame({"kappa": kappa, "q": q, "N": q * (1 - kappa * q),
                      "q_star": 0.5 if kappa else np.nan})
        for kappa in (0.0, 1.0)
    ])  # fmt: skip
    fig = F.paradox_curve(_runs(), theory=theory)
    left = fig.axes[0]
    assert "mean field" in [t.get_text() for t in left.get_legend().get_texts()]
    assert len([ln for ln in left.get_lines() if ln.get_marker() == "v"]) == 1  # one q*
    _check_saved(fig, tmp_path, "curve")


def test_regime_map_with_boundary(tmp_path):
    boundary = pd.DataFrame({"y": [20.0, 40.0], "kappa_star": [0.6, 0.3]})
    _check_saved(F.regime_map(_runs(), boundary=boundary), tmp_path, "regime")


def test_regime_map_of_a_signed_value_is_centred_on_zero(tmp_path):
    runs = _runs()
    runs["slope"] = 0.5 - runs["model.coupling"]
    fig = F.regime_map(runs, value="slope", value_label="slope dN/dq")
    mesh = fig.axes[0].collections[0]
    assert mesh.norm.vcenter == 0.0 and mesh.norm.vmin == -mesh.norm.vmax
    _check_saved(fig, tmp_path, "regime_signed")
    runs["slope"] = 1.5 - runs["model.coupling"]  # positive everywhere: still a signed quantity
    mesh = F.regime_map(runs, value="slope", signed=True).axes[0].collections[0]
    assert mesh.get_cmap().name == "PuOr" and mesh.norm.vcenter == 0.0
    assert F.regime_map(runs, value="slope").axes[0].collections[0].get_cmap().name == "cividis"


def test_policy_forest(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for scen in ("baseline", "escalation"):
        for on in (None, "publication", "mandate"):
            for _ in range(4):
                rows.append({"scenario": scen,
                             "policy.publication_rate": 0.2 * (on == "publication"),
                             "policy.defence_mandate": 0.6 * (on == "mandate"),
                             "mean_harm_total": 0.2 - 0.05 * (on == "mandate") + rng.normal(0, .01),
                             "mean_net_alignment": 0.7 + rng.normal(0, .01)})  # fmt: skip
    levers = {"policy.publication_rate": 0.0, "policy.defence_mandate": 0.0}
    effects = lever_effects(pd.DataFrame(rows), levers, ["harm_total", "net_alignment"])
    _check_saved(F.policy_forest(effects), tmp_path, "forest")


def test_sensitivity_bars(tmp_path):
    idx = pd.DataFrame({"outcome": "harm_total", "parameter": ["a", "b", "c"],
                        "S1": [0.5, 0.2, 0.0], "S1_conf": [0.05] * 3,
                        "ST": [0.6, 0.3, 0.01], "ST_conf": [0.05] * 3})  # fmt: skip
    _check_saved(F.sensitivity_bars(idx, "harm_total"), tmp_path, "sobol")
