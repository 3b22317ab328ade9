"""The schema: ranges, cross-field rules, flat keyword names, generated YAML, docs."""

from __future__ import annotations

import dataclasses
import re

import pytest

from experiments import genconf
from sim.config import (
    Config,
    ParameterError,
    allowed_text,
    config_from_flat,
    flat_keys,
    iter_fields,
    to_flat,
    validate,
)

from .conftest import REPO


def test_defaults_are_valid_and_every_leaf_is_documented():
    cfg = Config()
    validate(cfg)
    for key, f, _ in iter_fields(cfg):
        assert f.metadata.get("doc"), f"{key} has no documentation"
        if key not in ("scenario", "collect_agents"):
            assert allowed_text(f), key


@pytest.mark.parametrize(
    ("flat", "value", "key"),
    [
        ("n_labs", -3, "model.n_labs"),
        ("n_labs", 0, "model.n_labs"),
        ("coupling", 1.5, "model.coupling"),
        ("coupling", float("nan"), "model.coupling"),
        ("decisiveness", 0.0, "model.decisiveness"),
        ("compromise_persistence", 1.0, "model.compromise_persistence"),
        ("weights_clarity_elasticity", 0.0, "model.channels.weights.clarity_elasticity"),
        ("network_topology", "ring", "model.network.topology"),
        ("adversary_rule", "genius", "learning.adversary.rule"),
        ("lab_rule", "oracle", "learning.lab.rule"),
        ("publication_rate", -0.1, "policy.publication_rate"),
        ("deterrence_steps", 2.5, "policy.deterrence_steps"),
        ("open_weights_selection", "middle", "policy.open_weights_selection"),
        ("burn_in", -1, "burn_in"),
        ("burn_in", 200, "burn_in"),  # not below steps (200)
        ("burn_in", "mser5", "burn_in"),
        ("burn_in", 2.5, "burn_in"),
    ],
)
def test_out_of_range_values_name_their_key(flat, value, key):
    with pytest.raises(ParameterError) as err:
        config_from_flat(**{flat: value})
    assert err.value.key == key
    assert key in str(err.value) and "allowed" in str(err.value)


def test_rules_that_span_keys():
    with pytest.raises(ParameterError, match="defence_split"):
        config_from_flat(lab_defence_split_weights=0.9)
    with pytest.raises(ParameterError, match="even"):
        config_from_flat(network_mean_degree=5)
    with pytest.raises(ParameterError, match=r"below model\.n_adversaries"):
        config_from_flat(n_adversaries=4, network_mean_degree=6)
    with pytest.raises(ParameterError, match="imitation needs neighbours"):
        config_from_flat(adversary_rule="imitation", network_topology="none")
    with pytest.raises(ParameterError, match="defence_mandate"):
        config_from_flat(lab_rule="fixed", lab_alignment_share=0.8, defence_mandate=0.5)
    config_from_flat(n_adversaries=1, network_topology="none")  # fine without a network


def test_burn_in_is_auto_or_a_number_of_steps_below_steps():
    assert Config().burn_in == "auto"
    assert config_from_flat(steps=150, burn_in=149).burn_in == 149
    assert config_from_flat(steps=0, burn_in=10).burn_in == 10  # nothing to average anyway
    with pytest.raises(ParameterError, match=r"\[0, steps\) = \[0, 150\)"):
        config_from_flat(steps=150, burn_in=150)
    with pytest.raises(ParameterError, match="burn_in"):
        config_from_flat(burn_in=True)


def test_flat_names_are_unique_and_round_trip():
    keys = flat_keys()
    assert len(keys) == len(set(keys.values()))
    assert keys["coupling"] == "model.coupling"
    assert keys["weights_severity"] == "model.channels.weights.severity"
    assert keys["adversary_rule"] == "learning.adversary.rule"
    assert keys["lab_defence_split_prompt"] == "learning.lab.defence_split.prompt"
    cfg = config_from_flat(coupling=0.3, prompt_severity=2.0, adversary_rule="fixed")
    again = config_from_flat(**to_flat(cfg))
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)


def test_generated_yaml_matches_the_schema():
    assert genconf.main(["--check"]) == 0, "run `python -m experiments.genconf` (make conf)"


def test_odd_parameter_table_lists_every_key_with_its_default_and_range():
    text = (REPO / "docs" / "ODD.md").read_text()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*[^|]*\|\s*`([a-z_.]+)`\s*\|\s*([^|]*)\|\s*([^|]*)\|", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    cfg = Config()
    for key, f, value in iter_fields(cfg):
        assert key in rows, f"{key} missing from the ODD parameter table"
        default, allowed = rows[key]
        assert default == f"`{genconf._yaml_value(value)}`", key
        if f.metadata.get("lo") is not None or f.metadata.get("choices"):
            assert allowed == allowed_text(f), key


def test_odd_lists_every_outcome():
    from sim.outcomes import OUTCOMES

    text = (REPO / "docs" / "ODD.md").read_text()
    for name in OUTCOMES:
        assert f"`{name}`" in text, f"{name} missing from docs/ODD.md §5"
