"""Shared fixtures: small populations so the default suite stays fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.schema import register

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
SCENARIOS = sorted(p.stem for p in (CONF / "scenario").glob("*.yaml"))

#: The command line, run as a user would (``paradox <command> ...``) in a fresh interpreter.
PARADOX = [sys.executable, "-m", "experiments.cli"]


def paradox(
    *args: str, cwd: Path, timeout: float = 300, pythonpath: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``paradox <args>`` in ``cwd`` with a bare environment (no network, own HOME).

    The machine's OpenBLAS settings (``OPENBLAS_*``, set on some processors) are kept: they
    pick the BLAS kernels, whose rounding differs in the last digits, and a test that compares
    the command's numbers with ones computed in the test process needs the same kernels.
    """
    blas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    return subprocess.run(
        [*PARADOX, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **blas,
            "PYTHONPATH": pythonpath or str(REPO),
            "PATH": "/usr/bin:/bin",
            "HOME": str(cwd),
        },
    )


#: Small but not trivial: enough adversaries per lab that every channel sees attacks.
SMALL = {"n_labs": 6, "n_adversaries": 120}


@pytest.fixture
def compose_config():
    """Compose the project's Hydra config with overrides, as `paradox run` would."""
    register()

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose
