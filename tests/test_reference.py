"""The plain-Mesa reference (benchmarks/reference.py): a smoke test, and the differential test
that the engine and the reference agree in distribution (seed-averaged outcomes)."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd
import pytest

from benchmarks.reference import ReferenceModel
from sim.api import simulate, timeseries
from sim.outcomes import OUTCOMES, reporter_name


def test_reference_runs_reports_every_outcome_and_drives_batch_run():
    model = ReferenceModel(rng=0, n_labs=4, n_adversaries=40)
    for _ in range(3):
        model.step()
    table = model.datacollector.get_model_vars_dataframe()
    assert list(table.columns) == [reporter_name(n) for n in OUTCOMES] and len(table) == 4
    assert np.isfinite(table.to_numpy(dtype=float)).all()
    rows = pd.DataFrame(
        mesa.batch_run(
            ReferenceModel,
            parameters={"coupling": [0.0, 0.8], "n_labs": 3, "n_adversaries": 30},
            rng=[1],
            max_steps=3,
            number_processes=1,
            data_collection_period=-1,
            display_progress=False,
        )
    )
    assert len(rows) == 2
    assert (rows.loc[rows["coupling"] == 0.0, "paradox_index"] == 0).all()


#: Outcomes compared, time-averaged over steps 11..40 of each run.
COMPARED = [
    "mean_alignment",
    "mean_clarity",
    "net_alignment",
    "compromised_share",
    "harm_total",
    "attempts_total",
    "success_rate_total",
    "spend_attack",
    "spend_defence",
    "adversaries_deterred",
    "knowledge_weights",
    "knowledge_prompt",
    "knowledge_output",
    "mean_alignment_share",
    "marginal_return",
]

CONFIGURATIONS = {
    "baseline": {},
    "paradox_best_response": dict(
        adversary_rule="best_response", lab_rule="fixed", coupling=1.0, attacker_value=200.0
    ),
    "imitation": dict(adversary_rule="imitation", lab_rule="imitation", leak_probability=0.05),
    "contest_mu2_deterrence": dict(
        decisiveness=2.0, detection_probability=0.2, publication_rate=0.0, api_access_share=0.3
    ),
}


def _averages(run, seeds, steps=40, burn_in=10) -> pd.DataFrame:
    return pd.DataFrame(
        [run(seed).iloc[burn_in + 1 : steps + 1][COMPARED].mean() for seed in seeds]
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_engine_and_reference_agree_in_distribution(name):
    """Independent implementations with independent draws: seed-averaged outcomes agree within
    four standard errors (of the difference of two means over 8 seeds each)."""
    params = dict(n_labs=10, n_adversaries=300, **CONFIGURATIONS[name])

    def reference(seed):
        model = ReferenceModel(rng=1000 + seed, **params)
        for _ in range(40):
            model.step()
        return model.datacollector.get_model_vars_dataframe()

    def engine(seed):
        return timeseries(simulate(steps=40, seed=seed, **params))

    ref, eng = _averages(reference, range(8)), _averages(engine, range(8))
    diff = ref.mean() - eng.mean()
    se = np.sqrt(ref.var() / len(ref) + eng.var() / len(eng))
    scale = np.maximum(ref.abs().mean(), eng.abs().mean())
    bad = (diff.abs() > 4 * se) & (diff.abs() > 1e-9 * np.maximum(scale, 1.0))
    report = pd.DataFrame({"reference": ref.mean(), "engine": eng.mean(), "se": se})
    assert not bad.any(), f"{name}: outcomes disagree:\n{report[bad]}"
