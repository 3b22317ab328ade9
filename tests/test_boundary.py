"""`paradox boundary`: the bisection, its standard error, censoring, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from experiments.boundary import find_boundary

from .conftest import paradox


def _linear(kappa_star: float, noise: float = 0.0, seeds: int = 20):
    rng = np.random.default_rng(0)
    offsets = rng.normal(0.0, noise, seeds) if noise else np.zeros(seeds)
    offsets -= offsets.mean()  # the mean slope is exactly linear; the seeds scatter around it
    return lambda k: (kappa_star - k) + offsets


def test_bisection_finds_the_zero_of_a_linear_slope_exactly():
    boundary, evaluations = find_boundary(_linear(0.62), 0.3, 1.0, rounds=4)
    assert boundary["censored"] == ""
    assert boundary["kappa_star"] == pytest.approx(0.62, abs=1e-12)
    assert boundary["bracket_lo"] <= 0.62 <= boundary["bracket_hi"]
    assert boundary["bracket_hi"] - boundary["bracket_lo"] == pytest.approx(0.7 / 16)
    assert len(evaluations) == 2 + 4
    assert boundary["kappa_star_se"] == 0.0  # no seed noise


def test_the_standard_error_follows_the_seed_noise():
    quiet, _ = find_boundary(_linear(0.5, noise=0.05), 0.3, 1.0, rounds=3)
    loud, _ = find_boundary(_linear(0.5, noise=0.2), 0.3, 1.0, rounds=3)
    assert 0 < quiet["kappa_star_se"] < loud["kappa_star_se"]
    # the delta method on a slope of −1 per unit κ: SE(κ*) is about SE(slope)
    assert quiet["kappa_star_se"] == pytest.approx(0.05 / np.sqrt(20), rel=0.5)


@pytest.mark.parametrize(("kappa_star", "side"), [(0.1, "below"), (1.4, "above")])
def test_a_boundary_outside_the_range_is_censored(kappa_star, side):
    boundary, evaluations = find_boundary(_linear(kappa_star), 0.3, 1.0, rounds=4)
    assert boundary["censored"] == side
    assert np.isnan(boundary["kappa_star"])
    assert len(evaluations) == 2  # no bisection without a sign change


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kappa", "1,0.5"], "lo,hi with 0 <= lo < hi <= 1"),
        (["--seeds", "1"], "'--seeds'"),
        (["--zeta", "a,b"], "comma-separated numbers"),
        (["model.coupling=0.5"], "does not vary"),
        (["model.couplng=0.5"], "couplng"),
        (["learning.adversary.rule=imitation"], "imitation"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(tmp_path, args, message):
    proc = paradox("boundary", *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_small_boundary_search_end_to_end(tmp_path):
    """Four labs, one ζ, a few seeds: the table, the summary and the figure, then a resume."""
    out = tmp_path / "b"
    args = ["boundary", "model.n_labs=4", "model.n_adversaries=120", "--zeta", "1.5",
            "--seeds", "3", "--steps", "80", "--burn-in", "20", "--rounds", "1",
            "--workers", "1", "--no-meanfield", "--out", str(out)]  # fmt: skip
    proc = paradox(*args, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "boundary.csv")
    assert list(table["zeta"]) == [1.5]
    assert table["top_lab_reach"].iloc[0] == pytest.approx(1 / sum(i**-1.5 for i in range(1, 5)))
    summary = json.loads((out / "boundary.json").read_text())
    assert summary["design"]["seeds"] == 3
    assert (out / "figures" / "boundary.png").stat().st_size > 10_000
    first = (out / "zeta" / "00.json").read_text()
    again = paradox(*args, cwd=tmp_path, timeout=900)  # resumes: the ζ is not run again
    assert again.returncode == 0 and (out / "zeta" / "00.json").read_text() == first
