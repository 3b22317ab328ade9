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
