"""The benchmark script runs end to end (its quick mode: a smoke test, no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_bench_quick_writes_results(tmp_path):
    out = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--quick", "--output", str(out), "--no-readme"],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    res = json.loads(out.read_text())
    assert {"single", "profile", "scale", "sweep", "machine_scaling"} <= set(res)
    assert res["quick"] is True
    assert res["single"]["ratio"] > 0 and res["scale"]["rows"]


def test_a_quick_run_leaves_the_tracked_measurements_alone():
    """--quick without --output writes results/bench/quick.json, not the tracked results.json
    and README (issue 18, item 17)."""
    tracked = [REPO / "benchmarks" / "README.md", REPO / "benchmarks" / "results.json"]
    before = [p.read_bytes() for p in tracked]
    subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--quick", "--only", "single"],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert [p.read_bytes() for p in tracked] == before
    assert json.loads((REPO / "results" / "bench" / "quick.json").read_text())["quick"] is True
