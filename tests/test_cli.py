"""`paradox run` end to end: outputs, determinism, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sim.outcomes import OUTCOMES

from .conftest import paradox

SMALL = ["steps=6", "model.n_labs=5", "model.n_adversaries=80"]


def test_run_writes_a_tidy_results_folder(tmp_path):
    out = tmp_path / "one"
    proc = paradox(
        "run", *SMALL, "seed=5", "scenario=closed_api", f"hydra.run.dir={out}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert "paradox_index" in proc.stdout  # the printed summary
    table = pd.read_parquet(out / "timeseries.parquet")
    assert list(table.columns) == ["step", *OUTCOMES, "seed", "scenario"]
    assert list(table["step"]) == list(range(7))
    assert (table["seed"] == 5).all() and (table["scenario"] == "closed_api").all()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["outcomes"]) == set(OUTCOMES)
    assert summary["outcomes"]["net_alignment"]["final"] == pytest.approx(
        table["net_alignment"].iloc[-1]
    )
    # the time average covers the steps after the burn-in (MSER-5 by default; with 6 steps,
    # fewer than two batches of 5, there is none): steps burn_in+1..T
    burn_in = summary["burn_in"]
    assert summary["burn_in_rule"] == "auto" and burn_in == 0
    assert summary["time_average_over"].startswith("steps 1..6")
    assert summary["outcomes"]["harm_total"]["mean"] == pytest.approx(
        table["harm_total"].iloc[1 + burn_in :].mean()
    )
    assert summary["outcomes"]["harm_total"]["se"] >= 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["seed"] == 5 and prov["packages"]["mesa"].startswith("3.5")
    assert "scenario=closed_api" in prov["overrides"]
    assert {"commit", "dirty"} <= set(prov["git"]) and prov["wall_time_seconds"] > 0
    config = (out / "config.yaml").read_text()
    assert "n_adversaries: 80" in config and "scenario: closed_api" in config


def test_a_set_burn_in_is_left_out_of_the_time_averages(tmp_path):
    out = tmp_path / "burn"
    proc = paradox("run", *SMALL, "burn_in=4", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "average over steps 5..6" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    table = pd.read_parquet(out / "timeseries.parquet")
    assert (summary["burn_in"], summary["burn_in_rule"]) == (4, "set")
    assert summary["outcomes"]["net_alignment"]["mean"] == pytest.approx(
        table["net_alignment"].iloc[5:].mean()
    )


def test_same_seed_gives_identical_tables_and_the_default_folder_is_under_results(tmp_path):
    a = paradox("run", *SMALL, "seed=9", cwd=tmp_path)
    b = paradox("run", *SMALL, "seed=9", cwd=tmp_path)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    pa, pb = (Path(p.stdout.strip().splitlines()[-1]) for p in (a, b))
    assert pa != pb and pa.is_relative_to(tmp_path / "results" / "runs")
    pd.testing.assert_frame_equal(
        pd.read_parquet(pa / "timeseries.parquet"), pd.read_parquet(pb / "timeseries.parquet")
    )


def test_cli_and_python_api_give_the_same_table(tmp_path):
    from sim.api import simulate, timeseries
    from sim.config import config_from_flat

    out = tmp_path / "api"
    proc = paradox("run", *SMALL, "seed=4", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = config_from_flat(n_labs=5, n_adversaries=80)
    api = timeseries(simulate(steps=6, seed=4, config=cfg))
    cli = pd.read_parquet(out / "timeseries.parquet").drop(columns=["seed", "scenario"])
    pd.testing.assert_frame_equal(cli, api)


def test_per_agent_tables_on_request(tmp_path):
    out = tmp_path / "agents"
    proc = paradox("run", *SMALL, "collect_agents=true", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    labs = pd.read_parquet(out / "labs.parquet")
    assert len(labs) == 7 * 5 and {"step", "agent_id", "alignment_quality"} <= set(labs)
    advs = pd.read_parquet(out / "adversaries.parquet")
    assert len(advs) == 7 * 80 and "knowledge_weights" in advs


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.n_labs=-3", "model.n_labs"),
        ("model.coupling=1.5", "model.coupling"),
        ("scenario=nonexistent", "unknown scenario 'nonexistent'"),
        ("steps=abc", "steps"),
        ("no_such_key=1", "no_such_key"),
        ("model.no_such_key=1", "no_such_key"),
        ("learning.lab.defence_split.weights=0.9", "defence_split"),
        ("policy.publication_rate=2", "policy.publication_rate"),
        ("burn_in=3", "'burn_in': 3; allowed: auto (MSER-5 on net_alignment) or an integer"),
        ("burn_in=mser", "burn_in"),
    ],
)
def test_bad_input_fails_cleanly(tmp_path, override, needle):
    out = tmp_path / "bad"
    proc = paradox("run", "steps=3", override, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists(), "a rejected run must leave no folder behind"
    assert not (tmp_path / "results").exists()


def test_usage_and_unknown_command(tmp_path):
    proc = paradox(cwd=tmp_path)
    assert proc.returncode == 0 and "paradox run" in proc.stdout
    bad = paradox("fly", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown command" in bad.stderr
