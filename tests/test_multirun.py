"""Hydra multiruns of `paradox run`: launchers agree, `paradox collect` merges, SLURM composes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from experiments.collect import main as collect_main
from experiments.sweep import PRIMARY, register, to_design
from sim.outcomes import OUTCOMES
from sim.sweep import OUTCOME_COLUMNS, run_sweep

from .conftest import CONF, PARADOX, REPO, paradox

#: 2 couplings x 2 seeds of a tiny run
DESIGN = [
    "model.coupling=0,0.5",
    "seed=range(0,2)",
    "steps=3",
    "model.n_adversaries=60",
    "model.n_labs=4",
]
LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local"],
}


@pytest.fixture(scope="module")
def multiruns(tmp_path_factory) -> dict[str, Path]:
    """The same tiny multirun under each launcher; each prints its folder last."""
    root = tmp_path_factory.mktemp("multiruns")
    folders = {}
    for name, launcher in LAUNCHERS.items():
        out = root / name
        proc = paradox("run", "-m", *DESIGN, *launcher, f"hydra.sweep.dir={out}", cwd=root)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == str(out), "the folder is printed last"
        folders[name] = out
    return folders


def test_every_launcher_gives_the_same_runs(multiruns):
    basic = multiruns["basic"]
    jobs = sorted(p.name for p in basic.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    for name in ("joblib", "submitit_local"):
        for job in jobs:
            pd.testing.assert_frame_equal(
                pd.read_parquet(basic / job / "timeseries.parquet"),
                pd.read_parquet(multiruns[name] / job / "timeseries.parquet"),
            )
            a = json.loads((basic / job / "summary.json").read_text())
            b = json.loads((multiruns[name] / job / "summary.json").read_text())
            assert a == b


def test_collect_turns_a_multirun_into_one_table(multiruns, tmp_path, capsys):
    tables = {}
    for name, folder in multiruns.items():
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        assert collect_main([str(copy)]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out[-1] == str(copy / "runs.parquet") and "4 ok, 0 failed" in out[0]
        tables[name] = pd.read_parquet(copy / "runs.parquet")
    runs = tables["basic"]
    for name in ("joblib", "submitit_local"):
        pd.testing.assert_frame_equal(runs, tables[name])
    assert runs["run_id"].tolist() == [0, 1, 2, 3]
    assert list(runs.columns[:5]) == ["run_id", "point_id", "replicate", "seed", "model.coupling"]
    assert runs["model.coupling"].tolist() == [0.0, 0.0, 0.5, 0.5]
    assert runs["seed"].tolist() == [0, 1, 0, 1]
    assert runs["point_id"].tolist() == [0, 0, 1, 1] and runs["replicate"].tolist() == [0, 1] * 2
    assert (runs["steps"] == 3).all() and (runs["model.n_adversaries"] == 60).all()
    assert (runs["status"] == "ok").all() and runs[list(OUTCOME_COLUMNS)].notna().all().all()
    summary = json.loads((multiruns["basic"] / "2" / "summary.json").read_text())
    assert runs.loc[2, "final_harm_total"] == summary["outcomes"]["harm_total"]["final"]
    ts = pd.read_parquet(tmp_path / "basic" / "timeseries.parquet")
    assert list(ts.columns) == ["run_id", "step", *OUTCOMES] and len(ts) == 4 * 4


def test_collect_reports_unfinished_jobs_and_empty_folders(multiruns, tmp_path, capsys):
    copy = tmp_path / "broken"
    shutil.copytree(multiruns["basic"], copy)
    (copy / "1" / "summary.json").unlink()
    assert collect_main([str(copy)]) == 1
    out = capsys.readouterr().out
    assert "3 ok, 1 failed" in out and "run 1: no summary.json" in out
    runs = pd.read_parquet(copy / "runs.parquet")
    assert runs.loc[1, "status"] == "failed" and runs.loc[1, "model.coupling"] == 0.0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert collect_main([str(empty)]) == 2
    assert "nothing to collect" in capsys.readouterr().err


def test_collect_refuses_shards_of_different_sweeps(tmp_path, capsys):
    for i, fingerprint in enumerate(("aaaa", "bbbb")):
        (tmp_path / str(i)).mkdir()
        manifest = {"fingerprint": fingerprint, "num_shards": 2, "shard": i}
        (tmp_path / str(i) / "sweep.json").write_text(json.dumps(manifest))
    assert collect_main([str(tmp_path)]) == 2
    assert "different sweep" in capsys.readouterr().err


def test_slurm_launcher_config_composes(tmp_path):
    """The SLURM launcher's config composes (tests/test_slurm.py runs it on a real SLURM)."""
    proc = paradox(
        "run", "hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "hydra_plugins.paradox_launcher.slurm.ParadoxSlurmLauncher" in proc.stdout
    for key in ("partition:", "timeout_min: 120", "cpus_per_task: 2", "mem_gb: 2", "detach: false"):
        assert key in proc.stdout


def test_slurm_launcher_refuses_without_slurm_in_one_line(tmp_path):
    """Where SLURM's commands are missing, the pre-flight says so before anything is written."""
    proc = subprocess.run(
        [*PARADOX, "sweep", "-m", "hydra/launcher=slurm", "sweep=paradox_curve", "steps=2",
         f"hydra.sweep.dir={tmp_path / 'm'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": str(tmp_path), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "paradox sweep: hydra/launcher=slurm needs SLURM's commands, and sbatch, sinfo, squeue, "
        "scancel is not on PATH: submit from a machine of the cluster (its login node)"
    ]
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "launcher", [[], pytest.param(["hydra/launcher=joblib"], marks=pytest.mark.slow)]
)
def test_sweep_shards_as_multirun_jobs_collect_to_the_whole_design(tmp_path, launcher):
    """Shards of one design as jobs of a multirun (a SLURM array on a cluster).

    With joblib, each job's worker pool starts inside a loky worker process (a case that needs
    care with the start method of the pool's processes).
    """
    tiny = ["sweep=paradox_curve", "steps=2", "model.n_adversaries=40", "model.n_labs=3"]
    shards = tmp_path / "shards"
    proc = paradox(
        "sweep",
        "-m",
        *tiny,
        "sweep.num_shards=2",
        "sweep.shard=range(0,2)",
        "sweep.workers=2",
        *launcher,
        f"hydra.sweep.dir={shards}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(shards)
    assert collect_main([str(shards)]) == 0
    # the whole design in this process, for comparison
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = [*tiny, "sweep.workers=1"]
        design = to_design(compose(config_name=PRIMARY, overrides=overrides), overrides)
    assert run_sweep(design, tmp_path / "whole").ok
    pd.testing.assert_frame_equal(
        pd.read_parquet(shards / "runs.parquet"),
        pd.read_parquet(tmp_path / "whole" / "runs.parquet"),
    )
