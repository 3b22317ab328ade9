"""Issue 18: nothing silently wrong. Bad input the project used to ignore or report with
Hydra's text, faults and signals; each test fails on the code before its fix."""

from __future__ import annotations

import pytest

from .conftest import paradox

SMALL = ["steps=3", "model.n_labs=4", "model.n_adversaries=40"]


def _one_line_exit_2(proc, *needles: str) -> None:
    text = proc.stderr + proc.stdout
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- item 1: a key the schema does not have is refused, with or without `+` --------------------


@pytest.mark.parametrize(
    ("command", "override", "needles"),
    [
        ("run", "+model.coupleing=0.5", ("'model.coupleing'", "did you mean model.coupling")),
        ("run", "model.coupleing=0.5", ("'model.coupleing'", "did you mean model.coupling")),
        ("run", "+coupleing=0.5", ("'coupleing'", "did you mean model.coupling")),
        ("run", "+policy.coupling=1", ("'policy.coupling'", "did you mean model.coupling")),
        ("theory", "+model.coupleing=0.5", ("'model.coupleing'", "model.coupling")),
        ("sweep", "+model.coupleing=0.5", ("'model.coupleing'", "model.coupling")),
        ("sweep", "+sweep.desgn=lhs", ("'sweep.desgn'", "did you mean sweep.design")),
    ],
)
def test_unknown_keys_are_refused_with_a_suggestion(tmp_path, command, override, needles):
    out = tmp_path / "out"
    proc = paradox(command, *SMALL, override, f"hydra.run.dir={out}", cwd=tmp_path)
    _one_line_exit_2(proc, "unknown key", *needles)
    assert not out.exists() and not (tmp_path / "results").exists()


# -- item 11: Hydra's own errors become the project's one-liners with exit 2 --------------------


@pytest.mark.parametrize(
    ("command", "override", "needles"),
    [
        ("run", "scenario=open_fronteir", ("unknown scenario", "did you mean open_frontier")),
        ("run", "learning/lab=nope", ("unknown learning/lab", "best_response, fixed, imitation")),
        ("run", "steps=abc", ("'steps'", "an integer in [0, 10000000]")),
        ("run", "collect_agents=maybe", ("'collect_agents'", "true or false")),
        ("run", "seed=range(0,", ("malformed override 'seed=range(0,'",)),
        ("run", "model.coupling", ("malformed override", "missing EQUAL")),
        ("sweep", "sweep=nope", ("unknown sweep 'nope'", "paradox_curve")),
        ("theory", "scenario=nope", ("unknown scenario 'nope'", "baseline")),
    ],
)
def test_hydra_errors_are_one_line_exit_2(tmp_path, command, override, needles):
    out = tmp_path / "out"
    proc = paradox(command, *SMALL, override, f"hydra.run.dir={out}", cwd=tmp_path)
    _one_line_exit_2(proc, *needles)
    assert not out.exists() and not (tmp_path / "results").exists()


def test_bad_user_scenario_files_name_the_file_and_key(tmp_path):
    conf = tmp_path / "myconf" / "scenario"
    conf.mkdir(parents=True)
    (conf / "typo.yaml").write_text("# @package _global_\nmodel:\n  couplng: 0.3\n")
    (conf / "broken.yaml").write_text("# @package _global_\nmodel:\n  coupling: [0.3\n")
    out = tmp_path / "out"
    common = ("run", "--config-dir", str(tmp_path / "myconf"), *SMALL, f"hydra.run.dir={out}")
    typo = paradox(*common, "scenario=typo", cwd=tmp_path)
    _one_line_exit_2(typo, "scenario/typo.yaml", "'model.couplng'", "model.coupling")
    broken = paradox(*common, "scenario=broken", cwd=tmp_path)
    _one_line_exit_2(broken, "malformed YAML in", "broken.yaml, line 4")
    assert not out.exists()
