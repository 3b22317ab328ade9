"""The README's commands and code run as written."""

from __future__ import annotations

import re
import subprocess
import sys

from .conftest import REPO

README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quick_start_is_two_make_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [ln.split("#")[0].strip() for ln in _blocks("bash")[0].splitlines() if ln.strip()]
    assert commands == ["make run", "make test"]
    assert "make run" in quick


def test_readme_python_runs(tmp_path):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", "steps=5", "model.n_adversaries=60"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    for block in _blocks("python"):
        proc = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, f"README block failed:\n{block}\n{proc.stderr}"


def test_readme_error_example_is_what_the_cli_prints(tmp_path):
    example = next(b for b in _blocks("text") if "paradox run model.coupling=1.5" in b)
    expected = example.strip().splitlines()[-1]
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", "model.coupling=1.5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.stderr.strip() == expected


def test_readme_figures_exist_and_commands_are_known():
    from experiments.cli import COMMANDS

    for path in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README):
        assert (REPO / path).stat().st_size > 10_000, path
    for block in _blocks("bash"):
        for command in re.findall(r"\.venv/bin/paradox (\w+)", block):
            assert command in COMMANDS, command
