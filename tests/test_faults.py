"""Issue 18: nothing silently wrong. Bad input the project used to ignore or report with
Hydra's text, faults and signals; each test fails on the code before its fix."""

from __future__ import annotations

import contextlib
import os

import pytest

from .conftest import SCENARIOS, paradox

SMALL = ["steps=3", "model.n_labs=4", "model.n_adversaries=40"]


def _one_line_exit_2(proc, *needles: str) -> None:
    text = proc.stderr + proc.stdout
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _refused(proc, *needles: str) -> None:
    """Exit 2, no traceback, the reason on the last line of stderr (after the sweep's banner)."""
    text = proc.stderr + proc.stdout
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    last = proc.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last


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


# -- item 2: the Python API composes scenarios as the CLI does, and validates like it ----------


@pytest.mark.parametrize("name", SCENARIOS)
def test_api_scenarios_equal_hydra_composition(compose_config, name):
    from experiments.schema import to_config
    from sim.config import config_from_flat

    assert config_from_flat(scenario=name) == to_config(compose_config(f"scenario={name}"))


def test_run_model_uses_the_scenario_and_equals_the_cli_config(compose_config):
    import numpy as np

    import sim
    from experiments.schema import to_config
    from sim.api import simulate, timeseries

    small = {"n_labs": 4, "n_adversaries": 40}
    esc = sim.run_model(steps=4, seed=3, scenario="escalation", **small)
    base = sim.run_model(steps=4, seed=3, **small)
    assert not np.array_equal(esc["spend_attack"], base["spend_attack"])
    config = to_config(
        compose_config("scenario=escalation", "model.n_labs=4", "model.n_adversaries=40")
    )
    table = timeseries(simulate(steps=4, seed=3, config=config))
    for name, values in esc.items():
        np.testing.assert_array_equal(values, table[name].to_numpy(dtype=float))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"scenario": "nonexistent"}, "'scenario': 'nonexistent'; allowed: one of baseline"),
        ({"steps": -5}, "'steps': -5; allowed: an integer in [0,"),
        ({"seed": -1}, "'seed': -1"),
        ({"n_labs": 6.5}, "'model.n_labs': 6.5; allowed: an integer"),
    ],
)
def test_run_model_refuses_bad_input(kwargs, needle):
    import sim

    with pytest.raises(sim.ParameterError) as err:
        sim.run_model(**{"steps": 2, "n_adversaries": 40, **kwargs})
    assert needle in str(err.value)


def test_run_model_accepts_integral_floats_for_integer_keys():
    import numpy as np

    import sim

    exact = sim.run_model(steps=3, seed=2, n_labs=5, n_adversaries=40)
    floats = sim.run_model(steps=3.0, seed=2.0, n_labs=np.float64(5.0), n_adversaries=40.0)
    for name, values in exact.items():
        np.testing.assert_array_equal(values, floats[name])


# -- item 3: a user scenario is labelled by its own name ---------------------------------------


def test_user_scenario_without_a_label_is_named_after_its_file(tmp_path):
    import pandas as pd
    import yaml

    conf = tmp_path / "myconf" / "scenario"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("# @package _global_\nmodel:\n  coupling: 0.3\n")
    proc = paradox("run", "--config-dir", str(tmp_path / "myconf"), "scenario=mine", *SMALL,
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / proc.stdout.strip().splitlines()[-1]
    assert folder.name.endswith("_mine"), folder
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["scenario"] == "mine" and config["model"]["coupling"] == 0.3
    assert set(pd.read_parquet(folder / "timeseries.parquet")["scenario"]) == {"mine"}
    assert "scenario mine" in proc.stdout


# -- item 4: collect knows how many jobs the multirun launched ----------------------------------


def test_collect_reports_jobs_of_a_stopped_multirun_as_missing(tmp_path):
    import shutil

    import pandas as pd

    multi = tmp_path / "multi"
    proc = paradox("run", "-m", "seed=0,1,2", *SMALL, f"hydra.sweep.dir={multi}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    complete = paradox("collect", str(multi), cwd=tmp_path)
    assert complete.returncode == 0 and "3 of 3 runs" in complete.stdout, complete.stdout
    # A multirun killed before its last job started has no folder for that job.
    shutil.rmtree(multi / "2")
    stopped = paradox("collect", str(multi), cwd=tmp_path)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "2 of 3 runs" in stopped.stdout and "1 missing" in stopped.stdout
    assert "jobs never started (the multirun stopped): 2" in stopped.stdout
    assert len(pd.read_parquet(multi / "runs.parquet")) == 2


# -- item 5: resume refuses runs of other code; provenance keeps every invocation --------------

TINY_SWEEP = [
    "sweep=paradox_curve",
    "steps=2",
    "model.n_labs=4",
    "model.n_adversaries=40",
    "sweep.uncertainties.0.levels=[0.0,1.0]",
    "sweep.levers.0.levels=[0.2,0.8]",
    "sweep.replicates=2",
    "sweep.workers=1",
]


def test_resume_refuses_a_folder_written_by_other_code(tmp_path):
    import json

    out = tmp_path / "sweep"
    first = paradox("sweep", *TINY_SWEEP, f"hydra.run.dir={out}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "sweep.json").read_text())
    assert len(manifest["code"]["sources"]) == 16
    # As if the model had been edited since: the folder records other run code.
    manifest["code"]["sources"] = "0" * 16
    (out / "sweep.json").write_text(json.dumps(manifest))
    before = (out / "runs.parquet").read_bytes()
    refused = paradox("sweep", *TINY_SWEEP, f"hydra.run.dir={out}", cwd=tmp_path)
    _refused(refused, "holds runs of other model code", "sweep.resume_other_code=true")
    assert (out / "runs.parquet").read_bytes() == before
    forced = paradox(
        "sweep", *TINY_SWEEP, "sweep.resume_other_code=true", f"hydra.run.dir={out}", cwd=tmp_path
    )
    assert forced.returncode == 0, forced.stderr
    prov = json.loads((out / "provenance.json").read_text())
    # the refused invocation wrote nothing; both others are kept, each with its command
    assert [i["status"] for i in prov["invocations"]] == ["finished", "finished"]
    assert all(i["command"].startswith("paradox sweep ") for i in prov["invocations"])
    assert "sweep.resume_other_code=true" in prov["invocations"][-1]["command"]
    assert prov["command"] == prov["invocations"][-1]["command"]


# -- item 7: one sweep at a time in a folder; no outputs in the current folder -----------------


def test_a_second_sweep_on_a_busy_folder_is_refused(tmp_path):
    from sim.sweep.guard import folder_lock

    out = tmp_path / "sweep"
    with folder_lock(out):  # this test process plays the sweep still running
        busy = paradox("sweep", *TINY_SWEEP, f"hydra.run.dir={out}", cwd=tmp_path)
    _refused(busy, "is in use by a sweep still running", f"pid {os.getpid()}")
    assert not (out / "runs.parquet").exists() and not (out / "sweep.json").exists()
    free = paradox("sweep", *TINY_SWEEP, f"hydra.run.dir={out}", cwd=tmp_path)
    assert free.returncode == 0, free.stderr


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_empty_run_dir_is_refused(tmp_path, command):
    proc = paradox(command, *SMALL, "hydra.run.dir=", cwd=tmp_path)
    _one_line_exit_2(proc, "'hydra.run.dir'", "a folder for the outputs")
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


# -- item 8: SIGTERM is handled like Ctrl-C; workers die with the sweep -------------------------


def _children() -> dict[int, list[int]]:
    from pathlib import Path

    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    from pathlib import Path

    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _start_long_sweep(tmp_path, out):
    import subprocess
    import time

    from .conftest import PARADOX, REPO

    args = [
        "sweep",
        "sweep=paradox_curve",
        "steps=150",
        "model.n_labs=4",
        "model.n_adversaries=100",
        "sweep.workers=2",
        "sweep.chunk_size=2",
        f"hydra.run.dir={out}",
    ]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [*PARADOX, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [p for p in _descendants(proc.pid) if "forkserver" in _cmdline(p)]
        if len(list((out / "parts").glob("runs-*.parquet"))) >= 1 and len(workers) >= 3:
            return proc, args
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"the sweep did not get going: {proc.communicate()}")


def _cmdline(pid: int) -> str:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _stop_all(proc, pids: set[int]) -> None:
    """Clean up after a failing test: the processes this test started, by their own PIDs."""
    import signal

    for pid in _alive(pids | {proc.pid}):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.communicate(timeout=10)


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    import time

    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pids)


def test_sigterm_saves_the_finished_runs_and_says_how_to_resume(tmp_path):
    import signal

    import pandas as pd

    out = tmp_path / "sweep"
    proc, _ = _start_long_sweep(tmp_path, out)
    family = _descendants(proc.pid)
    try:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143, stderr
        assert "terminated (SIGTERM)" in stderr and f"hydra.run.dir={out}" in stderr
        assert "Traceback" not in stderr
        assert not _wait_gone(family, 10), "worker processes outlived the sweep"
        saved = pd.concat(pd.read_parquet(p) for p in (out / "parts").glob("runs-*.parquet"))
        assert len(saved) >= 1 and (saved["status"] == "ok").all()
    finally:
        _stop_all(proc, family)


def test_slurm_warning_signals_leave_the_workers_to_the_sweep(tmp_path):
    """SLURM sends its time-limit warning (SIGUSR2 under submitit) to every process of the
    job; a worker used to die of it, so the sweep reported a dead worker instead."""
    import signal
    import time

    out = tmp_path / "sweep"
    proc, _ = _start_long_sweep(tmp_path, out)
    family = _descendants(proc.pid)
    try:
        tree = _children()
        server = [p for p in tree.get(proc.pid, []) if "forkserver" in _cmdline(p)]
        workers = {p for s in server for p in tree.get(s, [])}  # forked by the fork server
        assert len(workers) == 2, [_cmdline(p)[:80] for p in family]
        for pid in workers:
            os.kill(pid, signal.SIGUSR2)
            os.kill(pid, signal.SIGUSR1)
        time.sleep(2)
        assert _alive(workers) == workers and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143 and "worker process died" not in stderr, stderr
    finally:
        _stop_all(proc, family)


def test_workers_die_with_a_killed_sweep(tmp_path):
    import signal

    out = tmp_path / "sweep"
    proc, _ = _start_long_sweep(tmp_path, out)
    family = _descendants(proc.pid)
    try:
        assert len(family) >= 3  # the fork server (and resource tracker) and two workers
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        survivors = _wait_gone(family, 15)
        assert not survivors, [_cmdline(p)[:80] for p in survivors]
    finally:
        _stop_all(proc, family)


def test_theory_workers_die_with_a_killed_plot(tmp_path):
    """The market theory's overlay pool (and validate's, boundary's) starts its workers as the
    sweep engine does (sim.pools): kill -9 of `paradox plot` while it computes leaves none."""
    import signal
    import subprocess
    import time

    from .conftest import PARADOX, REPO

    out = tmp_path / "map"
    tiny = ["steps=3", "model.n_labs=3", "model.n_adversaries=30", "sweep.replicates=1"]
    made = paradox("sweep", "sweep=regime_map", *tiny, f"hydra.run.dir={out}", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.Popen([*PARADOX, "plot", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            family = _descendants(proc.pid)
            if len([p for p in family if "forkserver" in _cmdline(p)]) >= 3:  # server, 2 workers
                break
            time.sleep(0.3)
        assert proc.poll() is None, "the plot ended before its theory pool started"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        survivors = _wait_gone(family, 15)
        assert not survivors, [_cmdline(p)[:80] for p in survivors]
    finally:
        _stop_all(proc, family)


# -- item 9: a corrupt part file is quarantined and its runs rerun ------------------------------


@pytest.mark.parametrize("damaged", ["part", "final"])
def test_a_corrupt_run_table_is_quarantined_on_resume(tmp_path, damaged):
    import pandas as pd

    out = tmp_path / "sweep"
    first = paradox("sweep", *TINY_SWEEP, f"hydra.run.dir={out}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    expected = pd.read_parquet(out / "runs.parquet")
    if damaged == "part":  # as left by a damaged disk: a part file of garbage
        bad = out / "parts" / "runs-000000000000-000000000003-0123456789.parquet"
        bad.parent.mkdir()
        bad.write_bytes(b"PAR1 this is not a parquet file")
    else:  # the final table cut in half
        bad = out / "runs.parquet"
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    again = paradox("sweep", *TINY_SWEEP, f"hydra.run.dir={out}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    notes = [line for line in again.stderr.splitlines() if "unreadable" in line]
    assert len(notes) == 1 and f"{bad.name}.corrupt" in notes[0], again.stderr
    assert bad.with_name(bad.name + ".corrupt").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), expected)


# -- item 10: bad files, folders and resources: one line naming them, exit 2 -------------------


@pytest.mark.parametrize("content", [b"", b"PAR1 not a table"])
def test_plot_names_an_unreadable_table(tmp_path, content):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "runs.parquet").write_bytes(content)
    proc = paradox("plot", str(folder), cwd=tmp_path)
    _refused(proc, f"cannot read {folder / 'runs.parquet'}", "not a readable parquet file")


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    proc = paradox("run", *SMALL, f"hydra.run.dir={tmp_path / 'afile' / 'run'}", cwd=tmp_path)
    _one_line_exit_2(proc, f"cannot use {tmp_path / 'afile' / 'run'}", "Not a directory")


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path):
    import resource
    import signal
    import subprocess

    from .conftest import PARADOX, REPO

    def small_files() -> None:  # as if the disk filled up: writes beyond 64 kB fail (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    out = tmp_path / "run"
    proc = subprocess.run(
        [*PARADOX, "run", *SMALL, "steps=400", f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=small_files,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    _one_line_exit_2(proc, f"cannot write {out}", "the disk is full")
    assert not out.exists() or not [p for p in out.rglob("*") if p.suffix == ".parquet"]


def test_a_population_that_cannot_fit_is_refused_with_the_estimate(tmp_path):
    from sim.config import config_from_flat
    from sim.resources import available_bytes, estimate_bytes

    huge = config_from_flat(n_adversaries=100_000_000)
    have = available_bytes()
    if have is None or estimate_bytes(huge) <= have:
        pytest.skip("this machine has the memory for 10^8 adversaries")
    out = tmp_path / "run"
    for command in ("run", "sweep"):
        proc = paradox(command, "model.n_adversaries=100000000", "sweep.workers=1"
                       if command == "sweep" else "steps=1", f"hydra.run.dir={out}",
                       cwd=tmp_path)  # fmt: skip
        _refused(proc, "'model.n_adversaries': 100000000", "fits in memory", "GB available")
        assert not out.exists()


# -- item 12: PRIM on integer factors; indices written before discovery -------------------------


def test_prim_handles_integer_factors():
    import numpy as np
    import pandas as pd

    from sim.gsa import discover

    rng = np.random.default_rng(0)  # this draw made EMA Workbench 3.0 + pandas 3 raise
    x = pd.DataFrame({"model.n_labs": rng.integers(1, 60, 200), "model.coupling": rng.random(200),
                      "model.n_adversaries": rng.integers(0, 5, 200)})  # fmt: skip
    y = ((x["model.coupling"] > 0.5) & (x["model.n_labs"] < rng.integers(10, 50))).to_numpy().copy()
    y |= rng.random(200) < 0.1
    boxes, trajectory = discover(x, y, max_boxes=3)
    assert not boxes.empty and len(trajectory) > 0
    assert "model.coupling" in set(boxes["parameter"])


def test_indices_are_written_before_discovery_starts(tmp_path, monkeypatch):
    import experiments.sensitivity as S
    from sim.gsa import PrimSpec, SensitivitySpec

    from .test_sensitivity import _sobol_design, ishigami_runner

    def broken(*args, **kwargs):
        raise RuntimeError("PRIM failed")

    monkeypatch.setattr(S, "scenario_discovery", broken)
    spec = SensitivitySpec(outcomes=["mean_net_alignment"], figures=[],
                           prim=PrimSpec(outcome="mean_paradox_index", threshold=0.5))  # fmt: skip
    with pytest.raises(RuntimeError, match="PRIM failed"):
        S.run_sensitivity(_sobol_design(16), tmp_path, spec, runner=ishigami_runner)
    assert (tmp_path / "sobol_indices.csv").stat().st_size > 100


# -- item 13: EMA Workbench and SALib samples run through the plain-function API ---------------


def test_ema_workbench_runs_the_model_with_scalar_outcomes():
    pytest.importorskip("ema_workbench")
    import numpy as np
    from ema_workbench import (
        Constant,
        IntegerParameter,
        Model,
        RealParameter,
        ScalarOutcome,
        perform_experiments,
    )

    import sim

    model = Model("paradox", function=sim.run_summary)
    model.uncertainties = [RealParameter("coupling", 0.0, 1.0), IntegerParameter("n_labs", 2, 8)]
    model.levers = [RealParameter("publication_rate", 0.0, 0.5)]
    model.constants = [Constant("steps", 5), Constant("n_adversaries", 40)]
    model.outcomes = [ScalarOutcome("mean_paradox_index"), ScalarOutcome("mean_net_alignment")]
    experiments, outcomes = perform_experiments(model, scenarios=3, policies=2)
    assert len(experiments) == 6 and np.isfinite(outcomes["mean_net_alignment"]).all()
    # a SALib-style float sample of an integer key gives the run of that integer
    row = experiments.iloc[0]
    as_floats = sim.run_summary(steps=5.0, n_adversaries=40.0, n_labs=float(row["n_labs"]),
                                coupling=row["coupling"],
                                publication_rate=row["publication_rate"])  # fmt: skip
    assert as_floats["mean_net_alignment"] == outcomes["mean_net_alignment"][0]


# -- item 16: theory's own help; provenance records the subcommand; shard numbering ------------


def test_theory_help_is_its_own(tmp_path):
    proc = paradox("theory", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("paradox theory:") and "paradox run:" not in proc.stdout


def test_provenance_command_can_be_rerun_as_recorded(tmp_path):
    import json

    out = tmp_path / "run"
    proc = paradox("run", *SMALL, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    command = json.loads((out / "provenance.json").read_text())["command"]
    assert command.startswith("paradox run steps=3 "), command


def test_shards_are_numbered_as_sweep_shard_is():
    from pathlib import Path

    from sim.config import Config
    from sim.sweep import Design, SweepResult, SweepSpec, format_result
    from sim.sweep.spec import Factor

    spec = SweepSpec(levers=[Factor(key="model.coupling", levels=[0.0, 1.0])], num_shards=4)
    result = SweepResult(Path("."), 1, 0, 1, 0, 0, None, 1.0, 1)
    assert "shard 0 (shards 0 to 3)" in format_result(Design(spec, Config()), result)


# -- item 19: a run of 0 steps has no time average ----------------------------------------------


def test_a_run_of_zero_steps_has_no_time_average(tmp_path):
    import json
    import math

    import pandas as pd

    import sim
    from sim.config import config_from_flat
    from sim.sweep import Design, Factor, SweepSpec, run_sweep

    # The plain-function API: the initial state is the final value, never a "mean over 1..0".
    out = sim.run_summary(steps=0, seed=1, n_labs=3, n_adversaries=30)
    assert out["final_net_alignment"] > 0 and math.isnan(out["mean_net_alignment"])
    assert math.isnan(out["se_net_alignment"])
    # A sweep's runs.parquet: the same NaN, and every run ok.
    spec = SweepSpec(design="grid", uncertainties=[Factor(key="model.coupling", levels=[0.2, 0.8])],
                     workers=1, progress=False)  # fmt: skip
    design = Design(spec, config_from_flat(steps=0, n_labs=3, n_adversaries=30))
    result = run_sweep(design, tmp_path / "sweep")
    assert result.ok
    runs = pd.read_parquet(tmp_path / "sweep" / "runs.parquet")
    assert runs["mean_net_alignment"].isna().all() and runs["final_net_alignment"].notna().all()
    # The command: summary.json says why there is no average, and the table prints nan.
    proc = paradox("run", "steps=0", "model.n_labs=3", "model.n_adversaries=30",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["time_average_over"].startswith("none: 0 steps")
    assert summary["outcomes"]["net_alignment"]["mean"] is None or math.isnan(
        summary["outcomes"]["net_alignment"]["mean"]
    )
    assert "1..0" not in proc.stdout + proc.stderr


def test_the_policy_grids_liability_level_acts():
    import numpy as np
    import yaml

    import sim

    from .conftest import CONF

    grid = yaml.safe_load((CONF / "sweep" / "policy_grid.yaml").read_text())
    lever = next(f for f in grid["sweep"]["levers"] if f["key"] == "policy.liability")
    off, on = lever["levels"]
    assert off == 0.0

    def paired(level: float) -> tuple[np.ndarray, np.ndarray]:
        runs = [(sim.run_summary(steps=30, seed=s, n_labs=4, n_adversaries=100, liability=0.0),
                 sim.run_summary(steps=30, seed=s, n_labs=4, n_adversaries=100, liability=level))
                for s in range(4)]  # fmt: skip
        defence = np.array([b["mean_spend_defence"] / a["mean_spend_defence"] - 1 for a, b in runs])
        harm = np.array(
            [b["mean_harm_exploitation"] - a["mean_harm_exploitation"] for a, b in runs]
        )
        return defence, harm

    defence, harm = paired(on)
    assert (defence > 0.10).all() and (harm < 0).all(), (defence, harm)
    weak, _ = paired(1.0)  # the level the grid used before: a twentieth of the labs' stake
    assert weak.mean() < defence.mean() / 3, (weak, defence)
