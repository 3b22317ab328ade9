"""Hashes of the model's and the theories' outputs, to check that a refactor changes no number.

    .venv/bin/python -m benchmarks.fingerprint > after.json

prints one short SHA-256 per output: simulated runs of every learning rule and of several
switches and scenarios, the mean field (ODE and step map), the static game's curve and κ*, and
the market theory's stationary states. Run it before and after a change that should not touch
the numbers (copy this file into the older checkout if it predates it) and compare the two files:
equal hashes mean the same bits. It imports the run helpers from ``sim.api`` (``sim.run`` before
the architecture change) so that it runs on both sides of that change.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

from experiments.schema import register, to_config
from sim.config import config_from_flat

CONF = Path(__file__).resolve().parent.parent / "conf"
SMALL = {"n_labs": 6, "n_adversaries": 120}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "advbr": {"adversary_rule": "best_response"},
    "advfixed_labimit": {"adversary_rule": "fixed", "lab_rule": "imitation"},
    "imit": {"adversary_rule": "imitation", "lab_rule": "imitation"},
    "adv_br_lab_fixed": {"adversary_rule": "best_response", "lab_rule": "fixed"},
    "exog": {"fixed_alignment": 0.6, "coupling": 1.0},
    "ba": {"network_topology": "barabasi_albert", "adversary_rule": "imitation"},
    "congest": {"prize_congestion": "linear", "lab_foresight": 0.5},
    "liab": {
        "liability": 0.5,
        "decoupling_share": 0.3,
        "detection_probability": 0.2,
        "leak_probability": 0.05,
    },
}
SCENARIOS = (
    "baseline",
    "escalation",
    "open_frontier",
    "closed_api",
    "deterrence_regime",
    "concentrated_market",
    "decoupling_breakthrough",
    "contest_1v1",
)


def digest(values: Any) -> str:
    array = np.ascontiguousarray(np.asarray(values, dtype=float))
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


def _module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(names)


def _scenario(name: str, *overrides: str) -> Any:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return to_config(compose(config_name="config", overrides=[f"scenario={name}", *overrides]))


def fingerprint() -> dict[str, str]:
    api = _module("sim.api", "sim.run")
    out: dict[str, str] = {}
    for name, values in VARIANTS.items():
        table = api.timeseries(
            api.simulate(steps=60, seed=5, config=config_from_flat(**SMALL, **values))
        )
        out[f"run:{name}"] = digest(table.drop(columns=["step"]).to_numpy())
    register()
    for name in SCENARIOS:
        cfg = _scenario(name, "model.n_adversaries=150")
        table = api.timeseries(api.simulate(steps=40, seed=3, config=cfg))
        out[f"scen:{name}"] = digest(table.drop(columns=["step"]).to_numpy())
    mf = _module("sim.meanfield")
    field = mf.MeanField(config_from_flat(**SMALL))
    out["meanfield"] = digest(field.solve(60).select_dtypes("number").to_numpy())
    out["meanfield_iter"] = digest(field.iterate(30).select_dtypes("number").to_numpy())
    other = mf.MeanField(
        config_from_flat(**SMALL, adversary_rule="best_response", fixed_alignment=0.5)
    )
    out["meanfield_br_exog"] = digest(other.iterate(30).select_dtypes("number").to_numpy())
    static = _module("sim.static_game", "sim.theory")
    game = static.StaticGame.from_config(_scenario("contest_1v1"), "prompt")
    out["static_curve"] = digest(static.curve(game).select_dtypes("number").to_numpy())
    out["static_threshold"] = repr(static.threshold(game))
    market = _module("sim.market")
    theory = market.MarketTheory(config_from_flat(n_labs=6, n_adversaries=200, coupling=1.0))
    for q in (0.3, 0.7):
        s = theory.solve(q)
        parts = [s.phi, s.defence.ravel(), s.attempts.ravel(), s.knowledge.ravel()]
        out[f"market:{q}"] = digest(
            np.concatenate([*parts, s.channel_probs.ravel(), [s.residual, s.iterations]])
        )
    theory = market.MarketTheory(
        config_from_flat(
            n_labs=5, n_adversaries=150, coupling=0.8, adversary_rule="roth_erev",
            decisiveness=0.7, lab_foresight=0.4,
        )
    )  # fmt: skip
    s = theory.solve(0.6)
    out["market_re"] = digest(
        np.concatenate([s.phi, s.defence.ravel(), s.attempts.ravel(), [s.residual]])
    )
    return out


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    print(json.dumps(fingerprint(), indent=1))
