"""`paradox sweep` and its engine: designs, seeds, streaming, resume, failures and shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hydra import compose, initialize_config_dir
from SALib.sample import sobol as salib_sobol

from experiments.collect import collect
from experiments.run import run as run_one
from experiments.sweep import PRIMARY, register, to_design
from sim.config import Config, ParameterError, validate
from sim.outcomes import OUTCOMES
from sim.stats import batch_means_se
from sim.sweep import (
    OUTCOME_COLUMNS,
    SUMMARY_COLUMNS,
    Design,
    Factor,
    SweepMismatch,
    SweepSpec,
    format_result,
    merge,
    parameter_columns,
    run_sweep,
    runs_schema,
    simulate_table,
    timeseries_schema,
)

from .conftest import CONF, PARADOX, REPO, paradox

TINY = ["steps=2", "model.n_adversaries=40", "model.n_labs=3"]
NAMED = {
    "paradox_curve": 400,
    "regime_map": 360,
    "regime_map_reach": 250,
    "scenarios": 110,
    "alignment_share_curve": 132,
    "policy_grid": 768,
    "sobol_screen": 416,
}


def tiny_base(steps: int = 2, seed: int = 0) -> Config:
    cfg = Config(steps=steps, seed=seed)
    cfg.model.n_adversaries, cfg.model.n_labs = 40, 3
    return cfg


def failing_runner(config: Config) -> pd.DataFrame:
    """A runner that raises for one factor value (module level, so worker processes load it)."""
    if config.model.coupling == 0.5:
        raise RuntimeError("boom at coupling 0.5")
    return simulate_table(config)


@pytest.fixture
def compose_design():
    """Compose `paradox sweep`'s configuration with overrides and turn it into a Design."""
    register()

    def _compose(*overrides: str) -> Design:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name=PRIMARY, overrides=list(overrides))
            return to_design(cfg, list(overrides))

    return _compose


# --------------------------------------------------------------------------------------------
# Designs and seeds
# --------------------------------------------------------------------------------------------


def test_grid_is_the_product_of_levels_first_factor_slowest_with_schema_types():
    spec = SweepSpec(
        replicates=2,
        uncertainties=[Factor(key="model.coupling", levels=[0, 1])],
        levers=[
            Factor(key="model.n_labs", levels=[2, 3.0]),
            Factor(key="learning.lab.rule", levels=["fixed", "best_response"]),
        ],
    )
    base = tiny_base()
    design = Design(spec, base)
    assert (design.n_points, design.n_runs) == (8, 16)
    assert design.varied == ["model.coupling", "model.n_labs", "learning.lab.rule"]
    assert design.point(0) == {
        "model.coupling": 0.0,
        "model.n_labs": 2,
        "learning.lab.rule": "fixed",
    }
    assert design.point(7) == {
        "model.coupling": 1.0,
        "model.n_labs": 3,
        "learning.lab.rule": "best_response",
    }
    assert type(design.point(3)["model.n_labs"]) is int
    assert type(design.point(3)["model.coupling"]) is float
    cfg = design.config(5)  # point 2, replicate 1
    assert (cfg.model.coupling, cfg.model.n_labs, cfg.learning.lab.rule) == (0.0, 3, "fixed")
    assert cfg.seed == design.seed(2, 1) and cfg.steps == 2
    assert base.model.n_labs == 3 and base.seed == 0, "the base configuration is not modified"


def _int_seed(seq: np.random.SeedSequence) -> int:
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


def test_seeds_are_spawned_from_the_base_seed():
    factors = [Factor(key="model.coupling", levels=[0.0, 0.5, 1.0])]
    common = Design(SweepSpec(replicates=4, uncertainties=factors), tiny_base(seed=7))
    expected = [_int_seed(s) for s in np.random.SeedSequence(7).spawn(2)[1].spawn(4)]
    assert [common.seed(p, r) for p in range(3) for r in range(4)] == expected * 3
    assert len(set(expected)) == 4 and all(0 <= s < 2**63 for s in expected)
    spec = SweepSpec(replicates=4, seeding="independent", uncertainties=factors)
    independent = Design(spec, tiny_base(seed=7))
    tree = np.random.SeedSequence(7).spawn(2)[1].spawn(3)
    assert independent.seed(2, 3) == _int_seed(tree[2].spawn(4)[3])
    seeds = {independent.seed(p, r) for p in range(3) for r in range(4)}
    assert len(seeds) == 12
    assert Design(SweepSpec(replicates=4, uncertainties=factors), tiny_base(seed=8)).seed(
        0, 0
    ) != common.seed(0, 0)


@pytest.mark.parametrize(
    ("design", "samples", "per_level"),
    [("lhs", 8, 8), ("sobol", 8, 8 * (2 + 2)), ("morris", 4, 4 * (2 + 1))],
)
def test_sampled_designs_have_salib_sizes_bounds_and_integer_keys(design, samples, per_level):
    spec = SweepSpec(
        design=design,
        samples=samples,
        uncertainties=[
            Factor(key="model.coupling", range=[0.2, 0.6]),
            Factor(key="model.n_adversaries", range=[50, 60]),
        ],
        levers=[Factor(key="policy.publication_rate", levels=[0.0, 0.2])],
    )
    d = Design(spec, tiny_base())
    assert d.n_points == 2 * per_level
    points = pd.DataFrame([d.point(p) for p in range(d.n_points)])
    assert points["model.coupling"].between(0.2, 0.6).all()
    assert points["model.n_adversaries"].between(50, 60).all()
    assert all(type(v) is int for v in points["model.n_adversaries"].tolist())
    # levels are crossed with the sample: each level gets the same complete sample
    groups = points.groupby("policy.publication_rate")
    by_level = [g.drop(columns="policy.publication_rate") for _, g in groups]
    assert len(by_level) == 2 and len(by_level[0]) == per_level
    np.testing.assert_array_equal(by_level[0].to_numpy(), by_level[1].to_numpy())
    again = Design(spec, tiny_base())
    assert [again.point(p) for p in range(d.n_points)] == points.to_dict("records")


def test_sobol_points_are_salibs_sample():
    spec = SweepSpec(
        design="sobol",
        samples=16,
        second_order=True,
        uncertainties=[
            Factor(key="model.coupling", range=[0.0, 1.0]),
            Factor(key="model.clarity_exponent", range=[0.5, 3.0]),
        ],
    )
    d = Design(spec, tiny_base(seed=3))
    problem = {
        "num_vars": 2,
        "names": ["model.coupling", "model.clarity_exponent"],
        "bounds": [[0.0, 1.0], [0.5, 3.0]],
    }
    rng = np.random.default_rng(np.random.SeedSequence(3).spawn(2)[0])
    expected = salib_sobol.sample(problem, 16, calc_second_order=True, seed=rng)
    got = np.array([list(d.point(p).values()) for p in range(d.n_points)])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("changes", "key", "text"),
    [
        ({"uncertainties": [Factor(key="model.cuopling", levels=[0])]}, "[0].key", "coupling"),
        ({"uncertainties": [Factor(key="seed", levels=[1])]}, "[0].key", "replicates"),
        ({"uncertainties": [Factor(key="model.coupling", levels=[])]}, "levels", "non-empty"),
        ({"uncertainties": [Factor(key="model.coupling", levels=[0, 2])]}, "levels", "[0, 1]"),
        ({"levers": [Factor(key="model.n_labs", levels=[2.5])]}, "levers[0].levels", "integer"),
        (
            {"design": "lhs", "uncertainties": [Factor(key="model.coupling", range=[0.5, 0.5])]},
            "[0].range",
            "non-empty",
        ),
        (
            {"design": "lhs", "uncertainties": [Factor(key="model.coupling", range=[0, 2])]},
            "[0].range",
            "model.coupling",
        ),
        (
            {"uncertainties": [Factor(key="model.coupling", range=[0, 1], levels=[0])]},
            "uncertainties[0]",
            "exactly one",
        ),
        ({"uncertainties": [Factor(key="model.coupling", range=[0, 1])]}, "[0].range", "grid"),
        (
            {"design": "lhs", "uncertainties": [Factor(key="learning.lab.rule", range=[0, 1])]},
            "[0].range",
            "levels",
        ),
        (
            {
                "design": "sobol",
                "samples": 12,
                "uncertainties": [Factor(key="model.coupling", range=[0, 1])],
            },
            "sweep.samples",
            "power of 2",
        ),
        (
            {
                "uncertainties": [Factor(key="model.coupling", levels=[0])],
                "levers": [Factor(key="model.coupling", levels=[1])],
            },
            "levers[0].key",
            "already",
        ),
        ({"design": "lhs", "levers": [Factor(key="model.coupling", levels=[0])]}, "design", ""),
        ({"design": "factorial"}, "sweep.design", "grid"),
        ({"replicates": 0}, "sweep.replicates", ">= 1"),
        ({"shard": 2, "num_shards": 2}, "sweep.shard", "[0, 1]"),
        ({"uncertainties": [Factor(key="scenario", levels=["baseline"])]}, "levels", "scenario"),
        (
            {"uncertainties": [Factor(key="burn_in", levels=[0, 50])]},
            "uncertainties[0].key",
            "set it for the whole sweep",
        ),
    ],
)
def test_bad_specs_are_refused_naming_the_key(changes, key, text):
    spec = SweepSpec(**changes)
    with pytest.raises(ParameterError) as err:
        Design(spec, tiny_base())
    assert key in err.value.key and text in str(err.value)
    assert err.value.key.startswith("sweep.")


# --------------------------------------------------------------------------------------------
# The engine, in process
# --------------------------------------------------------------------------------------------


def small_spec(**changes) -> SweepSpec:
    settings = {
        "name": "small",
        "replicates": 2,
        "uncertainties": [Factor(key="model.coupling", levels=[0.0, 0.5])],
        "levers": [Factor(key="model.n_adversaries", levels=[30, 40])],
        "workers": 1,
        "chunk_size": 3,
        "save_timeseries": True,
    }
    return SweepSpec(**{**settings, **changes})


def test_a_small_sweep_writes_one_tidy_sorted_table(tmp_path):
    design = Design(small_spec(), tiny_base())
    result = run_sweep(design, tmp_path / "s")
    assert (result.runs, result.ran, result.resumed, result.failed, result.missing) == (
        8,
        8,
        0,
        0,
        0,
    )
    runs = pd.read_parquet(tmp_path / "s" / "runs.parquet")
    assert list(runs.columns[:6]) == [
        "run_id",
        "point_id",
        "replicate",
        "seed",
        "model.coupling",
        "model.n_adversaries",
    ]
    assert list(runs.columns[-2:]) == ["status", "error"]
    assert {"steps", "scenario", "model.n_labs", "learning.lab.rule", "policy.liability"} <= set(
        runs.columns
    )
    assert set(OUTCOME_COLUMNS) <= set(runs.columns)
    assert len(runs.columns) == len(runs_schema(design.varied).names)
    # the summary columns follow the parameters; no parameter shares a name with one of them
    assert list(runs.columns[-2 - len(SUMMARY_COLUMNS) : -2]) == list(SUMMARY_COLUMNS)
    assert not set(parameter_columns(design.varied)) & set(SUMMARY_COLUMNS)
    assert len(set(runs.columns)) == len(runs.columns)
    assert {f"se_{name}" for name in OUTCOMES} <= set(runs.columns)
    assert (runs["burn_in"] == 0).all() and (runs["burn_in_rule"] == "auto").all()  # 2 steps
    assert runs["se_net_alignment"].notna().all()
    assert runs["run_id"].tolist() == list(range(8))
    assert runs["point_id"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert runs["replicate"].tolist() == [0, 1] * 4
    assert runs["model.n_adversaries"].tolist() == [30, 30, 40, 40] * 2
    assert runs["model.n_adversaries"].dtype == np.int64
    assert (runs["status"] == "ok").all() and runs["error"].isna().all()
    assert runs[list(OUTCOME_COLUMNS)].notna().all().all()
    ts = pd.read_parquet(tmp_path / "s" / "timeseries.parquet")
    assert list(ts.columns) == ["run_id", "step", *OUTCOMES]
    assert len(ts) == 8 * 3 and ts["run_id"].tolist() == np.repeat(range(8), 3).tolist()
    assert not (tmp_path / "s" / "parts").exists(), "part files are removed once merged"
    manifest = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert manifest["n_runs"] == 8 and manifest["factors"][0]["role"] == "uncertainty"
    assert manifest["factors"][1]["role"] == "lever"
    # a sweep run equals `paradox run` with the same parameters and seed
    summary = run_one(design.config(5), tmp_path / "one", progress=False)
    row = runs.iloc[5]
    for name in ("net_alignment", "harm_total", "paradox_index"):
        assert row[f"final_{name}"] == summary["outcomes"][name]["final"]
        assert row[f"mean_{name}"] == summary["outcomes"][name]["mean"]
        assert row[f"se_{name}"] == summary["outcomes"][name]["se"]
    assert (row["burn_in"], row["burn_in_rule"]) == (summary["burn_in"], summary["burn_in_rule"])


def test_a_sweep_summarises_every_run_after_its_burn_in(tmp_path):
    base = tiny_base(steps=30)
    auto = run_sweep(Design(small_spec(replicates=1), base), tmp_path / "auto")
    base.burn_in = 10
    fixed = run_sweep(Design(small_spec(replicates=1), base), tmp_path / "fixed")
    assert auto.ok and fixed.ok
    runs = {k: pd.read_parquet(tmp_path / k / "runs.parquet") for k in ("auto", "fixed")}
    ts = {k: pd.read_parquet(tmp_path / k / "timeseries.parquet") for k in ("auto", "fixed")}
    pd.testing.assert_frame_equal(ts["auto"], ts["fixed"])  # the simulation does not change
    assert (runs["fixed"]["burn_in"] == 10).all() and (runs["fixed"]["burn_in_rule"] == "set").all()
    assert (runs["auto"]["burn_in_rule"] == "auto").all()
    for kind, table in runs.items():
        for _, row in table.iterrows():
            steps = ts[kind][ts[kind]["run_id"] == row["run_id"]]
            window = steps[steps["step"] > row["burn_in"]]["harm_total"]
            assert len(window) == 30 - row["burn_in"]
            assert row["mean_harm_total"] == pytest.approx(window.mean())
            assert row["se_harm_total"] == pytest.approx(batch_means_se(window.to_numpy()))


def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    one = run_sweep(Design(small_spec(), tiny_base()), tmp_path / "one")
    two = run_sweep(Design(small_spec(workers=2), tiny_base()), tmp_path / "two")
    assert (one.workers, two.workers) == (1, 2)
    for name in ("runs.parquet", "timeseries.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "one" / name), pd.read_parquet(tmp_path / "two" / name)
        )


def test_a_run_that_raises_is_recorded_and_the_sweep_goes_on(tmp_path):
    design = Design(small_spec(workers=2), tiny_base())
    result = run_sweep(design, tmp_path / "f", runner=failing_runner)
    assert (result.failed, result.ran, result.missing) == (4, 8, 0) and not result.ok
    runs = pd.read_parquet(tmp_path / "f" / "runs.parquet")
    failed = runs[runs["status"] == "failed"]
    assert (failed["model.coupling"] == 0.5).all() and len(failed) == 4
    assert (failed["error"] == "RuntimeError: boom at coupling 0.5").all()
    assert failed[list(OUTCOME_COLUMNS)].isna().all().all()
    assert runs.loc[runs["status"] == "ok", list(OUTCOME_COLUMNS)].notna().all().all()
    ts = pd.read_parquet(tmp_path / "f" / "timeseries.parquet")
    assert set(ts["run_id"]) == set(runs.loc[runs["status"] == "ok", "run_id"])
    text = format_result(design, result)
    assert "4 failed" in text and "boom" in text


def test_rerunning_skips_finished_runs_and_refuses_a_different_sweep(tmp_path):
    design = Design(small_spec(), tiny_base())
    first = run_sweep(design, tmp_path / "r")
    table = pd.read_parquet(tmp_path / "r" / "runs.parquet")
    again = run_sweep(Design(small_spec(workers=2, chunk_size=50), tiny_base()), tmp_path / "r")
    assert (first.ran, again.ran, again.resumed) == (8, 0, 8)
    pd.testing.assert_frame_equal(table, pd.read_parquet(tmp_path / "r" / "runs.parquet"))
    with pytest.raises(SweepMismatch, match="steps"):
        run_sweep(Design(small_spec(), tiny_base(steps=3)), tmp_path / "r")
    with pytest.raises(SweepMismatch, match=r"sweep\.replicates"):
        run_sweep(Design(small_spec(replicates=3), tiny_base()), tmp_path / "r")


def test_shards_split_the_design_and_collect_merges_them(tmp_path):
    whole = Design(small_spec(replicates=3), tiny_base())
    run_sweep(whole, tmp_path / "whole")
    ranges = [whole.shard_range(i, 3) for i in range(3)]
    assert [r.start for r in ranges] == [0, 4, 8] and ranges[-1].stop == 12
    for i in range(3):
        shard = Design(small_spec(replicates=3, shard=i, num_shards=3), tiny_base())
        result = run_sweep(shard, tmp_path / "shards" / f"job{i}")
        assert result.runs == 4
    collected = collect(tmp_path / "shards")
    assert (collected.rows, collected.expected, collected.missing) == (12, 12, 0)
    for name in ("runs.parquet", "timeseries.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "whole" / name),
            pd.read_parquet(tmp_path / "shards" / name),
        )


def test_merge_sorts_by_run_and_keeps_each_run_once(tmp_path):
    schema = timeseries_schema()

    def part(name: str, run_ids: list[int], value: float) -> Path:
        rows = [
            {"run_id": r, "step": s, **dict.fromkeys(OUTCOMES, value)}
            for r in run_ids
            for s in (1, 0)
        ]
        path = tmp_path / name
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        return path

    sources = [part("a.parquet", [7, 2, 5], 1.0), part("b.parquet", [5, 0, 9, 3], 2.0)]
    stats = merge(sources, tmp_path / "out.parquet", schema, block_runs=3)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["run_id"].tolist() == [0, 0, 2, 2, 3, 3, 5, 5, 7, 7, 9, 9]
    assert out["step"].tolist() == [0, 1] * 6
    assert out.loc[out["run_id"] == 5, "net_alignment"].tolist() == [1.0, 1.0]  # first source
    assert stats.duplicates == 2


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    import numpy as np
    import pandas as pd
    import sim.sweep as ex
    import sim.sweep.store
    from sim.config import Config
    from sim.outcomes import OUTCOMES

    ROWS = 1000
    sim.sweep.store.TIMESERIES_ROWS_BUDGET = 20_000  # memory bound: 20 runs per chunk and block

    def heavy(config):
        # a stand-in for a long run: a 1000-step table per run (280 kB), made without simulating
        values = np.linspace(0.0, 1.0, ROWS)[:, None] * np.ones(len(OUTCOMES)) + config.seed % 7
        table = pd.DataFrame(values, columns=list(OUTCOMES))
        table.insert(0, "step", np.arange(ROWS))
        return table

    replicates = int(sys.argv[1])
    spec = ex.SweepSpec(
        replicates=replicates,
        uncertainties=[ex.Factor(key="model.coupling", levels=[0.0, 1.0])],
        workers=1, chunk_size=50, save_timeseries=True,
    )
    result = ex.run_sweep(
        ex.Design(spec, Config(steps=ROWS - 1)), Path(sys.argv[2]), runner=heavy
    )
    assert result.ok, result
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def test_memory_stays_flat_as_the_design_grows_tenfold(tmp_path):
    def peak_kib(replicates: int, name: str) -> int:
        proc = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(replicates), str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=300,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.split()[-1])

    # 60 vs 600 runs; both are cut into several part files and merge blocks
    small, large = peak_kib(30, "small"), peak_kib(300, "large")
    ts_large = pd.read_parquet(tmp_path / "large" / "timeseries.parquet")
    assert len(ts_large) == 600 * 1000
    in_memory = ts_large.memory_usage(deep=True).sum() // 1024  # what holding it all would cost
    del ts_large
    # Holding the extra 540 runs' tables would add ~0.9 x in_memory (~150 MiB) to the peak.
    # Streaming adds only allocator noise (measured: 10 to 25 MiB).
    assert large - small < 0.3 * in_memory, (small, large, in_memory)


# --------------------------------------------------------------------------------------------
# Named sweeps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_sweep_file_states_its_question_and_default_size(name, compose_design):
    text = (CONF / "sweep" / f"{name}.yaml").read_text()
    lines = text.splitlines()
    assert lines[0] == "# @package _global_"
    header = " ".join(ln for ln in lines[1:8] if ln.startswith("#"))
    assert "?" in header and "Default size" in header
    assert yaml.safe_load(text)["sweep"]["name"] == name
    design = compose_design(f"sweep={name}")
    assert design.n_runs == NAMED[name]
    roles = {f.role for f in design.factors}
    if name == "scenarios":  # one factor: the scenario, a world and its policies at once
        assert roles == {"uncertainty"} and [f.key for f in design.factors] == ["scenario"]
    else:
        assert roles == {"uncertainty", "lever"}, "uncertainties are kept apart from levers"


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_sweep_runs(name, compose_design, tmp_path):
    design = compose_design(f"sweep={name}", "steps=1", "model.n_adversaries=30", "sweep.workers=1")
    result = run_sweep(design, tmp_path / name)
    assert result.ok and result.runs == NAMED[name]
    runs = pd.read_parquet(tmp_path / name / "runs.parquet")
    assert (runs["steps"] == 1).all() and (runs["model.n_adversaries"] == 30).all()
    if name == "alignment_share_curve":
        assert (runs["learning.lab.rule"] == "fixed").all(), "the alignment share is exogenous"
        assert runs["replicate"].max() == 2
    if name == "paradox_curve":
        assert runs["model.fixed_alignment"].nunique() == 10, "the alignment level is exogenous"
        assert runs["replicate"].max() == 9
    if name == "policy_grid":
        assert set(runs["scenario"]) == {"baseline", "escalation", "no_paradox"}
        escalation = runs[runs["scenario"] == "escalation"]
        assert (escalation["model.adversary_budget_mean"] == 1.0).all()
        assert (runs.loc[runs["scenario"] == "no_paradox", "model.coupling"] == 0).all()
    if name == "sobol_screen":
        assert runs["model.coupling"].nunique() > 30


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def test_sweep_command_end_to_end(tmp_path):
    out = tmp_path / "curve"
    proc = paradox(
        "sweep",
        "sweep=alignment_share_curve",
        *TINY,
        "sweep.replicates=2",
        "sweep.uncertainties.0.levels=[0.0,1.0]",
        "sweep.levers.0.levels=[0.2,0.8]",
        "sweep.save_timeseries=true",
        "sweep.workers=2",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert "8 ok, 0 failed" in proc.stdout
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 8 and (runs["steps"] == 2).all()
    assert (runs["learning.lab.rule"] == "fixed").all()
    assert sorted(set(runs["learning.lab.alignment_share"])) == [0.2, 0.8]
    assert len(pd.read_parquet(out / "timeseries.parquet")) == 8 * 3
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["sweep"]["ran"] == 8 and "sweep=alignment_share_curve" in prov["overrides"]
    assert "alignment_share" in (out / "config.yaml").read_text()


def test_failed_runs_give_a_non_zero_exit_and_a_summary(tmp_path):
    proc = paradox(
        "sweep",
        "sweep=alignment_share_curve",
        *TINY,
        "sweep.replicates=1",
        # under the fixed lab rule, alignment share + defence mandate must not exceed 1
        "sweep.uncertainties=[{key:policy.defence_mandate,levels:[0.0,0.8]}]",
        "sweep.levers.0.levels=[0.1,0.5]",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "3 ok, 1 failed" in proc.stdout and "alignment_share" in proc.stdout
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert folder.is_relative_to(tmp_path / "results" / "sweeps")
    runs = pd.read_parquet(tmp_path / folder / "runs.parquet")
    bad = runs[runs["status"] == "failed"]
    assert len(bad) == 1 and bad["policy.defence_mandate"].item() == 0.8
    assert "learning.lab.alignment_share" in bad["error"].item()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["sweep=nonexistent"], "unknown sweep 'nonexistent'"),
        (["sweep.uncertainties.0.key=model.cuopling"], "did you mean model.coupling"),
        (["model.coupling=3"], "'model.coupling': 3.0; allowed: a number in [0, 1]"),
        (
            ["sweep=sobol_screen", "sweep.samples=10"],
            "paradox sweep: invalid value for 'sweep.samples': 10; allowed: a power of 2 for "
            "design=sobol (Sobol' sequences balance only at N = 2^k, e.g. 16)",
        ),
    ],
)
def test_bad_sweep_input_fails_cleanly(tmp_path, overrides, needle):
    out = tmp_path / "bad"
    proc = paradox("sweep", "steps=1", *overrides, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists(), "a rejected sweep leaves no folder behind"
    if needle.startswith("paradox sweep:"):
        assert proc.returncode == 2 and proc.stderr.strip() == needle


def test_a_sweep_killed_with_sigkill_resumes_to_the_same_table(tmp_path, compose_design):
    overrides = [
        "sweep=alignment_share_curve",
        "steps=10",
        "model.n_adversaries=60",
        "model.n_labs=4",
        "sweep.chunk_size=4",
        "sweep.save_timeseries=true",
    ]
    args = ["sweep", *overrides, "sweep.workers=2"]
    killed = tmp_path / "killed"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [*PARADOX, *args, f"hydra.run.dir={killed}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )
    deadline = time.monotonic() + 120
    while len(list((killed / "parts").glob("runs-*.parquet"))) < 3:
        assert proc.poll() is None, "the sweep finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "runs.parquet").exists()
    resumed = paradox(*args, f"hydra.run.dir={killed}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    done_before = int(resumed.stdout.split(" already done")[0].split()[-1])
    assert 12 <= done_before < 132, "finished runs are not redone"
    # the same sweep, uninterrupted (in this process, one worker)
    whole = run_sweep(compose_design(*overrides, "sweep.workers=1"), tmp_path / "whole")
    assert whole.ok and whole.ran == 132
    for name in ("runs.parquet", "timeseries.parquet"):
        a = pd.read_parquet(killed / name).sort_values(["run_id"], kind="stable")
        b = pd.read_parquet(tmp_path / "whole" / name).sort_values(["run_id"], kind="stable")
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert not list(killed.glob(".*.tmp")) and not (killed / "parts").exists()


@pytest.mark.slow
def test_memory_of_a_real_sweep_stays_flat_as_it_grows_tenfold(tmp_path):
    """The same check through `paradox sweep` with the model itself: 1000 vs 10000 tiny runs."""

    def peak_kib(samples: int) -> int:
        sweep = [
            *PARADOX,
            "sweep",
            "sweep=sobol_screen",
            "sweep.design=lhs",
            f"sweep.samples={samples}",
            "steps=2",
            "model.n_adversaries=20",
            "model.n_labs=2",
            "sweep.save_timeseries=true",
            f"hydra.run.dir={tmp_path / str(samples)}",
        ]
        # the wrapper reports the peak resident memory of its largest descendant: the sweep
        wrapper = (
            "import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", wrapper, *sweep],
            capture_output=True,
            text=True,
            timeout=1200,
            cwd=tmp_path,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.split()[-1])

    small, large = peak_kib(1000), peak_kib(10000)
    runs = pd.read_parquet(tmp_path / "10000" / "runs.parquet")
    assert len(runs) == 10000 and (runs["status"] == "ok").all()
    # Keeping 9000 more result rows as Python dicts would take well over 100 MiB; the heaps of
    # the processes settle within ~10 to 30 MiB of their start whatever the number of runs.
    assert large - small < 50 * 1024, (small, large)


# -- replicates blocked on the largest lab's open weights (issue 14 §3) ------------------------


@pytest.mark.parametrize(("n", "share"), [(20, 0.3), (8, 0.3), (5, 0.5), (7, 0.9)])
def test_blocked_strata_hold_the_open_share_in_every_prefix(n, share):
    from sim.rules import top_lab_open

    k = round(share * n)
    flags = [top_lab_open(r, n, share) for r in range(60)]
    for replicates in range(1, 61):
        assert sum(flags[:replicates]) == replicates * k // n  # within one run of R k / n
    assert top_lab_open(0, 10, 0.0) is None and top_lab_open(3, 10, 1.0) is None


def test_stratified_open_weights_fix_the_top_lab_and_keep_the_count():
    from sim.rules import open_weights

    rng = np.random.default_rng(5)
    others = np.zeros(9)
    for _ in range(400):
        top = open_weights(10, 0.3, "random_top_open", rng)
        closed = open_weights(10, 0.3, "random_top_closed", rng)
        assert top.sum() == closed.sum() == 3 and top[0] and not closed[0]
        others += top[1:]
    # the other open labs are uniform over the rest: 2 of 9 each time
    assert np.allclose(others / 400, 2 / 9, atol=0.07)
    expected = open_weights(10, 0.3, "random_top_open", None)
    assert expected[0] == 1.0 and np.allclose(expected[1:], 2 / 9)


def test_sweep_replicates_are_blocked_on_the_top_labs_access():
    base = tiny_base()
    base.model.n_labs, base.policy.open_weights_share = 10, 0.3
    spec = small_spec(replicates=10, levers=[], uncertainties=[Factor(key="model.coupling",
                      levels=[0.0, 1.0])])  # fmt: skip
    design = Design(spec, base)
    strata = [design.config(rid).policy.open_weights_selection for rid in range(design.n_runs)]
    per_point = [strata[:10], strata[10:]]
    assert per_point[0] == per_point[1]  # paired: the same stratum for a replicate at each point
    assert per_point[0].count("random_top_open") == 3 and set(per_point[0]) == {
        "random_top_open", "random_top_closed"
    }  # fmt: skip
    unblocked = Design(SweepSpec(**{**spec.__dict__, "block_open_weights": False}), base)
    assert {unblocked.config(r).policy.open_weights_selection for r in range(20)} == {"random"}
    base.policy.open_weights_selection = "largest"
    assert {Design(spec, base).config(r).policy.open_weights_selection for r in range(20)} == {
        "largest"
    }


def test_a_stratum_needs_open_and_closed_labs():
    cfg = tiny_base()
    cfg.policy.open_weights_selection, cfg.policy.open_weights_share = "random_top_open", 0.0
    with pytest.raises(ParameterError, match=r"policy\.open_weights_selection"):
        validate(cfg)


def test_blocked_replicates_are_still_replicates_to_plot(tmp_path):
    """The stratum a blocked replicate records is a replicate-level draw: runs of one scenario
    are still averaged together, and the theory overlays condition on the random selection."""
    from experiments.plot import _differ_within_scenario, base_config

    base = tiny_base()
    base.policy.open_weights_share = 0.34  # 1 of 3 labs open: the strata apply
    spec = small_spec(replicates=4, levers=[], uncertainties=[Factor(key="scenario",
                      levels=["baseline"])])  # fmt: skip
    design = Design(spec, base, {"baseline": base})
    assert run_sweep(design, tmp_path / "s").ok
    runs = pd.read_parquet(tmp_path / "s" / "runs.parquet")
    assert set(runs["policy.open_weights_selection"]) == {"random_top_open", "random_top_closed"}
    assert _differ_within_scenario(runs) == []
    assert base_config(runs).policy.open_weights_selection == "random"
