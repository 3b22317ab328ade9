"""Benchmarks of the engine against the plain-Mesa reference (issue 6), run by ``make bench``.

``python -m benchmarks.bench`` measures, in one run on this machine:

- ``single``: steps per second of the engine and of :mod:`benchmarks.reference` at 20 labs and
  10,000 adversaries, in alternating blocks so that both see the same machine load; the ratio;
  and where the engine's step time goes, stage by stage (with the data-collection share);
- ``scale``: fresh processes at 10^3 to 10^6 adversaries, 100 steps each: run time (building
  the model plus the steps), the fitted exponent of run time in M, and peak memory per
  adversary (peak RSS of the process minus that of a process that did everything but build
  the model);
- ``sweep``: a 1,000-run design (``conf/sweep/alignment_share_curve.yaml`` with 10 shares, 4
  couplings, 25 replicates) at default sizes and 200 steps through ``paradox sweep`` with
  one and with two workers (parallel efficiency), against ``mesa.batch_run`` over the reference
  with two processes on a stated subset of the same design (extrapolated per run);
- ``machine``: how much this machine itself gains from a second process (a pure-Python loop in
  one and in two processes), the ceiling of any parallel efficiency measured here.

It writes ``benchmarks/results.json`` and the generated block of ``benchmarks/README.md``. Times
are medians over repeats; ratios compare numbers measured in the same run. No result is ever
written by hand: every number in the table comes from the JSON this script just wrote.
``--quick`` runs a much smaller version (a smoke test, not a measurement); it writes
``results/bench/quick.json`` and leaves the tracked results and README alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results.json"
README = HERE / "README.md"
#: Where a --quick smoke run writes (git-ignored), unless --output says otherwise.
QUICK_RESULTS = HERE.parent / "results" / "bench" / "quick.json"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

#: The design of the sweep benchmark: conf/sweep/alignment_share_curve.yaml (labs hold their
#: alignment share fixed) with ten shares, four couplings and 25 replicates: 1,000 runs.
SWEEP = "alignment_share_curve"
SHARES = [round(0.1 * i, 1) for i in range(10)]
COUPLINGS = [0.0, 0.4, 0.8, 1.0]
REPLICATES = 25

TARGETS = {
    "single_rate": 3e6,  # agent-steps per second at 20 labs, 10^4 adversaries
    "single_ratio": 30.0,  # engine / reference
    "million_seconds": 60.0,  # 10^6 adversaries, 100 steps
    "exponent": 1.1,
    "bytes_per_adversary": 400.0,
    "sweep_ratio": 30.0,  # paradox sweep / mesa.batch_run over the reference
    "parallel_efficiency": 0.85,
    "collection_share": 0.10,
}


# --------------------------------------------------------------------------------------------
# Single runs
# --------------------------------------------------------------------------------------------

STAGES = (
    "_leak",
    "_invest",
    "_publish",
    "_target",
    "_consequences",
    "_adapt",
    "_observe",
    "_lab_best_response",
    "_record",
)


#: Stages called by ``step`` itself, and those called from within another stage.
TOP_STAGES = (
    "_leak",
    "_invest",
    "_publish",
    "_target",
    "_consequences",
    "_adapt",
    "_record",
    "collect",
)
NESTED = {"_adapt": ("_observe", "_lab_best_response")}


def _instrument(model: Any) -> dict[str, float]:
    """Wrap the engine's stage methods and its collector with timers (totals in seconds)."""
    acc: dict[str, float] = defaultdict(float)
    for name in STAGES:
        method = getattr(model, name)

        def timed(*args, _method=method, _name=name):
            t = time.perf_counter()
            out = _method(*args)
            acc[_name] += time.perf_counter() - t
            return out

        setattr(model, name, timed)
    collect = model.datacollector.collect

    def timed_collect(m):
        t = time.perf_counter()
        collect(m)
        acc["collect"] += time.perf_counter() - t

    model.datacollector.collect = timed_collect
    return acc


def bench_single(n_labs: int, n_adv: int, repeats: int, engine_steps: int, ref_steps: int) -> dict:
    from benchmarks.reference import ReferenceModel
    from sim import AlignmentParadoxModel

    engine = AlignmentParadoxModel(rng=1, n_labs=n_labs, n_adversaries=n_adv)
    reference = ReferenceModel(rng=1, n_labs=n_labs, n_adversaries=n_adv)
    for _ in range(3):
        engine.step()
    reference.step()
    eng, ref = [], []
    for _ in range(repeats):  # alternate, so that both see the same load
        t = time.perf_counter()
        for _ in range(engine_steps):
            engine.step()
        eng.append((time.perf_counter() - t) / engine_steps)
        t = time.perf_counter()
        for _ in range(ref_steps):
            reference.step()
        ref.append((time.perf_counter() - t) / ref_steps)
    e, r = float(np.median(eng)), float(np.median(ref))
    return {
        "n_labs": n_labs,
        "n_adversaries": n_adv,
        "repeats": repeats,
        "engine_steps_per_repeat": engine_steps,
        "reference_steps_per_repeat": ref_steps,
        "engine_step_seconds": eng,
        "reference_step_seconds": ref,
        "engine_median_step_seconds": e,
        "reference_median_step_seconds": r,
        "engine_agent_steps_per_second": n_adv / e,
        "reference_agent_steps_per_second": n_adv / r,
        "ratio": r / e,
        "ratio_per_repeat_median": float(np.median(np.array(ref) / np.array(eng))),
    }


def bench_profile(n_labs: int, n_adv: int, steps: int) -> dict:
    """Stage-by-stage time of the engine's step, and the share of data collection."""
    from sim import AlignmentParadoxModel

    model = AlignmentParadoxModel(rng=2, n_labs=n_labs, n_adversaries=n_adv)
    for _ in range(3):
        model.step()
    acc = _instrument(model)
    t = time.perf_counter()
    for _ in range(steps):
        model.step()
    total = (time.perf_counter() - t) / steps
    stages = {k: v / steps for k, v in sorted(acc.items(), key=lambda kv: -kv[1])}
    collection = stages.get("collect", 0.0) + stages.get("_record", 0.0)
    return {
        "n_labs": n_labs,
        "n_adversaries": n_adv,
        "steps": steps,
        "step_seconds": total,
        "stage_seconds": stages,
        "collection_seconds": collection,
        "collection_share": collection / total,
    }


# --------------------------------------------------------------------------------------------
# Scale: fresh processes
# --------------------------------------------------------------------------------------------


def _child_scale(n_adv: int, steps: int) -> dict:
    """In a fresh process: warm up on a tiny model, then build and run the real one."""
    from sim import AlignmentParadoxModel

    warm = AlignmentParadoxModel(rng=0, n_adversaries=10)
    warm.step()
    del warm
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out: dict[str, Any] = {"n_adversaries": n_adv, "steps": steps, "rss_after_warmup": baseline}
    if n_adv == 0:
        return out
    t0 = time.perf_counter()
    model = AlignmentParadoxModel(rng=1, n_adversaries=n_adv)
    t1 = time.perf_counter()
    for _ in range(steps):
        model.step()
    t2 = time.perf_counter()
    out.update(
        build_seconds=t1 - t0,
        step_seconds=(t2 - t1) / steps,
        run_seconds=t2 - t0,
        peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
    return out


def _run_child(kind: str, **kwargs: Any) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench", "_child", kind, json.dumps(kwargs)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_scale(sizes: list[int], steps: int, repeats: dict[int, int]) -> dict:
    baseline = [_run_child("scale", n_adv=0, steps=0)["rss_after_warmup"] for _ in range(3)]
    base = float(np.median(baseline))
    rows = []
    for n in sizes:
        runs = [_run_child("scale", n_adv=n, steps=steps) for _ in range(repeats.get(n, 1))]
        peak = float(np.median([r["peak_rss"] for r in runs]))
        rows.append(
            {
                "n_adversaries": n,
                "repeats": len(runs),
                "run_seconds": [r["run_seconds"] for r in runs],
                "median_run_seconds": float(np.median([r["run_seconds"] for r in runs])),
                "median_build_seconds": float(np.median([r["build_seconds"] for r in runs])),
                "median_step_seconds": float(np.median([r["step_seconds"] for r in runs])),
                "peak_rss": peak,
                "bytes_per_adversary": (peak - base) / n,
            }
        )
    m = np.array([r["n_adversaries"] for r in rows], dtype=float)
    t = np.array([r["median_run_seconds"] for r in rows])
    steps_only = np.array([r["median_step_seconds"] for r in rows])
    return {
        "steps": steps,
        "baseline_rss": base,
        "baseline_rss_runs": baseline,
        "rows": rows,
        "exponent": float(np.polyfit(np.log(m), np.log(t), 1)[0]),
        "exponent_steps_only": float(np.polyfit(np.log(m), np.log(steps_only), 1)[0]),
    }


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------


def _paradox_sweep(workers: int, replicates: int, steps: int, out: Path) -> dict:
    levels = ", ".join(str(s) for s in SHARES)
    couplings = ", ".join(str(c) for c in COUPLINGS)
    cmd = [
        str(Path(sys.executable).with_name("paradox")),
        "sweep",
        f"sweep={SWEEP}",
        f"sweep.levers=[{{key: learning.lab.alignment_share, levels: [{levels}]}}]",
        f"sweep.uncertainties=[{{key: model.coupling, levels: [{couplings}]}}]",
        f"sweep.replicates={replicates}",
        f"sweep.workers={workers}",
        f"steps={steps}",
        "sweep.progress=false",
        f"hydra.run.dir={out}",
    ]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    runs = len(SHARES) * len(COUPLINGS) * replicates
    import pandas as pd

    table = pd.read_parquet(out / "runs.parquet")
    assert len(table) == runs and (table["status"] == "ok").all(), done.stderr[-2000:]
    return {
        "workers": workers,
        "runs": runs,
        "wall_seconds": wall,
        "runs_per_second": runs / wall,
        "command": " ".join(cmd[1:-1]),
        "summary": done.stdout.strip().splitlines()[-2],
    }


def _batch_run(points: list[dict], seeds: list[int], steps: int, processes: int) -> dict:
    import mesa

    from benchmarks.reference import ReferenceModel

    couplings = sorted({p["coupling"] for p in points})
    shares = sorted({p["lab_alignment_share"] for p in points})
    t = time.perf_counter()
    rows = mesa.batch_run(
        ReferenceModel,
        parameters={"lab_rule": "fixed", "coupling": couplings, "lab_alignment_share": shares},
        rng=seeds,
        max_steps=steps,
        number_processes=processes,
        data_collection_period=-1,
        display_progress=False,
    )
    wall = time.perf_counter() - t
    runs = len(couplings) * len(shares) * len(seeds)
    assert len(rows) == runs
    return {
        "processes": processes,
        "runs": runs,
        "couplings": couplings,
        "shares": shares,
        "seeds": seeds,
        "wall_seconds": wall,
        "runs_per_second": runs / wall,
    }


def bench_sweep(replicates: int, steps: int, subset_shares: list[float], rounds: int = 2) -> dict:
    """The design with 2 workers and with 1, in ``rounds`` rounds of alternating order (2, 1,
    then 1, 2, ...: an ABBA order, so that a machine growing slower or faster during the
    benchmark biases neither side); the efficiency is total 1-worker time over twice the total
    2-worker time (the efficiency of the mean times; each round's own is kept too, and their
    spread shows the machine's noise). The throughput ratio uses the mean 2-worker time."""
    work = Path(tempfile.mkdtemp(prefix="paradox-bench-"))
    twos, ones = [], []
    try:
        for r in range(rounds):
            for workers in (2, 1) if r % 2 == 0 else (1, 2):
                out = work / f"{workers}-{r}"
                run = _paradox_sweep(workers, replicates, steps, out)
                (twos if workers == 2 else ones).append(run)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (wall_two, mean_two), (wall_one, mean_one) = _walls(twos), _walls(ones)
    runs = twos[0]["runs"]
    points = [{"coupling": c, "lab_alignment_share": s} for c in COUPLINGS for s in subset_shares]
    batch = _batch_run(points, seeds=[1], steps=steps, processes=2)
    return {
        "design": {
            "sweep": SWEEP,
            "shares": SHARES,
            "couplings": COUPLINGS,
            "replicates": replicates,
            "runs": runs,
            "steps": steps,
            "sizes": "defaults: 20 labs, 1,000 adversaries",
        },
        "rounds": rounds,
        "paradox_sweep_2_workers": twos,
        "paradox_sweep_1_worker": ones,
        # the efficiency of the mean times, and of each round's pair (the spread is the noise)
        "parallel_efficiency": mean_one / (2.0 * mean_two),
        "parallel_efficiency_per_round": [
            o / (2.0 * t) for o, t in zip(wall_one, wall_two, strict=True)
        ],
        "batch_run_reference_subset": batch,
        "batch_run_extrapolated_seconds": runs / batch["runs_per_second"],
        "ratio": (runs / mean_two) / batch["runs_per_second"],
    }


def _walls(runs: list[dict]) -> tuple[list[float], float]:
    """The wall times of the rounds of one worker count, and their mean."""
    walls = [r["wall_seconds"] for r in runs]
    return walls, float(np.mean(walls))


def _child_burn(seconds_hint: float) -> dict:
    """A pure-Python loop, timed inside the process (interpreter start-up left out). It says
    "ready" and starts when a line arrives on stdin, so that the parent can release two at the
    same moment."""
    print("ready", flush=True)
    sys.stdin.readline()
    t = time.perf_counter()
    s = 0
    for i in range(int(2.4e7 * seconds_hint)):
        s += i * i
    return {"seconds": time.perf_counter() - t}


def bench_machine(seconds_hint: float = 2.0, repeats: int = 3) -> dict:
    """Speed-up of two processes over one on a pure-Python loop: what the hardware allows.

    Each process times its own loop, so interpreter start-up (which two processes starting at
    once contend for) is left out; a pair counts as long as its slower member."""
    solo, pair = [], []
    cmd = [sys.executable, "-m", "benchmarks.bench", "_child", "burn"]
    arg = json.dumps({"seconds_hint": seconds_hint})

    def start(n: int) -> list[float]:
        """Start ``n`` children, wait until each is ready, release them together; their times."""
        procs = [subprocess.Popen([*cmd, arg], cwd=ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for _ in range(n)]  # fmt: skip
        for p in procs:
            p.stdout.readline()  # "ready": imported
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        return [float(json.loads(p.communicate()[0])["seconds"]) for p in procs]

    for _ in range(repeats):
        solo.append(start(1)[0])
        pair.append(max(start(2)))
    s, p = float(np.median(solo)), float(np.median(pair))
    return {"one_process_seconds": s, "two_processes_seconds": p, "efficiency": s / p,
            "repeats": repeats}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _rounds_text(sweep: dict) -> str:
    """How the sweep was timed: each round's wall time, their means and efficiencies."""
    (two, mean_two), (one, mean_one) = (_walls(sweep["paradox_sweep_2_workers"]),
                                        _walls(sweep["paradox_sweep_1_worker"]))  # fmt: skip
    rate = sweep["design"]["runs"] / mean_two
    if len(two) == 1:
        return (f"once with 2 workers, {two[0]:.1f} s ({rate:.2f} runs/s), and once with 1, "
                f"{one[0]:.1f} s")  # fmt: skip
    per_round = ", ".join(f"{e:.0%}" for e in sweep["parallel_efficiency_per_round"])
    return (
        f"{len(two)} times each way, alternating in ABBA order (2, 1, 1, 2 workers): with 2 "
        f"workers {' and '.join(f'{t:.1f}' for t in two)} s (mean {mean_two:.1f} s, "
        f"{rate:.2f} runs/s), with 1 "
        f"{' and '.join(f'{t:.1f}' for t in one)} s (mean {mean_one:.1f} s). The efficiency in "
        f"the table is that of the means; round by round it was {per_round}, a spread that is "
        "this shared machine's noise"
    )


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    versions = {}
    for pkg in ("numpy", "numba", "llvmlite", "Mesa", "networkx", "pandas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--", "sim", "benchmarks"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit + ("+uncommitted changes" if dirty else ""),
        "load_average_at_start": load,
    }


def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def _ok(good: bool) -> str:
    return "met" if good else "**not met**"


def render(res: dict) -> str:
    """The generated block of benchmarks/README.md, from results.json only."""
    mc = res["machine"]
    lines = [
        f"Measured {res['finished']} by `{res['command']}` (`make bench`), "
        f"{'QUICK smoke run, not a measurement' if res['quick'] else 'full run'}.",
        "",
        f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory_gib']} GiB; Python "
        f"{mc['python']}; "
        + ", ".join(f"{k} {v}" for k, v in mc["versions"].items())
        + f"; commit {mc['git_commit']}; load average at start "
        + ", ".join(f"{v:.2f}" for v in mc["load_average_at_start"])
        + " (1, 5, 15 min).",
        "",
        "| target | measured | required | status |",
        "|---|---|---|---|",
    ]
    t = TARGETS
    single = res.get("single")
    if single:
        lines += [
            f"| engine rate, {single['n_labs']} labs × {single['n_adversaries']:,} adversaries "
            f"| {_fmt_rate(single['engine_agent_steps_per_second'])} agent-steps/s "
            f"(median step {single['engine_median_step_seconds'] * 1e3:.2f} ms) "
            f"| ≥ 3 M | {_ok(single['engine_agent_steps_per_second'] >= t['single_rate'])} |",
            f"| engine / plain-Mesa reference, same run "
            f"| {single['ratio']:.0f}× (reference "
            f"{_fmt_rate(single['reference_agent_steps_per_second'])} agent-steps/s) "
            f"| ≥ 30× | {_ok(single['ratio'] >= t['single_ratio'])} |",
        ]
    scale = res.get("scale")
    if scale:
        big = scale["rows"][-1]
        lines += [
            f"| {big['n_adversaries']:,} adversaries, {scale['steps']} steps (build + steps) "
            f"| {big['median_run_seconds']:.1f} s | < 60 s "
            f"| {_ok(big['median_run_seconds'] < t['million_seconds'])} |",
            f"| run time exponent in M, {scale['rows'][0]['n_adversaries']:,} to "
            f"{big['n_adversaries']:,} | {scale['exponent']:.3f} "
            f"(steps only {scale['exponent_steps_only']:.3f}) | ≤ 1.1 "
            f"| {_ok(scale['exponent'] <= t['exponent'])} |",
            f"| peak memory per adversary at {big['n_adversaries']:,} "
            f"| {big['bytes_per_adversary']:.0f} B | ≤ 400 B "
            f"| {_ok(big['bytes_per_adversary'] <= t['bytes_per_adversary'])} |",
        ]
    sweep = res.get("sweep")
    if sweep:
        lines += [
            f"| `paradox sweep` / `mesa.batch_run` over the reference, 2 workers each "
            f"| {sweep['ratio']:.0f}× | ≥ 30× | {_ok(sweep['ratio'] >= t['sweep_ratio'])} |",
            f"| parallel efficiency of `paradox sweep`, 2 workers vs 1 "
            f"| {sweep['parallel_efficiency']:.0%} | ≥ 85% "
            f"| {_ok(sweep['parallel_efficiency'] >= t['parallel_efficiency'])} |",
        ]
    prof = res.get("profile")
    if prof:
        for p in prof:
            lines.append(
                f"| data collection share of step time, {p['n_adversaries']:,} adversaries "
                f"| {p['collection_share']:.1%} | ≤ 10% "
                f"| {_ok(p['collection_share'] <= t['collection_share'])} |"
            )
    machine = res.get("machine_scaling")
    if machine:
        lines += [
            "",
            f"This machine's own ceiling on parallel efficiency (a pure-Python loop in two "
            f"processes started together against one, each timing its own loop; median of "
            f"{machine.get('repeats', 3)}): "
            f"{machine['efficiency']:.0%} "
            f"({machine['one_process_seconds']:.2f} s alone, "
            f"{machine['two_processes_seconds']:.2f} s for two at once).",
        ]
    if scale:
        lines += [
            "",
            f"Scale (fresh process per size, {scale['steps']} steps, medians; memory is peak RSS "
            f"minus {scale['baseline_rss'] / 2**20:.0f} MiB, the peak of a process that imported "
            "and warmed up everything but built no model):",
            "",
            "| adversaries | runs | build s | step ms | run s | agent-steps/s | bytes/adversary |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in scale["rows"]:
            lines.append(
                f"| {r['n_adversaries']:,} | {r['repeats']} | {r['median_build_seconds']:.2f} "
                f"| {r['median_step_seconds'] * 1e3:.2f} | {r['median_run_seconds']:.2f} "
                f"| {_fmt_rate(r['n_adversaries'] / r['median_step_seconds'])} "
                f"| {r['bytes_per_adversary']:.0f} |"
            )
    if sweep:
        d, b = sweep["design"], sweep["batch_run_reference_subset"]
        lines += [
            "",
            f"Sweep design: `{d['sweep']}` with {len(d['shares'])} alignment shares × "
            f"{len(d['couplings'])} couplings × {d['replicates']} replicates = {d['runs']:,} runs "
            f"of {d['steps']} steps at {d['sizes']}. `paradox sweep` ran all of them "
            + _rounds_text(sweep)
            + " (wall times of the whole command, start-up included). "
            "`mesa.batch_run` over the reference (2 processes) ran a subset of the "
            f"same design, {b['runs']} runs (couplings {b['couplings']} × shares {b['shares']}, "
            f"seed {b['seeds']}), in {b['wall_seconds']:.1f} s ({b['runs_per_second']:.3f} "
            f"runs/s); **extrapolated** per run, the whole design would take it "
            f"{sweep['batch_run_extrapolated_seconds'] / 3600:.1f} h.",
        ]
    if prof:
        for p in prof:
            lines += [
                "",
                f"Engine step by stage, {p['n_labs']} labs × {p['n_adversaries']:,} adversaries "
                f"({p['step_seconds'] * 1e3:.3f} ms per step over {p['steps']} steps):",
                "",
                "| stage | ms per step | share |",
                "|---|---|---|",
            ]
            stages = p["stage_seconds"]
            for name in TOP_STAGES:
                sec = stages.get(name, 0.0)
                lines.append(f"| `{name}` | {sec * 1e3:.3f} | {sec / p['step_seconds']:.1%} |")
                for sub in NESTED.get(name, ()):
                    sec = stages.get(sub, 0.0)
                    lines.append(
                        f"| ↳ of which `{sub}` | {sec * 1e3:.3f} | {sec / p['step_seconds']:.1%} |"
                    )
            other = p["step_seconds"] - sum(stages.get(name, 0.0) for name in TOP_STAGES)
            lines.append(
                f"| the rest (`_derive`, Mesa's step machinery) | {other * 1e3:.3f} "
                f"| {other / p['step_seconds']:.1%} |"
            )
    return "\n".join(lines)


def write_readme(res: dict) -> None:
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{render(res)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        kind, kwargs = argv[1], json.loads(argv[2])
        out = _child_scale(**kwargs) if kind == "scale" else _child_burn(**kwargs)
        print(json.dumps(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--only", default="single,profile,scale,sweep,machine", help="comma-separated parts"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results JSON path (default: benchmarks/results.json; with --quick, "
        "results/bench/quick.json, so a smoke run never replaces the measurements)",
    )
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    q = args.quick
    res: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench " + " ".join(argv),
        "quick": q,
        "machine": machine_info(),
        "targets": TARGETS,
    }

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if "machine" in parts:
        log("machine scaling")
        res["machine_scaling"] = bench_machine(0.1 if q else 2.0, 1 if q else 3)
    if "single" in parts:
        log("single runs: engine vs reference")
        res["single"] = bench_single(5, 300, 2, 5, 1) if q else bench_single(20, 10_000, 7, 40, 1)
    if "profile" in parts:
        log("engine stages and data collection")
        sizes = [(5, 300)] if q else [(20, 10_000), (20, 1_000)]
        res["profile"] = [bench_profile(n, m, 20 if q else 300) for n, m in sizes]
    if "scale" in parts:
        log("scale")
        if q:
            res["scale"] = bench_scale([1_000, 3_000], 5, {})
        else:
            sizes = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]
            reps = {n: 3 for n in sizes if n <= 100_000} | {1_000_000: 2}
            res["scale"] = bench_scale(sizes, 100, reps)
    if "sweep" in parts:
        log("sweeps (several minutes)")
        res["sweep"] = (bench_sweep(1, 5, [0.0], rounds=1) if q else
                        bench_sweep(REPLICATES, 200, [0.0, 0.5]))  # fmt: skip
    res["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    output = args.output or (QUICK_RESULTS if q else RESULTS)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(res, indent=1) + "\n")
    log(f"wrote {output}")
    if not (args.no_readme or q):  # the README shows full measurements only
        write_readme(res)
        log(f"wrote {README}")
    print(render(res))


if __name__ == "__main__":
    main()
