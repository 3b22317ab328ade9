"""Every named scenario composes, states only differences, and runs."""

from __future__ import annotations

import pytest
import yaml

from experiments.schema import to_config
from sim.api import simulate, timeseries
from sim.config import Config

from .conftest import CONF, SCENARIOS

REQUIRED = {
    "baseline",
    "no_paradox",
    "open_frontier",
    "closed_api",
    "publication_moratorium",
    "defence_mandate",
    "decoupling_breakthrough",
    "deterrence_regime",
    "escalation",
}


def test_all_named_scenarios_exist():
    assert REQUIRED <= set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_file_is_a_short_global_override_with_a_question(name):
    text = (CONF / "scenario" / f"{name}.yaml").read_text()
    lines = text.splitlines()
    assert lines[0] == "# @package _global_"
    assert lines[1].startswith("# ") and "?" in " ".join(lines[1:4]), "state the question"
    body = yaml.safe_load(text)
    assert body["scenario"] == name
    # only differences from the defaults
    defaults = Config()

    def walk(node, obj, path):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, getattr(obj, key), f"{path}{key}.")
            elif path or key != "scenario":
                assert getattr(obj, key) != value, f"{path}{key} repeats its default"

    # a scenario may also pick learning rules through its defaults list
    for entry in body.get("defaults", []):
        assert next(iter(entry)).startswith("override /learning/"), entry
    walk({k: v for k, v in body.items() if k not in ("scenario", "defaults")}, defaults, "")


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_composes_and_runs(name, compose_config):
    cfg = to_config(compose_config(f"scenario={name}"))
    assert isinstance(cfg, Config) and cfg.scenario == name
    cfg.model.n_adversaries = min(cfg.model.n_adversaries, 200)
    cfg.model.n_labs = min(cfg.model.n_labs, 8)
    table = timeseries(simulate(steps=4, seed=0, config=cfg))
    assert len(table) == 5 and table.notna().all().all()


def test_no_paradox_scenario_has_no_paradox(compose_config):
    cfg = to_config(compose_config("scenario=no_paradox"))
    cfg.model.n_adversaries = 300
    table = timeseries(simulate(steps=20, seed=0, config=cfg))
    assert (table["paradox_index"] == 0).all()
    assert (table["mean_clarity"] == 0).all()


def test_overrides_reach_the_config(compose_config):
    cfg = to_config(
        compose_config(
            "scenario=open_frontier",
            "steps=7",
            "seed=3",
            "model.n_adversaries=50",
            "learning/adversary=fixed",
        )
    )
    assert (cfg.steps, cfg.seed, cfg.model.n_adversaries) == (7, 3, 50)
    assert cfg.policy.open_weights_selection == "largest"
    assert cfg.learning.adversary.rule == "fixed"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "paradox"), [("concentrated_market", True), ("competitive_market", False)]
)
def test_market_scenarios_sit_on_their_side_of_the_boundary(name, paradox, compose_config):
    """The named markets show the paradox and its absence (docs/ODD.md §7.7): the simulated
    secant slope over q 0.75 → 0.95 is clearly negative in the concentrated market and clearly
    positive in the competitive one, and the market theory agrees in sign and within the
    validation's tolerance (`paradox validate`'s comparison on 6 paired seeds)."""
    from experiments import validate

    cfg = to_config(compose_config(f"scenario={name}"))  # the whole scenario is the market
    seeds = validate.paired_seeds(6)
    runs = validate.validate_market(cfg, {}, seeds, steps=600, burn_in=150, leak_seed=1)
    market = validate.summarise_market(runs)
    assert market["sim_sign_clear"], market
    assert (market["sim_slope"] < 0) == paradox, market
    assert market["sign_agrees"] and market["within"], market
    assert market["sim_deeper"] > 0  # a fall or a rise, the inversion deepens with q
